"""The connection's spelled-out path for one unbatched message agrees with the general one.

``Connection.receive`` handles a single (unbatched) message inline, calling
orjson and the handlers itself, while batch items go through
``_receive_one``.  The two must never drift apart: for any message, valid or
not, both give the same events, the same replies, and the same verdict on the
answer that follows (a valid result, a result that fails its schema).
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from mobius_rpc.core.connection import Connection, Role
from mobius_rpc.core.events import RequestReceived

from .test_connection import SERVER_CAPS, init

_IDS = st.one_of(st.integers(-3, 3), st.sampled_from(["a", "", "x1"]), st.booleans(),
                 st.none(), st.floats(allow_nan=False, allow_infinity=False),
                 st.lists(st.integers(-(2**63), 2**63 - 1), max_size=1))
_METHODS = st.one_of(st.sampled_from(["tools/call", "tools/list", "ping", "initialize",
                                      "prompts/list", "resources/read", "no/such",
                                      "notifications/cancelled", "notifications/progress",
                                      "notifications/initialized", "logging/setLevel"]),
                     st.integers(0, 2), st.none())
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.text(max_size=3))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=2), st.dictionaries(st.text(max_size=3), inner, max_size=2)),
    max_leaves=4)
_PARAMS = st.one_of(
    st.fixed_dictionaries({"name": st.sampled_from(["echo", 1])},
                          optional={"arguments": st.one_of(
                              st.dictionaries(st.sampled_from(["text", "n"]), _VALUES,
                                              max_size=2), _VALUES),
                              "_meta": st.one_of(st.fixed_dictionaries(
                                  {"progressToken": st.one_of(st.integers(0, 2),
                                                              st.text(max_size=2))}),
                                  _VALUES),
                              "cursor": _VALUES, "requestId": _IDS, "level": _VALUES,
                              "uri": _VALUES, "progress": _VALUES}),
    _VALUES)
_OPTIONAL = {"jsonrpc": st.sampled_from(["2.0", "1.0", 2]), "id": _IDS, "method": _METHODS,
             "params": _PARAMS, "result": _VALUES, "error": _VALUES}
_MESSAGES = st.one_of(
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": st.integers(1, 3),
                           "method": st.just("tools/call")}, optional={"params": _PARAMS}),
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "method": st.sampled_from(
        ["notifications/cancelled", "notifications/roots/list_changed", "notifications/x"]),
        "params": st.fixed_dictionaries({"requestId": st.integers(1, 3)})}),
    st.fixed_dictionaries({}, optional=_OPTIONAL),
    _VALUES.filter(lambda v: not isinstance(v, list)))  # a top-level array is a batch
_RESULTS = st.one_of(st.just({"content": [{"type": "text", "text": "hi"}]}),
                     st.just({"content": "not a list"}), st.just({"tools": []}),
                     st.just({}))


def _ready() -> Connection:
    conn = Connection(Role.SERVER, info={"name": "t", "version": "1"},
                      capabilities=SERVER_CAPS)
    init(conn)
    return conn


def _answer(conn: Connection, events: list[Any], result: dict[str, Any]) -> list[Any]:
    """Answer each request the events carry; the answers and respond's return values."""
    out: list[Any] = []
    for event in events:
        if isinstance(event, RequestReceived):
            out.append(conn.respond(event.id, result))
    return out + [orjson.loads(data) for data in conn.data_to_send()]


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(_MESSAGES, min_size=1, max_size=3), result=_RESULTS)
def test_unbatched_path_matches_the_per_item_path(messages: list[Any],
                                                  result: dict[str, Any]) -> None:
    fast, general = _ready(), _ready()
    for message in messages:
        data = orjson.dumps(message)
        fast_events = fast.receive(data, 0.0)
        general_events: list[Any] = []
        general._receive_one(orjson.loads(data), 0.0, general_events, None)
        # events compare by repr: the errors they carry are exceptions, equal only to themselves
        assert [repr(e) for e in fast_events] == [repr(e) for e in general_events]
        assert [orjson.loads(d) for d in fast.data_to_send()] == \
            [orjson.loads(d) for d in general.data_to_send()]
        assert _answer(fast, fast_events, result) == _answer(general, general_events, result)
        assert fast.state == general.state and fast.revision == general.revision


def test_respond_to_a_cancelled_request_sends_nothing_and_frees_the_id() -> None:
    conn = _ready()
    events = conn.receive(orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                        "params": {"name": "echo"}}), 0.0)
    assert isinstance(events[0], RequestReceived)
    conn.receive(orjson.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled",
                               "params": {"requestId": 7}}), 0.0)
    assert conn.respond(7, {"content": []}) is False
    assert conn.data_to_send() == []
    # the id is free again: a new request with it is accepted, and answered
    events = conn.receive(orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                        "params": {"name": "echo"}}), 0.0)
    assert isinstance(events[0], RequestReceived)
    assert conn.respond(7, {"content": []}) is True
    assert orjson.loads(conn.data_to_send()[0]) == {"jsonrpc": "2.0", "id": 7,
                                                    "result": {"content": []}}
