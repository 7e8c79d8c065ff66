"""``mobius client logout`` and the saved-token store's refusals, as real processes:
every bad input is one line on standard error and exit status 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from mobius_rpc.client.oauth import TokenSet
from mobius_rpc.credentials import open_token_store

URL = "http://127.0.0.1:9/mcp"


def mobius(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MOBIUS_STORE", "MOBIUS_CLIENT_KEY")}
    env["MOBIUS_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "mobius_rpc", *args], env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    for word in words:
        assert word in done.stderr, done.stderr


def save(home: Path, store: str) -> None:
    async def run() -> None:
        async with open_token_store(store, environ={"MOBIUS_HOME": str(home)}) as tokens:
            await tokens.set_tokens(URL, TokenSet("at-secret", issuer="https://as.test",
                                                  resource=URL))
    anyio.run(run)


def test_logout_removes_the_saved_token(tmp_path: Path) -> None:
    home, store = tmp_path / "home", f"sqlite:///{tmp_path}/t.db"
    save(home, store)
    assert b"at-secret" not in (tmp_path / "t.db").read_bytes()
    done = mobius(home, "client", "logout", URL, "--store", store)
    assert done.returncode == 0 and done.stdout.strip() == f"logged out of {URL}"
    done = mobius(home, "client", "logout", URL, "--store", store)
    assert done.returncode == 0 and "no login was kept" in done.stdout


def test_a_plain_command_creates_no_store(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = mobius(home, "client", "logout", URL)
    assert done.returncode == 0 and "no login was kept" in done.stdout
    assert not home.exists()


@pytest.mark.parametrize("args, words", [
    (("client", "logout", "ftp://x/mcp"), ("http(s)://",)),
    (("client", "logout", URL, "--store", "bogus:x"), ("unknown store",)),
    (("client", "login", "file:///x", "--timeout", "1"), ("http(s)://",)),
    (("client", "tools", "--url", URL, "--store", "sqlite://host/x"), ("no host",)),
])
def test_bad_input_is_one_line(tmp_path: Path, args: tuple[str, ...],
                               words: tuple[str, ...]) -> None:
    one_line_error(mobius(tmp_path / "home", *args), *words)


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    home, store = tmp_path / "home", f"sqlite:///{tmp_path}/t.db"
    save(home, store)
    (home / "client.key").chmod(0o644)
    one_line_error(mobius(home, "client", "logout", URL, "--store", store),
                   "readable by others")
