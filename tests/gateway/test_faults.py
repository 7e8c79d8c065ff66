"""Faults: an upstream that crashes mid-call, one that never answers, one that
floods; none of them blocks or breaks another upstream."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from mobius_rpc.client.session import MAX_KEPT_NOTIFICATIONS
from mobius_rpc.core.errors import McpError
from mobius_rpc.gateway import Gateway
from mobius_rpc.gateway.upstreams import UPSTREAM_UNAVAILABLE
from tests.conftest import connect

from .conftest import FAST, local_server, py_entry

pytestmark = pytest.mark.anyio


async def test_a_crash_fails_that_call_and_the_upstream_comes_back(
        gateways: list[Gateway]) -> None:
    server = local_server()
    gateway = Gateway({"a": py_entry("a"), "b": py_entry("b")}, options=FAST).attach(server)
    gateways.append(gateway)
    async with connect(server) as client:
        await client.list_tools()
        with anyio.fail_after(5):  # generous: the call must fail, not hang
            with pytest.raises(McpError, match="closed|exited"):
                await client.call_tool("a__crash", {})
        # the other upstream never noticed
        got = await client.call_tool("b__echo", {"text": "still here"})
        assert got["content"][0]["text"] == "b:still here"
        with anyio.fail_after(10):
            while True:
                try:
                    got = await client.call_tool("a__echo", {"text": "back"})
                    break
                except McpError as exc:
                    assert exc.code == UPSTREAM_UNAVAILABLE  # down meanwhile, said plainly
                    await anyio.sleep(0.1)
        assert got["content"][0]["text"] == "a:back"
        health = {h["name"]: h for h in gateway.health()}
        assert health["a"]["restarts"] == 1 and health["b"]["restarts"] == 0


async def test_a_stuck_upstream_times_out_is_cancelled_and_blocks_no_one(
        gateways: list[Gateway], tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    server = local_server()
    options = replace(FAST, timeout=1.0)
    gateway = Gateway({"stuck": py_entry("stuck", UPSTREAM_MARKER=str(marker)),
                       "ok": py_entry("ok")}, options=options).attach(server)
    gateways.append(gateway)
    async with connect(server) as client:
        await client.list_tools()
        outcome: dict[str, object] = {}

        async def hang() -> None:
            try:
                await client.call_tool("stuck__hang", {})
            except McpError as exc:
                outcome["error"] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(hang)
            await anyio.sleep(0.1)
            # while one call hangs, the other upstream answers
            got = await client.call_tool("ok__echo", {"text": "meanwhile"})
            assert got["content"][0]["text"] == "ok:meanwhile"
            assert "error" not in outcome
        assert "timed out" in str(outcome["error"])
        with anyio.fail_after(5):
            while not marker.exists():
                await anyio.sleep(0.05)
        assert marker.read_text() == "cancelled\n"  # notifications/cancelled reached it


async def test_the_breaker_opens_after_repeated_failures(gateways: list[Gateway]) -> None:
    server = local_server()
    options = replace(FAST, timeout=0.3, breaker_threshold=2, breaker_reset=60.0)
    gateway = Gateway({"s": py_entry("s")}, options=options).attach(server)
    gateways.append(gateway)
    async with connect(server) as client:
        await client.list_tools()
        for _ in range(2):
            with pytest.raises(McpError, match="timed out"):
                await client.call_tool("s__hang", {})
        with pytest.raises(McpError) as caught:
            await client.call_tool("s__echo", {"text": "x"})
        assert caught.value.code == UPSTREAM_UNAVAILABLE and "circuit open" in str(caught.value)
        assert gateway.health()[0]["breaker"] == "open"


async def test_a_flood_of_notifications_keeps_memory_bounded(gateways: list[Gateway]) -> None:
    server = local_server()
    gateway = Gateway({"f": py_entry("f")}, options=FAST).attach(server)
    gateways.append(gateway)
    async with connect(server) as client:
        await client.list_tools()
        count = 3 * MAX_KEPT_NOTIFICATIONS
        got = await client.call_tool("f__flood", {"count": count})
        assert got["content"][0]["text"] == "flooded"
        await anyio.sleep(0.2)
        kept = gateway.upstreams["f"].client.session.notifications
        assert 0 < len(kept) <= MAX_KEPT_NOTIFICATIONS
        assert len(client.notifications) <= MAX_KEPT_NOTIFICATIONS


async def test_an_upstream_that_cannot_start_does_not_hold_up_the_others(
        gateways: list[Gateway]) -> None:
    server = local_server()
    gateway = Gateway({"broken": {"command": "/nonexistent/mcp-server"},
                       "ok": py_entry("ok")}, options=FAST).attach(server)
    gateways.append(gateway)
    async with connect(server) as client:
        names = [t["name"] for t in (await client.list_tools())["tools"]]
        assert "ok__echo" in names and not any(n.startswith("broken__") for n in names)
        health = {h["name"]: h for h in gateway.health()}
        assert health["broken"]["state"] == "disconnected" and health["broken"]["lastError"]


async def test_a_downstream_cancel_reaches_the_upstream(gateways: list[Gateway],
                                                        tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    server = local_server()
    gateway = Gateway({"s": py_entry("s", UPSTREAM_MARKER=str(marker))},
                      options=FAST).attach(server)
    gateways.append(gateway)
    async with connect(server) as client:
        await client.list_tools()
        with anyio.move_on_after(0.5):  # the downstream client gives up: it cancels
            await client.call_tool("s__hang", {})
        with anyio.fail_after(5):
            while not marker.exists():
                await anyio.sleep(0.05)
        got = await client.call_tool("s__echo", {"text": "next"})  # the session lives on
        assert got["content"][0]["text"] == "s:next"


async def test_upstreams_added_and_removed_at_run_time(gateways: list[Gateway]) -> None:
    server = local_server()
    gateway = Gateway({}, options=FAST).attach(server)
    gateways.append(gateway)
    async with connect(server) as client:
        assert [t["name"] for t in (await client.list_tools())["tools"]] == ["local_echo"]
        await gateway.add_upstream("late", py_entry("late"))
        with anyio.fail_after(20):
            while "late__echo" not in [t["name"] for t in (await client.list_tools())["tools"]]:
                await anyio.sleep(0.1)
        assert any(m == "notifications/tools/list_changed" for m, _ in client.notifications)
        got = await client.call_tool("late__echo", {"text": "x"})
        assert got["content"][0]["text"] == "late:x"
        with pytest.raises(ValueError, match="already"):
            await gateway.add_upstream("late", py_entry("late"))
        assert await gateway.remove_upstream("late") is True
        assert await gateway.remove_upstream("late") is False
        assert [t["name"] for t in (await client.list_tools())["tools"]] == ["local_echo"]
        with pytest.raises(McpError) as caught:
            await client.call_tool("late__echo", {"text": "x"})
        assert caught.value.code == -32602


def test_bad_gateway_configs_are_one_line_errors(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys
    cases = {"missing.json": None, "notjson.json": "{", "bad.json": json.dumps(
        {"mcpServers": {"x": {"command": 5}}}), "clash.json": json.dumps(
        {"mcpServers": {"A": {"command": "x"}, "a": {"command": "y"}}})}
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        done = subprocess.run([sys.executable, "-m", "mobius_rpc", "serve", "--stdio",
                               "--gateway", str(path)], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
        assert done.returncode == 2, (name, done.stderr)
        assert done.stderr.startswith("mobius serve: --gateway ") and \
            done.stderr.count("\n") == 1, (name, done.stderr)


async def test_an_upstream_that_stops_answering_pings_is_restarted(
        gateways: list[Gateway]) -> None:
    server = local_server()
    options = replace(FAST, timeout=0.5, health_interval=0.3)
    gateway = Gateway({"z": py_entry("z")}, options=options).attach(server)
    gateways.append(gateway)
    async with connect(server) as client:
        await client.list_tools()
        await anyio.sleep(1.0)  # a few health checks of a healthy upstream: no restart
        assert gateway.health()[0]["restarts"] == 0
        with pytest.raises(McpError, match="timed out"):
            await client.call_tool("z__freeze", {})
        with anyio.fail_after(20):
            while gateway.health()[0]["restarts"] < 1:
                await anyio.sleep(0.1)
            while True:
                try:
                    got = await client.call_tool("z__echo", {"text": "thawed"})
                    break
                except McpError:
                    await anyio.sleep(0.1)
        assert got["content"][0]["text"] == "z:thawed"


async def test_an_upstream_cancelling_its_request_cancels_it_downstream(
        gateways: list[Gateway]) -> None:
    server = local_server()
    entry = {**py_entry("u"), "protocolVersion": "2025-11-25"}  # legacy: it can cancel
    gateway = Gateway({"u": entry}, options=FAST).attach(server)
    gateways.append(gateway)
    cancelled = anyio.Event()

    async def sampling(params: dict[str, object]) -> dict[str, object]:
        try:
            await anyio.sleep(30)
        finally:
            cancelled.set()
        return {}

    async with connect(server, sampling=sampling) as client:
        await client.list_tools()
        got = await client.call_tool("u__impatient", {})
        assert got["content"][0]["text"] == "gave up"
        with anyio.fail_after(5):
            await cancelled.wait()  # the downstream's sampling was cancelled too


async def test_an_upstream_stuck_at_start_holds_the_first_list_only_briefly(
        gateways: list[Gateway]) -> None:
    server = local_server()
    # (closing waits for a connection attempt in progress: keep that attempt short)
    gateway = Gateway({"mute": {"command": "sleep", "args": ["60"], "connectTimeout": 3},
                       "ok": py_entry("ok")}, options=FAST, list_wait=1.0).attach(server)
    gateways.append(gateway)
    async with connect(server) as client:
        names = [t["name"] for t in (await client.list_tools())["tools"]]
        assert "ok__echo" in names and not any(n.startswith("mute__") for n in names)
        assert (await client.call_tool("ok__echo", {"text": "x"}))["content"][0]["text"] \
            == "ok:x"
        with pytest.raises(McpError) as caught:
            await client.call_tool("mute__anything", {})
        assert caught.value.code == -32602
        assert {h["name"]: h["state"] for h in gateway.health()}["mute"] == "connecting"
