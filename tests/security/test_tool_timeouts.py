"""Tool timeouts: one shared timer, still exact and level-triggered.

The limiter cancels timed-out calls from one loop timer (see ``limits._Watchdog``):
each call is still cancelled at its own deadline, again and again if it swallows
a cancellation, calls that end in time are never touched, and calls with other
timeouts (shorter ones started later) are cancelled at theirs.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mobius_rpc.security.limits import TIMEOUT, Limiter, LimitExceeded, Limits
from mobius_rpc.security.middleware import SecurityMiddleware
from mobius_rpc.security.store import MemorySecurityStore
from mobius_rpc.server.app import Server
from mobius_rpc.server.context import Context
from tests.conftest import connect
from tests.security.support import Caller, build_server, make_world, secured

pytestmark = pytest.mark.anyio


async def test_a_handler_that_swallows_the_cancellation_is_cancelled_again() -> None:
    store = MemorySecurityStore()
    people = await make_world(store)
    server = build_server()
    seen: dict[str, int] = {"swallowed": 0}

    @server.tool()
    async def stubborn() -> str:
        while True:
            try:
                await anyio.sleep(30)
            except anyio.get_cancelled_exc_class():
                seen["swallowed"] += 1
                if seen["swallowed"] >= 3:
                    raise
                # swallowed: a level-triggered limit cancels the next await too

    secured(server, store, Caller(people["member"]), limits=Limits(default_timeout=0.05))
    async with connect(server) as client:
        with anyio.fail_after(10):
            result: Any = None
            try:
                result = await client.call_tool("stubborn", {})
            except Exception as error:  # the refusal
                result = error
    assert getattr(result, "code", None) == TIMEOUT
    assert seen["swallowed"] == 3


async def _call(limiter: Limiter, tool: str, seconds: float) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        await anyio.sleep(seconds)
        return {"content": [], "isError": False}
    return await limiter.run_tool(tool, run)


async def test_each_call_ends_at_its_own_deadline_whatever_the_order() -> None:
    limiter = Limiter(Limits(default_timeout=5.0, timeouts={"short": 0.05, "mid": 0.2}),
                      MemorySecurityStore())
    outcomes: dict[str, str] = {}

    async def one(label: str, tool: str, seconds: float) -> None:
        started = anyio.current_time()
        try:
            await _call(limiter, tool, seconds)
            outcomes[label] = "done"
        except LimitExceeded as exc:
            assert exc.code == TIMEOUT
            took = anyio.current_time() - started
            timeout = limiter.timeout_for(tool)
            assert timeout is not None and took >= timeout * 0.99
            outcomes[label] = "timeout"

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "long-ok", "other", 0.3)      # 5 s timeout: finishes
            tg.start_soon(one, "mid-late", "mid", 1.0)       # cancelled at 0.2 s
            await anyio.sleep(0.01)
            tg.start_soon(one, "short-late", "short", 1.0)   # started later, ends first
            tg.start_soon(one, "short-ok", "short", 0.0)
            await anyio.sleep(0.01)
            tg.start_soon(one, "zero", "short", 0.001)
    assert outcomes == {"long-ok": "done", "mid-late": "timeout", "short-late": "timeout",
                        "short-ok": "done", "zero": "done"}


def test_the_limiter_works_on_one_event_loop_after_another() -> None:
    limiter = Limiter(Limits(default_timeout=0.05), MemorySecurityStore())

    async def twice() -> list[str]:
        out = []
        for seconds in (0.0, 1.0):
            try:
                await _call(limiter, "t", seconds)
                out.append("done")
            except LimitExceeded:
                out.append("timeout")
        return out

    for _ in range(3):
        assert anyio.run(twice) == ["done", "timeout"]


async def test_a_timeout_of_zero_refuses_at_once() -> None:
    limiter = Limiter(Limits(default_timeout=0.0), MemorySecurityStore())
    with anyio.fail_after(5), pytest.raises(LimitExceeded):
        await _call(limiter, "t", 1.0)


async def test_many_running_calls_share_one_timer() -> None:
    """The point of the watchdog: 50 calls in flight add one timer to the loop, not 50."""
    import asyncio
    limiter = Limiter(Limits(default_timeout=30.0), MemorySecurityStore())
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    release = anyio.Event()
    counts: list[int] = []

    async def held() -> dict[str, Any]:
        await release.wait()
        return {"content": []}

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(limiter.run_tool, "t", held)
        await anyio.sleep(0.05)
        counts.append(len(loop._scheduled) - before)  # type: ignore[attr-defined]
        release.set()
    assert counts == [1]


def test_two_event_loops_at_once_each_get_their_timeouts() -> None:
    """A limiter shared by loops in two threads: each loop's calls time out (a single
    watchdog for all loops would lose one loop's calls when the other came along)."""
    import threading

    limiter = Limiter(Limits(default_timeout=0.1), MemorySecurityStore())
    results: list[list[str]] = []

    async def calls() -> list[str]:
        out = []
        for seconds in (1.0, 0.0, 1.0):
            try:
                with anyio.fail_after(5):
                    await _call(limiter, "t", seconds)
                out.append("done")
            except LimitExceeded:
                out.append("timeout")
            await anyio.sleep(0.03)  # let the other thread's loop start its calls
        return out

    threads = [threading.Thread(target=lambda: results.append(anyio.run(calls)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == [["timeout", "done", "timeout"]] * 2


# ------------------------------------------------ where the timeout goes around
#
# When the server's own tools answer right after the policy, the timeout goes
# around the handler alone (Context.limit_handler): the only place a call can be
# cancelled.  Anything else between the policy and the handler (a middleware, a
# handler that takes tools/call over) keeps the whole call under it.


async def _members_server() -> tuple[MemorySecurityStore, Caller, Server]:
    """A store with the usual world, a member calling, and the test server."""
    store = MemorySecurityStore()
    people = await make_world(store)
    return store, Caller(people["member"]), build_server()


async def _timed_out(server: Any, tool: str) -> Any:
    async with connect(server) as client:
        with anyio.fail_after(10):
            try:
                return await client.call_tool(tool, {})
            except Exception as error:  # the refusal
                return error


async def test_a_synchronous_tool_that_returns_an_awaitable_is_timed_out() -> None:
    store, member, server = await _members_server()

    async def forever() -> str:
        await anyio.sleep(30)
        return "late"

    @server.tool()
    def hands_back() -> Any:
        return forever()  # the call awaits it: there the limit acts

    secured(server, store, member, limits=Limits(default_timeout=0.05))
    result = await _timed_out(server, "hands_back")
    assert getattr(result, "code", None) == TIMEOUT


async def test_a_middleware_inside_the_policy_keeps_the_whole_call_timed() -> None:
    store, member, server = await _members_server()
    server.use(member)
    server.use(SecurityMiddleware(store, limits=Limits(default_timeout=0.05)))

    async def slow_inside(ctx: Any, call_next: Any) -> Any:
        await anyio.sleep(30)  # not the tool's handler, but inside its limit
        return await call_next(ctx)

    server.use(slow_inside)
    result = await _timed_out(server, "lookup")
    assert getattr(result, "code", None) == TIMEOUT


async def test_a_handler_that_takes_tools_call_over_is_timed() -> None:
    store, member, server = await _members_server()

    @server.request_handler("tools/call")
    async def relay(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(30)  # an upstream that never answers
        return {"content": [], "isError": False}

    secured(server, store, member, limits=Limits(default_timeout=0.05))
    result = await _timed_out(server, "lookup")
    assert getattr(result, "code", None) == TIMEOUT


async def test_the_limit_goes_around_the_handler_only_when_the_tools_answer_next() -> None:
    store = MemorySecurityStore()
    people = await make_world(store)
    seen: list[Any] = []

    def server_with_probe() -> Any:
        server = build_server()

        @server.tool()
        async def probe(ctx: Context) -> str:
            seen.append(ctx.limit_handler)
            return "ok"
        return server

    direct = server_with_probe()
    secured(direct, store, Caller(people["member"]))
    around = server_with_probe()
    secured(around, store, Caller(people["member"]))

    async def inner(ctx: Any, call_next: Any) -> Any:
        return await call_next(ctx)
    around.use(inner)
    for server in (direct, around):
        async with connect(server) as client:
            assert (await client.call_tool("probe", {}))["isError"] is False
    assert seen[0] is not None and seen[1] is None
