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

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ("SecretBox", "SecretError", "KEY_ENV", "KEY_FILE", "load_key")

KEY_ENV = "MOBIUS_MARKET_KEY"
KEY_FILE = "market.key"
_PREFIX = "v1."


class SecretError(ValueError):
    """No usable key, or a ciphertext that does not decrypt under it."""


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, UnicodeEncodeError):
        raise SecretError(f"{where}: not URL-safe base64") from None
    if len(key) != 32:
        raise SecretError(f"{where}: the key must be 32 bytes, not {len(key)}")
    return key


def load_key(home: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The key from the environment, else from (or newly into) ``home/market.key``."""
    env = os.environ if environ is None else environ
    if env.get(KEY_ENV):
        return _decode_key(env[KEY_ENV], KEY_ENV)
    path = home / KEY_FILE
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(f"{path}: readable by others (mode {stat.S_IMODE(mode):o}); "
                              "chmod 600 it") from None
        return _decode_key(path.read_text(encoding="ascii"), str(path))
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(base64.urlsafe_b64encode(AESGCM.generate_key(256)).decode() + "\n")
    return _decode_key(path.read_text(encoding="ascii"), str(path))


class SecretBox:
    """Encrypts and decrypts the secret inputs of installations."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    @staticmethod
    def _context(org_id: str, name: str, field: str) -> bytes:
        return f"mobius-market\n{org_id}\n{name}\n{field}".encode()

    def seal(self, org_id: str, name: str, field: str, value: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode(), self._context(org_id, name, field))
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, org_id: str, name: str, field: str, token: str) -> str:
        if not token.startswith(_PREFIX):
            raise SecretError(f"secret {field!r} is not in a known format")
        try:
            raw = base64.urlsafe_b64decode(token[len(_PREFIX):].encode("ascii"))
            return self._aead.decrypt(raw[:12], raw[12:],
                                      self._context(org_id, name, field)).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise SecretError(f"secret {field!r} does not decrypt with this key "
                              "(wrong key, or the value was moved)") from None
