"""Client secrets at rest: AES-256-GCM with a key that never enters the database.

A persistent :class:`~.store.TokenStore` keeps access tokens, refresh tokens
and client secrets only as ciphertexts made here.  The key comes from
``MOBIUS_CLIENT_KEY`` (32 bytes, URL-safe base64) or from the key file
``client.key`` in the directory the caller names (the data directory),
created on first use with mode 0600 and refused later if anyone but its
owner may read it.  A copy of the database alone reveals no token.

Each ciphertext is bound (as GCM associated data) to the row it belongs to
(the server URL or issuer) and to its field, so a token copied to another
server's row does not decrypt: it can never be sent to a server it was not
obtained for.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..storage.sealing import AeadSealer, SealingError, load_key_file

__all__ = ("Sealer", "SealError", "KEY_ENV", "KEY_FILE", "load_client_key")

KEY_ENV = "MOBIUS_CLIENT_KEY"
KEY_FILE = "client.key"


class SealError(SealingError):
    """No usable key, or a ciphertext that does not decrypt under it."""


def load_client_key(home: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The key from ``$MOBIUS_CLIENT_KEY``, else from (or newly into) ``home/client.key``."""
    return load_key_file(home, KEY_ENV, KEY_FILE, environ=environ, error=SealError)


class Sealer(AeadSealer):
    """Encrypts a value for one (row, field) and opens only that (row, field)'s values."""

    def __init__(self, key: bytes) -> None:
        super().__init__(key, "mobius-client", SealError)

    def seal(self, row: str, field: str, value: str) -> str:
        return self.seal_parts((row, field), value)

    def open(self, row: str, field: str, sealed: str) -> str:
        return self.open_parts((row, field), sealed, what=f"{field} of {row}")
