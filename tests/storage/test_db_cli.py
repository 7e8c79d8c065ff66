"""``mobius db status`` / ``mobius db upgrade`` as a user runs them, in a subprocess."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from mobius_rpc.storage import SCHEMA_VERSION

from .pgcluster import PgCluster


def mobius_db(*args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("MOBIUS_STORE", "MOBIUS_HOME")}
    return subprocess.run([sys.executable, "-m", "mobius_rpc", "db", *args],
                          capture_output=True, text=True, timeout=60, env={**base, **(env or {})},
                          stdin=subprocess.DEVNULL)


def one_line_failure(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_status_reports_a_missing_file_without_creating_it(tmp_path: Path) -> None:
    path = tmp_path / "never.db"
    done = mobius_db("status", "--store", f"sqlite:///{path}")
    assert done.returncode == 0 and "none yet" in done.stdout
    assert not path.exists()


def test_upgrade_then_status_on_the_default_location(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"MOBIUS_HOME": str(home)}
    done = mobius_db("upgrade", env=env)
    assert done.returncode == 0, done.stderr
    assert f"upgraded: 0 -> {SCHEMA_VERSION}" in done.stdout
    assert (home / "mobius.db").exists()
    status = mobius_db("status", "--json", env=env)
    assert orjson.loads(status.stdout) == {
        "backend": "sqlite", "location": str(home / "mobius.db"), "exists": True,
        "version": SCHEMA_VERSION, "latest": SCHEMA_VERSION, "pending": []}
    again = mobius_db("upgrade", env=env)
    assert "nothing to do" in again.stdout


def test_the_store_comes_from_the_environment_when_not_given(tmp_path: Path) -> None:
    path = tmp_path / "from-env.db"
    done = mobius_db("upgrade", env={"MOBIUS_STORE": f"sqlite:///{path}"})
    assert done.returncode == 0 and str(path) in done.stdout and path.exists()


def test_an_old_schema_is_shown_pending_and_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    import anyio

    from mobius_rpc.storage import upgrade_store
    anyio.run(lambda: upgrade_store(f"sqlite:///{path}", target=1))
    status = mobius_db("status", "--store", f"sqlite:///{path}")
    assert f"version 1 of {SCHEMA_VERSION}" in status.stdout and "pending: 0002" in status.stdout
    done = mobius_db("upgrade", "--store", f"sqlite:///{path}")
    assert f"upgraded: 1 -> {SCHEMA_VERSION}" in done.stdout


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://u:hunter2@127.0.0.1:notaport/db", "port is not a number"),
    ("postgresql://u:hunter2@127.0.0.1/db?bogus=1", "bogus"),
    ("sqlite://somehost/x.db", "no host"),
    ("mongodb://u:hunter2@h/db", "unknown store 'mongodb'"),
])
def test_a_malformed_url_is_one_line_without_the_password(url: str, expected: str) -> None:
    line = one_line_failure(mobius_db("status", "--store", url), "mobius db status:", expected)
    assert "hunter2" not in line


def test_an_unreachable_postgresql_is_one_line() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://mobius:hunter2@127.0.0.1:{port}/db"
    for action in ("status", "upgrade"):
        line = one_line_failure(mobius_db(action, "--store", url), "cannot connect to PostgreSQL",
                                f"127.0.0.1:{port}", "refused")
        assert "hunter2" not in line


def test_a_wrong_password_is_one_line(pg_cluster: PgCluster) -> None:
    url = pg_cluster.url(password="not-the-password")
    line = one_line_failure(mobius_db("status", "--store", url),
                            "cannot connect to PostgreSQL", "password authentication failed")
    assert "not-the-password" not in line


def test_a_missing_database_is_one_line(pg_cluster: PgCluster) -> None:
    one_line_failure(mobius_db("status", "--store", pg_cluster.url("no_such_db")),
                     'database "no_such_db" does not exist')


def test_status_and_upgrade_on_postgresql(pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("cli_upgrade")
    before = mobius_db("status", "--store", url)
    assert before.returncode == 0 and f"version 0 of {SCHEMA_VERSION}" in before.stdout
    assert pg_cluster.password not in before.stdout
    done = mobius_db("upgrade", "--store", url)
    assert f"upgraded: 0 -> {SCHEMA_VERSION}" in done.stdout
    assert "up to date" in mobius_db("status", "--store", url).stdout


def test_files_that_are_not_ours_are_refused_byte_identical(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(8192))
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    for path, expected in ((junk, "is not a SQLite database"),
                           (other, "another application")):
        before = hashlib.sha256(path.read_bytes()).digest()
        for action in ("status", "upgrade"):
            one_line_failure(mobius_db(action, "--store", f"sqlite:///{path}"), expected,
                             "left untouched")
        assert hashlib.sha256(path.read_bytes()).digest() == before


def test_a_schema_newer_than_the_code_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    assert mobius_db("upgrade", "--store", f"sqlite:///{path}").returncode == 0
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO mobius_schema VALUES (?, 'future', 0)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    before = hashlib.sha256(path.read_bytes()).digest()
    for action in ("status", "upgrade"):
        one_line_failure(mobius_db(action, "--store", f"sqlite:///{path}"),
                         f"schema version {SCHEMA_VERSION + 1}", "newer than this code")
    assert hashlib.sha256(path.read_bytes()).digest() == before
