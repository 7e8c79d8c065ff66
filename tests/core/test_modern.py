"""The modern era (2026-07-28) in the sans-I/O connection, and dual-era selection."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from mobius_rpc.core.connection import Connection, Role
from mobius_rpc.core.errors import RemoteProtocolError
from mobius_rpc.core.events import RequestReceived
from mobius_rpc.core.modern import CachePolicy
from mobius_rpc.core.request_state import open_state, seal_state
from mobius_rpc.core.revisions import LEGACY_REVISIONS, Era

V = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "c", "version": "1"}}
CAPS = {"tools": {"listChanged": True}, "resources": {}}


def server(legacy: tuple[str, ...] = LEGACY_REVISIONS, modern: tuple[str, ...] = (V,),
           **kw: Any) -> Connection:
    return Connection(Role.SERVER, info={"name": "s", "version": "1"}, capabilities=CAPS,
                      revisions=legacy, modern_revisions=modern, **kw)


def req(rid: Any, method: str, params: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = META) -> bytes:
    body: dict[str, Any] = dict(params or {})
    if meta is not None:
        body["_meta"] = meta
    return orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": body})


def out(conn: Connection) -> list[Any]:
    return [orjson.loads(b) for b in conn.data_to_send()]


def test_first_modern_request_selects_the_modern_era() -> None:
    conn = server()
    (event,) = conn.receive(req(1, "tools/list"), 0.0)
    assert isinstance(event, RequestReceived) and conn.era is Era.MODERN
    conn.respond(1, {"tools": []})
    (reply,) = out(conn)
    result = reply["result"]
    assert result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"] == {"name": "s", "version": "1"}
    assert result["ttlMs"] == 60_000 and result["cacheScope"] == "private"
    # initialize is refused on a connection that went modern, listing versions.
    conn.receive(orjson.dumps({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "c", "version": "1"}}}), 0.0)
    (error,) = out(conn)
    assert error["error"]["code"] == -32022
    assert error["error"]["data"]["supported"] == [V]


def test_cache_policy_is_configurable_and_not_applied_to_non_cacheable() -> None:
    conn = server(cache_policy=CachePolicy(ttl_ms=5, scope="public"))
    conn.receive(req(1, "tools/list"), 0.0)
    conn.respond(1, {"tools": []})
    conn.receive(req(2, "tools/call", {"name": "x"}), 0.0)
    conn.respond(2, {"content": []})
    listed, called = out(conn)
    assert (listed["result"]["ttlMs"], listed["result"]["cacheScope"]) == (5, "public")
    assert "ttlMs" not in called["result"] and called["result"]["resultType"] == "complete"


@pytest.mark.parametrize("meta, code, fragment", [
    (None, -32602, "_meta"),
    ({"io.modelcontextprotocol/protocolVersion": V}, -32602, "clientCapabilities"),
    ({**META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}, -32022, "2099"),
])
def test_meta_errors(meta: dict[str, Any] | None, code: int, fragment: str) -> None:
    conn = server(legacy=())
    conn.receive(req(7, "tools/list", meta=meta), 0.0)
    (reply,) = out(conn)
    assert reply["id"] == 7 and reply["error"]["code"] == code
    assert fragment in reply["error"]["message"]
    if code == -32022:
        assert reply["error"]["data"] == {"supported": [V], "requested": "2099-01-01"}


def test_modern_only_server_refuses_initialize_with_supported_versions() -> None:
    conn = server(legacy=())
    conn.receive(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "c", "version": "1"}}}), 0.0)
    (reply,) = out(conn)
    assert reply["error"]["code"] == -32022
    assert reply["error"]["data"] == {"supported": [V], "requested": "2025-06-18"}


def test_legacy_only_server_answers_discover_with_method_not_found() -> None:
    conn = server(modern=())
    conn.receive(req(1, "server/discover"), 0.0)
    (reply,) = out(conn)
    assert reply["error"]["code"] == -32601


def test_methods_removed_in_2026_are_method_not_found() -> None:
    conn = server()
    for rid, method in enumerate(["ping", "logging/setLevel", "resources/subscribe"]):
        conn.receive(req(rid, method), 0.0)
    assert [r["error"]["code"] for r in out(conn)] == [-32601] * 3


def test_invalid_params_in_modern_era() -> None:
    conn = server()
    conn.receive(req(1, "tools/call", {"name": 5}), 0.0)
    (reply,) = out(conn)
    assert reply["error"]["code"] == -32602 and "name" in reply["error"]["message"]


def test_modern_cancellation() -> None:
    conn = server()
    conn.receive(req(3, "tools/call", {"name": "slow"}), 0.0)
    events = conn.receive(orjson.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                        "params": {"requestId": 3}}), 0.0)
    assert [type(e).__name__ for e in events] == ["CancelRequested"]
    conn.respond(3, {"content": []})
    assert out(conn) == []


def test_input_required_result_is_validated_as_such() -> None:
    conn = server()
    conn.receive(req(1, "tools/call", {"name": "ask"}), 0.0)
    conn.respond(1, {"resultType": "input_required", "requestState": "abc",
                     "inputRequests": {"e": {"method": "elicitation/create", "params": {
                         "message": "m", "requestedSchema": {"type": "object",
                                                             "properties": {}}}}}})
    (reply,) = out(conn)
    assert reply["result"]["resultType"] == "input_required"
    assert "ttlMs" not in reply["result"]


class TestRequestState:
    KEY = b"k" * 32
    PARAMS = {"name": "t", "arguments": {"a": 1}, "_meta": META}

    def test_round_trip_binds_method_params_and_time(self) -> None:
        token = seal_state(self.KEY, "tools/call", self.PARAMS, {"e-0": {"action": "accept"}},
                           now=100.0, ttl=10.0)
        retry = {**self.PARAMS, "inputResponses": {"x": {}}, "requestState": token,
                 "_meta": {**META, "extra": 1}}
        assert open_state(self.KEY, token, "tools/call", retry, now=105.0) == {
            "e-0": {"action": "accept"}}

    @pytest.mark.parametrize("mutate, why", [
        (lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1], "integrity"),
        (lambda t: "x" + t, "integrity"),
        (lambda t: "nodot", "malformed"),
    ])
    def test_tampering_is_refused(self, mutate: Any, why: str) -> None:
        token = seal_state(self.KEY, "tools/call", self.PARAMS, {}, now=0.0, ttl=10.0)
        with pytest.raises(RemoteProtocolError) as info:
            open_state(self.KEY, mutate(token), "tools/call", self.PARAMS, now=1.0)
        assert info.value.code == -32602 and why in info.value.message

    def test_expired_other_request_other_key(self) -> None:
        token = seal_state(self.KEY, "tools/call", self.PARAMS, {}, now=0.0, ttl=10.0)
        cases = [
            (self.KEY, "tools/call", self.PARAMS, 11.0, "expired"),
            (self.KEY, "prompts/get", self.PARAMS, 1.0, "different request"),
            (self.KEY, "tools/call", {**self.PARAMS, "arguments": {"a": 2}}, 1.0,
             "different request"),
            (b"other" * 7, "tools/call", self.PARAMS, 1.0, "integrity"),
        ]
        for key, method, params, now, why in cases:
            with pytest.raises(RemoteProtocolError, match=why):
                open_state(key, token, method, params, now=now)


def test_initialize_sent_as_a_modern_request_is_method_not_found() -> None:
    for legacy in (LEGACY_REVISIONS, ()):
        conn = server(legacy=legacy)
        conn.receive(req(1, "initialize", {"protocolVersion": "2025-11-25",
                                           "capabilities": {},
                                           "clientInfo": {"name": "c", "version": "1"}}), 0.0)
        (reply,) = out(conn)
        assert reply["error"]["code"] == -32601


@pytest.mark.parametrize("params", [{}, None, {"_meta": {}}, {"cursor": "x"}])
def test_a_dual_era_server_answers_a_first_request_without_meta_with_invalid_params(
        params: dict[str, Any] | None) -> None:
    # A 2026-07-28 client that forgot _meta, or a legacy client that skipped
    # initialize: -32602 telling both what to send; the connection stays open to
    # either era afterwards.
    conn = server()
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 4, "method": "tools/list"}
    if params is not None:
        message["params"] = params
    assert conn.receive(orjson.dumps(message), 0.0)[0].__class__.__name__ == "MessageRejected"
    (reply,) = out(conn)
    assert reply["id"] == 4 and reply["error"]["code"] == -32602
    text = reply["error"]["message"]
    assert "io.modelcontextprotocol/protocolVersion" in text and "'initialize' first" in text
    assert conn.era is None
    (event,) = conn.receive(req(5, "tools/list"), 0.0)
    assert isinstance(event, RequestReceived) and conn.era is Era.MODERN


def test_a_legacy_only_server_still_asks_for_initialize_first() -> None:
    conn = server(modern=())
    conn.receive(req(4, "tools/list", meta=None), 0.0)
    (reply,) = out(conn)
    assert reply["error"]["code"] == -32600
    assert "the first request must be 'initialize'" in reply["error"]["message"]


def test_after_a_legacy_initialize_requests_without_meta_are_legacy_requests() -> None:
    conn = server()
    conn.receive(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "c", "version": "1"}}}), 0.0)
    out(conn)
    (event,) = conn.receive(req(2, "tools/list", meta=None), 0.0)
    assert isinstance(event, RequestReceived) and conn.era is Era.LEGACY
