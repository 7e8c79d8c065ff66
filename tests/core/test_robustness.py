"""Hypothesis: whatever arrives, the connection answers correctly and stays usable.

Malformed, mistyped, oversized and deeply nested messages are thrown at a
ready server connection (sans-I/O, so thousands of cases run quickly) and at
the full runtime over the memory pair.  Properties:

* ``receive`` never raises;
* every reply is a JSON-RPC response or error object whose error code is one
  of the standard codes and whose id is the request's id (or null);
* requests with usable ids get exactly one reply, notifications none
  (unless the server leaves a request to its handler);
* afterwards a ``ping`` still works.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobius_rpc.core import jsonrpc
from mobius_rpc.core.connection import Connection, Role
from mobius_rpc.core.events import RequestReceived
from mobius_rpc.core.limits import Limits

STANDARD_CODES = {-32700, -32600, -32601, -32602, -32603}
METHODS = ["initialize", "ping", "tools/list", "tools/call", "resources/read",
           "resources/list", "prompts/get", "completion/complete", "logging/setLevel",
           "resources/subscribe", "notifications/cancelled", "notifications/progress",
           "notifications/initialized", "sampling/createMessage", "unknown/method", ""]

json_scalars = st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(
    allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)
ids = st.none() | st.integers(-5, 5) | st.text(max_size=4) | st.booleans() | st.floats(
    allow_nan=False, allow_infinity=False)


@st.composite
def messages(draw: st.DrawFn) -> Any:
    message: dict[str, Any] = {}
    if draw(st.booleans()) or draw(st.booleans()):
        message["jsonrpc"] = draw(st.sampled_from(["2.0", "2.0", "1.0", 2]))
    if draw(st.booleans()):
        message["id"] = draw(ids)
    if draw(st.integers(0, 4)):
        message["method"] = draw(st.sampled_from(METHODS) | st.text(max_size=10))
    if draw(st.booleans()):
        message["params"] = draw(json_values | st.fixed_dictionaries(
            {}, optional={"name": json_values, "arguments": json_values, "uri": json_values,
                          "level": json_values, "requestId": ids, "_meta": json_values,
                          "protocolVersion": json_values, "cursor": json_values}))
    if draw(st.integers(0, 5)) == 0:
        message[draw(st.sampled_from(["result", "error"]))] = draw(json_values)
    return message


def nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


raw_inputs = (
    messages().map(orjson.dumps)
    | st.lists(messages(), max_size=4).map(orjson.dumps)
    | st.binary(max_size=64)
    | st.integers(60, 200).map(lambda d: orjson.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
         "params": {"name": "x", "arguments": nested(d)}}))
    | st.integers(1, 3).map(lambda n: b'{"jsonrpc":"2.0","id":1,"method":"ping","p":"'
                            + b"x" * (n * 3000) + b'"}')
)


def ready(version: str) -> Connection:
    conn = Connection(Role.SERVER, info={"name": "fuzz", "version": "1"},
                      capabilities={"tools": {}, "logging": {}, "resources": {"subscribe": True}},
                      limits=Limits(max_message_bytes=4096, max_depth=32))
    conn.receive(orjson.dumps({"jsonrpc": "2.0", "id": "init", "method": "initialize",
                               "params": {"protocolVersion": version, "capabilities": {},
                                          "clientInfo": {"name": "f", "version": "1"}}}), 0.0)
    conn.receive(b'{"jsonrpc":"2.0","method":"notifications/initialized"}', 0.0)
    conn.data_to_send()
    return conn


def check_reply(reply: Any) -> None:
    assert reply["jsonrpc"] == "2.0"
    assert "id" in reply
    if "error" in reply:
        assert reply["error"]["code"] in STANDARD_CODES
        assert isinstance(reply["error"]["message"], str)
    else:
        assert "result" in reply


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_inputs, version=st.sampled_from(["2024-11-05", "2025-03-26", "2025-11-25"]))
def test_any_input_gets_a_correct_answer_and_session_survives(raw: bytes, version: str) -> None:
    conn = ready(version)
    events = conn.receive(raw, 1.0)
    for event in events:  # answer whatever reached the application
        if isinstance(event, RequestReceived):
            conn.respond_error(event.id, __import__("mobius_rpc").McpError(-32603, "test"))
    for data in conn.data_to_send():
        reply = orjson.loads(data)
        for item in reply if isinstance(reply, list) else [reply]:
            check_reply(item)
    conn.receive(b'{"jsonrpc":"2.0","id":"after","method":"ping"}', 2.0)
    assert [orjson.loads(d) for d in conn.data_to_send()] == [
        {"jsonrpc": "2.0", "id": "after", "result": {}}]


@settings(max_examples=300, deadline=None)
@given(message=messages())
def test_requests_with_usable_ids_get_exactly_one_reply(message: dict[str, Any]) -> None:
    conn = ready("2025-06-18")
    events = conn.receive(orjson.dumps(message), 0.0)
    for event in events:
        if isinstance(event, RequestReceived):
            conn.respond_error(event.id, __import__("mobius_rpc").McpError(-32603, "test"))
    replies = [orjson.loads(d) for d in conn.data_to_send()]
    is_request = "method" in message and "id" in message
    usable = isinstance(message.get("id"), (str, int)) and not isinstance(message.get("id"), bool)
    if is_request and usable:
        assert len(replies) == 1 and replies[0]["id"] == message["id"]
    if "method" in message and "id" not in message and isinstance(message.get("method"), str) \
            and message.get("jsonrpc") == "2.0" and isinstance(message.get("params", {}), dict):
        assert replies == []  # a valid-envelope notification is never answered


@settings(max_examples=500, deadline=None)
@given(body=messages() | st.lists(messages(), max_size=4),
       version=st.sampled_from(["2025-03-26", "2025-11-25"]))
def test_a_classified_body_is_digested_like_the_raw_one(body: Any, version: str) -> None:
    # Streamable HTTP checks the envelopes itself and hands on what it found
    # (jsonrpc.Classified); the connection must then behave exactly as when
    # it parses and checks the same bytes on its own.
    items = body if isinstance(body, list) else [body]
    try:
        classified = [jsonrpc.classify(item) for item in items]
    except jsonrpc.EnvelopeError:
        return  # the transport answers these itself (HTTP 400); nothing is handed on
    raw = orjson.dumps(body)
    plain, given_classified = ready(version), ready(version)
    from_raw = plain.receive(raw, 1.0)
    from_classified = given_classified.receive(raw, 1.0,
                                               decoded=jsonrpc.Classified(body, classified))
    assert repr(from_classified) == repr(from_raw)  # errors compare by identity, not value
    assert given_classified.data_to_send() == plain.data_to_send()
