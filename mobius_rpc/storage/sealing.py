"""Values sealed at rest: AES-256-GCM under a key that never enters the database.

What persists sometimes includes secrets (an extension's API key, a client's
OAuth tokens).  They are stored only as ciphertexts made here, so a copy of the
database alone reveals none of them.  The key comes from an environment
variable (32 bytes, URL-safe base64) or from a key file in the data directory,
created on first use with mode 0600 and refused later when anyone but its owner
may read it.

Each ciphertext is bound, as GCM associated data, to a purpose and to the row
and field it belongs to: a value copied to another row does not decrypt, so it
can never be used where it was not meant to be.  Callers name the parts
(``(org, extension, input)`` or ``(server, field)``) and keep their own error
types as subclasses of :class:`SealingError`.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ("SealingError", "AeadSealer", "load_key_file")

_PREFIX = "v1."
_NONCE = 12


class SealingError(ValueError):
    """No usable key, or a ciphertext that does not decrypt under it."""


def _decode(text: str, where: str, error: type[SealingError]) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise error(f"{where}: not URL-safe base64") from None
    if len(key) != 32:
        raise error(f"{where}: the key must be 32 bytes, not {len(key)}")
    return key


def load_key_file(home: Path, env_name: str, file_name: str, *,
                  environ: Mapping[str, str] | None = None,
                  error: type[SealingError] = SealingError) -> bytes:
    """The key from ``$env_name``, else from (or newly into) ``home/file_name`` (0600)."""
    env = os.environ if environ is None else environ
    if env.get(env_name):
        return _decode(env[env_name], env_name, error)
    path = home / file_name
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise error(f"{path}: readable by others (mode {stat.S_IMODE(mode):o}); "
                        "chmod 600 it") from None
        return _decode(path.read_text(encoding="ascii"), str(path), error)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(base64.urlsafe_b64encode(AESGCM.generate_key(256)).decode() + "\n")
    return _decode(path.read_text(encoding="ascii"), str(path), error)


class AeadSealer:
    """Seals values for one purpose, each bound to the parts (row, field) it names."""

    def __init__(self, key: bytes, purpose: str,
                 error: type[SealingError] = SealingError) -> None:
        if len(key) != 32:
            raise error(f"the key must be 32 bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self._purpose = purpose
        self._error = error

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<key hidden>)"

    def _context(self, parts: Sequence[str]) -> bytes:
        return "\n".join((self._purpose, *parts)).encode()

    def seal_parts(self, parts: Sequence[str], value: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, value.encode(), self._context(parts))
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open_parts(self, parts: Sequence[str], sealed: str, *, what: str) -> str:
        """The value; ``what`` names it in the error when it does not decrypt."""
        if not sealed.startswith(_PREFIX):
            raise self._error(f"{what} is not in a known format")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_PREFIX):].encode("ascii"))
            if len(raw) <= _NONCE:
                raise ValueError("too short")
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:],
                                      self._context(parts)).decode()
        except (InvalidTag, binascii.Error, ValueError, UnicodeError):
            raise self._error(f"{what} does not decrypt with this key (another key, or a "
                              "value moved from another row)") from None
