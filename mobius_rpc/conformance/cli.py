"""``mobius conformance --stdio CMD | --url URL [...]``: the checker as a CI step.

Exit status: 0 when every check passed (or failed as expected), 1 on a
failure or a stale expected-failure entry, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

__all__ = ("add_conformance_parser",)


def add_conformance_parser(sub: Any) -> None:
    parser = sub.add_parser("conformance", help="check an MCP server against the spec")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stdio", metavar="CMD", help="launch CMD and check it over stdio")
    where.add_argument("--url", help="check a running server (Streamable HTTP)")
    parser.add_argument("--revision", action="append", default=[], metavar="R",
                        help="check only this revision (repeatable; default: all it accepts)")
    parser.add_argument("--fuzz", type=int, default=0, metavar="N",
                        help="fuzzed messages per revision (default 0: replay only)")
    parser.add_argument("--seed", type=int, help="fuzzing seed (default: random, reported)")
    parser.add_argument("--deadline", type=float, default=10.0,
                        help="seconds a server may take to answer one message")
    parser.add_argument("--report", action="append", default=[], metavar="FILE",
                        help="write a report: *.xml is JUnit, *.json is JSON (repeatable)")
    parser.add_argument("--expected-failures", metavar="FILE",
                        help="TOML or JSON list of outcome or requirement ids allowed to fail")
    parser.add_argument("--no-replay", action="store_true", help="fuzz only")
    parser.set_defaults(func=run_conformance)


def _expected(path: str | None) -> list[str]:
    if not path:
        return []
    text = Path(path).read_text()
    data = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
    entries = data.get("expected_failures", []) if isinstance(data, dict) else data
    return [str(entry) for entry in entries]


def run_conformance(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .runner import check_server

    console = Console(stderr=True)
    target = args.stdio or args.url
    with console.status("checking…") as status:
        report = check_server(target, revisions=args.revision or None, fuzz=args.fuzz,
                              seed=args.seed, deadline=args.deadline,
                              expected_failures=_expected(args.expected_failures),
                              replay=not args.no_replay,
                              progress=lambda text: status.update(f"checking {text}"))
    report.render(Console())
    for path in args.report:
        if path.endswith(".json"):
            report.write_json(path)
        else:
            report.write_junit(path)
    return 0 if report.ok else 1

