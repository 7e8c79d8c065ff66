"""Secrets at rest: AES-256-GCM with a key that never enters the database.

The key comes from ``MOBIUS_MARKET_KEY`` (32 bytes, URL-safe base64) or from the
key file ``$MOBIUS_HOME/market.key``, created on first use with mode 0600 and
refused later if anyone but its owner can read it.  Someone holding a copy of
the database alone learns nothing of the secrets.

Each ciphertext is bound (as GCM associated data) to its organization,
extension and input name, so a value copied from one row or field to another
fails to decrypt instead of leaking into the wrong extension.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..storage.sealing import AeadSealer, SealingError, load_key_file

__all__ = ("SecretBox", "SecretError", "KEY_ENV", "KEY_FILE", "load_key")

KEY_ENV = "MOBIUS_MARKET_KEY"
KEY_FILE = "market.key"


class SecretError(SealingError):
    """No usable key, or a ciphertext that does not decrypt under it."""


def load_key(home: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The key from the environment, else from (or newly into) ``home/market.key``."""
    return load_key_file(home, KEY_ENV, KEY_FILE, environ=environ, error=SecretError)


class SecretBox(AeadSealer):
    """Encrypts and decrypts the secret inputs of installations."""

    def __init__(self, key: bytes) -> None:
        super().__init__(key, "mobius-market", SecretError)

    def seal(self, org_id: str, name: str, field: str, value: str) -> str:
        return self.seal_parts((org_id, name, field), value)

    def open(self, org_id: str, name: str, field: str, token: str) -> str:
        return self.open_parts((org_id, name, field), token, what=f"secret {field!r}")
