"""Store benchmark: latency of each store operation on memory, SQLite and PostgreSQL.

Prints numbers; asserts nothing.  Each operation runs ``--n`` times (after a
short warm-up) through the public ``Store`` API, one call at a time, timed
around the ``await``; p50, p99 and the mean are reported in microseconds.

* memory: the in-process store (the floor: the cost of the API itself).
* sqlite: a fresh file in a temporary directory, default settings (WAL,
  ``synchronous=NORMAL``: a commit is not fsynced, a checkpoint is).
* postgresql: ``--postgres-url`` if given (a fresh schema in it), else a
  throwaway server started from /usr/lib/postgresql/*/bin with its default
  durability (``fsync=on``, ``synchronous_commit=on``; ``--pg-fsync off`` turns
  them off to separate the disk's flush from the rest), over TCP on 127.0.0.1.

``channel.roundtrip`` is publish on one store instance to receipt on a second
one opened on the same database (the replica path: memory shares the instance,
SQLite polls its outbox every ``poll_interval`` = 10 ms here, PostgreSQL uses
LISTEN/NOTIFY); it runs min(n, 200) times.

    python benchmarks/store_ops.py [--n 2000] [--backends memory,sqlite,postgresql]
        [--postgres-url URL] [--pg-fsync on|off] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mobius_rpc.storage import (  # noqa: E402
    SessionRecord,
    SqliteOptions,
    Store,
    TaskRecord,
    open_store,
)

OPS = ("sessions.put", "sessions.get", "sessions.touch", "sessions.subscribe",
       "events.append", "events.replay", "tasks.create", "tasks.get", "tasks.update_status",
       "tasks.list", "channel.publish", "channel.roundtrip")
WARMUP = 20


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def timed(n: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    for i in range(WARMUP):
        await call(-1 - i)
    samples = []
    for i in range(n):
        start = time.perf_counter_ns()
        await call(i)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


async def measure(store: Store, replica: Store, n: int) -> dict[str, list[float]]:
    now = time.time()
    payload = b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"p":1}}' * 3
    results: dict[str, list[float]] = {}

    def record(i: int) -> SessionRecord:
        return SessionRecord(f"s{i}", now, now, now + 3600, "2025-11-25",
                             {"name": "bench", "version": "1"}, {"sampling": {}}, "info",
                             frozenset({"res://a"}))

    results["sessions.put"] = await timed(n, lambda i: store.sessions.put(record(i)))
    results["sessions.get"] = await timed(n, lambda i: store.sessions.get(f"s{i % n}"))
    results["sessions.touch"] = await timed(
        n, lambda i: store.sessions.touch(f"s{i % n}", now + 1, now + 7200))
    results["sessions.subscribe"] = await timed(
        n, lambda i: store.sessions.subscribe(f"s{i % n}", f"res://{i}"))
    results["events.append"] = await timed(
        n, lambda i: store.events.append("bench", "get", payload))
    last = n + WARMUP
    results["events.replay"] = await timed(
        n, lambda i: store.events.replay("bench", "get", after=last - 10))

    def task(i: int) -> TaskRecord:
        return TaskRecord(f"t{i}", "bench", "working", now + i, now, 1000, 3_600_000)

    results["tasks.create"] = await timed(n, lambda i: store.tasks.create(task(i)))
    results["tasks.get"] = await timed(n, lambda i: store.tasks.get("bench", f"t{i % n}"))
    results["tasks.update_status"] = await timed(
        n, lambda i: store.tasks.update_status("bench", f"t{i}", "completed",
                                               result={"content": []}))
    results["tasks.list"] = await timed(n, lambda i: store.tasks.list("bench", limit=20))
    results["channel.publish"] = await timed(n, lambda i: store.channel.publish("b", payload))
    async with replica.channel.subscribe("rt") as sub:
        async def roundtrip(i: int) -> None:
            await store.channel.publish("rt", b"%d" % i)
            with anyio.fail_after(10):
                async for message in sub:
                    if message.payload == b"%d" % i:
                        return
        results["channel.roundtrip"] = await timed(min(n, 200), roundtrip)
    return results


async def run_backend(backend: str, n: int, pg_url: str | None, pg_fsync: bool,
                      stack: AsyncExitStack) -> tuple[str, dict[str, list[float]]] | None:
    if backend == "memory":
        url, schema = f"memory:bench-{uuid.uuid4().hex[:8]}", "mobius"
    elif backend == "sqlite":
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        url, schema = f"sqlite:///{folder}/bench.db", "mobius"
    else:
        if pg_url is None:
            from tests.storage.pgcluster import PgCluster, find_bindir
            bindir = find_bindir()
            if bindir is None:
                print("NOTE: no PostgreSQL binaries (/usr/lib/postgresql/*/bin); skipping it",
                      file=sys.stderr)
                return None
            cluster = stack.enter_context(PgCluster(bindir, durable=pg_fsync))
            pg_url = cluster.url()
        url, schema = pg_url, f"bench_{uuid.uuid4().hex[:8]}"
    options = SqliteOptions(poll_interval=0.01)
    store = await stack.enter_async_context(open_store(url, schema=schema, sqlite=options))
    replica = await stack.enter_async_context(open_store(url, schema=schema, sqlite=options))
    return store.location, await measure(store, replica, n)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for backend in args.backends.split(","):
        async with AsyncExitStack() as stack:
            found = await run_backend(backend, args.n, args.postgres_url,
                                      args.pg_fsync == "on", stack)
            if found is None:
                continue
            location, results = found
            for op, samples in results.items():
                rows.append({"backend": backend, "op": op, "n": len(samples),
                             "p50_us": round(statistics.median(samples), 1),
                             "p99_us": round(percentile(samples, 0.99), 1),
                             "mean_us": round(statistics.fmean(samples), 1)})
            print(f"{backend}: {location}", file=sys.stderr)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    head = f"{'operation':<22}" + "".join(f"{b + ' p50/p99 us':>28}" for b in backends)
    lines = [head, "-" * len(head)]
    cell = {(r["backend"], r["op"]): r for r in rows}
    for op in OPS:
        line = f"{op:<22}"
        for backend in backends:
            r = cell.get((backend, op))
            text = f"{r['p50_us']:.0f} / {r['p99_us']:.0f}" if r else "-"
            line += f"{text:>28}"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="calls per operation")
    parser.add_argument("--backends", default="memory,sqlite,postgresql")
    parser.add_argument("--postgres-url", help="use this PostgreSQL (a new schema in it)")
    parser.add_argument("--pg-fsync", choices=("on", "off"), default="on",
                        help="the throwaway server's durability: on (PostgreSQL's default) "
                             "or off (fsync, synchronous_commit and full_page_writes off, to "
                             "see the cost without the disk's flush)")
    parser.add_argument("--json", type=Path, help="write the rows here as JSON")
    args = parser.parse_args()
    if not 1 <= args.n <= 100_000:
        parser.error("--n is 1 .. 100000")
    rows = anyio.run(main_async, args)
    print(f"store operations, {args.n} calls each (channel.roundtrip: {min(args.n, 200)}), "
          "one at a time")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
