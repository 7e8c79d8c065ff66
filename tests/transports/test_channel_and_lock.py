"""Property tests of the two small concurrency pieces on the HTTP hot path.

``SendLock`` (a session's send mutex) and ``ResponseChannel`` (what one POST
reads its messages from) replaced anyio primitives to save time per request;
these tests check, over generated schedules, that they still behave as the
primitives did: mutual exclusion in arrival order with cancellation at any
point, and messages delivered once, in order, with the end and detach
reported as before.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobius_rpc.runtime.sendlock import SendLock
from mobius_rpc.transports.http_session import HttpMessageStream, ResponseChannel


async def _checkpoints(count: int) -> None:
    for _ in range(count):
        await anyio.lowlevel.checkpoint()


# ----------------------------------------------------------------- SendLock

# One task per entry: (checkpoints before it asks, checkpoints it holds the
# lock, checkpoints after which it is cancelled or None).
tasks = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4),
                           st.none() | st.integers(0, 12)), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(tasks)
def test_send_lock_excludes_in_arrival_order_whatever_is_cancelled(
        plan: list[tuple[int, int, int | None]]) -> None:
    lock = SendLock()
    holding: list[int] = []
    asked: list[int] = []
    entered: list[int] = []
    finished: set[int] = set()

    async def worker(index: int, delay: int, hold: int, cancel_after: int | None) -> None:
        with anyio.CancelScope() as scope:
            if cancel_after is not None:
                async def cancel_later() -> None:
                    await _checkpoints(cancel_after)
                    scope.cancel()
                tg.start_soon(cancel_later)
            await _checkpoints(delay)
            asked.append(index)
            async with lock:
                holding.append(index)
                assert len(holding) == 1, f"two holders: {holding}"
                entered.append(index)
                try:
                    await _checkpoints(hold)
                finally:
                    holding.remove(index)
            finished.add(index)

    async def main() -> None:
        nonlocal tg
        with anyio.fail_after(5):  # a lock that is never handed on hangs: fail instead
            async with anyio.create_task_group() as tg:
                for index, (delay, hold, cancel_after) in enumerate(plan):
                    tg.start_soon(worker, index, delay, hold, cancel_after)

    tg: Any = None
    anyio.run(main)
    assert not lock.locked and not holding
    # Whoever entered did so in the order they asked (cancelled waiters drop out).
    assert entered == [index for index in asked if index in entered]
    # Nobody that was never cancelled is left out.
    never_cancelled = {i for i, (_, _, cancel) in enumerate(plan) if cancel is None}
    assert never_cancelled <= finished


# ----------------------------------------------------------- ResponseChannel

steps = st.lists(st.sampled_from(["message", "answer", "detach", "end"]), max_size=12)


@settings(max_examples=300, deadline=None)
@given(steps, st.booleans())
def test_channel_delivers_each_message_once_in_order(ops: list[str], or_detached: bool) -> None:
    async def main() -> None:
        stream = HttpMessageStream()
        channel = stream.open_channel({1})
        sent: list[bytes] = []
        got: list[bytes] = []
        outcome: list[str] = []

        async def produce() -> None:
            for number, op in enumerate(ops):
                await anyio.lowlevel.checkpoint()
                if op == "message":
                    message = b'{"jsonrpc":"2.0","method":"notifications/progress","n":%d}' % number
                elif op == "answer":
                    message = b'{"jsonrpc":"2.0","id":1,"result":{"n":%d}}' % number
                elif op == "detach":
                    stream.detach_response(1)
                    continue
                else:
                    await stream.aclose()
                    return
                if not channel._ended:
                    sent.append(message)
                await stream.send_routed(message, 1, (1,) if op == "answer" else ())
            await stream.aclose()

        async def consume() -> None:
            try:
                first = await channel.first(or_detached=or_detached)
            except anyio.EndOfStream:
                outcome.append("end")
                return
            if first is None:
                outcome.append("detached")
            else:
                got.append(first)
            async for message in channel:
                got.append(message)
            outcome.append("drained")

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                tg.start_soon(produce)
        # Everything sent before the end (the answer ends the channel) arrives, once, in order.
        assert got == sent
        if not sent:
            assert outcome[0] in ("end", "detached")
        if outcome[0] == "detached":
            assert or_detached and "detach" in ops

    anyio.run(main)


@pytest.mark.anyio
async def test_detach_wins_only_when_nothing_waits() -> None:
    channel = ResponseChannel({1})
    channel.put(b"x")
    channel.detach()
    assert await channel.first(or_detached=True) == b"x"
    assert await channel.first(or_detached=True) is None
    assert channel.detached.is_set()  # made after the detach: already set
