"""The sans-I/O connection, driven with no event loop (h11 style)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from mobius_rpc.core.connection import Connection, Role
from mobius_rpc.core.errors import LocalProtocolError, McpError
from mobius_rpc.core.events import (
    CancelRequested,
    ErrorReceived,
    MessageRejected,
    NotificationReceived,
    ProgressReceived,
    RequestReceived,
    RequestTimedOut,
    ResponseReceived,
    SessionInitialized,
)
from mobius_rpc.core.limits import Limits
from mobius_rpc.core.revisions import LEGACY_REVISIONS
from mobius_rpc.core.state import SessionState

SERVER_CAPS = {"tools": {"listChanged": True}, "logging": {},
               "resources": {"subscribe": True}}


def server(**kw: Any) -> Connection:
    return Connection(Role.SERVER, info={"name": "t", "version": "1"},
                      capabilities=kw.pop("capabilities", SERVER_CAPS), **kw)


def send(conn: Connection, message: Any, now: float = 0.0) -> list[Any]:
    return conn.receive(orjson.dumps(message), now)


def replies(conn: Connection) -> list[Any]:
    return [orjson.loads(b) for b in conn.data_to_send()]


def init(conn: Connection, version: str = "2025-11-25",
         caps: dict[str, Any] | None = None) -> None:
    events = send(conn, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": caps or {},
        "clientInfo": {"name": "c", "version": "1"}}})
    assert any(isinstance(e, SessionInitialized) for e in events)
    send(conn, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    replies(conn)


def call(rid: Any, name: str = "echo", args: Any = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name}
    if args is not None:
        params["arguments"] = args
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}


@pytest.mark.parametrize("version", LEGACY_REVISIONS)
def test_initialize_negotiates_requested_supported_version(version: str) -> None:
    conn = server()
    init(conn, version)
    assert conn.revision == version
    assert conn.state is SessionState.READY


def test_unknown_version_answered_with_latest_legacy() -> None:
    conn = server()
    send(conn, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "1999-01-01", "capabilities": {},
        "clientInfo": {"name": "c", "version": "1"}}})
    (reply,) = replies(conn)
    assert reply["result"]["protocolVersion"] == "2025-11-25"
    assert reply["result"]["serverInfo"] == {"name": "t", "version": "1"}


def test_request_before_initialize_is_refused() -> None:
    conn = server()
    events = send(conn, call(1))
    (reply,) = replies(conn)
    assert reply["id"] == 1 and reply["error"]["code"] == -32600
    assert "initialize" in reply["error"]["message"]
    assert isinstance(events[0], MessageRejected)


def test_ping_allowed_before_initialize() -> None:
    conn = server()
    send(conn, {"jsonrpc": "2.0", "id": "p", "method": "ping"})
    assert replies(conn) == [{"jsonrpc": "2.0", "id": "p", "result": {}}]


def test_second_initialize_is_refused() -> None:
    conn = server()
    init(conn)
    send(conn, {"jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "c", "version": "1"}}})
    (reply,) = replies(conn)
    assert reply["error"]["code"] == -32600
    assert "already initialized" in reply["error"]["message"]


def test_method_without_declared_capability_is_method_not_found() -> None:
    conn = server()
    init(conn)
    send(conn, {"jsonrpc": "2.0", "id": 2, "method": "prompts/list"})
    (reply,) = replies(conn)
    assert reply["error"]["code"] == -32601
    assert "prompts" in reply["error"]["message"]


def test_unknown_method_and_method_from_other_revision() -> None:
    conn = server()
    init(conn, "2025-03-26")
    send(conn, {"jsonrpc": "2.0", "id": 1, "method": "nope/nothing"})
    send(conn, {"jsonrpc": "2.0", "id": 2, "method": "tasks/list"})  # 2025-11-25 only
    assert [r["error"]["code"] for r in replies(conn)] == [-32601, -32601]


def test_invalid_params_name_the_failing_field() -> None:
    conn = server()
    init(conn)
    send(conn, call(3, name=42))  # name must be a string
    (reply,) = replies(conn)
    assert reply["error"]["code"] == -32602
    assert "params.name" in reply["error"]["message"]
    assert reply["error"]["data"]["path"] == "params.name"


@pytest.mark.parametrize("raw, code", [
    (b"{not json", -32700),
    (b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}', -32600),
    (b'{"jsonrpc": "2.0", "id": null, "method": "ping"}', -32600),
    (b'{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}', -32600),
    (b'{"jsonrpc": "2.0", "id": true, "method": "ping"}', -32600),
    (b'{"jsonrpc": "2.0", "id": 1, "method": 7}', -32600),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}', -32602),
    (b'"just a string"', -32600),
    (b"[]", -32600),
])
def test_envelope_errors(raw: bytes, code: int) -> None:
    conn = server()
    init(conn)
    conn.receive(raw, 0.0)
    (reply,) = replies(conn)
    assert reply["error"]["code"] == code
    assert "id" in reply


def test_duplicate_outstanding_id_rejected() -> None:
    conn = server()
    init(conn)
    first = send(conn, call(5, args={"text": "a"}))
    assert isinstance(first[0], RequestReceived)
    send(conn, call(5, args={"text": "b"}))
    (reply,) = replies(conn)
    assert reply["error"]["code"] == -32600 and "already in use" in reply["error"]["message"]
    conn.respond(5, {"content": [], "isError": False})
    assert replies(conn)[0]["result"]["isError"] is False


def test_cancelled_request_gets_no_response() -> None:
    conn = server()
    init(conn)
    send(conn, call(7, args={}))
    events = send(conn, {"jsonrpc": "2.0", "method": "notifications/cancelled",
                         "params": {"requestId": 7, "reason": "user"}})
    assert events == [CancelRequested(7, "user")]
    conn.respond(7, {"content": [], "isError": False})
    assert replies(conn) == []


def test_invalid_result_is_replaced_by_internal_error() -> None:
    conn = server()
    init(conn)
    send(conn, call(8, args={}))
    conn.respond(8, {"content": "not a list"})
    (reply,) = replies(conn)
    assert reply["error"]["code"] == -32603
    assert "result" not in reply


def test_size_and_depth_limits() -> None:
    conn = server(limits=Limits(max_message_bytes=400, max_depth=8))
    init(conn)
    conn.receive(orjson.dumps(call(1, args={"text": "x" * 500})), 0.0)
    deep: Any = "leaf"
    for _ in range(20):
        deep = {"a": deep}
    conn.receive(orjson.dumps(call(2, args=deep)), 0.0)
    errors = replies(conn)
    assert [e["error"]["code"] for e in errors] == [-32600, -32600]
    assert "exceeds" in errors[0]["error"]["message"]
    assert "nesting" in errors[1]["error"]["message"]
    send(conn, {"jsonrpc": "2.0", "id": 3, "method": "ping"})
    assert replies(conn)[0]["result"] == {}


class TestBatches:
    def test_batch_in_array_out(self) -> None:
        conn = server()
        init(conn, "2025-03-26")
        events = send(conn, [
            {"jsonrpc": "2.0", "id": 1, "method": "ping"},
            call(2, args={}),
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 3, "method": "no/such"},
        ])
        assert replies(conn) == []  # waits for the tools/call answer
        assert [type(e) for e in events].count(RequestReceived) == 1
        conn.respond(2, {"content": [], "isError": False})
        (batch,) = replies(conn)
        assert isinstance(batch, list)
        assert {r["id"] for r in batch} == {1, 2, 3}

    def test_all_notification_batch_gets_no_reply(self) -> None:
        conn = server()
        init(conn, "2025-03-26")
        send(conn, [{"jsonrpc": "2.0", "method": "notifications/initialized"}])
        assert replies(conn) == []

    def test_initialize_not_allowed_in_batch_and_batches_need_2025_03_26(self) -> None:
        conn = server()
        init(conn, "2025-06-18")
        send(conn, [{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
        (reply,) = replies(conn)
        assert reply["error"]["code"] == -32600 and "batch" in reply["error"]["message"]
        fresh = server()
        send(fresh, [{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}])
        assert replies(fresh)[0]["error"]["code"] == -32600
        assert fresh.state is SessionState.UNINITIALIZED


class TestOutgoing:
    def test_request_needs_client_capability(self) -> None:
        conn = server()
        init(conn, caps={})
        with pytest.raises(LocalProtocolError, match="sampling"):
            conn.request("sampling/createMessage", {"messages": [], "maxTokens": 5}, now=0)
        assert replies(conn) == []

    def test_url_elicitation_needs_url_capability(self) -> None:
        conn = server()
        init(conn, caps={"elicitation": {}})
        assert conn.can_send("elicitation/create", {"message": "m", "requestedSchema": {
            "type": "object", "properties": {}}})
        with pytest.raises(LocalProtocolError, match="elicitation.url"):
            conn.request("elicitation/create", {"mode": "url", "message": "m",
                                                "url": "https://x", "elicitationId": "1"}, now=0)

    def test_response_routing_progress_and_timeout(self) -> None:
        conn = server()
        init(conn, caps={"roots": {}})
        rid = conn.request("roots/list", None, now=0.0, timeout=5.0, progress=True)
        (sent,) = replies(conn)
        assert sent["method"] == "roots/list" and sent["params"]["_meta"]["progressToken"] == rid
        events = send(conn, {"jsonrpc": "2.0", "method": "notifications/progress",
                             "params": {"progressToken": rid, "progress": 1, "total": 2}})
        assert events == [ProgressReceived(rid, 1.0, 2.0, None)]
        events = send(conn, {"jsonrpc": "2.0", "id": rid, "result": {"roots": [
            {"uri": "file:///tmp"}]}})
        assert isinstance(events[0], ResponseReceived)
        rid2 = conn.request("roots/list", None, now=10.0, timeout=5.0)
        replies(conn)
        assert conn.next_deadline() == 15.0
        assert conn.expire(14.0) == []
        assert conn.expire(15.0) == [RequestTimedOut(rid2, "roots/list")]
        (cancel,) = replies(conn)
        assert cancel["method"] == "notifications/cancelled"
        assert cancel["params"]["requestId"] == rid2
        # A late answer is dropped, not delivered.
        late = send(conn, {"jsonrpc": "2.0", "id": rid2, "result": {"roots": []}})
        assert all(isinstance(e, MessageRejected) and not e.replied for e in late)

    def test_invalid_result_from_peer_becomes_error(self) -> None:
        conn = server()
        init(conn, caps={"roots": {}})
        rid = conn.request("roots/list", None, now=0.0)
        replies(conn)
        (event,) = send(conn, {"jsonrpc": "2.0", "id": rid, "result": {"roots": "nope"}})
        assert isinstance(event, ErrorReceived) and "roots" in event.error.message

    def test_close_fails_outstanding_requests(self) -> None:
        conn = server()
        init(conn, caps={"roots": {}})
        rid = conn.request("roots/list", None, now=0.0)
        (event,) = conn.close()
        assert isinstance(event, ErrorReceived) and event.id == rid


def test_client_and_server_connections_pair_up() -> None:
    srv = server()
    cli = Connection(Role.CLIENT, info={"name": "c", "version": "1"},
                     capabilities={"sampling": {}})
    rid = cli.initialize(now=0.0, protocol_version="2025-06-18")

    def pump(src: Connection, dst: Connection) -> list[Any]:
        events: list[Any] = []
        for data in src.data_to_send():
            events += dst.receive(data, 0.0)
        return events

    pump(cli, srv)
    events = pump(srv, cli)
    assert isinstance(events[0], SessionInitialized) and events[0].revision == "2025-06-18"
    assert isinstance(events[1], ResponseReceived) and events[1].id == rid
    pump(cli, srv)  # notifications/initialized
    assert srv.state is SessionState.READY
    srv.notify("notifications/tools/list_changed")
    (note,) = pump(srv, cli)
    assert note == NotificationReceived("notifications/tools/list_changed", {})


def test_routed_output_says_which_requests_each_message_answers() -> None:
    # Streamable HTTP ends a request's response on these ids, without
    # parsing the messages it writes.
    conn = server(revisions=("2025-03-26",))
    init(conn, "2025-03-26")
    send(conn, call(7))
    conn.notify("notifications/message", {"level": "info", "data": "working"}, related=7)
    conn.respond(7, {"content": [], "isError": False})
    batch = conn.receive(orjson.dumps([call("a"), {"jsonrpc": "2.0", "id": "b", "method": "ping"},
                                       call("c")]), 0.0)
    assert [e.id for e in batch if isinstance(e, RequestReceived)] == ["a", "c"]
    conn.respond("a", {"content": [], "isError": False})
    conn.respond_error("c", McpError(-32603, "failed"))
    send(conn, {"jsonrpc": "2.0", "id": None, "method": "ping"})  # no usable id: null-id error
    routed = conn.routed_data_to_send()
    assert [(related, answers) for _, related, answers in routed] == [
        (7, ()), (7, (7,)), ("b", ("b", "a", "c")), (None, ())]
    assert [orjson.loads(data)["id"] for data, _, _ in routed[1:2]] == [7]
    assert [reply["id"] for reply in orjson.loads(routed[2][0])] == ["b", "a", "c"]


def test_request_tables_agree_with_the_method_table() -> None:
    # The receiver's one-lookup tables hold exactly the requests lookup() and
    # may_send() allow the sender, for every revision.
    from mobius_rpc.core.methods import Kind, lookup, may_send, methods_for, requests_from
    from mobius_rpc.core.revisions import ALL_REVISIONS
    for sender in ("client", "server"):
        tables = requests_from(sender)
        assert set(tables) == set(ALL_REVISIONS)
        for revision in ALL_REVISIONS:
            expected = {}
            for method in methods_for(revision):
                spec = lookup(revision, method)
                if spec is not None and spec.kind is Kind.REQUEST and may_send(spec, sender):
                    expected[method] = spec
            assert tables[revision] == expected
        assert all(("tools/call" in tables[r]) == (sender == "client") for r in ALL_REVISIONS)


def test_a_refused_batch_is_routed_as_the_answer_of_its_requests() -> None:
    # One id-less error answers the whole batch: a transport that waits for
    # each request's answer learns that none other will come.
    conn = server()
    init(conn, "2025-11-25")
    events = conn.receive(orjson.dumps([call(1), {"jsonrpc": "2.0", "method": "ping"},
                                        {"jsonrpc": "2.0", "id": "b", "method": "ping"}]), 0.0)
    assert [type(e) for e in events] == [MessageRejected]
    [(data, related, answers)] = conn.routed_data_to_send()
    assert orjson.loads(data)["id"] is None and orjson.loads(data)["error"]["code"] == -32600
    assert (related, answers) == (1, (1, "b"))


def test_a_message_refused_whole_is_routed_as_the_answer_of_its_requests() -> None:
    # Too deep (or too large) is refused before the message is read; when the
    # transport parsed it already, the refusal still answers its request.
    from mobius_rpc.core import jsonrpc
    conn = server(limits=Limits(max_depth=8))
    init(conn)
    deep = call(3, args={"x": [[[[[[[[1]]]]]]]]})
    body = orjson.dumps(deep)
    events = conn.receive(body, 0.0, decoded=jsonrpc.Classified(deep, [jsonrpc.classify(deep)]))
    assert [type(e) for e in events] == [MessageRejected]
    [(data, related, answers)] = conn.routed_data_to_send()
    assert data.startswith(jsonrpc.REFUSAL_HEAD) and orjson.loads(data)["error"]["code"] == -32600
    assert (related, answers) == (3, (3,))
    conn.receive(body, 0.0, decoded=deep)  # parsed but not classified: the same
    assert [(r, a) for _, r, a in conn.routed_data_to_send()] == [(3, (3,))]
    conn.receive(body, 0.0)  # never parsed: no request is known to answer
    assert [(r, a) for _, r, a in conn.routed_data_to_send()] == [(None, ())]
