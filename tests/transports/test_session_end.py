"""A session's end stops the requests it is serving, as a task group would:
each handler is cancelled, its shielded clean-up runs to the end, and the
session's ``run`` returns only after every handler has finished."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mobius_rpc.core.errors import McpError
from mobius_rpc.server.app import Server
from mobius_rpc.transports.memory import memory_pair
from tests.conftest import client_on

pytestmark = pytest.mark.anyio


async def test_ending_a_session_cancels_its_handlers_and_waits_for_their_clean_up() -> None:
    server = Server("ending")
    started = anyio.Event()
    seen: dict[str, Any] = {"cleaned": 0, "finished": 0, "cleaned_at_return": None}

    @server.tool()
    async def hang(i: int) -> str:
        if i == 2:
            started.set()
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):  # a clean-up that must not be cut short
                await anyio.sleep(0.05)
                seen["cleaned"] += 1
            raise
        seen["finished"] += 1
        return "done"

    server_end, client_end = memory_pair()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as outer:
            serving = anyio.CancelScope()

            async def serve() -> None:
                with serving:
                    await server.serve(server_end)
                seen["cleaned_at_return"] = seen["cleaned"]

            outer.start_soon(serve)
            async with client_on(client_end, outer, "2025-11-25") as client:
                async def call(i: int) -> None:
                    with pytest.raises(McpError):  # the server went away under it
                        await client.call_tool("hang", {"i": i})

                for i in range(3):
                    outer.start_soon(call, i)
                await started.wait()
                await anyio.sleep(0.05)  # the three handlers are all running
                serving.cancel()  # the server's session ends under its calls
                with anyio.move_on_after(5):
                    while seen["cleaned_at_return"] is None:
                        await anyio.sleep(0.01)
            outer.cancel_scope.cancel()
    assert seen["cleaned_at_return"] == 3
    assert seen["finished"] == 0
