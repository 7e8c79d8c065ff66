"""``Mcp-Param-*`` headers (x-mcp-header): annotation rules, encoding, the server's
check on a real uvicorn server, and a client that mirrors annotated arguments."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobius_rpc import Param, Server
from mobius_rpc.framing.http import HttpRefusal, decode_header_value
from mobius_rpc.framing.param_headers import (
    InvalidHeaderAnnotation,
    check_param_headers,
    encode_param_value,
    header_parameters,
)
from mobius_rpc.transports.http_client import StreamableHTTPClientStream
from tests.conftest import client_on, serve_asgi
from tests.transports.test_streamable_http import modern, modern_headers

MODERN = "2026-07-28"


def schema(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


@pytest.mark.parametrize("bad", [
    schema(value={"type": "string", "x-mcp-header": ""}),
    schema(data={"type": "object", "x-mcp-header": "Data"}),
    schema(items={"type": "array", "items": {"type": "string"}, "x-mcp-header": "Items"}),
    schema(nil={"type": "null", "x-mcp-header": "Nil"}),
    schema(score={"type": "number", "x-mcp-header": "Score"}),
    schema(a={"type": "string", "x-mcp-header": "Region"},
           b={"type": "string", "x-mcp-header": "Region"}),
    schema(a={"type": "string", "x-mcp-header": "MyField"},
           b={"type": "string", "x-mcp-header": "myfield"}),
    schema(value={"type": "string", "x-mcp-header": "My Region"}),
    schema(value={"type": "string", "x-mcp-header": "Region:Primary"}),
    schema(value={"type": "string", "x-mcp-header": "Région"}),
    schema(value={"type": "string", "x-mcp-header": "Region\t1"}),
    schema(value={"type": "string", "x-mcp-header": 7}),
    schema(value={"type": "string", "x-mcp-header": "Region\n"}),
], ids=["empty", "object", "array", "null", "number", "duplicate", "duplicate-case", "space",
        "colon", "non-ascii", "control", "not-text", "trailing-newline"])
def test_malformed_annotations_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidHeaderAnnotation):
        header_parameters(bad)


def test_valid_annotations_are_read() -> None:
    found = header_parameters(schema(
        region={"type": "string", "x-mcp-header": "Region"},
        priority={"type": "integer", "x-mcp-header": "Priority"},
        verbose={"anyOf": [{"type": "boolean"}, {"type": "null"}], "x-mcp-header": "Verbose"},
        query={"type": "string"}))
    assert found == {"region": "Region", "priority": "Priority", "verbose": "Verbose"}
    assert header_parameters(None) == {} and header_parameters({"type": "object"}) == {}


def test_encoding_of_values() -> None:
    assert encode_param_value("us-west1") == "us-west1"
    assert encode_param_value("a b") == "a b"  # internal spaces travel as they are
    assert encode_param_value(42) == "42" and encode_param_value(True) == "true"
    assert encode_param_value(None) is None and encode_param_value({"x": 1}) is None
    for unsafe in (" lead", "trail ", "\ttab", "é", "line\r\nbreak", "\x01", "=?base64?x?=",
                   "\n", "end\n"):
        encoded = encode_param_value(unsafe)
        assert encoded is not None and encoded.startswith("=?base64?")
        assert decode_header_value(encoded) == unsafe


@given(st.text())
def test_any_text_survives_the_header(text: str) -> None:
    encoded = encode_param_value(text)
    assert encoded is not None and encoded.isascii() and encoded == encoded.strip()
    assert not any(ord(c) < 32 or ord(c) == 127 for c in encoded)
    assert decode_header_value(encoded) == text


PARAMS = {"region": "Region", "priority": "Priority"}


@pytest.mark.parametrize("headers, arguments", [
    ({"mcp-param-region": "eu"}, {"region": "eu"}),
    ({"mcp-param-region": "  eu  "}, {"region": "eu"}),  # optional whitespace is not data
    ({"mcp-param-region": "=?base64?ZXU=?="}, {"region": "eu"}),
    ({"mcp-param-region": "eu", "mcp-param-priority": "3"}, {"region": "eu", "priority": 3}),
    ({}, {}),
    ({}, {"region": None}),
])
def test_matching_headers_pass(headers: dict[str, str], arguments: dict[str, Any]) -> None:
    check_param_headers(headers, arguments, PARAMS)


@pytest.mark.parametrize("headers, arguments", [
    ({}, {"region": "eu"}),                                       # header missing
    ({"mcp-param-region": "us"}, {"region": "eu"}),               # value differs
    ({"mcp-param-region": "EU"}, {"region": "eu"}),               # values are case-sensitive
    ({"mcp-param-region": "=?base64?ZXU?="}, {"region": "eu"}),   # bad padding
    ({"mcp-param-region": "=?base64?ZX!!U=?="}, {"region": "eu"}),  # not base64: literal
    ({"mcp-param-region": "eu", "mcp-param-priority": "4"}, {"region": "eu", "priority": 3}),
    ({"mcp-param-region": "eu"}, {}),                             # header without argument
])
def test_disagreeing_headers_are_refused(headers: dict[str, str],
                                         arguments: dict[str, Any]) -> None:
    with pytest.raises(HttpRefusal) as caught:
        check_param_headers(headers, arguments, PARAMS)
    assert caught.value.status == 400 and caught.value.error is not None
    assert caught.value.error.code == -32020


def test_server_refuses_a_tool_with_a_malformed_annotation() -> None:
    server = Server("bad")
    with pytest.raises(ValueError, match="x-mcp-header"):
        @server.tool()
        def score(points: Annotated[float, Param(header="Score")]) -> float:
            return points


def routed_server() -> Server:
    server = Server("routed", version="1")

    @server.tool()
    def place(region: Annotated[str, Param(header="Region")], note: str,
              priority: Annotated[int, Param(header="Priority")] = 0) -> str:
        """Echo where an order goes."""
        return f"{region}/{priority}/{note}"

    return server


@pytest.fixture
async def routed_url() -> AsyncIterator[str]:
    async with serve_asgi(routed_server().http_app()) as base:
        yield f"http://{base}/mcp"


def call(arguments: dict[str, Any]) -> dict[str, Any]:
    return modern(1, "tools/call", name="place", arguments=arguments)


@pytest.mark.anyio
async def test_server_checks_param_headers_over_http(routed_url: str) -> None:
    base = modern_headers("tools/call", "place")
    good = {"region": "eu west", "note": "n", "priority": 2}
    async with httpx.AsyncClient(timeout=10) as client:
        ok = await client.post(routed_url, json=call(good), headers={
            **base, "Mcp-Param-Region": "eu west", "Mcp-Param-Priority": "2"})
        assert ok.status_code == 200
        assert ok.json()["result"]["content"][0]["text"] == "eu west/2/n"
        encoded = "=?base64?" + base64.b64encode("ü".encode()).decode() + "?="
        unicode = await client.post(routed_url, json=call({"region": "ü", "note": "n"}),
                                    headers={**base, "Mcp-Param-Region": encoded})
        assert unicode.status_code == 200
        for headers in ({**base, "Mcp-Param-Priority": "2"},
                        {**base, "Mcp-Param-Region": "eu", "Mcp-Param-Priority": "2"}):
            refused = await client.post(routed_url, json=call(good), headers=headers)
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == -32020
            assert refused.json()["id"] == 1


@pytest.mark.anyio
async def test_client_stream_mirrors_annotated_arguments(routed_url: str) -> None:
    """Our client learns the annotations from tools/list and sends matching headers,
    base64 where the value needs it; the server's check accepts them."""
    async with anyio.create_task_group() as tg:
        stream = StreamableHTTPClientStream(routed_url, tg)
        async with client_on(stream, tg, MODERN) as session:
            await session.request("tools/list", {})
            for region in ("eu", " padded ", "Zürich", "=?base64?x?="):
                result = await session.request("tools/call", {
                    "name": "place", "arguments": {"region": region, "note": "n",
                                                   "priority": 7}})
                assert result["content"][0]["text"] == f"{region}/7/n"
