"""DPoP (RFC 9449): tokens bound to a key of ours, proven on every request.

A bearer token works for whoever holds it; a DPoP-bound one only with a
fresh proof signed by the key it was issued to.  When an authorization
server advertises ``dpop_signing_alg_values_supported`` with ES256, the
client makes a P-256 key (kept in memory, never written anywhere), sends a
proof with each token request, and presents the token as
``Authorization: DPoP <token>`` with a proof that names the method, the URL
(without query or fragment) and the token's hash.  A server that wants a
nonce answers ``use_dpop_nonce`` with a ``DPoP-Nonce`` header; the nonce is
kept per server (authorization server and resource server apart) and the
request is sent again once.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

from joserfc import jwt
from joserfc.jwk import ECKey

__all__ = ("DPoPKey",)


class DPoPKey:
    """One proof-of-possession key and the nonces servers gave us for it."""

    algorithm = "ES256"

    def __init__(self) -> None:
        self._key = ECKey.generate_key("P-256")
        self._public = self._key.as_dict(private=False)
        #: origin -> the last DPoP-Nonce that origin sent
        self.nonces: dict[str, str] = {}

    def proof(self, method: str, url: str, *, access_token: str | None = None) -> str:
        parts = urlsplit(url)
        target = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        claims: dict[str, object] = {"jti": str(uuid.uuid4()), "htm": method.upper(),
                                     "htu": target, "iat": int(time.time())}
        if access_token is not None:
            digest = hashlib.sha256(access_token.encode("ascii")).digest()
            claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        nonce = self.nonces.get(_origin(url))
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"typ": "dpop+jwt", "alg": self.algorithm, "jwk": self._public}
        return jwt.encode(header, claims, self._key, algorithms=[self.algorithm])

    def remember_nonce(self, url: str, nonce: str | None) -> bool:
        """Keep ``nonce`` for ``url``'s origin; whether it is a new one."""
        if not nonce or len(nonce) > 1024:
            return False
        origin = _origin(url)
        fresh = self.nonces.get(origin) != nonce
        self.nonces[origin] = nonce
        return fresh


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
