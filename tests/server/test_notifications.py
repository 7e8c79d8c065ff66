"""Notifications in both directions and server-initiated requests, legacy era."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mobius_rpc.core.errors import LocalProtocolError, McpError
from mobius_rpc.core.revisions import LEGACY_REVISIONS
from mobius_rpc.runtime.session import Session
from mobius_rpc.server.app import Server
from mobius_rpc.server.context import Context
from tests.conftest import connect, connect_stdio

pytestmark = pytest.mark.anyio


async def wait_for(client: Any, method: str, count: int = 1) -> list[dict[str, Any]]:
    with anyio.fail_after(3):
        while True:
            found = [p for m, p in client.notifications if m == method]
            if len(found) >= count:
                return found
            await anyio.sleep(0.01)


@pytest.mark.parametrize("revision", LEGACY_REVISIONS)
async def test_every_list_changed_notification(revision: str) -> None:
    server = Server("lists")
    server.tool(name="t0")(lambda: "x")
    server.prompt(name="p0")(lambda: "x")
    server.resource("r://0")(lambda: "x")
    async with connect(server, revision=revision) as client:
        server.tool(name="t1")(lambda: "y")
        server.prompt(name="p1")(lambda: "y")
        server.resource("r://1")(lambda: "y")
        server.resources.remove("r://0")
        for kind, count in (("tools", 1), ("prompts", 1), ("resources", 2)):
            assert await wait_for(client, f"notifications/{kind}/list_changed", count)
        assert [r["uri"] for r in (await client.list_resources())["resources"]] == ["r://1"]


async def test_resource_updates_over_a_real_subprocess() -> None:
    async with connect_stdio(revision="2025-06-18") as client:
        await client.subscribe("notes://welcome")
        await client.call_tool("add_note", {"name": "welcome", "body": "changed"})
        assert await wait_for(client, "notifications/resources/updated") == [
            {"uri": "notes://welcome"}]
        assert (await client.read_resource("notes://welcome"))["contents"][0]["text"] == "changed"


@pytest.mark.parametrize("revision", LEGACY_REVISIONS)
async def test_roots_list_changed_reaches_the_server_handler(revision: str) -> None:
    server = Server("roots")
    seen = anyio.Event()
    sessions: list[Session] = []

    @server.notification_handler("notifications/roots/list_changed")
    async def changed(session: Session, params: dict[str, Any]) -> None:
        sessions.append(session)
        seen.set()

    server.tool(name="noop")(lambda: "x")

    async def roots() -> list[dict[str, Any]]:
        return []

    async with connect(server, revision=revision, roots=roots) as client:
        await client.notify("notifications/roots/list_changed")
        with anyio.fail_after(2):
            await seen.wait()
    assert len(sessions) == 1


async def test_server_pings_the_client_and_times_out_cleanly() -> None:
    server = Server("pinger")
    results: dict[str, Any] = {}

    @server.tool()
    async def ping_client(ctx: Context) -> str:
        results["pong"] = await ctx.session.request("ping", timeout=2)
        return "ok"

    async with connect(server) as client:
        assert (await client.call_tool("ping_client", {}))["isError"] is False
    assert results["pong"] == {}


async def test_url_elicitation_and_its_completion_notice() -> None:
    server = Server("url")

    @server.tool()
    async def authorize(ctx: Context) -> str:
        answer = await ctx.elicit_url("Sign in", "https://example.com/login", "e-1")
        await ctx.elicitation_complete("e-1")
        return str(answer["action"])

    @server.tool()
    async def needs_url() -> str:
        raise McpError(-32042, "URL elicitation required", {"elicitations": [{
            "mode": "url", "message": "Sign in", "url": "https://example.com/login",
            "elicitationId": "e-2"}]})

    seen: list[dict[str, Any]] = []

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        seen.append(params)
        return {"action": "accept"}

    async with connect(server, revision="2025-11-25", elicitation=elicitation) as client:
        assert (await client.call_tool("authorize", {}))["content"][0]["text"] == "accept"
        assert seen[0]["mode"] == "url" and seen[0]["elicitationId"] == "e-1"
        assert await wait_for(client, "notifications/elicitation/complete") == [
            {"elicitationId": "e-1"}]
        with pytest.raises(McpError) as info:
            await client.call_tool("needs_url", {})
        assert info.value.code == -32042
        assert info.value.data["elicitations"][0]["elicitationId"] == "e-2"
    # Without the url capability the server refuses to send it at all.
    async with connect(server, revision="2025-11-25",
                       capabilities={"elicitation": {"form": {}}}) as client:
        result = await client.call_tool("authorize", {})
        assert result["isError"] is True and "elicitation.url" in result["content"][0]["text"]


async def test_notification_that_does_not_exist_in_the_revision_is_refused() -> None:
    server = Server("old")
    attempts: list[str] = []

    @server.tool()
    async def complete(ctx: Context) -> str:
        try:
            await ctx.elicitation_complete("e")
        except LocalProtocolError as exc:
            attempts.append(exc.message)
        return "done"

    async with connect(server, revision="2025-06-18") as client:
        await client.call_tool("complete", {})
    assert attempts and "2025-06-18" in attempts[0]
