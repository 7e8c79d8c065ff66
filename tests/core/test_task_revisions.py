"""Task-augmented requests exist in one revision only: elsewhere ``params.task``
is an unknown param of a plain call, and nothing can turn into a lookup of a
definition the revision lacks (which once ended the whole session)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from mobius_rpc.core.connection import Connection, Role
from mobius_rpc.core.events import ErrorReceived, RequestReceived, ResponseReceived
from mobius_rpc.core.revisions import (
    ALL_REVISIONS,
    LEGACY_REVISIONS,
    MODERN_REVISIONS,
    has_tasks,
    served_capabilities,
    served_tool,
)
from mobius_rpc.core.schema import UnknownDefinition, schema_for

#: a server that declares task-augmented tools/call (as a gateway does)
CAPS = {"tools": {}, "tasks": {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}}
PLAIN = {"content": [{"type": "text", "text": "ran"}], "isError": False}
NO_TASKS = [r for r in ALL_REVISIONS if not has_tasks(r)]


def replies(conn: Connection) -> list[Any]:
    return [orjson.loads(b) for b in conn.data_to_send()]


def serving(revision: str) -> tuple[Connection, dict[str, Any]]:
    """A server connection in ``revision`` and the ``_meta`` its requests need."""
    conn = Connection(Role.SERVER, info={"name": "s", "version": "1"}, capabilities=CAPS,
                      revisions=LEGACY_REVISIONS, modern_revisions=MODERN_REVISIONS)
    if revision in MODERN_REVISIONS:
        return conn, {"io.modelcontextprotocol/protocolVersion": revision,
                      "io.modelcontextprotocol/clientCapabilities": {}}
    conn.receive(orjson.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": revision, "capabilities": {},
        "clientInfo": {"name": "c", "version": "1"}}}), 0.0)
    conn.receive(orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), 0.0)
    replies(conn)
    assert conn.revision == revision
    return conn, {}


def task_call(rid: int, meta: dict[str, Any], task: bool = True) -> bytes:
    params: dict[str, Any] = {"name": "t", "arguments": {}}
    if task:
        params["task"] = {"ttl": 1000}
    if meta:
        params["_meta"] = meta
    return orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params})


@pytest.mark.parametrize("revision", ALL_REVISIONS)
def test_has_tasks_agrees_with_each_revisions_schema(revision: str) -> None:
    names = schema_for(revision).names()
    assert has_tasks(revision) == ("CreateTaskResult" in names and "TaskMetadata" in names)


@pytest.mark.parametrize("revision", NO_TASKS)
def test_a_task_field_without_tasks_in_the_revision_is_a_plain_call(revision: str) -> None:
    conn, meta = serving(revision)
    (event,) = conn.receive(task_call(1, meta), 0.0)
    assert isinstance(event, RequestReceived) and event.params["task"] == {"ttl": 1000}
    assert not conn.is_task_request(1)
    assert conn.respond(1, PLAIN)
    (reply,) = replies(conn)
    assert reply["id"] == 1 and reply["result"]["content"] == PLAIN["content"]


def test_the_one_revision_with_tasks_still_makes_a_task_request() -> None:
    conn, meta = serving("2025-11-25")
    conn.receive(task_call(1, meta), 0.0)
    assert conn.is_task_request(1)


@pytest.mark.parametrize("revision", ALL_REVISIONS)
def test_an_answer_whose_definition_the_revision_lacks_is_a_clean_internal_error(
        revision: str) -> None:
    conn, meta = serving(revision)
    conn.receive(task_call(1, meta), 0.0)
    conn._in_flight[1].result_def = "NoSuchResult"  # a bug of ours, made on purpose
    assert conn.respond(1, PLAIN)
    (reply,) = replies(conn)
    assert reply["id"] == 1 and reply["error"]["code"] == -32603
    # the connection goes on serving
    conn.receive(task_call(2, meta, task=False), 0.0)
    assert conn.respond(2, PLAIN)
    assert replies(conn)[0]["result"]["content"] == PLAIN["content"]


def test_a_missing_definition_is_a_key_error_that_names_itself() -> None:
    with pytest.raises(UnknownDefinition) as caught:
        schema_for("2025-06-18").check("CreateTaskResult", {})
    assert isinstance(caught.value, KeyError)
    assert caught.value.name == "CreateTaskResult"


@pytest.mark.parametrize("revision", [r for r in LEGACY_REVISIONS if not has_tasks(r)])
def test_a_client_sending_a_task_field_without_tasks_expects_a_plain_result(
        revision: str) -> None:
    client = Connection(Role.CLIENT, info={"name": "c", "version": "1"},
                        revisions=LEGACY_REVISIONS)
    rid = client.initialize(now=0.0, protocol_version=revision)
    client.data_to_send()
    client.receive(orjson.dumps({"jsonrpc": "2.0", "id": rid, "result": {
        "protocolVersion": revision, "capabilities": {"tools": {}},
        "serverInfo": {"name": "s", "version": "1"}}}), 0.0)
    client.data_to_send()
    sent = client.request("tools/call", {"name": "t", "arguments": {}, "task": {}}, now=0.0)
    events = client.receive(orjson.dumps({"jsonrpc": "2.0", "id": sent, "result": PLAIN}), 0.0)
    assert [type(e) for e in events] == [ResponseReceived], events
    assert not any(isinstance(e, ErrorReceived) for e in events)



@pytest.mark.parametrize("revision", LEGACY_REVISIONS)
def test_initialize_declares_tasks_only_in_the_revision_that_has_them(revision: str) -> None:
    conn = Connection(Role.SERVER, info={"name": "s", "version": "1"}, capabilities=CAPS,
                      revisions=LEGACY_REVISIONS)
    conn.receive(orjson.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": revision, "capabilities": {},
        "clientInfo": {"name": "c", "version": "1"}}}), 0.0)
    (reply,) = replies(conn)
    caps = reply["result"]["capabilities"]
    assert ("tasks" in caps) == has_tasks(revision)
    assert caps["tools"] == {}
    assert conn.capabilities is CAPS and "tasks" in CAPS  # ours unchanged, for gating


@pytest.mark.parametrize("revision", ALL_REVISIONS)
def test_a_tool_keeps_its_execution_field_only_where_tasks_exist(revision: str) -> None:
    tool = {"name": "t", "inputSchema": {"type": "object"},
            "execution": {"taskSupport": "optional"}}
    served = served_tool(tool, revision)
    assert ("execution" in served) == has_tasks(revision)
    assert {k: v for k, v in served.items() if k != "execution"} == {
        "name": "t", "inputSchema": {"type": "object"}}
    assert served_capabilities(CAPS, revision).keys() == (
        CAPS.keys() if has_tasks(revision) else {"tools"})
