"""What the audit writer process costs per record, and in which of its steps.

The secured HTTP server's records go to a child process
(:mod:`mobius_rpc.security.audit_writer`) that digests, chains and stores them.
That child shares the machine with the server and the load generator, so its
CPU per record is part of what security costs under load: ``security.py``
prints it as the ``+N us`` after the server's CPU per call.  This harness
measures it apart from everything else, so that a change to the writer can be
judged on a number that repeats better than a throughput loss:

* ``child``: a real writer process fed by a real :class:`AuditWriterProcess`
  at ``--rate`` records a second for ``--seconds``; its time on a CPU
  (``/proc/PID/schedstat``) over the records it stored, the median of ``--rounds``;
* ``db``: on PostgreSQL, the CPU per record of this machine's PostgreSQL
  processes over the same rounds (the database server's side of the store
  writes, which the child's CPU does not include; 0 on SQLite, whose work is
  the child's own);
* ``floor``: the same for ``audit_floor_child.py``, a child that speaks the
  writer's pipe protocol and does nothing else (it reads each shipment whole
  and acknowledges it): what being woken for the shipments costs any asyncio
  process, in rounds alternating with the real child's;
* the steps, in this process, the fastest of ``--rounds`` over ``--records``
  records in batches of ``--batch``: ``decode`` (the frame's JSON),
  ``body`` (:func:`~mobius_rpc.security.audit_wire.body_from_wire`: the
  arguments' digest among it), ``chain`` (seq, the chain hash and the row
  tuple), ``store`` (the store's batched insert and commit);
* ``rest``: child - floor - steps, what the real child spends beyond both, not
  split further here (its steps run in short bursts rather than in one hot
  loop, and it has commit turns the floor does not).

The rows are those of an allowed ``tools/call`` with small arguments, as the
benchmark servers' echo tool gets.

    python benchmarks/audit_writer.py [--rate 2000] [--seconds 5] [--rounds 3]
        [--backends sqlite,postgresql] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
#: the floor child: the writer's pipe protocol without its work
_FLOOR = ROOT / "benchmarks" / "audit_floor_child.py"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_servers import cpu_seconds, postgres_cpu_seconds, postgresql_url  # noqa: E402

from mobius_rpc.security.audit import AuditLog  # noqa: E402
from mobius_rpc.security.audit_chain import chain_rows  # noqa: E402
from mobius_rpc.security.audit_process import (  # noqa: E402
    AuditWriterProcess,
    decode_batch,
    encode_batch,
)
from mobius_rpc.security.audit_wire import body_from_wire, use_row  # noqa: E402
from mobius_rpc.security.open import open_security_store  # noqa: E402
from mobius_rpc.security.principal import AuthMethod, Principal  # noqa: E402
from mobius_rpc.storage.sqlite_db import SqliteOptions  # noqa: E402

_CALLER = Principal(user="user-1", organization="org-1", method=AuthMethod.API_TOKEN,
                    credential="tok_0123456789")


def _row(n: int) -> list[Any]:
    return use_row(time.time(), "tools/call", "ok", _CALLER, f"session{n:016x}", n, "echo",
                   {"text": "hello"}, None, None, 0.25, None)


async def _child_round(url: str, rate: int, seconds: float, floor: bool = False
                       ) -> tuple[float, float]:
    """The child's CPU per record (us) while fed ``rate`` records a second, and the
    database server's (PostgreSQL's processes; 0 on SQLite); with ``floor``, of
    the floor child (``audit_floor_child.py``: the pipe protocol alone)."""
    async with open_security_store(url) as (_, store):
        log = AuditLog(store)
        first_seq = (await log.head())[0]
        writer = AuditWriterProcess(url, command=[sys.executable, str(_FLOOR)] if floor
                                    else None)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run, log)
            with anyio.fail_after(30):
                while not writer.accepting:
                    await anyio.sleep(0.01)
            await anyio.sleep(0.3)  # its imports and the store's opening done
            assert writer.pid is not None
            database = postgres_cpu_seconds()
            before, started = cpu_seconds(writer.pid), time.perf_counter()
            offered = sent = 0
            while (elapsed := time.perf_counter() - started) < seconds:
                # paced by the clock (a sleep lasts longer than asked), a millisecond's
                # rows at a time; a row the child has no room for is not sent (nor
                # counted): the child's CPU is divided by what it stored
                while offered < rate * elapsed:
                    offered += 1
                    sent += writer.offer(_row(sent + 1))
                await anyio.sleep(0.001)
            await log.flush()
            used = cpu_seconds(writer.pid) - before
            database = postgres_cpu_seconds() - database
            tg.cancel_scope.cancel()
        # the floor stores nothing; log.flush returned, so it acknowledged every batch
        if floor:
            if not writer.child_stats.get("frames"):
                raise SystemExit("audit_writer.py: FAILED: the floor child read nothing")
            return used / sent * 1e6, database / sent * 1e6
        stored = (await log.head())[0] - first_seq
        if stored != sent:  # the number would be of a writer that lost or doubled some
            raise SystemExit(f"audit_writer.py: FAILED: {sent} records sent, {stored} stored")
        if not (await log.verify()).ok:
            raise SystemExit("audit_writer.py: FAILED: the audit chain does not verify")
    return used / sent * 1e6, database / sent * 1e6


async def _steps(url: str, records: int, batch: int) -> dict[str, float]:
    """CPU per record (us) of each of the writer's steps, in this process."""
    frames = [encode_batch(i, [_row(i * batch + j) for j in range(batch)])
              for i in range(records // batch)]
    count = len(frames) * batch
    spent: dict[str, float] = {}
    clock = time.process_time
    # SQLite's writes on this loop, as the writer process opens its store (no hop to a
    # worker thread in the store step)
    async with open_security_store(url, sqlite=SqliteOptions(inline_writes=True)) as (_, store):
        head = await AuditLog(store).head()
        t0 = clock()
        decoded = [decode_batch(memoryview(frame)[4:])[1] for frame in frames]
        t1 = clock()
        bodies = [[body_from_wire(row) for row in rows] for rows in decoded]
        t2 = clock()
        chained: list[list[tuple[Any, ...]]] = []
        for group in bodies:
            rows, head = chain_rows(head, group)
            chained.append(rows)
        t3 = clock()
        for rows in chained:
            await store.append_audit_rows(rows)  # type: ignore[attr-defined]
        t4 = clock()
    for name, start, end in (("decode", t0, t1), ("body", t1, t2), ("chain", t2, t3),
                             ("store", t3, t4)):
        spent[name] = (end - start) / count * 1e6
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=30000)
    parser.add_argument("--batch", type=int, default=300,
                        help="records a store write (about the child's at 3,000 a second)")
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--pg-url", help="a PostgreSQL to use instead of starting one")
    args = parser.parse_args()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        urls: dict[str, str] = {}
        for backend in (b.strip() for b in args.backends.split(",") if b.strip()):
            if backend == "sqlite":
                urls[backend] = f"sqlite:///{work / 'audit.db'}"
            elif backend == "postgresql":
                url = postgresql_url(stack, args.pg_url)
                if url is None:
                    continue
                urls[backend] = url
            else:
                parser.error(f"unknown backend {backend!r}")
        print(f"audit writer, {args.rate} records/s for {args.seconds:g} s, "
              f"{args.rounds} rounds; steps over {args.records} records in batches of "
              f"{args.batch} (us a record)")
        print(f"{'backend':>11} {'child':>7} {'db':>6} {'floor':>6} {'decode':>7} {'body':>6} "
              f"{'chain':>6} {'store':>6} {'steps':>6} {'rest':>6}")
        for backend, url in urls.items():
            # the real child and the floor child in alternate rounds
            children, databases, floors = [], [], []
            for _ in range(args.rounds):
                child_us, database_us = anyio.run(_child_round, url, args.rate, args.seconds)
                children.append(child_us)
                databases.append(database_us)
                floors.append(anyio.run(_child_round, url, args.rate, args.seconds, True)[0])
            child, floor = statistics.median(children), statistics.median(floors)
            database = statistics.median(databases) if backend == "postgresql" else 0.0
            runs = [anyio.run(_steps, url, args.records, args.batch)
                    for _ in range(args.rounds)]
            best = {name: min(run[name] for run in runs) for name in runs[0]}
            steps = sum(best.values())
            print(f"{backend:>11} {child:7.1f} {database:6.2f} {floor:6.2f} {best['decode']:7.2f} "
                  f"{best['body']:6.2f} {best['chain']:6.2f} {best['store']:6.2f} "
                  f"{steps:6.2f} {child - floor - steps:6.2f}")


if __name__ == "__main__":
    main()
