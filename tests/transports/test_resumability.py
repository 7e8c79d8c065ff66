"""SSE resumability: a client drops a POST stream anywhere and resumes with
Last-Event-ID; together the two streams carry every event exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobius_rpc.demo import build_demo_server

from ..conftest import serve_in_thread

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
STEPS = 6  # slow_count to=6 with a progress token: 6 progress events, then the result


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_in_thread(build_demo_server().http_app()) as base:
        yield f"{base}/mcp"

def session(client: httpx.Client, url: str) -> dict[str, str]:
    reply = client.post(url, headers=ACCEPT, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "resume", "version": "1"}}})
    headers = {**ACCEPT, "Mcp-Session-Id": reply.headers["mcp-session-id"],
               "MCP-Protocol-Version": "2025-11-25"}
    client.post(url, headers=headers, json={"jsonrpc": "2.0",
                                            "method": "notifications/initialized"})
    return headers


def events(lines: Iterator[str]) -> Iterator[tuple[str | None, str, int | None]]:
    """(id, data, retry) per SSE event, skipping comments (keep-alives)."""
    event_id: str | None = None
    data: list[str] = []
    retry: int | None = None
    for line in lines:
        if line == "":
            if event_id is not None or data:
                yield event_id, "\n".join(data), retry
            event_id, data, retry = None, [], None
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line.startswith("retry:"):
            retry = int(line[6:].strip())


def call(rid: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {
        "name": "slow_count", "arguments": {"to": STEPS, "delay": 0.02},
        "_meta": {"progressToken": f"t{rid}"}}}


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drop_after=st.integers(0, STEPS))
def test_drop_anywhere_and_resume_without_loss_or_duplicates(url: str, drop_after: int) -> None:
    with httpx.Client(timeout=10) as client:
        headers = session(client, url)
        seen: list[dict[str, Any]] = []
        last_id = None
        primed = False
        with client.stream("POST", url, headers=headers, json=call(7)) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for event_id, data, retry in events(stream.iter_lines()):
                last_id = event_id or last_id
                if not data:  # the priming event: an id, a retry hint, no data
                    assert retry is not None and retry > 0 and not seen
                    primed = True
                    if drop_after == 0:
                        break
                    continue
                seen.append(orjson.loads(data))
                if len(seen) >= drop_after:
                    break  # the client loses the stream here
        assert last_id is not None and primed
        if seen and "result" in seen[-1]:
            resumed: list[dict[str, Any]] = []
        else:
            with client.stream("GET", url, headers={**headers,
                                                     "Last-Event-ID": last_id}) as again:
                assert again.status_code == 200
                resumed = []
                for _, data, _ in events(again.iter_lines()):
                    if data:
                        resumed.append(orjson.loads(data))
                        if "result" in resumed[-1]:
                            break
        everything = seen + resumed
        progress = [m["params"]["progress"] for m in everything
                    if m.get("method") == "notifications/progress"]
        assert progress == list(range(1, STEPS + 1))  # none lost, none twice, in order
        assert everything[-1]["id"] == 7
        assert everything[-1]["result"]["content"][0]["text"] == f"counted to {STEPS}"


def test_resume_refusals(url: str) -> None:
    with httpx.Client(timeout=10) as client:
        headers = session(client, url)
        other = session(client, url)
        with client.stream("POST", url, headers=headers, json=call(1)) as stream:
            first_id = next(e for e in events(stream.iter_lines()))[0]
        assert first_id is not None
        foreign = client.get(url, headers={**other, "Last-Event-ID": first_id})
        assert foreign.status_code == 400  # another session's stream
        bogus = client.get(url, headers={**headers, "Last-Event-ID": "nonsense"})
        assert bogus.status_code == 400
