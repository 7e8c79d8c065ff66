"""Putting security onto a server: the authenticator, the first owner, serve's wiring.

* :class:`Authenticator` is what ``Server(authenticator=...)`` takes: called
  with an ASGI app it returns that app behind :class:`~.http_auth.AuthenticatingApp`,
  checking Mobius API tokens against the store (and OAuth bearer tokens when an
  :class:`~.oauth.OAuthVerifier` is given: their callers get the user and roles
  of the matching membership, :mod:`.oauth_members`) and putting every failed
  authentication on record before the 401 is sent.
* :func:`secure` builds the authenticator, the policy middleware and one audit
  log on a store and installs them on a server: the defaults ``mobius serve``
  uses, for embedders too.
* :func:`bootstrap` makes the first owner on an empty store, and
  :func:`serve_http_security` is the part of ``mobius serve --http`` that opens
  the store and says on stderr how to authenticate.
"""

from __future__ import annotations

import getpass
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from hashlib import blake2s
from typing import Any, TextIO

import anyio
from starlette.types import ASGIApp

from .admin import create_organization
from .audit import AuditLog
from .epoch import EpochWatch
from .http_auth import AuthenticatingApp, AuthFailure
from .last_use import LastUseWriter
from .middleware import SecurityMiddleware
from .oauth import OAuthVerifier
from .oauth_members import OAuthMembership
from .policy import PolicyEngine
from .principal import AuthMethod, Principal, Role
from .store import DuplicateError, SecurityStore, User
from .tokens import (
    TOUCH_INTERVAL,
    issue_token,
    resolve_principal,
    revalidate_token,
)

__all__ = ("Authenticator", "secure", "bootstrap", "Bootstrap", "HttpSecurity",
           "serve_http_security", "local_principal", "os_user")


def os_user() -> str:
    """The name of the OS user running this process (``owner`` when it has none)."""
    try:
        return getpass.getuser() or "owner"
    except Exception:  # no login name, no USER variable: a container, say
        return "owner"


def local_principal(user: str | None = None) -> Principal:
    """The identity a stdio server runs as: the OS user, owner of a personal organization."""
    name = user or os_user()
    return Principal(user=name, organization=f"personal:{name}", roles=frozenset({Role.OWNER}),
                     method=AuthMethod.LOCAL)


@dataclass(slots=True)
class _Cached:
    principal: Principal
    version: int | None
    epoch: int
    good_until: float
    token_id: str
    touched: float


class Authenticator:
    """API tokens (and optionally OAuth) in front of an ASGI app; failures audited."""

    def __init__(self, store: SecurityStore, *, oauth: OAuthVerifier | None = None,
                 audit: AuditLog | None = None, cache_size: int = 4096,
                 cache_ttl: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.oauth = oauth
        self.audit = audit or AuditLog(store, clock=clock)
        #: told each organization's rules version read with a token (saves it a read)
        self.policy: PolicyEngine | None = None
        #: resolved tokens by hash (see :meth:`verify`); 0 entries: no caching
        self._cache: dict[bytes, _Cached] = {}
        self.cache_size = cache_size
        #: how long a cached token is trusted without resolving it again, epoch or not
        self.cache_ttl = cache_ttl
        self._clock = clock
        #: the store's security epoch, read only when it may have moved (run its
        #: :meth:`~.epoch.EpochWatch.run` beside the server to save the reads on
        #: PostgreSQL; without it every request reads the epoch)
        self.epoch = EpochWatch(store)
        #: tokens' last-use writes, behind the answer while :meth:`run` runs
        self.last_use = LastUseWriter(store)
        #: an accepted JWT's user and roles, from the membership of the user named
        #: ``oauth:SUBJECT`` (:mod:`.oauth_members`)
        self.oauth_members = OAuthMembership(store, self.epoch, ttl=cache_ttl,
                                             cache_size=cache_size, clock=clock)

    async def run(self) -> None:
        """What runs beside the server until cancelled: the epoch's notices
        (:meth:`~.epoch.EpochWatch.run`) and the tokens' last-use writes
        (:class:`~.last_use.LastUseWriter`), so no request waits for either.
        Without it every request still gets the same answers."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.epoch.run)
            tg.start_soon(self.last_use.run)

    def use_audit(self, audit: AuditLog) -> None:
        self.audit = audit

    def cached(self, token: bytes) -> Principal | None:
        """The principal of an API token (its bytes, as the header carries them) that
        :meth:`verify` resolved before and that still holds, without awaiting
        anything; None: ask :meth:`verify`, which also does what this leaves to it
        (the epoch read when one must be awaited, the last-use write when due and
        no :meth:`run` notes it, a token not cached).  Per request, in front of
        every route."""
        epoch = self.epoch.now()
        if epoch is None:
            return None
        found = self._cache.get(blake2s(token).digest())
        if found is None or found.epoch != epoch:
            return None
        now = self._clock()
        if now >= found.good_until:
            return None
        if now - found.touched >= TOUCH_INTERVAL:  # the minute's last use
            if not self.last_use.note(found.token_id, now):
                return None  # verify writes it
            found.touched = now
        if self.policy is not None:
            self.policy.note_version(found.principal.organization, found.version)
        return found.principal

    async def verify(self, raw: str) -> Principal | None:
        """The principal of an API token.  Resolved tokens are cached by their hash
        while the store's security epoch stands still (one tiny read per request
        instead of a join), and never past their expiry; a revocation anywhere moves
        the epoch, so the very next request resolves the token again and fails
        (in this process always; in another replica see :mod:`.epoch`)."""
        token = raw.encode()
        known = self.cached(token)
        if known is not None:
            return known
        epoch = self.epoch.now()
        if epoch is None:
            epoch = await self.epoch.current()
        # the cache's key: the token's BLAKE2s-256 digest, never the token itself
        # (raw bytes, not hex; BLAKE2s rather than SHA-256: as strong a hash for a
        # key, and 0.3 against 0.76 us on a token here, as OpenSSL's SHA-256 costs
        # most in setting up; the store's own lookup hash is tokens.py's business)
        key = blake2s(token).digest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached.epoch == epoch and now < cached.good_until:
            principal, version = cached.principal, cached.version
            if now - cached.touched >= TOUCH_INTERVAL:  # last use, at most once a minute
                cached.touched = now
                await self.last_use.record(cached.token_id, now)
        else:
            found = await resolve_principal(self.store, raw, clock=self._clock,
                                            touch=self.last_use.record)
            if found is None:
                self._cache.pop(key, None)
                return None
            principal, resolved = found
            version, expires = resolved.rules_version, resolved.token.expires_at
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            if self.cache_size > 0:
                self._cache[key] = _Cached(principal, version, epoch,
                                           now + self.cache_ttl if expires is None
                                           else min(expires, now + self.cache_ttl),
                                           principal.credential or "", now)
        if self.policy is not None:
            self.policy.note_version(principal.organization, version)
        return principal

    async def revalidate(self, principal: Principal) -> Principal | None:
        """A WebSocket's principal again, on each of its requests: an API token
        resolved anew, an OAuth caller's membership looked at again."""
        if principal.method is AuthMethod.OAUTH:
            return await self.oauth_members.recheck(principal)
        return await revalidate_token(self.store, principal, now=self._clock(),
                                      touch=self.last_use.record)

    async def failed(self, failure: AuthFailure) -> None:
        """Record one refused request (durably, before the refusal is sent)."""
        await self.audit.append(
            method="auth/failed", outcome="denied", target=failure.path,
            error=failure.reason, error_code=failure.status,
            detail={"transport": failure.transport,
                    "credential_kind": failure.method.value if failure.method else None,
                    "error": failure.error,
                    "client": failure.client[0] if failure.client else None})

    def __call__(self, app: ASGIApp) -> AuthenticatingApp:
        return AuthenticatingApp(app, oauth=self.oauth, api_tokens=self.verify,
                                 on_failure=self.failed, api_tokens_cached=self.cached,
                                 oauth_members=self.oauth_members)


def secure(server: Any, store: SecurityStore, *, oauth: OAuthVerifier | None = None,
           audit: AuditLog | None = None, **policy: Any
           ) -> tuple[Authenticator, SecurityMiddleware, AuditLog]:
    """Authentication, policy and audit on ``store`` installed on ``server``, sharing one
    audit log (``policy`` options go to :class:`SecurityMiddleware`)."""
    log = audit or AuditLog(store)
    authenticator = Authenticator(store, oauth=oauth, audit=log)
    policy.setdefault("revalidate", authenticator.revalidate)
    middleware = SecurityMiddleware(store, audit=log, **policy)
    authenticator.policy = middleware.policy
    server.secure(authenticator=authenticator, policy=middleware, audit=log)
    return authenticator, middleware, log


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """What :func:`bootstrap` made: the owner, their organization, and the token (once)."""

    user: User
    org_id: str
    token: str


async def bootstrap(store: SecurityStore, audit: AuditLog | None = None, *,
                    user_name: str | None = None) -> Bootstrap | None:
    """On a store without users: create the owner (the OS user by default), a
    personal organization with the default rules, and an API token for them.

    None when the store has its owner already (nothing is changed), including when
    another first start on the same store made it a moment before this one (its
    user name was taken).  A first start that stopped after the user was made
    (one user, no organization, no token) is finished: that user gets the
    organization and the token.
    """
    users = await store.list_users()
    if users:
        if len(users) == 1 and not await store.list_organizations() \
                and not await store.list_tokens(user_id=users[0].id):
            return await _owner_of(store, audit, users[0])
        return None
    name = user_name or os_user()
    user = User(id=uuid.uuid4().hex[:12], name=name, created_at=time.time())
    try:
        await store.create_user(user)
    except DuplicateError:
        return None  # a first start beside this one made the owner: it showed the token
    return await _owner_of(store, audit, user)


async def _owner_of(store: SecurityStore, audit: AuditLog | None, user: User) -> Bootstrap:
    """The owner's organization and token (the rest of a first start)."""
    org = await create_organization(store, f"{user.name}'s organization",
                                    owner_user_id=user.id, audit=audit)
    issued = await issue_token(store, user_id=user.id, org_id=org.id,
                               description="created on first start")
    if audit is not None:
        await audit.append(method="admin/token.create", outcome="ok", target=issued.record.id,
                           detail={"user": user.id, "org": org.id, "bootstrap": True})
    return Bootstrap(user, org.id, issued.token)


@dataclass
class HttpSecurity:
    """What ``mobius serve --http`` tells the user (after its URLs) about authentication."""

    notes: list[str] = field(default_factory=list)
    #: the security store, when authentication is on
    store: SecurityStore | None = None


@asynccontextmanager
async def serve_http_security(server: Any, *, auth: bool, store_url: str | None,
                              reason_off: str = "--no-auth", audit_writer: str = "process",
                              oauth: OAuthVerifier | None = None
                              ) -> AsyncIterator[HttpSecurity]:
    """The security of ``mobius serve --http``: on a store (``--store``, else
    ``$MOBIUS_STORE``, else the SQLite file in the data directory) unless ``auth``
    is False, in which case nothing is installed and a warning is among the notes.
    Installed on ``server`` (:func:`secure`), so build its ASGI app inside the block.

    ``oauth``: also accept that verifier's JWTs (``--oauth-issuer``).
    ``audit_writer``: ``"process"`` (the default) writes the records of allowed uses
    from a child process (:mod:`.audit_process`) when the store is a database another
    process can open (SQLite, PostgreSQL); ``"thread"`` writes them here."""
    if audit_writer not in ("process", "thread"):
        raise ValueError(f"audit_writer must be 'process' or 'thread', not {audit_writer!r}")
    if not auth:
        yield HttpSecurity([
            f"WARNING: authentication is OFF ({reason_off}): anyone who can reach this port "
            "can list and call everything. For local development only."])
        return
    from ..storage import store_url as resolve
    from .open import open_security_store

    url = resolve(store_url)
    async with open_security_store(url) as (store, security):
        # things a layer assigned to organizations (the gateway's installed extensions)
        owners = getattr(server, "owners", None)
        authenticator, _, log = secure(server, security, oauth=oauth,
                                       **({"owners": owners} if owners else {}))
        made = await bootstrap(security, log)
        where = f" --store {url}" if url else ""
        if made is not None:
            notes = [
                f"authentication: ON. First start on an empty store ({store.location}): created "
                f"user {made.user.name!r}, owner of organization {made.org_id!r}.",
                f"API token for {made.user.name!r} (shown once, keep it safe): {made.token}",
                "send it as the header  Authorization: Bearer <token>"]
        else:
            notes = [f"authentication: ON (store {store.location}). Make an API token with: "
                     f"mobius token create --user NAME --org ORG{where}"]
        if oauth is not None:
            notes.append(f"OAuth: also accepting access tokens of {oauth.config.issuer} for "
                         f"{oauth.config.resource}; a token's subject acts as the user named "
                         "oauth:SUBJECT, with that user's role in the token's organization")
        writer = None
        if audit_writer == "process" and store.backend in ("sqlite", "postgresql"):
            from .audit_process import AuditWriterProcess
            writer = AuditWriterProcess(url)  # None: the child resolves the same default
        async with anyio.create_task_group() as tg:
            # allowed uses are recorded behind the answer
            if writer is not None:
                tg.start_soon(writer.run, log)
            else:
                tg.start_soon(log.run)
            # replicas' revocations by notice; last-use writes behind the answers
            tg.start_soon(authenticator.run)
            try:
                yield HttpSecurity(notes, security)
            finally:
                tg.cancel_scope.cancel()  # the writer's end writes what is queued
        stats = dict(log.stats)
        if writer is not None and writer.child_stats:
            child = writer.child_stats
            stats["records"] += child.get("records", 0.0)
            stats["writes"] += child.get("writes", 0.0)
            stats["max_wait_ms"] = max(stats["max_wait_ms"], child.get("max_wait_ms", 0.0))
        print(f"audit: {stats['records']:.0f} records in {stats['writes']:.0f} writes"
              f"{' (by the writer process and this one)' if writer is not None else ''}; the "
              f"longest a record waited to be written: {stats['max_wait_ms']:.1f} ms",
              file=sys.stderr)


def print_notes(notes: list[str], stream: TextIO = sys.stderr) -> None:
    for line in notes:
        print(line, file=stream)
