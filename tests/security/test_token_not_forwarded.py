"""The scope the transports get from :class:`AuthenticatingApp`: the principal in,
every ``Authorization`` header out, every other header kept in order, and the
server's own scope and header list left as they were.

The forwarded list is built from slices around the one Authorization header
(not by testing every header again), so the positions vary here: first, last,
in the middle, several (accepted only with authentication off).
"""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from mobius_rpc.security.http_auth import AuthenticatingApp
from mobius_rpc.security.principal import ANONYMOUS, AuthMethod, Principal
from mobius_rpc.transports.asgi_context import PRINCIPAL_KEY

TOKEN = "mbx_" + "t" * 43
WHO = Principal("u", "A", method=AuthMethod.API_TOKEN)
_OTHER = st.tuples(st.sampled_from([b"accept", b"host", b"x-a", b"content-type"]),
                   st.binary(max_size=8))


async def _verify(token: str) -> Principal | None:
    return WHO if token == TOKEN else None


def _forwarded(app_auth: bool, headers: list[tuple[bytes, bytes]]) -> dict[str, Any] | None:
    seen: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    async def send(message: Any) -> None:
        pass

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}
    app = AuthenticatingApp(inner, api_tokens=_verify, auth=app_auth)
    scope = {"type": "http", "path": "/mcp", "method": "POST", "query_string": b"",
             "headers": headers}
    anyio.run(app, scope, receive, send)
    return seen[0] if seen else None


@settings(max_examples=150, deadline=None)
@given(before=st.lists(_OTHER, max_size=4), after=st.lists(_OTHER, max_size=4),
       extra=st.lists(st.tuples(st.integers(0, 8), st.sampled_from(
           [b"Bearer " + TOKEN.encode(), b"Basic eDp5"])), max_size=2),
       auth=st.booleans())
def test_only_the_authorization_headers_go(
        before: list[tuple[bytes, bytes]], after: list[tuple[bytes, bytes]],
        extra: list[tuple[int, bytes]], auth: bool) -> None:
    headers = [*before, (b"authorization", f"Bearer {TOKEN}".encode()), *after]
    for at, value in extra:
        headers.insert(min(at, len(headers)), (b"authorization", value))
    original = list(headers)
    scope = _forwarded(auth, headers)
    assert headers == original  # the server's list is never changed
    if auth and extra:  # more than one Authorization header: refused, nothing forwarded
        assert scope is None
        return
    assert scope is not None
    assert scope["headers"] == [h for h in original if h[0] != b"authorization"]
    assert all(TOKEN.encode() not in value for _, value in scope["headers"])
    assert scope[PRINCIPAL_KEY] == (WHO if auth else ANONYMOUS)
