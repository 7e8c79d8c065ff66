"""Two stores open on one SQLite file in one process, and another process writing.

``mobius serve --stdio`` opens the store twice (the context engine's and the
security store's).  Closing any descriptor of a file drops every POSIX lock the
process holds on it, SQLite's included; when the second open checked the file's
header with a plain ``open``/``close``, the first one's locks were gone, so a CLI
process writing meanwhile believed itself the last connection, deleted the WAL on
its close, and the server's next commits went to the deleted WAL (invisible to
others) and later overwrote the CLI's: an admin change's audit record vanished.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mobius_rpc.security.open import open_security_store
from mobius_rpc.security.store import User
from tests.storage.conftest import FAST_SQLITE

pytestmark = pytest.mark.anyio


def _names(url: str, tmp_path: Path) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "mobius_rpc", "user", "list", "--store", url],
                          capture_output=True, text=True, timeout=60,
                          env={"MOBIUS_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return sorted(line.split()[1] for line in done.stdout.splitlines() if line.strip())


async def test_a_second_open_keeps_the_first_ones_commits_visible_and_others_kept(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    async with open_security_store(url, sqlite=FAST_SQLITE) as (_, first):
        await first.create_user(User("u1", "one", 1.0))
        async with open_security_store(url, sqlite=FAST_SQLITE) as (_, second):
            await second.get_user("u1")
            done = subprocess.run(
                [sys.executable, "-m", "mobius_rpc", "user", "create", "two", "--store", url],
                capture_output=True, text=True, timeout=60,
                env={"MOBIUS_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"})
            assert done.returncode == 0, done.stderr
            await first.create_user(User("u3", "three", 3.0))
            # another process sees this process's commit at once
            assert _names(url, tmp_path) == ["one", "three", "two"]
    # and once everything is closed, nothing was overwritten
    assert _names(url, tmp_path) == ["one", "three", "two"]
