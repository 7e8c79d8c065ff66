"""Limits through a real Server: each hit is a clear error and an audit record."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mobius_rpc.core.errors import McpError
from mobius_rpc.security.limits import (
    OUTPUT_TOO_LARGE,
    RATE_LIMITED,
    TIMEOUT,
    TOO_MANY_CONCURRENT,
    Limits,
    Rate,
)
from mobius_rpc.security.store import MemorySecurityStore, RateBucket, refill
from tests.conftest import connect
from tests.security.support import Caller, build_server, make_world, secured

pytestmark = pytest.mark.anyio


async def refused(call: Any) -> McpError:
    with pytest.raises(McpError) as info:
        await call
    return info.value


def limited(store: MemorySecurityStore) -> list[tuple[str, str | None, Any]]:
    return [(r.method, r.target, r.detail.get("limit")) for r in store.audit_records
            if r.outcome == "limited"]


async def test_a_tool_that_runs_too_long_is_cancelled() -> None:
    store = MemorySecurityStore()
    people = await make_world(store)
    server = build_server()
    state: dict[str, Any] = {"cancelled": False, "finished": False}

    @server.tool()
    async def slow() -> str:
        try:
            await anyio.sleep_forever()
        finally:
            state["cancelled"] = True
        return "never"  # pragma: no cover

    @server.tool()
    async def patient() -> str:
        await anyio.sleep(0.05)
        state["finished"] = True
        return "done"

    secured(server, store, Caller(people["member"]),
            limits=Limits(default_timeout=0.05, timeouts={"patient": None}))
    async with connect(server) as client:
        err = await refused(client.call_tool("slow", {}))
        assert err.code == TIMEOUT and err.message == "Tool slow timed out after 0.05s"
        assert err.data == {"limit": "timeout", "timeout": 0.05}
        assert state["cancelled"] is True
        assert (await client.call_tool("patient", {}))["isError"] is False
        assert state["finished"] is True
    assert limited(store) == [("tools/call", "slow", "timeout")]


async def test_rate_limits_per_principal_and_per_tool() -> None:
    store = MemorySecurityStore()
    people = await make_world(store)
    server = build_server()
    caller = Caller(people["member"])
    secured(server, store, caller, limits=Limits(
        principal_rate=Rate(3, 0.0001), tool_rates={"plain": Rate(2, 0.0001)}))
    async with connect(server) as client:
        for _ in range(3):
            await client.call_tool("lookup", {"key": "k"})
        err = await refused(client.call_tool("lookup", {"key": "k"}))
        assert err.code == RATE_LIMITED and err.data["limit"] == "principal-rate"
        assert err.data["retryAfter"] > 0
        # other principals have their own bucket, but share the tool's
        caller.principal = people["owner"]
        await client.call_tool("plain", {})
        caller.principal = people["admin"]
        await client.call_tool("plain", {})
        err = await refused(client.call_tool("plain", {}))
        assert err.code == RATE_LIMITED and err.data["limit"] == "tool-rate"
        assert "plain" in err.message
    assert limited(store) == [("tools/call", "lookup", "principal-rate"),
                              ("tools/call", "plain", "tool-rate")]
    assert set(store.buckets) >= {"principal:A/u-member", "tool:plain"}


async def test_concurrency_cap_per_principal() -> None:
    store = MemorySecurityStore()
    people = await make_world(store)
    server = build_server()
    entered, release = anyio.Event(), anyio.Event()

    @server.tool()
    async def hold() -> str:
        entered.set()
        await release.wait()
        return "released"

    caller = Caller(people["member"])
    secured(server, store, caller, limits=Limits(max_concurrent=1))
    async with connect(server) as client, anyio.create_task_group() as tg:
        results: list[Any] = []

        async def first() -> None:
            results.append(await client.call_tool("hold", {}))

        tg.start_soon(first)
        await entered.wait()
        err = await refused(client.call_tool("lookup", {"key": "k"}))
        assert err.code == TOO_MANY_CONCURRENT and err.data == {"limit": "concurrency",
                                                                "max": 1}
        release.set()
    assert results[0]["content"][0]["text"] == "released"
    assert limited(store) == [("tools/call", "lookup", "concurrency")]


async def test_a_result_larger_than_the_cap_never_reaches_the_client() -> None:
    store = MemorySecurityStore()
    people = await make_world(store)
    server = build_server()

    @server.tool()
    def big() -> str:
        return "x" * 5000

    secured(server, store, Caller(people["member"]), limits=Limits(max_output_bytes=1000))
    async with connect(server) as client:
        err = await refused(client.call_tool("big", {}))
        assert err.code == OUTPUT_TOO_LARGE and err.data["max"] == 1000
        assert err.data["size"] > 5000
        assert (await client.call_tool("lookup", {"key": "k"}))["isError"] is False
    assert limited(store) == [("tools/call", "big", "output")]


def test_the_bucket_refills_at_its_rate_up_to_capacity() -> None:
    bucket, result = refill(None, "k", 2, 1.0, 1, now=100.0)
    assert result.allowed and bucket == RateBucket("k", 1.0, 100.0)
    bucket, result = refill(bucket, "k", 2, 1.0, 1, now=100.0)
    assert result.allowed and bucket.tokens == 0.0
    bucket, result = refill(bucket, "k", 2, 1.0, 1, now=100.5)
    assert not result.allowed and result.retry_after == pytest.approx(0.5)
    bucket, result = refill(bucket, "k", 2, 1.0, 1, now=1000.0)
    assert result.allowed and bucket.tokens == 1.0  # capped at capacity before taking
    with pytest.raises(ValueError):
        Rate(0, 1)
