"""API tokens Mobius issues: shown once, stored as hashes, expiring, revocable.

A token is ``mbx_`` followed by 32 random bytes in URL-safe base64 (43
characters).  Its first :data:`ID_LENGTH` characters after the prefix are the
token's public id: the store looks the record up by it, listings show it, and
the audit log names it, so a leaked listing gives nobody a credential.

Only the SHA-256 of the whole token is stored.  A slow password hash (bcrypt,
scrypt, Argon2) exists to make guessing *low-entropy* secrets expensive; a
token carries 256 random bits, so nobody can enumerate candidates whatever
the hash costs, and a fast hash keeps authentication (done on every request)
cheap.  The hash is compared in constant time all the same.

Last use is recorded, but at most once per ``touch_interval`` per token, so
a busy client does not turn every request into a write.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from .principal import AuthMethod, Principal, roles_of
from .store import ApiToken, DuplicateError, ResolvedToken, SecurityStore

__all__ = ("TOKEN_PREFIX", "ID_LENGTH", "IssuedToken", "TokenError", "issue_token",
           "authenticate_token", "resolve_principal", "revalidate_token", "revoke_token",
           "hash_token", "token_id")

TOKEN_PREFIX = "mbx_"
#: characters of the random part that form the public id (72 bits: unique in practice)
ID_LENGTH = 12
_RANDOM_BYTES = 32
_TOKEN = re.compile(r"^mbx_[A-Za-z0-9_-]{43}$")
#: record a token's last use at most this often (seconds)
TOUCH_INTERVAL = 60.0

#: how a due last use is recorded: ``(token id, time)``
Touch = Callable[[str, float], Awaitable[None]]


class TokenError(ValueError):
    """A token cannot be issued as asked (unknown user, not a member, bad expiry)."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """The one moment the token exists in clear: show ``token`` once, keep ``record``."""

    token: str
    record: ApiToken

    def __repr__(self) -> str:  # never print the secret by accident
        return f"IssuedToken(id={self.record.id!r}, token='mbx_…')"


def hash_token(raw: str) -> str:
    """The stored form of a token: SHA-256, hex."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def token_id(raw: str) -> str | None:
    """The public id of a well-formed token, or None for anything else."""
    if not _TOKEN.match(raw):
        return None
    return raw[len(TOKEN_PREFIX):len(TOKEN_PREFIX) + ID_LENGTH]


async def issue_token(store: SecurityStore, *, user_id: str, org_id: str,
                      scopes: Iterable[str] = (), expires_at: float | None = None,
                      ttl: float | None = None, description: str = "",
                      now: float | None = None) -> IssuedToken:
    """A new token for ``user_id`` acting in ``org_id`` (where they must be a member).

    ``ttl`` (seconds from now) and ``expires_at`` (epoch seconds) are two ways
    to say when it stops working; neither: never (until revoked).
    """
    at = time.time() if now is None else now
    user = await store.get_user(user_id)
    if user is None or user.disabled:
        raise TokenError(f"no active user {user_id!r}")
    if await store.get_membership(org_id, user_id) is None:
        raise TokenError(f"user {user_id!r} is not a member of organization {org_id!r}")
    if ttl is not None:
        if ttl <= 0:
            raise TokenError("ttl must be positive")
        expires_at = at + ttl
    if expires_at is not None and expires_at <= at:
        raise TokenError("the expiry is in the past")
    clean_scopes = tuple(sorted({s.strip() for s in scopes if s.strip()}))
    for _ in range(8):
        raw = TOKEN_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)
        tid = token_id(raw)
        assert tid is not None
        record = ApiToken(id=tid, user_id=user_id, org_id=org_id, hash=hash_token(raw),
                          created_at=at, scopes=clean_scopes, expires_at=expires_at,
                          description=description)
        try:
            await store.add_token(record)
        except DuplicateError:
            continue  # an id collision (72 random bits): draw again
        return IssuedToken(raw, record)
    raise TokenError("could not draw a unique token id")  # pragma: no cover


async def authenticate_token(store: SecurityStore, raw: str, *, now: float | None = None,
                             touch_interval: float = TOUCH_INTERVAL,
                             clock: Callable[[], float] = time.time) -> Principal | None:
    """The principal a presented token stands for, or None (unknown, forged,
    revoked, expired, or its user disabled or no longer a member).

    Roles come from the membership at this moment, not from when the token was
    issued: demoting a member takes effect on their next request.
    """
    found = await resolve_principal(store, raw, now=now, touch_interval=touch_interval,
                                    clock=clock)
    return found[0] if found is not None else None


async def resolve_principal(store: SecurityStore, raw: str, *, now: float | None = None,
                            touch_interval: float = TOUCH_INTERVAL,
                            clock: Callable[[], float] = time.time,
                            touch: Touch | None = None
                            ) -> tuple[Principal, ResolvedToken] | None:
    """:func:`authenticate_token` and what was read with it in one store query (the
    token's expiry, the organization's ``rules_version``: the policy need not read
    the organization again).  ``touch`` records a due last use (default: the
    store's write, awaited; :class:`~.last_use.LastUseWriter` writes it later)."""
    tid = token_id(raw)
    if tid is None:
        return None
    resolved = await store.resolve_token(tid)
    presented = hash_token(raw)
    if resolved is None:
        # compare anyway, so an unknown id costs what a wrong secret costs
        hmac.compare_digest(presented, "0" * 64)
        return None
    if not hmac.compare_digest(presented, resolved.token.hash):
        return None
    principal = await _principal_of(store, resolved, clock() if now is None else now,
                                    touch_interval, touch)
    return None if principal is None else (principal, resolved)


async def revalidate_token(store: SecurityStore, principal: Principal, *,
                           now: float | None = None, touch: Touch | None = None
                           ) -> Principal | None:
    """``principal`` as its API token stands now (fresh roles), or None when the token
    was revoked or expired or its user or membership went meanwhile.

    For connections that authenticated once and then carry many requests (a
    WebSocket): each request is checked again, so a revocation applies to it too.
    Principals that did not come from an API token pass unchanged.
    """
    if principal.method is not AuthMethod.API_TOKEN or principal.credential is None:
        return principal
    resolved = await store.resolve_token(principal.credential)
    if resolved is None:
        return None
    return await _principal_of(store, resolved, time.time() if now is None else now,
                               TOUCH_INTERVAL, touch)


async def _principal_of(store: SecurityStore, resolved: ResolvedToken, at: float,
                        touch_interval: float, touch: Touch | None) -> Principal | None:
    record = resolved.token
    if record.revoked_at is not None or (record.expires_at is not None
                                         and at >= record.expires_at):
        return None
    if not resolved.user_active or resolved.role is None:
        return None
    roles = roles_of(resolved.role)
    if record.last_used_at is None or at - record.last_used_at >= touch_interval:
        await (touch or store.touch_token)(record.id, at)
    return Principal(user=record.user_id, organization=record.org_id, roles=roles,
                     scopes=frozenset(record.scopes), method=AuthMethod.API_TOKEN,
                     credential=record.id, expires_at=record.expires_at)


async def revoke_token(store: SecurityStore, tid: str, *, now: float | None = None) -> bool:
    """Revoke the token with public id ``tid``; False if unknown or revoked already.

    The next request that presents it fails: nothing caches a positive answer.
    """
    return await store.revoke_token(tid, time.time() if now is None else now)
