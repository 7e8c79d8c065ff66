"""A legacy upstream asking a 2026-07-28 downstream for input: the call is parked
upstream, not run again (the tool counts its runs in a file)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobius_rpc.client.client import Client
from mobius_rpc.client.targets import HttpTarget, StdioTarget
from mobius_rpc.core.errors import McpError
from mobius_rpc.gateway import Gateway, ParkingOptions
from tests.conftest import connect, serve_asgi

from .conftest import FAST, local_server

pytestmark = pytest.mark.anyio

LEGACY = Path(__file__).resolve().parent / "legacy_upstream.py"
MODERN = "2026-07-28"


def legacy_entry(runs: Path, **env: str) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(LEGACY)],
            "env": {"RUNS_FILE": str(runs), **env}}


def lines(runs: Path) -> list[str]:
    return runs.read_text().splitlines() if runs.exists() else []


async def wait_for_line(runs: Path, line: str) -> None:
    with anyio.fail_after(10):
        while line not in lines(runs):
            await anyio.sleep(0.02)


async def answer(params: dict[str, Any]) -> dict[str, Any]:
    return {"action": "accept", "content": {"answer": f"re:{params['message']}"}}


async def sample(params: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": {"type": "text", "text": "done"}, "model": "m"}


@asynccontextmanager
async def gateway_server(runs: Path, gateways: list[Gateway], env: dict[str, str] | None = None,
                         **options: Any) -> AsyncIterator[Any]:
    server = local_server()
    gateway = Gateway({"old": legacy_entry(runs, **(env or {}))}, options=FAST,
                      parking=ParkingOptions(**options)).attach(server)
    gateways.append(gateway)
    await gateway.wait_ready()
    assert gateway.upstreams["old"].client.era is not None
    assert gateway.upstreams["old"].client.era.value == "legacy"
    yield server


async def test_the_tool_runs_once_and_the_answer_reaches_it(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    runs = tmp_path / "runs"
    async with gateway_server(runs, gateways) as server, \
            connect(server, revision=MODERN, elicitation=answer) as client:
        got = await client.call_tool("old__order", {"item": "piano"})
        assert got["content"][0]["text"] == "ordered piano to re:Deliver the piano where?"
    assert lines(runs) == ["run order piano", "answer re:Deliver the piano where?"]


async def raw_call(client: Any, name: str, arguments: dict[str, Any] | None = None,
                   **retry: Any) -> dict[str, Any]:
    """One round of tools/call, as the downstream sends it (no automatic retry)."""
    params: dict[str, Any] = {"name": name, "arguments": arguments or {}}
    if retry:
        params.update(retry)
    result: dict[str, Any] = await client.session.request("tools/call", params)
    return result


def answers_for(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, embedded in result["inputRequests"].items():
        params = embedded["params"]
        if embedded["method"] == "elicitation/create":
            out[key] = {"action": "accept", "content": {"answer": params["message"].upper()}}
        else:
            out[key] = {"role": "assistant", "content": {"type": "text", "text": "MODEL"},
                        "model": "m"}
    return out


async def test_concurrent_requests_share_a_round_and_later_ones_get_another(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    runs = tmp_path / "runs"
    async with gateway_server(runs, gateways) as server, \
            connect(server, revision=MODERN, elicitation=answer, sampling=sample) as client:
        first = await raw_call(client, "old__two_questions")
        assert first["resultType"] == "input_required"
        assert sorted(r["params"]["message"] for r in first["inputRequests"].values()) == [
            "first?", "second?"]
        second = await raw_call(client, "old__two_questions", inputResponses=answers_for(first),
                                requestState=first["requestState"])
        assert second["resultType"] == "input_required"
        (request,) = second["inputRequests"].values()
        assert request["method"] == "sampling/createMessage"
        assert second["requestState"] != first["requestState"]
        final = await raw_call(client, "old__two_questions", inputResponses=answers_for(second),
                               requestState=second["requestState"])
        assert final["content"][0]["text"] == "FIRST?+SECOND?+MODEL"
        assert final.get("resultType", "complete") == "complete"
        # the finished call is forgotten: its state names nothing any more
        with pytest.raises(McpError) as caught:
            await raw_call(client, "old__two_questions", inputResponses=answers_for(second),
                           requestState=second["requestState"])
        assert caught.value.code == -32602 and caught.value.data["reason"] == "unknown-call"
    assert lines(runs) == ["run two_questions"]


async def test_an_upstream_failure_after_the_answer_reaches_the_retry(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    runs = tmp_path / "runs"
    async with gateway_server(runs, gateways) as server, \
            connect(server, revision=MODERN, elicitation=answer) as client:
        with pytest.raises(McpError, match="failed on purpose"):
            await client.call_tool("old__ask_then_fail", {})
    assert lines(runs) == ["run ask_then_fail"]


async def test_a_call_not_resumed_in_time_is_cancelled_upstream(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    runs = tmp_path / "runs"
    async with gateway_server(runs, gateways, timeout=0.3) as server, \
            connect(server, revision=MODERN, elicitation=answer) as client:
        first = await raw_call(client, "old__ask_then_hang")
        assert first["resultType"] == "input_required"
        await wait_for_line(runs, "cancelled")  # notifications/cancelled reached the tool
        with pytest.raises(McpError) as caught:
            await raw_call(client, "old__ask_then_hang", inputResponses=answers_for(first),
                           requestState=first["requestState"])
        assert caught.value.code == -32602
        assert not gateways[0].parking.calls
    assert lines(runs) == ["run ask_then_hang", "cancelled"]


async def test_another_caller_cannot_resume_a_parked_call(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    runs = tmp_path / "runs"
    async with gateway_server(runs, gateways) as server, \
            connect(server, revision=MODERN, elicitation=answer) as alice, \
            connect(server, revision=MODERN, elicitation=answer) as mallory:
        first = await raw_call(alice, "old__order", {"item": "tea"})
        with pytest.raises(McpError) as caught:
            await raw_call(mallory, "old__order", {"item": "tea"},
                           inputResponses={k: {"action": "accept",
                                               "content": {"answer": "mallory's"}}
                                           for k in first["inputRequests"]},
                           requestState=first["requestState"])
        assert caught.value.code == -32602 and caught.value.data["reason"] == "foreign-call"
        # a forged or altered state is refused before anything is looked up
        with pytest.raises(McpError) as caught:
            await raw_call(mallory, "old__order", {"item": "tea"}, inputResponses={},
                           requestState=first["requestState"][:-2] + "xx")
        assert caught.value.code == -32602
        # the owner still can
        done = await raw_call(alice, "old__order", {"item": "tea"},
                              inputResponses=answers_for(first),
                              requestState=first["requestState"])
        assert done["content"][0]["text"] == "ordered tea to DELIVER THE TEA WHERE?"
    assert lines(runs) == ["run order tea", "answer DELIVER THE TEA WHERE?"]


async def test_a_retry_reaching_another_replica_is_refused_and_nothing_runs_twice(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    runs = tmp_path / "runs"
    async with gateway_server(runs, gateways) as one, gateway_server(runs, gateways) as two, \
            connect(one, revision=MODERN, elicitation=answer) as to_one, \
            connect(two, revision=MODERN, elicitation=answer) as to_two:
        two.state_key = one.state_key  # replicas share the key that seals requestState
        first = await raw_call(to_one, "old__order", {"item": "cake"})
        with pytest.raises(McpError) as caught:
            await raw_call(to_two, "old__order", {"item": "cake"},
                           inputResponses=answers_for(first), requestState=first["requestState"])
        assert caught.value.code == -32602 and caught.value.data["reason"] == "unknown-call"
        assert "another replica" in caught.value.message
    assert lines(runs) == ["run order cake"]


async def test_cancelling_the_downstream_round_cancels_the_upstream_call(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    """In a retry (the call parked, then resumed) and in a first round (the call runs
    in a task of its own, nothing asked yet)."""
    runs = tmp_path / "runs"
    env = {"RELEASE_FILE": str(tmp_path / "never")}
    async with gateway_server(runs, gateways, env) as server, \
            connect(server, revision=MODERN, elicitation=answer) as client:
        first = await raw_call(client, "old__ask_then_hang")
        async with anyio.create_task_group() as tg:
            async def resume() -> None:
                await raw_call(client, "old__ask_then_hang", inputResponses=answers_for(first),
                               requestState=first["requestState"])
            tg.start_soon(resume)
            await wait_for_line(runs, "answered")  # the answer reached the parked call
            tg.cancel_scope.cancel()              # the downstream gives up on its retry
        await wait_for_line(runs, "cancelled")
        with anyio.fail_after(5):
            while gateways[0].parking.calls:
                await anyio.sleep(0.02)
        async with anyio.create_task_group() as tg:
            tg.start_soon(raw_call, client, "old__slow_task")
            await wait_for_line(runs, "run slow_task")
            tg.cancel_scope.cancel()
        with anyio.fail_after(10):
            while lines(runs).count("cancelled") < 2:
                await anyio.sleep(0.02)
    assert lines(runs) == ["run ask_then_hang", "answered", "cancelled", "run slow_task",
                           "cancelled"]


async def test_calls_are_capped_per_caller_before_they_run(tmp_path: Path,
                                                        gateways: list[Gateway]) -> None:
    runs = tmp_path / "runs"
    async with gateway_server(runs, gateways, per_owner=1) as server, \
            connect(server, revision=MODERN, elicitation=answer) as client:
        first = await raw_call(client, "old__order", {"item": "a"})
        assert first["resultType"] == "input_required"
        with pytest.raises(McpError) as caught:
            await raw_call(client, "old__order", {"item": "b"})
        assert caught.value.code == -31030 and caught.value.data["max"] == 1
        done = await raw_call(client, "old__order", {"item": "a"},
                              inputResponses=answers_for(first),
                              requestState=first["requestState"])
        assert done["content"][0]["text"] == "ordered a to DELIVER THE A WHERE?"
        # the refused call never ran upstream: its side effects did not happen
        assert "run order b" not in lines(runs)
        # and with the first one finished, the caller may call again
        again = await client.call_tool("old__order", {"item": "c"})
        assert again["content"][0]["text"] == "ordered c to re:Deliver the c where?"
    assert lines(runs) == ["run order a", "answer DELIVER THE A WHERE?",
                           "run order c", "answer re:Deliver the c where?"]


async def test_stdio_and_http_downstreams(tmp_path: Path, gateways: list[Gateway]) -> None:
    """A 2026-07-28 Client on ``mobius serve --stdio --gateway`` (a subprocess) and
    on a gateway served over Streamable HTTP by a real uvicorn."""
    runs = tmp_path / "runs"
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"old": legacy_entry(runs)}}))
    stdio = StdioTarget(sys.executable, ("-m", "mobius_rpc", "serve", "--stdio", "--gateway",
                                         str(config), "--gateway-pins", "off"))
    with anyio.fail_after(60):
        async with Client(stdio, revision=MODERN, elicitation=answer) as client:
            assert client.protocol_version == MODERN
            assert "old__order" in {t["name"] for t in await client.list_tools()}
            got = await client.request("tools/call", {"name": "old__order",
                                                      "arguments": {"item": "stdio"}})
            assert got["content"][0]["text"] == "ordered stdio to re:Deliver the stdio where?"
        async with gateway_server(runs, gateways) as server, \
                serve_asgi(server.http_app()) as base:
            async with Client(HttpTarget(f"http://{base}/mcp"), revision=MODERN,
                              elicitation=answer) as client:
                assert client.protocol_version == MODERN
                got = await client.request("tools/call", {"name": "old__order",
                                                          "arguments": {"item": "http"}})
                assert got["content"][0]["text"] == "ordered http to re:Deliver the http where?"
    assert lines(runs) == ["run order stdio", "answer re:Deliver the stdio where?",
                           "run order http", "answer re:Deliver the http where?"]


async def test_a_prompt_that_asks_is_parked_too(tmp_path: Path,
                                                gateways: list[Gateway]) -> None:
    runs = tmp_path / "runs"
    async with gateway_server(runs, gateways) as server, \
            connect(server, revision=MODERN, elicitation=answer) as client:
        got = await client.get_prompt("old__greeting", {})
        assert "Hello, re:Whom?!" in str(got["messages"])
    assert lines(runs) == ["run greeting"]


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_whatever_the_client_answers_per_round_the_tool_runs_once(
        tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """Rounds answering any subset of what is waiting, with answers to requests
    nobody made mixed in: the call goes on until everything is answered, runs once,
    and its result carries exactly the answers given."""
    runs = tmp_path_factory.mktemp("runs") / "runs"

    async def scenario() -> None:
        gateways: list[Gateway] = []
        try:
            async with gateway_server(runs, gateways) as server, \
                    connect(server, revision=MODERN, elicitation=answer,
                            sampling=sample) as client:
                result = await raw_call(client, "old__two_questions")
                for _ in range(12):
                    if result.get("resultType") != "input_required":
                        break
                    everything = answers_for(result)
                    chosen = {k: v for k, v in everything.items() if data.draw(st.booleans())}
                    if data.draw(st.booleans()):
                        chosen["elicitation-99"] = {"action": "accept"}  # nothing asked that
                    if len(chosen) == 0 and data.draw(st.booleans()):
                        chosen = everything
                    result = await raw_call(client, "old__two_questions",
                                            inputResponses=chosen,
                                            requestState=result["requestState"])
                else:
                    result = await raw_call(client, "old__two_questions",
                                            inputResponses=answers_for(result),
                                            requestState=result["requestState"])
                while result.get("resultType") == "input_required":
                    result = await raw_call(client, "old__two_questions",
                                            inputResponses=answers_for(result),
                                            requestState=result["requestState"])
                assert result["content"][0]["text"] == "FIRST?+SECOND?+MODEL"
        finally:
            for gateway in gateways:
                await gateway.aclose()

    anyio.run(scenario)
    assert lines(runs) == ["run two_questions"]
