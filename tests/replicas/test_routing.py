"""Which replica a message of a shared session is for (property test), and answers
that no replica waits for."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobius_rpc.core.jsonrpc import Classified, IncomingResponse, classify
from mobius_rpc.storage import open_store
from mobius_rpc.transports.http_shared import SharedSessions

from .kit import LegacyClient, fresh_connections
from .test_shared_http import two_replicas

REPLICAS = ("a", "b", "c")

ids = st.one_of(st.integers(0, 10**6), st.text(max_size=8),
                st.tuples(st.sampled_from(REPLICAS), st.integers(1, 99)).map(
                    lambda t: f"{t[0]}~{t[1]}"))
messages = st.one_of(
    ids.map(lambda i: {"jsonrpc": "2.0", "id": i, "result": {}}),
    ids.map(lambda i: {"jsonrpc": "2.0", "id": i, "error": {"code": -1, "message": "x"}}),
    ids.map(lambda i: {"jsonrpc": "2.0", "method": "notifications/cancelled",
                       "params": {"requestId": i}}),
    ids.map(lambda i: {"jsonrpc": "2.0", "id": i, "method": "tools/list"}),
    st.just({"jsonrpc": "2.0", "method": "notifications/initialized"}))


def owner(message: dict[str, Any]) -> str | None:
    value = message.get("id")
    if "method" in message or not isinstance(value, str):
        return None
    head, sep, _ = value.partition("~")
    return head if sep and head else None


@pytest.mark.anyio
@given(batch=st.lists(messages, min_size=1, max_size=8))
async def test_answers_go_to_their_replica_cancels_everywhere(batch: list[Any]) -> None:
    async with open_store("memory:") as store:
        shared = SharedSessions(store, replica="a")
        decoded = Classified(batch, [classify(m) for m in batch])
        here, owed = shared.split("s", decoded)
    for message in batch:
        cancel = message.get("method") == "notifications/cancelled"
        foreign = owner(message) not in (None, "a")
        assert (message in here) == (not foreign or cancel)
        assert (message in owed) == (foreign or cancel)
    assert len(here) + len(owed) == len(batch) + sum(
        m.get("method") == "notifications/cancelled" for m in batch)
    assert all(type(classify(m)) is IncomingResponse or "error" in m or "method" in m
               for m in owed)


@pytest.mark.anyio
async def test_an_answer_nobody_waits_for_is_accepted_and_dropped(target: Any) -> None:
    async with two_replicas(target) as (url, _front), fresh_connections() as http:
        client = LegacyClient(url, http)
        await client.initialize()
        for stray in ("zz~1", "a~999", 12345):
            reply = await client.send({"jsonrpc": "2.0", "id": stray, "result": {}})
            assert reply.status_code == 202
        batch = [{"jsonrpc": "2.0", "id": "zz~2", "result": {}},
                 client.request("ping")]
        mixed = await client.client.post(url, headers=client.headers,
                                         content=orjson.dumps(batch))
        assert mixed.status_code == 400  # no batches in 2025-11-25: refused whole
        assert "batches" in mixed.json()["error"]["message"]
        echoed = await client.call("tools/call", {"name": "echo", "arguments": {"text": "ok"}})
        assert echoed["content"][0]["text"] == "ok"


@pytest.mark.anyio
async def test_a_batch_of_2025_03_26_keeps_what_is_ours(target: Any) -> None:
    async with two_replicas(target) as (url, _front), fresh_connections() as http:
        client = LegacyClient(url, http)
        await client.initialize("2025-03-26")
        batch = [{"jsonrpc": "2.0", "id": "zz~2", "result": {}}, client.request("ping")]
        mixed = await client.client.post(url, headers=client.headers,
                                         content=orjson.dumps(batch))
        assert mixed.status_code == 200, mixed.text
        assert mixed.json() == [{"jsonrpc": "2.0", "id": batch[1]["id"], "result": {}}]
