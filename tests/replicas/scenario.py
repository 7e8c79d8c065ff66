"""The session the replica tests run: every kind of exchange that spans requests.

``turns()`` lists, for every HTTP request (or connection) so far, the index of
the replica that got it: the scenario checks that consecutive requests really
went to different replicas where it matters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio
import httpx

from .kit import LegacyClient, SseEvent


async def next_message(events: AsyncIterator[SseEvent]) -> SseEvent:
    with anyio.fail_after(10):
        async for event in events:
            if event.data is not None:
                return event
    raise AssertionError("the stream ended")


async def scenario(client: LegacyClient, http: httpx.AsyncClient,
                   turns: Callable[[], list[int]]) -> None:
    url = client.url
    await client.initialize()  # initialize on a, initialized on b
    echoed = await client.call("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
    assert echoed["content"][0]["text"] == "hi"
    await client.call("logging/setLevel", {"level": "error"})
    await client.call("resources/subscribe", {"uri": "notes://n1"})
    assert turns() == [0, 1, 0, 1, 0]

    # the GET stream is held by b; the update is produced on a
    async with client.get() as standalone:
        assert turns()[-1] == 1
        saved = await client.call("tools/call", {"name": "add_note",
                                                 "arguments": {"name": "n1", "body": "x"}})
        assert turns()[-1] == 0 and "saved" in saved["content"][0]["text"]
        update = await next_message(standalone)
        assert update.data == {"jsonrpc": "2.0", "method": "notifications/resources/updated",
                               "params": {"uri": "notes://n1"}}

    # sampling asked on one replica, answered through the other
    call = client.request("tools/call", {"name": "summarize", "arguments": {"text": "t"}})
    async with client.stream(call) as events:
        asked = (await next_message(events)).data
        assert asked["method"] == "sampling/createMessage"
        answer = await client.send({"jsonrpc": "2.0", "id": asked["id"], "result": {
            "role": "assistant", "model": "m",
            "content": {"type": "text", "text": "short"}}})
        assert answer.status_code == 202
        assert turns()[-1] != turns()[-2]
        done = (await next_message(events)).data
        assert done["id"] == call["id"] and done["result"]["content"][0]["text"] == "short"

    # elicitation the same way
    call = client.request("tools/call", {"name": "ask_user",
                                         "arguments": {"question": "who?"}})
    async with client.stream(call) as events:
        asked = (await next_message(events)).data
        assert asked["method"] == "elicitation/create"
        await client.send({"jsonrpc": "2.0", "id": asked["id"], "result": {
            "action": "accept", "content": {"name": "Ada", "color": "red"}}})
        done = (await next_message(events)).data
        assert done["result"]["content"][0]["text"] == "hello Ada, you like red"

    # progress, then cancellation sent to the other replica
    call = client.request("tools/call", {"name": "slow_count", "arguments": {
        "to": 50, "delay": 0.2}, })
    call["params"]["_meta"] = {"progressToken": "p1"}
    async with client.stream(call) as events:
        progress = (await next_message(events)).data
        assert progress["method"] == "notifications/progress"
        cancelled = await client.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                       "params": {"requestId": call["id"]}})
        assert cancelled.status_code == 202
        with anyio.fail_after(10):
            rest = [event.data async for event in events]
        assert all(m.get("id") != call["id"] for m in rest if m)  # no answer to it
        assert len(rest) < 10

    # a stream dropped on one replica, resumed on the other
    call = client.request("tools/call", {"name": "slow_count", "arguments": {
        "to": 6, "delay": 0.05}})
    call["params"]["_meta"] = {"progressToken": "p2"}
    seen: list[SseEvent] = []
    async with client.stream(call) as events:
        seen.append(await next_message(events))
        seen.append(await next_message(events))
    assert seen[-1].id is not None
    async with client.get(last_event_id=seen[-1].id) as resumed:
        with anyio.fail_after(10):
            rest = [event async for event in resumed if event.data is not None]
    messages = [e.data for e in seen + rest]
    steps = [m["params"]["progress"] for m in messages if m.get("method") ==
             "notifications/progress"]
    assert steps == [1, 2, 3, 4, 5, 6]  # nothing lost, nothing twice
    assert messages[-1]["id"] == call["id"]
    assert messages[-1]["result"]["content"][0]["text"] == "counted to 6"
    ids = [e.id for e in seen + rest]
    assert len(set(ids)) == len(ids)

    # the end of the session reaches every replica
    ended = await http.delete(url, headers=client.headers)
    assert ended.status_code == 200
    await gone_everywhere(client)


async def gone_everywhere(client: LegacyClient) -> None:
    """Every replica refuses the session, once the news travelled (at once through
    LISTEN/NOTIFY or in memory, within the poll interval through SQLite's outbox)."""
    refused = 0
    with anyio.fail_after(10):
        while refused < 2:
            reply = await client.send(client.request("ping"))
            refused = refused + 1 if reply.status_code == 404 else 0
            await anyio.sleep(0.05)
