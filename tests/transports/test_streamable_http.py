"""Streamable HTTP on a real uvicorn server on loopback, both eras."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import orjson
import pytest

from mobius_rpc.demo import build_demo_server
from tests.conftest import serve_asgi

pytestmark = pytest.mark.anyio

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "http-test", "version": "1"}}


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    async with serve_asgi(build_demo_server().http_app()) as base:
        yield f"http://{base}/mcp"


def sse_messages(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line[5:].strip()) for line in text.splitlines()
            if line.startswith("data:") and line[5:].strip()]


async def legacy_session(client: httpx.AsyncClient, url: str,
                         version: str = "2025-11-25") -> dict[str, str]:
    reply = await client.post(url, headers=ACCEPT, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "http-test", "version": "1"}}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["result"]["protocolVersion"] == version
    headers = {**ACCEPT, "Mcp-Session-Id": reply.headers["mcp-session-id"],
               "MCP-Protocol-Version": version}
    note = await client.post(url, headers=headers,
                             json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert note.status_code == 202 and note.content == b""
    return headers


async def test_legacy_session_json_and_sse_answers(base_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        headers = await legacy_session(client, base_url)
        listed = await client.post(base_url, headers=headers,
                                   json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert listed.headers["content-type"].startswith("application/json")
        assert "echo" in {t["name"] for t in listed.json()["result"]["tools"]}
        await client.post(base_url, headers=headers, json={
            "jsonrpc": "2.0", "id": 2, "method": "logging/setLevel",
            "params": {"level": "debug"}})
        counted = await client.post(base_url, headers=headers, json={
            "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
                "name": "slow_count", "arguments": {"to": 3, "delay": 0},
                "_meta": {"progressToken": "p"}}})
        assert counted.headers["content-type"].startswith("text/event-stream")
        messages = sse_messages(counted.text)
        methods = [m.get("method", "response") for m in messages]
        assert methods.count("notifications/progress") == 3
        assert methods.count("notifications/message") == 3
        assert messages[-1]["id"] == 3
        assert messages[-1]["result"]["content"][0]["text"] == "counted to 3"


async def test_legacy_session_rules(base_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        missing = await client.post(base_url, headers=ACCEPT, json=ping)
        assert missing.status_code == 400
        unknown = await client.post(base_url, headers={**ACCEPT, "Mcp-Session-Id": "nope"},
                                    json=ping)
        assert unknown.status_code == 404
        headers = await legacy_session(client, base_url)
        wrong_version = await client.post(
            base_url, headers={**headers, "MCP-Protocol-Version": "1999-01-01"}, json=ping)
        assert wrong_version.status_code == 400
        assert (await client.post(base_url, headers=headers, json=ping)).json()["result"] == {}
        ended = await client.delete(base_url, headers=headers)
        assert ended.status_code == 200
        gone = await client.post(base_url, headers=headers, json=ping)
        assert gone.status_code == 404


async def test_http_level_refusals(base_url: str) -> None:
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "x", "version": "1"}}}
    async with httpx.AsyncClient(timeout=10) as client:
        evil_origin = await client.post(base_url, headers={
            **ACCEPT, "Origin": "http://evil.example.com"}, json=init)
        assert evil_origin.status_code == 403
        evil_host = await client.post(base_url, headers={
            **ACCEPT, "Host": "evil.example.com"}, json=init)
        assert evil_host.status_code == 421
        local = await client.post(base_url, headers={
            **ACCEPT, "Origin": "http://localhost:5173"}, json=init)
        assert local.status_code == 200
        only_json = await client.post(base_url, headers={
            "Accept": "application/json", "Content-Type": "application/json"}, json=init)
        assert only_json.status_code == 406
        text = await client.post(base_url, headers={**ACCEPT, "Content-Type": "text/plain"},
                                 content=b"{}")
        assert text.status_code == 415
        broken = await client.post(base_url, headers=ACCEPT, content=b"{not json")
        assert broken.status_code == 400 and broken.json()["error"]["code"] == -32700
        huge = await client.post(base_url, headers=ACCEPT,
                                 content=b'{"pad": "' + b"x" * (5 << 20) + b'"}')
        assert huge.status_code == 413
        bad_id = await client.post(base_url, headers=ACCEPT, json={
            "jsonrpc": "2.0", "id": None, "method": "ping"})
        assert bad_id.status_code == 400 and bad_id.json()["error"]["code"] == -32600
        assert (await client.put(base_url, headers=ACCEPT)).status_code == 405
        assert (await client.get(base_url, headers=ACCEPT)).status_code == 405


async def test_standalone_get_stream_carries_unrelated_notifications(base_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        headers = await legacy_session(client, base_url)
        await client.post(base_url, headers=headers, json={
            "jsonrpc": "2.0", "id": 1, "method": "resources/subscribe",
            "params": {"uri": "notes://todo"}})
        received: list[dict[str, Any]] = []
        async with client.stream("GET", base_url, headers=headers) as stream:
            assert stream.status_code == 200
            second = await client.get(base_url, headers=headers)
            assert second.status_code == 409
            await client.post(base_url, headers=headers, json={
                "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "add_note", "arguments": {"name": "todo", "body": "b"}}})
            with anyio.fail_after(5):
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        received.append(orjson.loads(line[5:]))
                        break
        assert received == [{"jsonrpc": "2.0", "method": "notifications/resources/updated",
                             "params": {"uri": "notes://todo"}}]


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {**ACCEPT, "MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


def modern(rid: int, method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": {"_meta": META, **params}}


async def test_modern_requests_are_stateless(base_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        found = await client.post(base_url, headers=modern_headers("server/discover"),
                                  json=modern(1, "server/discover"))
        assert found.status_code == 200 and "mcp-session-id" not in found.headers
        assert found.json()["result"]["supportedVersions"] == [MODERN]
        call = await client.post(base_url, headers=modern_headers("tools/call", "echo"),
                                 json=modern(2, "tools/call", name="echo",
                                             arguments={"text": "stateless"}))
        result = call.json()["result"]
        assert result["content"][0]["text"] == "stateless" and result["resultType"] == "complete"
        encoded = "=?base64?" + base64.b64encode(b"notes://welcome").decode() + "?="
        read = await client.post(base_url, headers=modern_headers("resources/read", encoded),
                                 json=modern(3, "resources/read", uri="notes://welcome"))
        assert read.json()["result"]["contents"][0]["text"] == "Welcome to Mobius RPC."
        missing = await client.post(base_url,
                                    headers=modern_headers("resources/read", "notes://none"),
                                    json=modern(4, "resources/read", uri="notes://none"))
        assert missing.status_code == 400 and missing.json()["error"]["code"] == -32602


@pytest.mark.parametrize("headers, code, status", [
    (modern_headers("tools/list", "echo"), -32020, 400),       # Mcp-Method differs
    (modern_headers("tools/call", "other"), -32020, 400),      # Mcp-Name differs
    ({**ACCEPT, "MCP-Protocol-Version": MODERN}, -32020, 400),  # Mcp-Method missing
])
async def test_modern_header_mismatches(base_url: str, headers: dict[str, str], code: int,
                                        status: int) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.post(base_url, headers=headers, json=modern(
            1, "tools/call", name="echo", arguments={"text": "x"}))
        assert reply.status_code == status and reply.json()["error"]["code"] == code


async def test_modern_errors_carry_http_statuses(base_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        future = {**META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
        unsupported = await client.post(
            base_url,
            headers={**modern_headers("tools/list"), "MCP-Protocol-Version": "2099-01-01"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": future}})
        assert unsupported.status_code == 400
        assert unsupported.json()["error"]["data"]["supported"] == [MODERN]
        no_meta = await client.post(base_url, headers=modern_headers("tools/list"),
                                    json={"jsonrpc": "2.0", "id": 2, "method": "tools/list",
                                          "params": {}})
        assert no_meta.status_code == 400 and no_meta.json()["error"]["code"] == -32602
        unknown = await client.post(base_url, headers=modern_headers("nope/nothing"),
                                    json=modern(3, "nope/nothing"))
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == -32601


async def test_modern_mrtr_and_request_scoped_sse(base_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        first = await client.post(base_url, headers=modern_headers("tools/call", "ask_user"),
                                  json=modern(1, "tools/call", name="ask_user",
                                              arguments={"question": "name?"}))
        needed = first.json()["result"]
        assert needed["resultType"] == "input_required"
        (key,) = needed["inputRequests"]
        retry = await client.post(base_url, headers=modern_headers("tools/call", "ask_user"),
                                  json=modern(2, "tools/call", name="ask_user",
                                              arguments={"question": "name?"},
                                              inputResponses={key: {"action": "accept",
                                                                    "content": {"name": "Al"}}},
                                              requestState=needed["requestState"]))
        assert retry.json()["result"]["content"][0]["text"] == "hello Al, you like blue"
        meta = {**META, "progressToken": 7, "io.modelcontextprotocol/logLevel": "debug"}
        counted = await client.post(
            base_url, headers=modern_headers("tools/call", "slow_count"),
            json={"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
                "_meta": meta, "name": "slow_count", "arguments": {"to": 2, "delay": 0}}})
        assert counted.headers["content-type"].startswith("text/event-stream")
        messages = sse_messages(counted.text)
        assert [m.get("method") for m in messages[:-1]].count("notifications/progress") == 2
        assert messages[-1]["result"]["content"][0]["text"] == "counted to 2"


async def test_bodies_sent_in_chunks_are_joined_and_limited() -> None:
    # Without Content-Length (chunked transfer) the body reaches the app in
    # several pieces: they are joined, and the size limit still holds.
    async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start:start + size]
            await anyio.sleep(0.01)  # arrive separately

    call = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "echo", "arguments": {"text": "x" * 1500}, "_meta": META}})
    modern = {**ACCEPT, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call",
              "Mcp-Name": "echo"}
    async with serve_asgi(build_demo_server().http_app(max_body_bytes=4096)) as base:
        url = f"http://{base}/mcp"
        async with httpx.AsyncClient(timeout=10) as client:
            joined = await client.post(url, headers=modern, content=pieces(call, 500))
            assert joined.status_code == 200, joined.text
            assert joined.json()["result"]["content"][0]["text"] == "x" * 1500
            too_big = orjson.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                    "params": {"name": "echo", "arguments": {"text": "x" * 5000},
                                               "_meta": META}})
            refused = await client.post(url, headers=modern, content=pieces(too_big, 1000))
            assert refused.status_code == 413
            whole = await client.post(url, headers=modern, content=too_big)  # Content-Length
            assert whole.status_code == 413


async def test_a_batch_where_none_is_accepted_is_refused_not_left_waiting(base_url: str) -> None:
    # Only 2025-03-26 has batches. Elsewhere the whole body is refused with a
    # 400 and an id-less -32600, instead of a POST waiting for answers.
    batch = [{"jsonrpc": "2.0", "id": 5, "method": "ping"},
             {"jsonrpc": "2.0", "id": 6, "method": "tools/list"}]
    modern = {**ACCEPT, "MCP-Protocol-Version": MODERN, "Mcp-Method": "ping"}
    async with httpx.AsyncClient(timeout=10) as client:
        with anyio.fail_after(10):
            headers = await legacy_session(client, base_url, "2025-11-25")
            refused = await client.post(base_url, headers=headers, json=batch)
            assert refused.status_code == 400
            assert refused.json()["id"] is None
            assert refused.json()["error"]["code"] == -32600
            stateless = await client.post(base_url, headers=modern, json=batch)
            assert stateless.status_code == 400
            assert stateless.json()["error"]["code"] == -32600
            old = await legacy_session(client, base_url, "2025-03-26")
            accepted = await client.post(base_url, headers=old, json=batch)
            assert accepted.status_code == 200
            assert sorted(reply["id"] for reply in accepted.json()) == [5, 6]


async def test_body_reading_joins_chunks_and_enforces_the_limit() -> None:
    # The ASGI side of it, without a server: whatever the pieces, the body is
    # joined, and the limit holds with or without Content-Length.
    from starlette.requests import ClientDisconnect

    from mobius_rpc.framing.http import HttpRefusal

    transport = build_demo_server().http_app(max_body_bytes=10)

    def receiving(*messages: dict[str, Any]) -> Any:
        queue = list(messages)

        async def receive() -> dict[str, Any]:
            return queue.pop(0)
        return receive

    def piece(body: bytes, more: bool) -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": more}

    assert await transport._read_body({}, receiving(piece(b"0123456789", False))) == b"0123456789"
    assert await transport._read_body({}, receiving(
        piece(b"01", True), piece(b"", True), piece(b"234", False))) == b"01234"
    for messages in ([piece(b"0123456789A", False)],  # one piece, no Content-Length
                     [piece(b"012345", True), piece(b"6789A", False)]):
        with pytest.raises(HttpRefusal) as refused:
            await transport._read_body({}, receiving(*messages))
        assert refused.value.status == 413
    with pytest.raises(HttpRefusal):
        await transport._read_body({"content-length": "11"}, receiving())
    with pytest.raises(ClientDisconnect):
        await transport._read_body({}, receiving(piece(b"01", True), {"type": "http.disconnect"}))


async def test_a_body_too_deep_is_refused_in_both_eras(base_url: str) -> None:
    # Refused before it is read (the nesting limit): a 400 with an id-less
    # -32600, never a POST waiting for an answer that does not come.
    arguments: Any = "x"
    for _ in range(80):
        arguments = {"k": arguments}
    deep = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": arguments}}}
    modern = {**ACCEPT, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call",
              "Mcp-Name": "echo"}
    async with httpx.AsyncClient(timeout=10) as client:
        with anyio.fail_after(10):
            headers = await legacy_session(client, base_url)
            legacy = await client.post(base_url, headers=headers, json=deep)
            stateless = await client.post(base_url, headers=modern, json={
                **deep, "params": {**deep["params"], "_meta": META}})
        for reply in (legacy, stateless):
            assert reply.status_code == 400
            assert reply.json()["id"] is None and reply.json()["error"]["code"] == -32600
