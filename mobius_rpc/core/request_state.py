"""Integrity-protected ``requestState`` for multi-round-trip requests (2026-07-28).

When a handler needs input from the client, the server answers
``InputRequiredResult`` with a ``requestState`` the client must echo on its
retry.  The client controls that string, so it is sealed: an HMAC-SHA256 over
a payload that binds it to the method, a digest of the request's params
(without ``_meta``, ``inputResponses`` and ``requestState``), an expiry, and
the answers collected in earlier rounds.  :func:`open_state` refuses a state
that was altered, has expired, or belongs to another request, with -32602.

Pure functions: the caller passes the key and the time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from .errors import INVALID_PARAMS, RemoteProtocolError

__all__ = ("seal_state", "open_state", "params_digest")

_VOLATILE = frozenset(("_meta", "inputResponses", "requestState"))


def params_digest(params: dict[str, Any]) -> str:
    """A digest of the params that identify a request across its retries."""
    stable = {k: v for k, v in params.items() if k not in _VOLATILE}
    return hashlib.sha256(orjson.dumps(stable, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal_state(key: bytes, method: str, params: dict[str, Any], answers: dict[str, Any],
               *, now: float, ttl: float) -> str:
    """A sealed state string carrying ``answers`` for the retry of this request."""
    payload = orjson.dumps({"m": method, "p": params_digest(params), "e": round(now + ttl, 3),
                            "a": answers})
    tag = hmac.new(key, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(tag)}"


def open_state(key: bytes, token: object, method: str, params: dict[str, Any], *,
               now: float) -> dict[str, Any]:
    """The answers sealed in ``token``; raises -32602 when it is not valid for this request."""
    def refuse(why: str) -> RemoteProtocolError:
        return RemoteProtocolError(INVALID_PARAMS, f"Invalid params: requestState {why}")

    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 1 << 20:
        raise refuse("is malformed")
    body, tag = token.split(".")
    try:
        payload = _unb64(body)
        given = _unb64(tag)
    except ValueError:
        raise refuse("is malformed") from None
    if not hmac.compare_digest(hmac.new(key, payload, hashlib.sha256).digest(), given):
        raise refuse("failed its integrity check")
    state = orjson.loads(payload)
    if state.get("e", 0) < now:
        raise refuse("has expired")
    if state.get("m") != method or state.get("p") != params_digest(params):
        raise refuse("belongs to a different request")
    answers = state.get("a")
    return answers if isinstance(answers, dict) else {}
