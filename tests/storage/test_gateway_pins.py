"""The gateway's pin store on memory, SQLite and real PostgreSQL."""

from __future__ import annotations

import pytest

from mobius_rpc.gateway.pinstore import SetPin, SqlPinStore, ToolPin, pin_store_for

from .conftest import Target

pytestmark = pytest.mark.anyio


def _pin(tool: str, digest: str, at: float = 1.0) -> ToolPin:
    return ToolPin("up", tool, digest, {"name": tool, "description": digest}, at, "admin")


async def test_approvals_replace_pins_and_the_set_together(target: Target) -> None:
    async with target.open() as store:
        pins = pin_store_for(store)
        assert isinstance(pins, SqlPinStore) == (target.backend != "memory")
        assert await pins.pins("up") == {} and await pins.tool_set("up") is None
        await pins.approve("up", [_pin("a", "d1"), _pin("b", "d2")], [],
                           SetPin("up", "s1", 1.0, "admin"))
        await pins.approve("other", [_pin("x", "d9")], [], SetPin("other", "s9", 1.0, "admin"))
        got = await pins.pins("up")
        assert sorted(got) == ["a", "b"] and got["a"].definition == {"name": "a",
                                                                     "description": "d1"}
        # b changed, a was removed
        await pins.approve("up", [_pin("b", "d3", 2.0)], ["a"], SetPin("up", "s2", 2.0, "ann"))
        got = await pins.pins("up")
        assert list(got) == ["b"] and got["b"].digest == "d3" and got["b"].approved_at == 2.0
        assert await pins.tool_set("up") == SetPin("up", "s2", 2.0, "ann")
        assert await pins.upstreams() == ["other", "up"]
    if target.backend != "memory":  # durable: a second opening sees the same pins
        async with target.open() as store:
            again = pin_store_for(store)
            assert list(await again.pins("up")) == ["b"]
