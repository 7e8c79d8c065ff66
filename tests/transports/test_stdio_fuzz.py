"""Hypothesis against a real ``mobius serve --stdio`` process.

One server process takes every generated line (malformed JSON, wrong types,
unknown methods, oversized and deeply nested messages, batches) followed by a
``ping``.  Whatever the line was, the server must answer it correctly (a
standard JSON-RPC error, or a result) and then answer the ping: it never
crashes, hangs or goes silent.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.test_robustness import STANDARD_CODES, raw_inputs

SERVE = [sys.executable, "-m", "mobius_rpc", "serve", "--fixture", "demo", "--stdio"]


class LineServer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(SERVE, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.counter = 0
        self.buffer = b""

    def send(self, raw: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(raw.replace(b"\n", b" ") + b"\n")
        self.proc.stdin.flush()

    def read(self, timeout: float = 10.0) -> Any:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([fd], [], [], timeout)
            assert ready, "the server went silent"
            chunk = os.read(fd, 1 << 16)
            assert chunk, f"the server exited (code {self.proc.poll()})"
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return orjson.loads(line)


@pytest.fixture(scope="module")
def server() -> Iterator[LineServer]:
    srv = LineServer()
    srv.send(orjson.dumps({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "fuzz", "version": "0"}}}))
    assert srv.read()["id"] == "init"
    srv.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    yield srv
    assert srv.proc.stdin is not None
    srv.proc.stdin.close()
    assert srv.proc.wait(10) == 0
    for stream in (srv.proc.stdout,):
        if stream is not None:
            stream.close()


def check(reply: Any) -> None:
    assert reply["jsonrpc"] == "2.0"
    if "error" in reply:
        assert reply["error"]["code"] in STANDARD_CODES | {-32002}, reply


@settings(max_examples=400, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=raw_inputs | st.just(b'{"jsonrpc":"2.0","id":"x","method":"tools/call",'
                                b'"params":{"name":"echo","arguments":{"text":5}}}'))
def test_every_line_is_answered_and_the_server_survives(server: LineServer, raw: bytes) -> None:
    server.counter += 1
    probe = f"probe-{server.counter}"
    server.send(raw)
    server.send(orjson.dumps({"jsonrpc": "2.0", "id": probe, "method": "ping"}))
    while True:
        reply = server.read()
        for item in reply if isinstance(reply, list) else [reply]:
            check(item)
        if isinstance(reply, dict) and reply.get("id") == probe:
            assert reply["result"] == {}
            break
