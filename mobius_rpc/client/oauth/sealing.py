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

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ("Sealer", "SealError", "KEY_ENV", "KEY_FILE", "load_client_key")

KEY_ENV = "MOBIUS_CLIENT_KEY"
KEY_FILE = "client.key"
_PREFIX = "v1."
_NONCE = 12


class SealError(ValueError):
    """No usable key, or a ciphertext that does not decrypt under it."""


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise SealError(f"{where}: not URL-safe base64") from None
    if len(key) != 32:
        raise SealError(f"{where}: the key must be 32 bytes, not {len(key)}")
    return key


def load_client_key(home: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The key from ``$MOBIUS_CLIENT_KEY``, else from (or newly into) ``home/client.key``."""
    env = os.environ if environ is None else environ
    if env.get(KEY_ENV):
        return _decode(env[KEY_ENV], KEY_ENV)
    path = home / KEY_FILE
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SealError(f"{path}: readable by others (mode {stat.S_IMODE(mode):o}); "
                            "chmod 600 it") from None
        return _decode(path.read_text(encoding="ascii"), str(path))
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(base64.urlsafe_b64encode(AESGCM.generate_key(256)).decode() + "\n")
    return _decode(path.read_text(encoding="ascii"), str(path))


class Sealer:
    """Encrypts a value for one (row, field) and opens only that (row, field)'s values."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise SealError(f"the key must be 32 bytes, not {len(key)}")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Sealer(<key hidden>)"

    @staticmethod
    def _context(row: str, field: str) -> bytes:
        return f"mobius-client\n{row}\n{field}".encode()

    def seal(self, row: str, field: str, value: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, value.encode(), self._context(row, field))
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, row: str, field: str, sealed: str) -> str:
        if not sealed.startswith(_PREFIX):
            raise SealError(f"{field} of {row} is not in a known format")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_PREFIX):].encode("ascii"))
            if len(raw) <= _NONCE:
                raise ValueError("too short")
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:],
                                      self._context(row, field)).decode()
        except (InvalidTag, binascii.Error, ValueError, UnicodeError):
            raise SealError(f"{field} of {row} does not decrypt with this key "
                            "(another key, or a value moved from another row)") from None
