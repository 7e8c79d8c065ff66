"""CPU instructions per Streamable HTTP tools/call, security on next to security off.

``security.py`` measures the cost of authentication + policy + audit as lost
throughput, which on a shared 2-vCPU machine moves by ten points and more
between runs of the same code.  This counts instructions instead (callgrind),
which repeat to about a percent: ``mobius serve --fixture demo --http`` on a
store of each backend, ``--no-auth`` (off) and secured (the API token it printed
on its first start sent on every request), each serving 2026-07-28
self-contained POSTs one after another on one keep-alive connection, every
answer checked.  Two runs per server, with ``--base`` and ``--base +
--requests`` calls, cancel out start-up and shutdown; their difference over
``--requests`` is one call, uvicorn's HTTP parsing and the socket work included.

Only the server process is counted; the audit writer process it starts (the
default ``--audit-writer process``) runs outside valgrind, as it runs on
another core outside it.  Some of the server's work runs on wall-clock timers,
not per call: records are shipped to the writer every 10 ms, PostgreSQL's
epoch is polled every second, SQLite's epoch row is read again after a second.
Under callgrind the server runs some 40 times slower, so those timers are
slowed by ``--stretch`` (40): each then runs about as often per call as at
full speed, instead of being counted several times over.

Instructions are not time: security's code (many small functions and
dictionaries) may run at fewer instructions per cycle than the rest, so the
ratio here is a floor under the CPU ratio, not the throughput loss itself.

    python benchmarks/security_instructions.py [--requests 800] [--base 100]
        [--backends sqlite,postgresql] [--stretch 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import inspect
import json
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import orjson  # noqa: E402
from bench_servers import BenchmarkError, free_port  # noqa: E402
from callgrind import MeasurementError, collected, per_request, require_valgrind  # noqa: E402
from security import startup_token  # noqa: E402
from streamable_http import MODERN_HEADERS, SUCCESS_MARK, call_body  # noqa: E402

SERVE_FLAG = "--serve-stretched"


def serve_stretched(factor: float, argv: list[str]) -> None:
    """``mobius`` with the timers that run per second of the server's life, not per
    call, slowed by ``factor`` (what the harness runs under valgrind): the audit
    writer process's ship interval, the PostgreSQL epoch poll and SQLite's epoch
    safety read."""
    from mobius_rpc.security import audit_process, epoch, sqlite_epoch

    def slowed(cls: type, option: str) -> None:
        original = cls.__init__  # type: ignore[misc]
        default = inspect.signature(original).parameters[option].default

        def init(self: object, *args: object, **options: object) -> None:
            options.setdefault(option, default * factor)
            original(self, *args, **options)
        cls.__init__ = init  # type: ignore[misc]
    slowed(audit_process.AuditWriterProcess, "ship_interval")
    slowed(epoch.EpochWatch, "poll")
    sqlite_epoch.SAFETY_READ *= factor
    sys.argv = ["mobius_rpc", *argv]
    runpy.run_module("mobius_rpc", run_name="__main__")


def _writer_started(pid: int) -> bool:
    """Whether a descendant of ``pid`` is the audit writer process."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return False
    for child in children:
        try:
            if b"audit_writer" in Path(f"/proc/{child}/cmdline").read_bytes():
                return True
        except OSError:
            continue
        if _writer_started(int(child)):
            return True
    return False


def instructions(kind: str, store: str, calls: int, workdir: Path, factor: float) -> int:
    """Instructions the server process ran serving ``calls`` checked requests."""
    port = free_port()
    home = Path(tempfile.mkdtemp(dir=workdir))
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, __file__, SERVE_FLAG, str(factor), "serve", "--fixture",
               "demo", "--http", "--host", "127.0.0.1", "--port", str(port), "--store", store]
    if kind == "off":
        command.append("--no-auth")
    env = {**os.environ, "MOBIUS_HOME": str(home)}
    env.pop("MOBIUS_STORE", None)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stderr is not None
    err: list[str] = []
    try:
        deadline = time.monotonic() + 300
        token = startup_token(proc, kind == "secured", deadline, err)
        rest = threading.Thread(target=lambda: err.append(proc.stderr.read()  # type: ignore
                                                          or ""), daemon=True)
        rest.start()
        while True:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise BenchmarkError(f"{kind} server did not start under valgrind") \
                        from None
                time.sleep(0.2)
        headers = dict(MODERN_HEADERS)
        if token:
            headers["Authorization"] = f"Bearer {token}"
            # the records of the first calls are durable appends until the writer
            # process is up: wait for it, and a little more for its first answer
            while not _writer_started(proc.pid):
                if time.monotonic() > deadline:
                    raise BenchmarkError("the secured server started no audit writer")
                time.sleep(0.2)
            time.sleep(5.0)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for request_id in range(1, calls + 1):
            conn.request("POST", "/mcp", orjson.dumps(call_body("modern", request_id)),
                         headers)
            reply = conn.getresponse()
            body = reply.read()
            if reply.status != 200 or SUCCESS_MARK.encode() not in body:
                raise BenchmarkError(f"{kind} call {request_id}: {reply.status} {body[:200]!r}")
        conn.close()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
        rest.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return collected("".join(err), f"{kind} on {store.split(':')[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--base", type=int, default=100)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--stretch", type=float, default=40.0,
                        help="how much slower the server runs under valgrind: its "
                             "per-second timers are slowed as much (default 40)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    if args.requests < 1 or args.base < 1 or args.stretch <= 0:
        parser.error("--requests, --base and --stretch must be positive")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := [b for b in backends if b not in ("sqlite", "postgresql")]:
        parser.error(f"unknown backend(s) {unknown}; choose from sqlite, postgresql")
    require_valgrind("security_instructions.py")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mobius-sec-")))
        pg_url = None
        if "postgresql" in backends:
            from tests.storage.pgcluster import PgCluster, find_bindir
            bindir = find_bindir()
            if bindir is None:
                print("NOTE: no PostgreSQL binaries; skipping postgresql", file=sys.stderr)
                backends.remove("postgresql")
            else:
                pg_url = stack.enter_context(PgCluster(bindir)).url()
        runs = [(backend, kind, calls) for backend in backends for kind in ("off", "secured")
                for calls in (args.base, args.base + args.requests)]
        totals: dict[tuple[tuple[str, str], int], int] = {}

        def one(run: tuple[str, str, int]) -> int:
            backend, kind, calls = run
            store = f"sqlite:///{work / f'{kind}-{calls}.db'}" if backend == "sqlite" \
                else pg_url
            assert store is not None
            return instructions(kind, store, calls, work, args.stretch)
        # two at a time: counts do not depend on contention; PostgreSQL runs one after
        # another (each secured first start must find the store without an owner)
        sqlite_runs = [r for r in runs if r[0] == "sqlite"]
        with ThreadPoolExecutor(max_workers=2) as pool:
            for run, total in zip(sqlite_runs, pool.map(one, sqlite_runs), strict=True):
                totals[((run[0], run[1]), run[2])] = total
        for run in [r for r in runs if r[0] == "postgresql"]:
            _reset(pg_url)
            totals[((run[0], run[1]), run[2])] = one(run)
    keys = [(backend, kind) for backend in backends for kind in ("off", "secured")]
    cost = per_request(totals, keys, args.base, args.requests)
    print(f"Instructions per tools/call over Streamable HTTP, security off and on "
          f"(callgrind; {args.requests} requests on one connection, minus a "
          f"{args.base}-request run)")
    print(f"{'backend':<12}{'off':>12}{'secured':>12}{'extra':>10}{'extra %':>9}")
    rows = []
    for backend in backends:
        off, on = cost[(backend, "off")], cost[(backend, "secured")]
        print(f"{backend:<12}{off:>12,.0f}{on:>12,.0f}{on - off:>10,.0f}"
              f"{(on - off) / off:>9.1%}")
        rows.append({"backend": backend, "off": off, "secured": on,
                     "extra_fraction": (on - off) / off})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def _reset(url: str | None) -> None:
    """No Mobius schema again: each secured first start bootstraps its owner."""
    import psycopg

    assert url is not None
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS mobius CASCADE")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == SERVE_FLAG:
        serve_stretched(float(sys.argv[2]), sys.argv[3:])
    else:
        try:
            main()
        except (BenchmarkError, MeasurementError) as exc:
            raise SystemExit(f"security_instructions.py: FAILED: {exc}") from None
