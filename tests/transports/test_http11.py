"""The lean HTTP/1.1 client (transports/http11.py) against a real uvicorn on 127.0.0.1:
keep-alive reuse, a server that closes, SSE answers chunked and read to the close,
limits on headers and bodies, redirects not followed, TLS."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobius_rpc import Server
from mobius_rpc.client import Client, HttpTarget
from mobius_rpc.transports.http11 import (
    Headers,
    Http11Client,
    Http11Response,
    ProtocolError,
    ReadError,
    _Connection,
)
from mobius_rpc.transports.http_client import StreamableHTTPClientStream
from tests.conftest import serve_asgi

pytestmark = pytest.mark.anyio


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A few answers of the shapes the client must take or refuse."""
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]
            await send({"type": f"{kind}.complete"})
            if kind == "lifespan.shutdown":
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    headers: list[tuple[bytes, bytes]] = []
    if path == "/json":
        payload = orjson.dumps({"method": scope["method"], "body": body.decode(),
                                "query": scope["query_string"].decode()})
        headers = [(b"content-type", b"application/json")]
        if "close" in scope["query_string"].decode():
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
    elif path == "/sse":  # chunked: the body comes in pieces, split mid-line and mid-CRLF
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for piece in (b"id: 1\r\ndata: {\"a\"", b": 1}\r", b"\n\r\n", b"data: two\n\n",
                      b"event: x\rdata: three\r\r"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await anyio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/redirect":
        await send({"type": "http.response.start", "status": 307,
                    "headers": [(b"location", b"/json"), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/big-headers":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-big", b"a" * 70_000), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/big-body":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"x" * 300_000})
    else:
        await send({"type": "http.response.start", "status": 404,
                    "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def serve(application: Any, **config: Any) -> AsyncIterator[str]:
    """``application`` on a real uvicorn on 127.0.0.1; yields its base URL."""
    async with serve_asgi(application, **config) as address:
        yield f"{'https' if 'ssl_certfile' in config else 'http'}://{address}"


async def test_keep_alive_reuses_one_connection_and_a_close_is_honoured() -> None:
    async with serve(app) as base:
        client = Http11Client()
        try:
            for i in range(5):
                response, body = await client.request("POST", f"{base}/json?n={i}",
                                                      content=b"hello")
                assert response.status_code == 200
                assert orjson.loads(body) == {"method": "POST", "body": "hello",
                                              "query": f"n={i}"}
            assert client.connections_opened == 1
            # the server says it closes: the next request needs a new connection
            response, _ = await client.request("GET", f"{base}/json?close")
            assert response.headers["Connection"] == "close" and not response.reusable
            response, body = await client.request("GET", f"{base}/json")
            assert response.status_code == 200 and orjson.loads(body)["method"] == "GET"
            assert client.connections_opened == 2
        finally:
            await client.aclose()


async def test_an_idle_connection_the_server_closed_is_not_used_again() -> None:
    async with serve(app, timeout_keep_alive=1) as base:
        client = Http11Client()
        try:
            response, _ = await client.request("POST", f"{base}/json", content=b"1")
            assert response.status_code == 200
            await anyio.sleep(1.6)  # uvicorn closes the idle connection meanwhile
            response, body = await client.request("POST", f"{base}/json", content=b"2")
            assert response.status_code == 200 and orjson.loads(body)["body"] == "2"
            assert client.connections_opened == 2
        finally:
            await client.aclose()


async def test_concurrent_requests_get_connections_of_their_own() -> None:
    async with serve(app) as base:
        client = Http11Client(max_connections=3)
        bodies: list[str] = []

        async def one(i: int) -> None:
            _, body = await client.request("POST", f"{base}/json", content=str(i).encode())
            bodies.append(orjson.loads(body)["body"])

        try:
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)
            assert sorted(bodies, key=int) == [str(i) for i in range(20)]
            assert client.connections_opened <= 3
        finally:
            await client.aclose()


async def test_event_stream_lines_split_anywhere_come_out_whole() -> None:
    async with serve(app) as base:
        client = Http11Client()
        try:
            async with client.stream("GET", f"{base}/sse") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                lines = [line async for line in response.aiter_lines()]
            assert lines == ["id: 1", 'data: {"a": 1}', "", "data: two", "",
                             "event: x", "data: three", ""]
            assert response.complete
            # the chunked body was read to its end: the connection serves the next one
            response, _ = await client.request("GET", f"{base}/json")
            assert response.status_code == 200 and client.connections_opened == 1
        finally:
            await client.aclose()


async def test_oversized_headers_and_bodies_and_redirects_are_refused() -> None:
    async with serve(app) as base:
        client = Http11Client(max_body_bytes=100_000)
        try:
            with pytest.raises(ProtocolError, match="headers exceed"):
                await client.request("GET", f"{base}/big-headers")
            with pytest.raises(ProtocolError, match="body exceeds"):
                await client.request("GET", f"{base}/big-body")
            response, body = await client.request("POST", f"{base}/redirect", content=b"x")
            assert response.status_code == 307 and body == b""  # not followed
            with pytest.raises(ValueError, match="not allowed"):
                await client.request("GET", f"{base}/json",
                                     headers={"X-Evil": "a\r\nInjected: 1"})
            response, _ = await client.request("GET", f"{base}/json")
            assert response.status_code == 200  # the refusals broke nothing
        finally:
            await client.aclose()


async def test_nothing_listening_is_a_read_error() -> None:
    client = Http11Client()
    with pytest.raises(ReadError, match="cannot connect"):
        await client.request("GET", "http://127.0.0.1:1/mcp")


def _self_signed(directory: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


async def test_https_is_verified_against_the_given_trust(tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    async with serve(app, ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)) as base:
        trusting = Http11Client(ssl_context=ssl.create_default_context(cafile=str(cert_file)))
        try:
            for _ in range(2):
                response, body = await trusting.request("POST", f"{base}/json", content=b"s")
                assert response.status_code == 200 and orjson.loads(body)["body"] == "s"
            assert trusting.connections_opened == 1
        finally:
            await trusting.aclose()
        with pytest.raises(ReadError, match="CERTIFICATE_VERIFY_FAILED"):
            await Http11Client(ssl_context=ssl.create_default_context()).request(
                "GET", f"{base}/json")


async def test_our_client_speaks_streamable_http_through_it() -> None:
    server = Server("lean", version="1")

    @server.tool()
    async def echo(text: str) -> str:
        return text

    async with serve(server.http_app()) as base:
        for revision in ("2025-11-25", "2026-07-28"):
            async with Client(HttpTarget(f"{base}/mcp"), revision=revision) as client:
                stream = client._stream
                assert isinstance(stream, StreamableHTTPClientStream)
                assert isinstance(stream.client, Http11Client)
                async with anyio.create_task_group() as tg:
                    for i in range(8):
                        tg.start_soon(client.call_tool, "echo", {"text": str(i)})
                opened = stream.client.connections_opened
                for _ in range(5):  # one after the other: on connections already open
                    result = await client.call_tool("echo", {"text": "hi"})
                    assert result["content"][0]["text"] == "hi"
                assert stream.client.connections_opened == opened


class _Pieces:
    """A byte stream that hands out given pieces, then ends (decoding only)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self.pieces:
            raise anyio.EndOfStream
        return self.pieces.pop(0)


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\r\n"),
                                  max_size=20),
                      max_size=8),
       ending=st.sampled_from(["\r\n", "\n", "\r"]), cuts=st.lists(st.integers(0, 400)),
       chunked=st.booleans())
def test_any_split_of_a_body_gives_the_same_lines(lines: list[str], ending: str,
                                                  cuts: list[int], chunked: bool) -> None:
    raw = "".join(line + ending for line in lines).encode()
    body = raw
    if chunked:  # chunks of 7 bytes, then the last chunk
        body = b"".join(b"%x\r\n%s\r\n" % (len(raw[i:i + 7]), raw[i:i + 7])
                        for i in range(0, len(raw), 7)) + b"0\r\n\r\n"
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    pieces = [body[a:b] for a, b in zip(points, points[1:], strict=False) if body[a:b]]
    headers = Headers({"transfer-encoding": "chunked"} if chunked else {})

    async def decode() -> list[str]:
        connection = _Connection(_Pieces(pieces))  # type: ignore[arg-type]
        response = Http11Response(connection, 200, headers, True, False, 10_000)
        return [line async for line in response.aiter_lines()]

    assert anyio.run(decode) == lines
