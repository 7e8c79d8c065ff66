"""How long to wait for an answer once the server has shown it is alive.

A ping sent after a message, once answered, says the server has read the message
(a stdio server reads its input in order; an HTTP server got both requests) and is
alive.  What is left to wait then depends on the message: a refusal decided on
receipt (a malformed envelope, an unknown method, params that break the schema)
needs no work, so a short grace is all the waiting that makes sense; a cheap request
(a listing, a level change) gets a little more; a request that may do real work (a
tool call, a read, a prompt, a completion, a task) may legitimately be slow, so it
keeps its whole deadline: slow is not silent.  The graces grow with the ping's
round trip, so a slow link or a loaded host does not turn into false findings.
"""

from __future__ import annotations

from typing import Any

from ..core.methods import methods_for

__all__ = ("PROBE_AFTER", "ON_RECEIPT_GRACE", "CHEAP_GRACE", "PROBE_RTTS", "patience")

#: a message not answered after this long gets a ping sent after it
PROBE_AFTER = 0.05
#: what waiting is left, once that ping is answered, for an answer decided on receipt
#: (at least this, and at least ten ping round trips) and for a cheap request
ON_RECEIPT_GRACE = 0.25
CHEAP_GRACE = 1.0
PROBE_RTTS = 10

# Requests a correct server answers from what it holds, without real work; a tool
# call, a read or a prompt may legitimately take a long time and are not listed.
_CHEAP = frozenset({"ping", "initialize", "server/discover", "tools/list", "prompts/list",
                    "resources/list", "resources/templates/list", "logging/setLevel",
                    "resources/subscribe", "resources/unsubscribe"})


def _malformed(message: Any) -> bool:
    """Whether a JSON-RPC layer must refuse ``message`` before any method runs."""
    if not isinstance(message, dict):
        return True
    request_id = message.get("id")
    params = message.get("params")
    return (message.get("jsonrpc") != "2.0" or not isinstance(message.get("method"), str)
            or ("id" in message and (isinstance(request_id, bool)
                                     or not isinstance(request_id, (str, int))))
            or (params is not None and not isinstance(params, (dict, list))))


def patience(message: Any, revision: str, *, expect_error: bool = False) -> float | None:
    """How long to keep waiting for ``message``'s answer once a ping sent after it has
    been answered: a short grace for an answer decided on receipt (a malformed
    envelope, an unknown method, or, with ``expect_error``, params the server must
    refuse), a longer one for a cheap request, ``None`` (the whole deadline) for a
    request that may do real work."""
    if isinstance(message, list):
        graces = [patience(m, revision, expect_error=expect_error) for m in message]
        if not graces:
            return ON_RECEIPT_GRACE  # an empty batch is refused as such
        return None if None in graces else max(g for g in graces if g is not None)
    if expect_error or _malformed(message):
        return ON_RECEIPT_GRACE
    method = message["method"]
    if method not in methods_for(revision):
        return ON_RECEIPT_GRACE
    return CHEAP_GRACE if method in _CHEAP else None
