"""A throwaway PostgreSQL server from the Debian binaries, for tests and benchmarks.

``initdb`` refuses to run as root and the tests run as root here, so when we
are root the cluster's files belong to ``nobody`` and ``initdb``/``postgres``
run as that user (``subprocess``'s ``user=``/``group=``: no shell, no sudo).
The server listens on 127.0.0.1 on a free port and on a unix socket in its
temporary directory; TCP connections need the password (SCRAM), so wrong
passwords can be tested for real.  ``postgres`` is started directly rather than
through ``pg_ctl`` (which builds a shell command line), and stopped with
SIGINT (PostgreSQL's fast shutdown).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ("PgCluster", "find_bindir")


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin holding initdb and postgres (or $PG_BINDIR)."""
    candidates = [os.environ["PG_BINDIR"]] if os.environ.get("PG_BINDIR") else []
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                   key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                   else 0)
    for path in [*candidates, *reversed(found)]:
        if all(os.access(Path(path) / tool, os.X_OK) for tool in ("initdb", "postgres")):
            return Path(path)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgCluster:
    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        self.bindir = bindir
        self.durable = durable
        self.user = "mobius"
        self.password = secrets.token_urlsafe(12)
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="mobius-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
            self._run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
            self._owner: tuple[int, int] | None = (nobody.pw_uid, nobody.pw_gid)
        else:
            self._owner = None

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{self.user}:{secret}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PgCluster:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._owner:
            os.chown(pwfile, *self._owner)
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(self.root)}
        subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user,
                        f"--pwfile={pwfile}", "--auth-local=trust",
                        "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions"],
                       check=True, capture_output=True, env=env, cwd=self.root, timeout=120,
                       **self._run_as)
        settings = ["listen_addresses = '127.0.0.1'", f"port = {self.port}",
                    f"unix_socket_directories = '{self.root}'", "max_connections = 200",
                    "shared_buffers = 32MB"]
        if not self.durable:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n" + "\n".join(settings) + "\n")
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - kept for the process
        self._process = subprocess.Popen([str(self.bindir / "postgres"), "-D", str(self.data)],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         env=env, cwd=self.root, start_new_session=True,
                                         **self._run_as)
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import psycopg
        deadline = time.monotonic() + 60
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log_tail()}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {self.log_tail()}") from None
                time.sleep(0.1)

    def log_tail(self) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def execute(self, statement: str, database: str = "postgres") -> None:
        import psycopg
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[call-overload]

    def create_database(self, name: str) -> str:
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
