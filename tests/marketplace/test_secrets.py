"""Secrets are sealed with a key kept outside the database, bound to where they belong."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from mobius_rpc.marketplace import SecretBox, SecretError, load_key


def test_the_key_file_is_created_once_owner_only_and_reused(tmp_path: Path) -> None:
    key = load_key(tmp_path / "home", {})
    path = tmp_path / "home" / "market.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(tmp_path / "home", {}) == key and len(key) == 32
    os.chmod(path, 0o644)
    with pytest.raises(SecretError, match="readable by others"):
        load_key(tmp_path / "home", {})


def test_the_environment_key_wins_and_is_checked(tmp_path: Path) -> None:
    raw = base64.urlsafe_b64encode(b"e" * 32).decode()
    assert load_key(tmp_path, {"MOBIUS_MARKET_KEY": raw}) == b"e" * 32
    assert not (tmp_path / "market.key").exists()
    for bad in ("short", "!!!!"):
        with pytest.raises(SecretError, match="MOBIUS_MARKET_KEY"):
            load_key(tmp_path, {"MOBIUS_MARKET_KEY": bad})


def test_a_sealed_value_opens_only_in_its_place_and_with_its_key() -> None:
    box = SecretBox(b"a" * 32)
    token = box.seal("acme", "io.x/y", "TOKEN", "s3cret")
    assert "s3cret" not in token and box.open("acme", "io.x/y", "TOKEN", token) == "s3cret"
    assert box.seal("acme", "io.x/y", "TOKEN", "s3cret") != token  # fresh nonce
    for org, name, field in (("globex", "io.x/y", "TOKEN"), ("acme", "io.x/z", "TOKEN"),
                             ("acme", "io.x/y", "OTHER")):
        with pytest.raises(SecretError, match="does not decrypt"):
            box.open(org, name, field, token)
    with pytest.raises(SecretError):
        SecretBox(b"b" * 32).open("acme", "io.x/y", "TOKEN", token)
    with pytest.raises(SecretError):
        box.open("acme", "io.x/y", "TOKEN", "plain")
    assert "a" * 8 not in repr(box)
