"""The stdio transport against a real ``mobius serve --stdio`` subprocess, byte level."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest

from mobius_rpc.framing.ndjson import LineSplitter, OversizedLine

SERVE = [sys.executable, "-m", "mobius_rpc", "serve", "--stdio"]
INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "raw", "version": "0"}}}


class RawServer:
    """A server subprocess spoken to line by line, with a deadline on every read."""

    def __init__(self, command: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(command or SERVE, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def send(self, data: bytes | dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        raw = data if isinstance(data, bytes) else orjson.dumps(data)
        self.proc.stdin.write(raw + b"\n")
        self.proc.stdin.flush()

    def read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.endswith(b"\n"), f"no complete line (got {line!r})"
        return orjson.loads(line)

    def handshake(self) -> None:
        self.send(INIT)
        assert self.read()["result"]["protocolVersion"] == "2025-06-18"
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def raw() -> Any:
    server = RawServer()
    yield server
    server.close()


def test_malformed_line_gets_parse_error_and_session_continues(raw: RawServer) -> None:
    raw.handshake()
    raw.send(b'{"jsonrpc": "2.0", "id": 1, "method": ')
    error = raw.read()
    assert error["error"]["code"] == -32700 and error["id"] is None
    raw.send(b"\xff\xfe not utf-8")
    assert raw.read()["error"]["code"] == -32700
    raw.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": "echo", "arguments": {"text": "still here"}}})
    assert raw.read()["result"]["content"][0]["text"] == "still here"


def test_oversized_line_is_refused_and_session_continues(raw: RawServer) -> None:
    raw.handshake()
    raw.send(b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "pad": "' + b"x" * (5 << 20) + b'"}')
    error = raw.read()
    assert error["error"]["code"] == -32600 and "size limit" in error["error"]["message"]
    raw.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
    assert raw.read() == {"jsonrpc": "2.0", "id": 2, "result": {}}


def test_messages_spanning_many_reads_and_many_per_read(raw: RawServer) -> None:
    # The pipe is read 64 KiB at a time: a 1 MiB message takes many reads, and a
    # burst of small messages arrives several to a read; both must come out whole.
    raw.handshake()
    text = "".join(chr(0x41 + i % 26) for i in range(1 << 20))
    raw.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
              "params": {"name": "echo", "arguments": {"text": text}}})
    assert raw.read()["result"]["content"][0]["text"] == text
    burst = b"".join(orjson.dumps({"jsonrpc": "2.0", "id": 10 + i, "method": "ping"}) + b"\n"
                     for i in range(1000))
    assert raw.proc.stdin is not None
    raw.proc.stdin.write(burst)
    raw.proc.stdin.flush()
    assert sorted(raw.read()["id"] for _ in range(1000)) == list(range(10, 1010))


def test_stdout_carries_only_protocol_messages(raw: RawServer) -> None:
    raw.handshake()
    raw.send({"jsonrpc": "2.0", "id": 1, "method": "logging/setLevel",
              "params": {"level": "debug"}})
    assert raw.read()["result"] == {}
    raw.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": "slow_count", "arguments": {"to": 3, "delay": 0},
                         "_meta": {"progressToken": "p"}}})
    seen = []
    while True:
        message = raw.read()
        assert message["jsonrpc"] == "2.0"
        seen.append(message.get("method", "response"))
        if message.get("id") == 2:
            break
    assert seen.count("notifications/progress") == 3
    assert seen.count("notifications/message") == 3


def test_clean_exit_when_stdin_closes(raw: RawServer) -> None:
    raw.handshake()
    assert raw.proc.stdin is not None
    raw.proc.stdin.close()
    assert raw.proc.wait(10) == 0


def test_clean_exit_on_sigterm_mid_request(raw: RawServer) -> None:
    raw.handshake()
    raw.send({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
              "params": {"name": "slow_count", "arguments": {"to": 50, "delay": 0.5}}})
    time.sleep(0.3)
    raw.proc.send_signal(signal.SIGTERM)
    assert raw.proc.wait(10) == 0
    assert raw.proc.stderr is not None
    assert b"Traceback" not in raw.proc.stderr.read()


def test_batch_over_stdio_in_2025_03_26(raw: RawServer) -> None:
    raw.send({**INIT, "params": {**INIT["params"], "protocolVersion": "2025-03-26"}})
    assert raw.read()["result"]["protocolVersion"] == "2025-03-26"
    raw.send(b'[{"jsonrpc":"2.0","method":"notifications/initialized"},'
             b'{"jsonrpc":"2.0","id":1,"method":"ping"},'
             b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo",'
             b'"arguments":{"text":"b"}}}]')
    batch = raw.read()
    assert isinstance(batch, list) and sorted(r["id"] for r in batch) == [1, 2]
    raw.send(b"[]")
    assert raw.read()["error"]["code"] == -32600


class TestLineSplitter:
    def test_chunks_crlf_and_blank_lines(self) -> None:
        splitter = LineSplitter(100)
        assert splitter.feed(b'{"a"') == []
        assert splitter.feed(b':1}\r\n\n{"b":2}\n{"c"') == [b'{"a":1}', b'{"b":2}']
        assert splitter.pending_bytes() == 4

    def test_oversized_line_is_skipped_once(self) -> None:
        splitter = LineSplitter(10)
        out = splitter.feed(b"x" * 8)
        out += splitter.feed(b"y" * 8)
        out += splitter.feed(b"zz\nok\n")
        assert out == [OversizedLine(18), b"ok"]
        assert splitter.pending_bytes() == 0


MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
               "io.modelcontextprotocol/clientCapabilities": {}}


def test_era_restricted_servers_over_stdio() -> None:
    modern_only = RawServer(SERVE + ["--era", "modern"])
    legacy_only = RawServer(SERVE + ["--era", "legacy"])
    try:
        modern_only.send(INIT)
        error = modern_only.read()["error"]
        assert error["code"] == -32022 and error["data"]["supported"] == ["2026-07-28"]
        modern_only.send({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                          "params": {"_meta": MODERN_META}})
        assert modern_only.read()["result"]["supportedVersions"] == ["2026-07-28"]
        legacy_only.send({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                          "params": {"_meta": MODERN_META}})
        assert legacy_only.read()["error"]["code"] == -32601
        legacy_only.handshake()
    finally:
        modern_only.close()
        legacy_only.close()


@pytest.mark.parametrize(("era", "code"), [("both", -32602), ("legacy", -32600)])
def test_a_first_request_without_meta_or_initialize(era: str, code: int) -> None:
    server = RawServer(SERVE + ["--era", era])
    try:
        server.send({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {}})
        reply = server.read()
        assert reply["id"] == 4 and reply["error"]["code"] == code
        assert "'initialize'" in reply["error"]["message"]
    finally:
        server.close()
