"""URL rules of the client's authorization: what may be trusted, and where tokens may go.

Every URL that a server or an authorization server hands us (a metadata
document, an issuer, an endpoint) passes :func:`require_secure` before we
contact it: HTTPS, or plain HTTP on a loopback address only (a developer's
local server), never credentials in the URL and never a fragment.  Tokens are
bound to an *origin* (scheme, host, port): :func:`origin_of` is the one key
the bearer-token attachment compares.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

from .errors import OAuthError

__all__ = ("require_secure", "origin_of", "is_loopback", "resource_allowed",
           "canonical_resource", "root_of", "parse_challenge", "well_known_urls")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_secure(url: object, what: str) -> str:
    """``url`` if it is an absolute HTTPS URL (or HTTP on loopback); else :class:`OAuthError`."""
    if not isinstance(url, str) or not url:
        raise OAuthError(f"{what} is missing or not a string", "malformed-metadata")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a non-numeric port
    except ValueError as exc:
        raise OAuthError(f"{what} {url!r} is not a valid URL: {exc}", "malformed-metadata") \
            from exc
    del port
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise OAuthError(f"{what} {url!r} is not an absolute http(s) URL", "malformed-metadata")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise OAuthError(f"{what} {url!r} does not use https (plain http is allowed only "
                         f"on loopback addresses)", "insecure-url")
    if parts.username is not None or parts.password is not None:
        raise OAuthError(f"{what} {url!r} carries credentials in the URL", "malformed-metadata")
    if parts.fragment:
        raise OAuthError(f"{what} {url!r} has a fragment", "malformed-metadata")
    return url


def origin_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port made explicit and the host lower-cased."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme in ("https", "wss") else 80)
    return scheme, (parts.hostname or "").lower(), port


def root_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: where 2025-03-26 servers kept their OAuth."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def canonical_resource(url: str) -> str:
    """The server URL as a resource indicator (RFC 8707): no fragment, no query,
    lower-case scheme and host, no trailing slash on a bare path."""
    parts = urlsplit(url)
    path = parts.path if parts.path not in ("", "/") else ""
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, "", ""))


def resource_allowed(server_url: str, resource: str) -> bool:
    """Whether a metadata document's ``resource`` may stand for ``server_url``: the same
    origin, and the server's path at or below the resource's path."""
    if origin_of(server_url) != origin_of(resource):
        return False
    wanted = urlsplit(server_url).path.rstrip("/") + "/"
    declared = urlsplit(resource).path.rstrip("/") + "/"
    return wanted.startswith(declared)


_PARAM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*,?')


def parse_challenge(header: str | None) -> dict[str, str]:
    """The parameters of a ``WWW-Authenticate: Bearer k="v", ...`` challenge (RFC 6750,
    or a ``DPoP`` one, RFC 9449), with ``scheme``; empty when there is neither."""
    if not header:
        return {}
    text = header.strip()
    scheme = next((name for name in ("bearer", "dpop") if text.lower().startswith(name)), None)
    if scheme is None:
        return {}
    params: dict[str, str] = {"scheme": scheme}
    for match in _PARAM.finditer(text[len(scheme):]):
        value = match.group(2)
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(match.group(1).lower(), value)
    return params


def well_known_urls(base: str, name: str, *, path_after: bool = False) -> list[str]:
    """Where RFC 8414/9728 put a well-known document for ``base``.

    ``/.well-known/NAME/PATH`` first (path inserted), then, for OpenID
    Connect, ``/PATH/.well-known/NAME`` (``path_after``); a base without a
    path has just ``/.well-known/NAME``.
    """
    parts = urlsplit(base)
    path = parts.path.rstrip("/")
    root = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    urls = [f"{root}/.well-known/{name}{path}"]
    if path and path_after:
        urls.append(f"{root}{path}/.well-known/{name}")
    return urls
