"""End of input on stdio: what was received before it is answered, then the process exits 0.

Real subprocesses on both sides: a host that pipes its requests and closes
stdin must get an answer to each one (within ``Limits.end_of_input_grace``),
and a client of ours whose server closes its stdout still answers the
requests that server sent.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from mobius_rpc.client import Client, StdioTarget
from mobius_rpc.core.errors import ConnectionClosedError

HELPER = str(Path(__file__).with_name("eof_servers.py"))


def _init(revision: str = "2025-06-18") -> list[dict[str, Any]]:
    return [{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": revision, "capabilities": {},
                "clientInfo": {"name": "pipe", "version": "0"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"}]


def _calls(count: int, ms: int) -> list[dict[str, Any]]:
    return [{"jsonrpc": "2.0", "id": n, "method": "tools/call",
             "params": {"name": "nap", "arguments": {"ms": ms}}} for n in range(1, count + 1)]


def _pipe(messages: list[dict[str, Any]], grace: float = 10.0,
          timeout: float = 60.0) -> tuple[int, dict[Any, dict[str, Any]], float]:
    """Write every message and close stdin at once; the exit status, answers by id and
    how long the process took to exit after its stdin closed."""
    payload = b"".join(orjson.dumps(message) + b"\n" for message in messages)
    proc = subprocess.Popen([sys.executable, HELPER, "mobius", str(grace)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    started = time.monotonic()
    out, err = proc.communicate(payload, timeout=timeout)
    took = time.monotonic() - started
    answers: dict[Any, dict[str, Any]] = {}
    for line in out.splitlines():
        message = orjson.loads(line)
        assert message["id"] not in answers, f"answered twice: {message}"
        answers[message["id"]] = message
    assert b"Traceback" not in err, err.decode()
    return proc.returncode, answers, took


def test_slow_calls_piped_then_eof_are_all_answered() -> None:
    code, answers, _ = _pipe(_init() + _calls(5, 200))
    assert code == 0
    assert sorted(answers) == [0, 1, 2, 3, 4, 5]
    for n in range(1, 6):
        assert answers[n]["result"]["content"] == [{"type": "text", "text": "slept 200 ms"}]


def test_many_fast_calls_piped_then_eof_are_all_answered() -> None:
    code, answers, _ = _pipe(_init() + _calls(200, 0))
    assert code == 0
    assert sorted(answers) == list(range(201))
    assert all("result" in answers[n] for n in range(1, 201))


def test_a_call_outliving_the_grace_period_is_cancelled_and_answered_with_an_error() -> None:
    code, answers, took = _pipe(_init() + _calls(1, 0) + [
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "nap", "arguments": {"ms": 60_000}}}], grace=0.5)
    assert code == 0
    assert answers[1]["result"]["content"][0]["text"] == "slept 0 ms"
    error = answers[2]["error"]
    assert error["code"] == -32603
    assert "grace period of 0.5 s" in error["message"]
    assert took < 30  # nowhere near the 60 s the call would have taken


def test_modern_requests_piped_then_eof_are_all_answered() -> None:
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "pipe", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    calls = _calls(3, 200)
    for call in calls:
        call["params"]["_meta"] = meta
    code, answers, _ = _pipe(calls)
    assert code == 0
    assert sorted(answers) == [1, 2, 3]
    assert all(answers[n]["result"]["content"][0]["text"] == "slept 200 ms" for n in (1, 2, 3))


@pytest.mark.anyio
async def test_our_client_answers_its_server_after_the_server_closed_its_stdout(
        tmp_path: Path) -> None:
    out = tmp_path / "received.jsonl"

    async def sampling(params: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(0.2)  # still running when the server's stdout ends
        return {"role": "assistant", "content": {"type": "text", "text": "late"},
                "model": "test"}

    client = Client(StdioTarget(sys.executable, (HELPER, "closes-stdout", str(out))),
                    revision="2025-06-18", sampling=sampling)
    async with client:
        with anyio.fail_after(20):
            while not out.exists() or not out.read_text().strip():
                await anyio.sleep(0.05)
        with pytest.raises(ConnectionClosedError):
            await client.list_tools()  # nothing can answer it any more: fails at once
    answer = orjson.loads(out.read_text().splitlines()[0])
    assert answer["id"] == "s1"
    assert answer["result"]["content"]["text"] == "late"
