"""A raw Streamable HTTP client for the replica tests: every request on a new
connection (so a per-connection round robin alternates them), SSE read event by
event with its id, so a test can drop a stream midway and resume it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
CAPABILITIES = {"sampling": {}, "elicitation": {}, "roots": {"listChanged": True}}


@dataclass
class SseEvent:
    id: str | None
    data: Any  # the decoded JSON message (None for an event without data)


async def sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    event_id: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data or event_id is not None:
                text = "\n".join(data)
                yield SseEvent(event_id, orjson.loads(text) if text else None)
            event_id, data = None, []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


@dataclass
class LegacyClient:
    url: str
    client: httpx.AsyncClient
    headers: dict[str, str] = field(default_factory=dict)
    next_id: int = 1

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        self.next_id += 1
        if params is not None:
            message["params"] = params
        return message

    async def initialize(self, version: str = "2025-11-25") -> None:
        reply = await self.client.post(self.url, headers=ACCEPT, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": version, "capabilities": CAPABILITIES,
                "clientInfo": {"name": "replica-test", "version": "1"}}})
        assert reply.status_code == 200, reply.text
        self.headers = {**ACCEPT, "Mcp-Session-Id": reply.headers["mcp-session-id"],
                        "MCP-Protocol-Version": version}
        note = await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert note.status_code == 202, note.text

    async def send(self, message: Any) -> httpx.Response:
        """POST a message that is answered as a whole (JSON, or 202)."""
        return await self.client.post(self.url, headers=self.headers, content=orjson.dumps(
            message))

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One request answered with JSON: its result."""
        reply = await self.send(self.request(method, params))
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert "result" in body, body
        return body["result"]

    @asynccontextmanager
    async def stream(self, message: Any) -> AsyncIterator[AsyncIterator[SseEvent]]:
        """POST a message answered with an SSE stream; the events as they come."""
        async with self.client.stream("POST", self.url, headers=self.headers,
                                      content=orjson.dumps(message)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            yield sse_events(response)

    @asynccontextmanager
    async def get(self, last_event_id: str | None = None
                  ) -> AsyncIterator[AsyncIterator[SseEvent]]:
        headers = {**self.headers, "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        async with self.client.stream("GET", self.url, headers=headers) as response:
            assert response.status_code == 200, (await response.aread())
            yield sse_events(response)


def fresh_connections(timeout: float = 20) -> httpx.AsyncClient:
    """An httpx client that opens a new connection for every request."""
    return httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0))
