"""Server processes for the HTTP benchmarks: start one on loopback, wait for it, stop it.

``streamable_http.py``, ``http_stores.py`` and ``security.py`` all load a server
running in its own process; they share this module so that every benchmark
starts, waits for and stops its servers the same way (a server that dies or
never listens fails the run instead of producing numbers for nothing).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path


def postgresql_url(stack: ExitStack, given: str | None) -> str | None:
    """``given``, or a PostgreSQL cluster started from Debian's binaries (stopped when
    ``stack`` closes); None, with a note on stderr, where there are none."""
    if given is not None:
        return given
    from tests.storage.pgcluster import PgCluster, find_bindir
    bindir = find_bindir()
    if bindir is None:
        print("NOTE: no PostgreSQL binaries; skipping postgresql", file=sys.stderr)
        return None
    url: str = stack.enter_context(PgCluster(bindir)).url()
    return url


def cpu_seconds(pid: int) -> float:
    """Time on a CPU, from the scheduler's own count (ns; ``/proc/PID/stat``'s
    user and system times are counted in 10 ms ticks, too coarse for a process
    that runs in short bursts); the ticks where schedstat is missing."""
    try:
        with open(f"/proc/{pid}/schedstat") as schedstat:
            return int(schedstat.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU time of this machine's PostgreSQL server processes so far: the live ones'
    (schedstat) plus what the postmaster's exited children took (its cutime and
    cstime ticks).  0 with no PostgreSQL running (SQLite's work is counted in the
    processes that use it)."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as comm:
                if not comm.read().startswith("postgres"):
                    continue
            total += cpu_seconds(int(entry.name))
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                postmaster = b"\x00-D" in cmdline.read()
            if postmaster:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):  # gone meanwhile, or not ours to read
            continue
    return total


class BenchmarkError(RuntimeError):
    """A request failed or a server misbehaved: the numbers would be meaningless."""


@dataclass(frozen=True)
class Server:
    kind: str
    url: str
    pid: int

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process so far (Linux), else None."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """Terminate a server process, killing it if it has not gone within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def listening(kind: str, command: list[str], port: int, *, startup: float,
              preexec_fn: Callable[[], None] | None = None) -> Iterator[Server]:
    """Run ``command`` (a server that will listen on ``port``) until the block ends.

    Waits up to ``startup`` seconds for the port to accept a connection; a
    process that exits first, or never listens, raises :class:`BenchmarkError`.
    """
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=preexec_fn)
    try:
        deadline = time.monotonic() + startup
        while True:
            if proc.poll() is not None:
                raise BenchmarkError(f"{kind} server exited with status {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"{kind} server did not start") from None
                time.sleep(0.05)
        yield Server(kind, f"http://127.0.0.1:{port}/mcp", proc.pid)
    finally:
        stop(proc)
