"""The authorization server's signing keys: a JWKS fetched, cached and refreshed.

A resource server checks every bearer JWT against the public keys its issuer
publishes (RFC 7517 key set at the issuer's ``jwks_uri``).  Fetching them on
every request would tie our availability to the issuer's, so :class:`JwksCache`

* keeps the keys for ``ttl`` seconds, then fetches them again;
* fetches again early when a token names a ``kid`` it does not know (the
  issuer rotated its keys), but at most once per ``refetch_interval``, so a
  stream of tokens with made-up ``kid`` values cannot turn us into a
  load generator against the issuer;
* keeps serving the keys it has when a refresh fails (the issuer is briefly
  unreachable), for up to ``max_stale`` seconds past their expiry;
* reads at most ``max_bytes`` of a response, with a timeout, and never
  follows a redirect: the key set is whatever the configured URL serves.

Only asymmetric keys are kept (RSA, EC, OKP): a symmetric ``oct`` key in a
public key set is either a mistake or an attack, and without one no token
can be verified with an HMAC algorithm.
"""

from __future__ import annotations

import functools
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio
import httpx
import orjson
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey

__all__ = ("PublicKey", "KeySource", "JwksCache", "StaticKeys", "JwksUnavailable",
           "fetch_json", "discover_jwks_uri", "parse_key_set")

log = logging.getLogger("mobius_rpc.security")

PublicKey = RSAKey | ECKey | OKPKey


class JwksUnavailable(Exception):
    """No usable key set: the issuer could not be reached and nothing is cached."""


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The system's trust store, loaded once: building a TLS context takes tens of
    milliseconds of CPU, which a fetch would otherwise stall the event loop for."""
    return ssl.create_default_context()


async def fetch_json(url: str, *, client: httpx.AsyncClient | None = None,
                     timeout: float = 5.0, max_bytes: int = 512 * 1024) -> Any:
    """GET ``url`` and parse its JSON body, refusing anything larger than ``max_bytes``.

    Raises :class:`JwksUnavailable` (with a reason safe to log) for every failure:
    network errors, timeouts, non-200 answers, oversized or malformed bodies.
    """
    owned = client is None
    http = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                       verify=_tls_context())
    try:
        async with http.stream("GET", url, headers={"Accept": "application/json"},
                               timeout=timeout) as response:
            if response.status_code != 200:
                raise JwksUnavailable(f"{url} answered HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise JwksUnavailable(f"{url} sent {declared} bytes (limit {max_bytes})")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise JwksUnavailable(f"{url} sent more than {max_bytes} bytes")
        return orjson.loads(body)
    except httpx.HTTPError as error:
        raise JwksUnavailable(f"{url} unreachable: {type(error).__name__}") from error
    except orjson.JSONDecodeError as error:
        raise JwksUnavailable(f"{url} sent malformed JSON") from error
    finally:
        if owned:
            await http.aclose()


async def discover_jwks_uri(issuer: str, **fetch: Any) -> str:
    """The issuer's ``jwks_uri`` from its metadata (RFC 8414, then OpenID discovery).

    The document must name the same issuer (RFC 8414 §3.3): metadata that
    claims another issuer is ignored, as an attacker's mix-up would be; an
    https issuer's ``jwks_uri`` must be https.
    """
    parts = urlsplit(issuer)
    origin, path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
    candidates = [f"{origin}/.well-known/oauth-authorization-server{path}",
                  f"{origin}{path}/.well-known/openid-configuration"]
    reasons = []
    for url in candidates:
        try:
            document = await fetch_json(url, **fetch)
        except JwksUnavailable as error:
            reasons.append(str(error))
            continue
        if not isinstance(document, dict) or document.get("issuer") != issuer:
            reasons.append(f"{url} describes another issuer")
            continue
        jwks_uri = document.get("jwks_uri")
        # an https issuer's keys come over https too (no downgrade by its metadata)
        schemes = ("https://",) if parts.scheme == "https" else ("https://", "http://")
        if isinstance(jwks_uri, str) and jwks_uri.startswith(schemes):
            return jwks_uri
        reasons.append(f"{url} names no jwks_uri")
    raise JwksUnavailable("; ".join(reasons))


def parse_key_set(document: Any) -> dict[str | None, list[PublicKey]]:
    """The usable signing keys of a JWKS document, grouped by ``kid``.

    Keys this server cannot use are skipped, not fatal (RFC 7517 §5): unknown
    key types, symmetric keys, keys marked for encryption only.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksUnavailable("the key set has no 'keys' list")
    keys: dict[str | None, list[PublicKey]] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            key = JWKRegistry.import_key(entry)
        except (JoseError, ValueError, TypeError):
            continue
        if isinstance(key, RSAKey | ECKey | OKPKey):
            kid = entry.get("kid")
            keys.setdefault(kid if isinstance(kid, str) else None, []).append(key)
    return keys


class KeySource(Protocol):
    """Where a verifier gets the keys a token may be signed with."""

    async def keys_for(self, kid: str | None) -> list[PublicKey]:
        """The candidate keys for a token's ``kid`` (empty when none fits)."""
        ...


def _lookup(keys: dict[str | None, list[PublicKey]], kid: str | None) -> list[PublicKey]:
    """A token without ``kid`` may be checked against the keys that have none,
    or against the only key when the set has exactly one."""
    if kid is None:
        named = [key for group in keys.values() for key in group]
        return keys.get(None) or (named if len(named) == 1 else [])
    return list(keys.get(kid, ()))


class StaticKeys:
    """A fixed key set, for an issuer whose keys are pinned in configuration."""

    def __init__(self, document: Any) -> None:
        self.keys = parse_key_set(document)

    async def keys_for(self, kid: str | None) -> list[PublicKey]:
        return _lookup(self.keys, kid)


@dataclass
class _Snapshot:
    keys: dict[str | None, list[PublicKey]]
    fetched_at: float


@dataclass
class JwksCache:
    """The issuer's public keys, fetched on first use and kept fresh.

    ``url`` is the key set's address; without it the address is discovered
    from ``issuer``'s metadata on the first fetch.  ``clock`` is monotonic
    seconds (injectable so tests can move time without sleeping).
    """

    url: str | None = None
    issuer: str | None = None
    ttl: float = 300.0
    refetch_interval: float = 30.0
    max_stale: float = 3600.0
    timeout: float = 5.0
    max_bytes: int = 512 * 1024
    client: httpx.AsyncClient | None = None
    clock: Callable[[], float] = time.monotonic
    _snapshot: _Snapshot | None = field(default=None, init=False, repr=False)
    _last_attempt: float | None = field(default=None, init=False, repr=False)
    _lock: anyio.Lock = field(default_factory=anyio.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.url is None and self.issuer is None:
            raise ValueError("JwksCache needs the key set's url or the issuer to discover it from")

    async def keys_for(self, kid: str | None) -> list[PublicKey]:
        """The candidate keys for a token's ``kid`` (empty: no such key, even after a refetch)."""
        now = self.clock()
        snapshot = self._snapshot
        if snapshot is None or now - snapshot.fetched_at >= self.ttl:
            await self._refresh(now)
        found = self._lookup(kid)
        if not found and self._may_refetch(now):
            await self._refresh(now)
            found = self._lookup(kid)
        return found

    def _lookup(self, kid: str | None) -> list[PublicKey]:
        return _lookup(self._snapshot.keys, kid) if self._snapshot is not None else []

    def _may_refetch(self, now: float) -> bool:
        return self._last_attempt is None or now - self._last_attempt >= self.refetch_interval

    async def _refresh(self, now: float) -> None:
        """Fetch the key set again, unless another request just did (one fetch at a time)."""
        attempt_before = self._last_attempt
        async with self._lock:
            if self._last_attempt != attempt_before or not self._may_refetch(now):
                self._raise_if_unusable(now)
                return
            self._last_attempt = now
            try:
                if self.url is None:
                    assert self.issuer is not None
                    self.url = await discover_jwks_uri(self.issuer, **self._fetch_options())
                keys = parse_key_set(await fetch_json(self.url, **self._fetch_options()))
            except JwksUnavailable as error:
                log.warning("could not refresh the authorization server's keys: %s", error)
                self._raise_if_unusable(now, str(error))
                return
            self._snapshot = _Snapshot(keys, now)

    def _raise_if_unusable(self, now: float, reason: str = "no fetch succeeded yet") -> None:
        snapshot = self._snapshot
        if snapshot is None:
            raise JwksUnavailable(f"the authorization server's keys could not be fetched: "
                                  f"{reason}")
        if now - snapshot.fetched_at >= self.ttl + self.max_stale:
            raise JwksUnavailable("the cached keys are too old and cannot be refreshed")

    def _fetch_options(self) -> dict[str, Any]:
        return {"client": self.client, "timeout": self.timeout, "max_bytes": self.max_bytes}
