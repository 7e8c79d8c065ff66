"""Parked calls and the bounds around them: time parked is the downstream's, not
the upstream's (its call timeout, its circuit breaker); calls are counted
before they start; a call that did not ask is not shown another's question."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from mobius_rpc.client.client import Client
from mobius_rpc.client.targets import HttpTarget
from mobius_rpc.core.errors import McpError
from mobius_rpc.gateway import Gateway, ParkingOptions
from tests.conftest import connect, serve_asgi

from .conftest import FAST, local_server
from .test_parking import MODERN, answer, answers_for, legacy_entry, lines, raw_call, wait_for_line

pytestmark = pytest.mark.anyio


async def gateway(tmp_path: Path, gateways: list[Gateway], parking: ParkingOptions,
                  **upstream: Any) -> tuple[Any, Gateway]:
    server = local_server()
    entry = legacy_entry(tmp_path / "runs", RELEASE_FILE=str(tmp_path / "release"))
    made = Gateway({"old": entry}, options=replace(FAST, **upstream),
                   parking=parking).attach(server)
    gateways.append(made)
    await made.wait_ready()
    return server, made


async def test_time_parked_is_neither_the_upstreams_timeout_nor_a_breaker_failure(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    runs = tmp_path / "runs"
    server, gw = await gateway(tmp_path, gateways, ParkingOptions(),
                               timeout=1.0, breaker_threshold=2, breaker_reset=30.0)
    async with connect(server, revision=MODERN, elicitation=answer) as mallory, \
            connect(server, revision="2025-11-25") as other:
        parked = [await raw_call(mallory, "old__order", {"item": item}) for item in "ab"]
        assert all(p["resultType"] == "input_required" for p in parked)
        await anyio.sleep(1.5)  # longer than the upstream's call timeout, never retried
        upstream = gw.upstreams["old"]
        assert upstream.failures == 0 and upstream.health()["breaker"] == "closed"
        got = await other.call_tool("old__plain", {})
        assert got["content"][0]["text"] == "plain"
        # and the parked call itself did not time out: its retry completes it
        done = await raw_call(mallory, "old__order", {"item": "a"},
                              inputResponses=answers_for(parked[0]),
                              requestState=parked[0]["requestState"])
        assert done["content"][0]["text"] == "ordered a to DELIVER THE A WHERE?"
    assert "answer DELIVER THE A WHERE?" in lines(runs)


async def test_a_call_that_works_too_long_still_times_out(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    """The upstream's call timeout still bounds the time a call works upstream."""
    runs = tmp_path / "runs"
    server, gw = await gateway(tmp_path, gateways, ParkingOptions(), timeout=1.0)
    async with connect(server, revision=MODERN) as client:
        with anyio.fail_after(10), pytest.raises(McpError) as caught:
            await raw_call(client, "old__slow_task")  # waits for a release that never comes
        assert "timed out" in caught.value.message
        await wait_for_line(runs, "cancelled")  # cancelled upstream
        assert not gw.parking.calls and not gw.parking.live


async def test_an_abandoned_call_is_cancelled_upstream_at_the_parking_deadline(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    runs = tmp_path / "runs"
    server, gw = await gateway(tmp_path, gateways, ParkingOptions(timeout=0.5))
    async with connect(server, revision=MODERN, elicitation=answer) as client:
        first = await raw_call(client, "old__ask_then_hang")
        assert first["resultType"] == "input_required"
        await wait_for_line(runs, "cancelled")
        assert not gw.parking.calls and not gw.parking.live
        assert gw.upstreams["old"].failures == 0
        with pytest.raises(McpError) as caught:
            await raw_call(client, "old__ask_then_hang", inputResponses=answers_for(first),
                           requestState=first["requestState"])
        assert caught.value.code == -32602


async def test_a_call_that_fails_while_parked_is_forgotten_at_once(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    server, gw = await gateway(tmp_path, gateways, ParkingOptions(timeout=60.0))
    async with connect(server, revision=MODERN, elicitation=answer) as client:
        first = await raw_call(client, "old__ask_then_hang")
        assert len(gw.parking.calls) == 1
        await gw.remove_upstream("old")  # its connection ends: the parked call fails
        with anyio.fail_after(10):  # long before the parking deadline
            while gw.parking.calls or gw.parking.live:
                await anyio.sleep(0.02)
        assert first["resultType"] == "input_required"


async def test_a_call_that_never_asks_is_not_shown_another_calls_question(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    runs = tmp_path / "runs"
    server, gw = await gateway(tmp_path, gateways, ParkingOptions())
    asked: list[str] = []

    async def record(params: dict[str, Any]) -> dict[str, Any]:
        asked.append(params["message"])  # what the client was asked along the way
        return await answer(params)
    async with connect(server, revision=MODERN, elicitation=record) as client:
        first = await raw_call(client, "old__order", {"item": "a"})
        assert first["resultType"] == "input_required"
        got: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            async def never_asks() -> None:
                got.update(await raw_call(client, "old__slow_task", {"steps": 1}))
            tg.start_soon(never_asks)
            await wait_for_line(runs, "run slow_task")
            await anyio.sleep(0.5)  # time for a round of it to (wrongly) end meanwhile
            (tmp_path / "release").touch()
        # it ran to its end, and was not answered with the order's question
        assert got.get("resultType", "complete") == "complete", got
        assert got["content"][0]["text"] == "slow_task done in 1"
        assert asked == []
        done = await raw_call(client, "old__order", {"item": "a"},
                              inputResponses=answers_for(first),
                              requestState=first["requestState"])
        assert done["content"][0]["text"] == "ordered a to DELIVER THE A WHERE?"
        assert not gw.parking.calls


async def test_anonymous_callers_have_a_cap_of_their_own_checked_before_running(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    """Unauthenticated stateless HTTP callers cannot be told apart: as a class they
    get ``anonymous`` calls (not one caller's ``per_owner``), refused before running."""
    runs = tmp_path / "runs"
    server, gw = await gateway(tmp_path, gateways, ParkingOptions(per_owner=1, anonymous=2))
    async with serve_asgi(server.http_app()) as base, \
            Client(HttpTarget(f"http://{base}/mcp"), revision=MODERN) as one, \
            Client(HttpTarget(f"http://{base}/mcp"), revision=MODERN) as two:
        async with anyio.create_task_group() as tg:
            for client in (one, two):
                tg.start_soon(raw_call, client.session, "old__slow_task", {"steps": 1})
            with anyio.fail_after(10):
                while lines(runs).count("run slow_task") < 2:
                    await anyio.sleep(0.02)
            with pytest.raises(McpError) as caught:
                await raw_call(one.session, "old__slow_task", {"steps": 1})
            assert caught.value.code == -31030 and caught.value.data["max"] == 2
            (tmp_path / "release").touch()
        assert lines(runs).count("run slow_task") == 2  # the refused one never ran
        assert not gw.parking.live


async def test_a_parked_call_is_cancelled_when_its_connection_closes(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    """On a connection (stdio, WebSocket) the call belongs to it: once it is gone
    no retry can come, so the call is not held until the parking deadline."""
    runs = tmp_path / "runs"
    server, gw = await gateway(tmp_path, gateways, ParkingOptions(timeout=60.0))
    async with connect(server, revision=MODERN, elicitation=answer) as client:
        first = await raw_call(client, "old__ask_then_hang")
        assert first["resultType"] == "input_required" and len(gw.parking.calls) == 1
    await wait_for_line(runs, "cancelled")  # long before the deadline
    with anyio.fail_after(5):
        while gw.parking.calls or gw.parking.live:
            await anyio.sleep(0.02)


async def test_another_callers_question_waits_for_the_parked_call_instead_of_failing(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    """While alice's call is parked, bob's question on the same (stdio) upstream
    cannot be attributed; it waits until alice's call ends, then reaches bob,
    where it used to be refused after bob's order was placed."""
    runs = tmp_path / "runs"
    server, gw = await gateway(tmp_path, gateways, ParkingOptions())
    async with connect(server, revision=MODERN, elicitation=answer) as alice, \
            connect(server, revision=MODERN, elicitation=answer) as bob:
        first = await raw_call(alice, "old__order", {"item": "a"})
        assert first["resultType"] == "input_required"
        got: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            async def bobs() -> None:
                got.update(await bob.call_tool("old__order", {"item": "b"}))
            tg.start_soon(bobs)
            await wait_for_line(runs, "run order b")
            done = await raw_call(alice, "old__order", {"item": "a"},
                                  inputResponses=answers_for(first),
                                  requestState=first["requestState"])
            assert done["content"][0]["text"] == "ordered a to DELIVER THE A WHERE?"
        assert got["content"][0]["text"] == "ordered b to re:Deliver the b where?"
        assert not gw.parking.live


async def test_over_streamable_http_each_callers_question_reaches_its_caller_at_once(
        tmp_path: Path, gateways: list[Gateway], monkeypatch: pytest.MonkeyPatch) -> None:
    """A legacy Streamable HTTP upstream sends a call's requests on that call's
    response stream: they are attributed by it, so bob's question reaches bob
    while alice's call is still parked (no waiting on alice, no refusal)."""
    from .legacy_upstream import build

    runs = tmp_path / "runs"
    monkeypatch.setenv("RUNS_FILE", str(runs))
    async with serve_asgi(build().http_app()) as upstream_base:
        server = local_server()
        made = Gateway({"old": {"url": f"http://{upstream_base}/mcp"}}, options=FAST,
                       parking=ParkingOptions()).attach(server)
        gateways.append(made)
        await made.wait_ready()
        assert made.upstreams["old"].client.era is not None
        assert made.upstreams["old"].client.era.value == "legacy"
        async with connect(server, revision=MODERN, elicitation=answer) as alice, \
                connect(server, revision=MODERN, elicitation=answer) as bob:
            first = await raw_call(alice, "old__order", {"item": "a"})
            assert first["resultType"] == "input_required"
            with anyio.fail_after(10):  # well inside the 30 s an unattributed one may wait
                got = await bob.call_tool("old__order", {"item": "b"})
            assert got["content"][0]["text"] == "ordered b to re:Deliver the b where?"
            done = await raw_call(alice, "old__order", {"item": "a"},
                                  inputResponses=answers_for(first),
                                  requestState=first["requestState"])
            assert done["content"][0]["text"] == "ordered a to DELIVER THE A WHERE?"
        await made.aclose()
