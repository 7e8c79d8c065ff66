"""A store client run as a separate process by the crash and many-writers tests.

``crash URL N``: N rounds of (put a session, append an event, create a task),
printing ``i event_id`` after each round has committed, so the parent knows
what must survive a ``kill -9``.

``load URL WORKER N``: N rounds of mixed writes and reads, several of them on
rows every worker shares; prints one JSON line of counts, or the error and
exits 1.
"""

from __future__ import annotations

import sys
import time

import anyio
import orjson

from mobius_rpc.storage import Retention, SessionRecord, SqliteOptions, TaskRecord, open_store

BIG = Retention(max_events=10**6, max_bytes=10**9, max_age=10**9)


def record(session_id: str, now: float) -> SessionRecord:
    return SessionRecord(session_id, now, now, now + 10**6, "2025-11-25",
                         {"name": "child"}, {}, "info", frozenset({"res://a"}))


async def crash(url: str, rounds: int) -> None:
    async with open_store(url, retention=BIG) as store:
        for i in range(rounds):
            await store.sessions.put(record(f"s{i}", time.time()))
            event_id = await store.events.append("crash", "get", b"event %d " % i * 20)
            await store.tasks.create(TaskRecord(f"t{i}", "crash", "working", 1.0, 1.0, 100))
            print(i, event_id, flush=True)


async def load(url: str, worker: int, rounds: int) -> None:
    # a 1 ms busy timeout: contention goes past SQLite's own wait into our retries
    options = SqliteOptions(busy_timeout_ms=1, retry_deadline=120)
    async with open_store(url, retention=BIG, sqlite=options) as store:
        for i in range(rounds):
            await store.sessions.put(record(f"w{worker}-{i}", time.time()))
            if not await store.sessions.subscribe("hub", f"res://{worker}/{i}"):
                raise SystemExit("the hub session is missing")
            await store.events.append("shared", f"w{worker}", b"%d:%d" % (worker, i))
            await store.events.append(f"own{worker}", "get", b"x" * 200)
            task_id = f"t{worker}-{i}"
            await store.tasks.create(TaskRecord(task_id, "shared", "working", i, i, 100))
            await store.tasks.update_status("shared", task_id, "completed", result={"i": i})
            await store.channel.publish("load", b"%d" % i)
            await store.events.replay("shared", f"w{worker}")
            await store.sessions.get(f"w{worker}-{i}")
        retries = getattr(getattr(store, "db", None), "busy_retries", 0)
        print(orjson.dumps({"worker": worker, "rounds": rounds, "retries": retries}).decode())


def main() -> None:
    mode, url, *rest = sys.argv[1:]
    if mode == "crash":
        anyio.run(crash, url, int(rest[0]))
    else:
        anyio.run(load, url, int(rest[0]), int(rest[1]))


if __name__ == "__main__":
    main()
