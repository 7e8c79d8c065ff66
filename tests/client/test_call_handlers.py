"""Per-call handlers: a server's request during a call goes to that call's handlers,
and is refused when calls of different owners are in flight (no guessing)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mobius_rpc.client.session import CallHandlers
from mobius_rpc.core.errors import McpError
from mobius_rpc.server.app import Server
from mobius_rpc.server.context import Context
from tests.conftest import connect

pytestmark = pytest.mark.anyio


def _server(release: anyio.Event) -> Server:
    server = Server("asks", "1.0")

    @server.tool()
    async def wait() -> str:
        await release.wait()
        return "released"

    @server.tool()
    async def ask(ctx: Context) -> str:
        result = await ctx.sample("who?", max_tokens=5)
        return str(result["content"]["text"])

    return server


def _sampler(text: str, seen: list[str]) -> Any:
    async def sample(params: dict[str, Any]) -> dict[str, Any]:
        seen.append(text)
        return {"role": "assistant", "model": "m", "content": {"type": "text", "text": text}}
    return sample


async def _default(params: dict[str, Any]) -> dict[str, Any]:
    raise McpError(-32603, "the client-wide callback must not answer")


async def test_the_one_call_in_flight_gets_the_request() -> None:
    seen: list[str] = []
    async with connect(_server(anyio.Event()), sampling=_default) as client:
        result = await client.request("tools/call", {"name": "ask", "arguments": {}},
                                      handlers=CallHandlers(sampling=_sampler("mine", seen)))
    assert result["content"][0]["text"] == "mine" and seen == ["mine"]


@pytest.mark.parametrize("same_owner", [True, False])
async def test_calls_of_different_owners_make_a_request_ambiguous(same_owner: bool) -> None:
    release = anyio.Event()
    seen: list[str] = []
    first, second = object(), object()
    async with connect(_server(release), sampling=_default) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: client.request(
                "tools/call", {"name": "wait", "arguments": {}},
                handlers=CallHandlers(sampling=_sampler("waiter", seen), owner=first)))
            await anyio.sleep(0.05)
            handlers = CallHandlers(sampling=_sampler("asker", seen),
                                    owner=first if same_owner else second)
            if same_owner:  # one downstream session: any of its calls may answer
                result = await client.request("tools/call", {"name": "ask", "arguments": {}},
                                              handlers=handlers)
                assert result["content"][0]["text"] in ("waiter", "asker")
            else:
                client.ambiguous_wait = 0.2  # the other call never ends meanwhile
                with pytest.raises(McpError, match="several calls are in flight"):
                    await client.request("tools/call", {"name": "ask", "arguments": {}},
                                         handlers=handlers)
                assert seen == []
            release.set()


async def test_an_ambiguous_request_waits_until_the_other_callers_call_ends() -> None:
    """Refused at once, the asking call's tool would fail after its side effects
    ran; instead the request waits until the calls in flight share one owner."""
    release = anyio.Event()
    seen: list[str] = []
    async with connect(_server(release), sampling=_default) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: client.request(
                "tools/call", {"name": "wait", "arguments": {}},
                handlers=CallHandlers(sampling=_sampler("waiter", seen), owner=object())))
            await anyio.sleep(0.05)
            got: dict[str, Any] = {}

            async def ask() -> None:
                got.update(await client.request(
                    "tools/call", {"name": "ask", "arguments": {}},
                    handlers=CallHandlers(sampling=_sampler("asker", seen), owner=object())))
            tg.start_soon(ask)
            await anyio.sleep(0.2)  # the request has arrived and waits
            assert seen == []
            release.set()  # the other caller's call ends: the request is the asker's
        assert got["content"][0]["text"] == "asker" and seen == ["asker"]
