"""Streamable HTTP legacy throughput with the session store: none, memory, SQLite,
PostgreSQL, next to the bare handler, in one run.  Prints numbers only.

Each server is a process on 127.0.0.1 (one uvicorn worker): the bare Starlette
JSON handler of ``streamable_http.py``, ``mobius serve --http`` keeping its
sessions in the process (the default), and ``mobius serve --http --store URL``
with a ``memory:`` store, an SQLite file in a temporary directory, and a
PostgreSQL started from /usr/lib/postgresql/*/bin (default durability) or
``--postgres-url``.  For each M, M legacy sessions are opened on each server and
loaded by ``wrk`` (or the Python generator) with tools/call ``echo``, the servers
interleaved round by round so machine drift hits them alike (as in
``streamable_http.py``, whose load and parsing code this reuses).  The target
of issue 14: PostgreSQL at least 0.7x the memory store at M=32.

    python benchmarks/http_stores.py [--duration 5] [--rounds 2] [--sessions 1,8,32]
        [--stores none,memory,sqlite,postgresql] [--postgres-url URL] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path

from bench_servers import listening
from streamable_http import (
    Point,
    Server,
    check_one_call,
    combine,
    free_port,
    legacy_headers,
    measure,
    open_legacy_sessions,
    percent,
    pick_generator,
    server_command,
)

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.7


@contextmanager
def serving(kind: str, workdir: Path, store: str | None) -> Iterator[Server]:
    port = free_port()
    command = server_command(kind, port, workdir)
    if kind != "bare" and store is not None:
        command += ["--store", store]
    with listening(kind, command, port, startup=30) as server:
        yield server


def store_urls(stores: list[str], stack: ExitStack, pg_url: str | None) -> dict[str, str | None]:
    urls: dict[str, str | None] = {}
    for name in stores:
        if name == "none":
            urls[name] = None
        elif name == "memory":
            urls[name] = "memory:bench"
        elif name == "sqlite":
            folder = stack.enter_context(tempfile.TemporaryDirectory())
            urls[name] = f"sqlite:///{folder}/bench.db"
        elif name == "postgresql":
            if pg_url is None:
                sys.path.insert(0, str(ROOT))
                from tests.storage.pgcluster import PgCluster, find_bindir
                bindir = find_bindir()
                if bindir is None:
                    print("NOTE: no PostgreSQL binaries; skipping it", file=sys.stderr)
                    continue
                pg_url = stack.enter_context(PgCluster(bindir)).url()
            urls[name] = pg_url
        else:
            raise SystemExit(f"http_stores.py: unknown store {name!r}")
    return urls


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per slice (5)")
    parser.add_argument("--rounds", type=int, default=2, help="slices per server and M (2)")
    parser.add_argument("--sessions", default="1,8,32", help="comma-separated values of M")
    parser.add_argument("--stores", default="none,memory,sqlite,postgresql")
    parser.add_argument("--postgres-url", help="an existing database (default: a throwaway one)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--json", type=Path, help="also write the points to this file")
    args = parser.parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    generator = pick_generator(args.generator)
    points: dict[tuple[str, int], Point] = {}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mobius-bench-")))
        urls = store_urls(args.stores.split(","), stack, args.postgres_url)
        servers = [stack.enter_context(serving("bare", workdir, None))]
        names = ["bare"]
        for name, url in urls.items():
            servers.append(stack.enter_context(serving(f"mobius-{name}", workdir, url)))
            names.append(name)
        for server in servers:
            check_one_call(server.url, "legacy",
                           legacy_headers(open_legacy_sessions(server.url, 1)[0]))
            measure(server, "legacy", max(counts), 1, generator, workdir)  # warm-up
        for m in counts:
            slices: dict[str, list] = {name: [] for name in names}  # type: ignore[type-arg]
            for round_no in range(args.rounds):
                order = list(zip(names, servers, strict=True))
                if round_no % 2:
                    order.reverse()
                for name, server in order:
                    slices[name].append(measure(server, "legacy", m, args.duration, generator,
                                                workdir))
            for name in names:
                points[(name, m)] = Point("legacy", name, m, *combine(slices[name]))
    print(f"\nStreamable HTTP legacy (2025-11-25), tools/call echo, {generator}, "
          f"{args.rounds} x {args.duration}s per point; req/s (p99 ms, server CPU%)")
    header = f"{'M':>4}" + "".join(f"{name:>22}" for name in names)
    print(header + (f"{'pg/memory':>11}" if {"postgresql", "memory"} <= set(names) else ""))
    for m in counts:
        row = f"{m:>4}"
        for name in names:
            p = points[(name, m)]
            row += f"{p.rps:>9.0f} ({p.p99_ms:5.2f}, {percent(p.server_cpu):>3})"
        if {"postgresql", "memory"} <= set(names):
            ratio = points[("postgresql", m)].rps / points[("memory", m)].rps
            row += f"{ratio:>9.2f}x" + (" PASS" if ratio >= TARGET else " MISS"
                                        if m == 32 else "")
        print(row)
    if args.json:
        args.json.write_text(json.dumps([asdict(p) for p in points.values()], indent=2))


if __name__ == "__main__":
    main()
