"""Property tests: retention and task pages, against a model, on every backend.

Each example opens the test's store location again with the example's bounds
and uses a fresh session, so examples do not see each other.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobius_rpc.storage import Retention, TaskRecord

from .conftest import Clock, Target

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# sizes and byte bounds on a grid of 5, so sums land exactly on a bound often
appends = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),  # stream
                             st.sampled_from([0, 1, 5, 10, 15, 40]),  # size in bytes
                             st.integers(0, 3)),  # seconds since the previous append
                   max_size=30)
bounds = st.builds(Retention, max_events=st.integers(0, 10),
                   max_bytes=st.integers(0, 30).map(lambda k: 5 * k),
                   max_age=st.integers(0, 12).map(float))


def expected_suffix(events: list[tuple[int, str, int, float]], bound: Retention,
                    now: float) -> list[tuple[int, str, int, float]]:
    """The newest run of events within every bound (the model)."""
    kept: list[tuple[int, str, int, float]] = []
    total = 0
    for event in reversed(events):
        _, _, size, created = event
        if len(kept) + 1 > bound.max_events or total + size > bound.max_bytes \
                or created < now - bound.max_age:
            break
        kept.append(event)
        total += size
    return kept[::-1]


@SETTINGS
@given(ops=appends, bound=bounds, resume=st.integers(0, 35))
def test_retention_keeps_exactly_the_newest_suffix_within_bounds(
        target: Target, ops: list[tuple[str, int, int]], bound: Retention, resume: int) -> None:
    clock = Clock()
    session = uuid.uuid4().hex
    appended: list[tuple[int, str, int, float]] = []

    async def run() -> dict[str, Any]:
        async with target.open(clock=clock, retention=bound) as store:
            for stream, size, wait in ops:
                clock.advance(wait)
                event_id = await store.events.append(session, stream, bytes([65 + size % 26])
                                                      * size)
                appended.append((event_id, stream, size, clock()))
            return {s: (await store.events.replay(session, s),
                        await store.events.replay(session, s, after=min(resume, len(ops))))
                    for s in "abc"}

    replays = anyio.run(run)
    assert [e[0] for e in appended] == list(range(1, len(ops) + 1))
    kept = expected_suffix(appended, bound, clock())
    kept_ids = {e[0] for e in kept}
    for stream, (whole, partial) in replays.items():
        mine = [e for e in appended if e[1] == stream]
        if not mine:
            assert not whole.known
            continue
        assert [(e.event_id, len(e.data)) for e in whole.events] == [
            (e[0], e[2]) for e in kept if e[1] == stream]
        lost = [e[0] for e in mine if e[0] not in kept_ids]
        assert whole.evicted == ((1, max(lost)) if lost else None)
        after = min(resume, len(ops))
        assert [e.event_id for e in partial.events] == [
            e[0] for e in kept if e[1] == stream and e[0] > after]
        lost_after = [i for i in lost if i > after]
        assert partial.evicted == ((after + 1, max(lost_after)) if lost_after else None)


task_ids = st.text(alphabet=st.sampled_from("aBz_9Ωé-"), min_size=1, max_size=6)


@SETTINGS
@given(tasks=st.dictionaries(task_ids, st.integers(0, 3), max_size=25),
       limit=st.integers(1, 7))
def test_paging_through_tasks_yields_each_once_in_order(target: Target, tasks: dict[str, int],
                                                       limit: int) -> None:
    session = uuid.uuid4().hex
    clock = Clock()

    async def run() -> list[str]:
        async with target.open(clock=clock) as store:
            for task_id, created in tasks.items():
                await store.tasks.create(TaskRecord(f"{session}{task_id}", session, "working",
                                                    clock() + created, clock(), 1000))
            seen: list[str] = []
            cursor = None
            for _ in range(len(tasks) + 2):  # a cursor that never advances fails, not hangs
                page = await store.tasks.list(session, cursor=cursor, limit=limit)
                assert len(page.tasks) <= limit
                seen += [t.task_id[len(session):] for t in page.tasks]
                if page.next_cursor is None:
                    return seen
                cursor = page.next_cursor
            raise AssertionError(f"still paging after {len(tasks) + 2} pages: {seen}")

    seen = anyio.run(run)
    assert seen == sorted(tasks, key=lambda t: (tasks[t], t))

