"""``mobius conformance --stdio CMD | --url URL [...]``: the checker as a CI step.

Exit status: 0 when every check passed (or failed as expected), 1 on a
failure, a stale expected-failure entry, or a run the time budget cut short,
2 on a usage error (or a missing package, named in a one-line message).
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

__all__ = ("add_conformance_parser", "DEFAULT_MAX_TIME")

#: seconds a whole run may take by default (``--max-time``)
DEFAULT_MAX_TIME = 300.0


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
                        help="seconds a server may take to answer one message (default 10; "
                             "a message the server reads but ignores is given up sooner)")
    parser.add_argument("--max-time", type=float, default=DEFAULT_MAX_TIME, metavar="S",
                        help=f"seconds the whole run may take (default {DEFAULT_MAX_TIME:g}; "
                             f"0: no limit); when they run out the report says what was "
                             f"checked and the exit status is 1")
    parser.add_argument("--report", action="append", default=[], metavar="FILE",
                        help="write a report: *.xml is JUnit, *.json is JSON (repeatable)")
    parser.add_argument("--expected-failures", metavar="FILE",
                        help="TOML or JSON list of outcome or requirement ids allowed to fail")
    parser.add_argument("--no-replay", action="store_true", help="fuzz only")
    parser.set_defaults(func=run_conformance)


class _UsageError(Exception):
    pass


def _expected(path: str | None) -> list[str]:
    if not path:
        return []
    try:
        text = Path(path).read_text()
        data = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # TOML and JSON errors too
        raise _UsageError(f"cannot read --expected-failures {path}: {exc}") from None
    entries = data.get("expected_failures", []) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise _UsageError(f"--expected-failures {path}: expected a list of ids")
    return [str(entry) for entry in entries]


def _check_args(args: argparse.Namespace) -> None:
    if args.fuzz < 0:
        raise _UsageError("--fuzz must be 0 or more")
    if args.deadline <= 0:
        raise _UsageError("--deadline must be more than 0")
    if args.max_time < 0:
        raise _UsageError("--max-time must be 0 (no limit) or more")
    for path in args.report:
        if not Path(path).resolve().parent.is_dir():
            raise _UsageError(f"--report {path}: no such directory")


def _fail(text: str) -> int:
    print(f"mobius conformance: {text}", file=sys.stderr)
    return 2


def run_conformance(args: argparse.Namespace) -> int:
    try:
        _check_args(args)
        expected = _expected(args.expected_failures)
        return _run(args, expected)
    except _UsageError as exc:
        return _fail(str(exc))
    except ModuleNotFoundError as exc:  # an install without one of our dependencies
        name = (exc.name or "").split(".")[0] or "a module"
        return _fail(f"the Python package {name!r} is missing; install it "
                     f"(pip install {name}) or reinstall mobius-rpc with its dependencies")


def _run(args: argparse.Namespace, expected: list[str]) -> int:
    from .progress import LineProgress
    from .runner import check_server, resolve_target

    if args.fuzz > 0:
        from . import fuzz  # noqa: F401 - fail now, not after the replay, if it cannot load
    try:
        target = resolve_target(args.stdio if args.stdio is not None else args.url)
    except ValueError as exc:
        raise _UsageError(f"bad target: {exc}") from None
    progress = LineProgress(sys.stderr)
    try:
        report = check_server(target, revisions=args.revision or None, fuzz=args.fuzz,
                              seed=args.seed, deadline=args.deadline,
                              expected_failures=expected, replay=not args.no_replay,
                              max_time=args.max_time or None, progress=progress)
    finally:
        progress.close()
    report.render(sys.stdout)
    for path in args.report:
        if path.endswith(".json"):
            report.write_json(path)
        else:
            report.write_junit(path)
    return 0 if report.ok else 1
