"""What security costs: tools/call throughput over Streamable HTTP with authentication,
policy and audit on, next to security off, in one run.  Prints numbers only.

Servers (each its own process, uvicorn on 127.0.0.1, one worker):

* ``off``: ``mobius serve --http --no-auth`` (no authenticator, no policy, no audit);
* ``sqlite``: ``mobius serve --http --store sqlite:///...`` (the default security:
  an API token checked on every request, the organization's rules, every call
  audited in the hash chain);
* ``postgresql``: the same on a PostgreSQL started here from the Debian binaries
  (``--pg-url`` to use another; skipped, saying why, without binaries).

The token each secured server prints on its first start is sent on every request.
Load: ``wrk`` with M connections (default M = 1, 8, 32) sending the modern era's
self-contained POST (2026-07-28: every request authenticated and audited on its
own, the costliest case), in interleaved slices (off, secured, secured, off, ...
``--rounds`` each) so a drifting machine slows both alike; every non-200 or
non-success body fails the run.  ``loss`` is 1 - secured/off req/s (their means
over the rounds; ``median`` is the median of the rounds' own losses, which one
disturbed slice moves less); the target is at most 15%.  Each backend's off server
runs on a store of that backend too (``--off-store same``: the store-backed shared
sessions ``--store`` brings, security off), so that only security differs.  The
server's CPU time per answered call is shown too (from /proc), as
``off/secured+writer``: the secured server's own (with, on SQLite, the database work)
and its audit writer process's (``--audit-writer process``, the default; 0 with
``thread``, whose writing is in the server's own); the column's ``loss`` is the
server's own.  On PostgreSQL, ``db off/sec`` is the CPU per call of the database
server's processes on this machine during each server's slices (the store writes'
other side, which neither server's count includes; on SQLite that work is in the
servers' own).  On a machine shared with other work, CPU per call moves less than
req/s does.
After the load the audit log of each secured server is counted and verified, and on
PostgreSQL the cross-replica revocation window is measured (another process revokes a
token this one has cached; the time from its commit to the first refusal here).

``--pin`` puts each server on the first CPU alone and everything else (wrk, the audit
writer processes, PostgreSQL, this script) on the others, so that the server's core
does only the server's work and the writer's CPU shows apart from it.  It does not
steady a machine whose own speed drifts: on the 2-vCPU machine of docs/security.md's
runs, a point's rounds still spread over 13-37 points pinned.

    python benchmarks/security.py [--duration 5] [--rounds 3] [--sessions 1,8,32]
        [--backends sqlite,postgresql] [--pg-url URL] [--audit-writer process|thread]
        [--pin] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import streamable_http as sh  # noqa: E402
from bench_servers import postgres_cpu_seconds, postgresql_url, stop  # noqa: E402

TARGET_LOSS = 0.15


@contextmanager
def serving(store: str | None, workdir: Path, audit_writer: str = "process",
            off_store: str | None = None, cpus: set[int] | None = None
            ) -> Iterator[tuple[sh.Server, str | None]]:
    """``mobius serve --http`` secured on ``store`` (None: --no-auth); the server and
    the one-time token it printed."""
    port = sh.free_port()
    command = [sys.executable, "-m", "mobius_rpc", "serve", "--fixture", "demo", "--http",
               "--host", "127.0.0.1", "--port", str(port)]
    if store is None:
        command += ["--no-auth"]
        if off_store is not None:  # the same storage as the secured servers, security off
            command += ["--store", off_store]
    else:
        command += ["--store", store, "--audit-writer", audit_writer]
    env = {**os.environ, "MOBIUS_HOME": str(workdir)}
    env.pop("MOBIUS_STORE", None)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=sh.pinned(cpus))
    try:
        assert proc.stderr is not None
        token = startup_token(proc, store is not None, time.monotonic() + 30)
        # drain the rest of stderr so the server never blocks on a full pipe
        workdir.mkdir(parents=True, exist_ok=True)
        rest = open(workdir / "stderr.txt", "w")  # noqa: SIM115 - closed below
        drain = subprocess.Popen(["cat"], stdin=proc.stderr, stdout=rest)
        yield sh.Server("secured" if store else "off", f"http://127.0.0.1:{port}/mcp",
                        proc.pid), token
    finally:
        stop(proc)
        if "drain" in locals():
            drain.wait(5)
            rest.close()
            for line in (workdir / "stderr.txt").read_text().splitlines():
                if line.startswith("audit:"):  # the writer's own account, at shutdown
                    print(f"{'off' if store is None else store.split(':')[0]} server {line}")
        if proc.stderr is not None:
            proc.stderr.close()


def startup_token(proc: subprocess.Popen[str], secured: bool, deadline: float,
                  lines: list[str] | None = None) -> str | None:
    """The one-time API token ``mobius serve`` prints on its first start on an empty
    store, read from its stderr up to the end of its start-up notes (each line read
    also goes to ``lines``); None for a server with security off."""
    assert proc.stderr is not None
    token = None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise sh.BenchmarkError(f"server exited with status {proc.wait()}: "
                                    f"{''.join(lines or [])[-500:]}")
        if lines is not None:
            lines.append(line)
        if line.startswith("API token"):
            token = line.rsplit(" ", 1)[-1].strip()
        if line.startswith(("send it as", "WARNING", "authentication: ON (store")):
            break
    if secured and token is None:
        raise sh.BenchmarkError("the secured server printed no token (store not empty?)")
    return token


def script(workdir: Path, token: str | None) -> Path:
    headers = dict(sh.MODERN_HEADERS)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    lines = ['wrk.method = "POST"',
             f"wrk.body = {sh.lua_string(json.dumps(sh.call_body('modern', 1)))}"]
    lines += [f"wrk.headers[{sh.lua_string(k)}] = {sh.lua_string(v)}" for k, v in headers.items()]
    path = workdir / f"load-{'on' if token else 'off'}.lua"
    path.write_text("\n".join(lines) + sh.LUA_CHECKS % {"mark": sh.lua_string(sh.SUCCESS_MARK)})
    return path


def audit_check(store: str, requests: int) -> str:
    """Count the tools/call records and verify the chain (in this process, after the load)."""
    from mobius_rpc.security.audit import AuditLog
    from mobius_rpc.security.open import open_security_store
    from mobius_rpc.security.store import AuditQuery

    async def run() -> str:
        async with open_security_store(store) as (_, security):
            calls = 0
            after = 0
            while True:
                page = await security.list_audit(AuditQuery(after_seq=after, limit=5000))
                if not page:
                    break
                calls += sum(r.method == "tools/call" and r.outcome == "ok" for r in page)
                after = page[-1].seq
            result = await AuditLog(security).verify()
        state = "verifies" if result.ok else f"DOES NOT VERIFY: {result.problems[:2]}"
        # wrk counts the answers it read; calls in flight when a slice ended were
        # answered and recorded too, so the records may exceed the count by up to M a slice
        return (f"{calls} tools/call records for {requests} answers wrk counted "
                f"(+{calls - requests} in flight at slice ends); chain {state}")

    return anyio.run(run)


_REVOKER = """
import sys, time, anyio
from mobius_rpc.security.open import open_security_store
async def main():
    async with open_security_store(sys.argv[1]) as (_, security):
        assert await security.revoke_token(sys.argv[2], time.time())
        print(time.time(), flush=True)  # committed and announced
anyio.run(main)
"""


def revocation_window(store: str, trials: int = 5) -> str:
    """How long after another process revoked a token a listening replica still took
    it: this process caches the token, a subprocess revokes it, and the time from the
    subprocess's commit to the first refused verify here is the window."""
    from mobius_rpc.security.open import open_security_store
    from mobius_rpc.security.policy import PolicyEngine
    from mobius_rpc.security.serving import Authenticator
    from mobius_rpc.security.tokens import issue_token

    async def run() -> list[float]:
        windows: list[float] = []
        async with open_security_store(store) as (_, security):
            user = (await security.list_users())[0]
            org = (await security.list_memberships(user_id=user.id))[0].org_id
            auth = Authenticator(security)
            auth.policy = PolicyEngine(security)
            async with anyio.create_task_group() as tg:
                tg.start_soon(auth.epoch.run)
                while not auth.epoch.listening:
                    await anyio.sleep(0.01)
                for _ in range(trials):
                    issued = await issue_token(security, user_id=user.id, org_id=org)
                    for _ in range(3):  # resolved once, then cached
                        assert await auth.verify(issued.token) is not None
                    proc = await anyio.open_process(
                        [sys.executable, "-c", _REVOKER, store, issued.record.id])
                    with anyio.fail_after(30):
                        while await auth.verify(issued.token) is not None:
                            await anyio.sleep(0.0005)
                    refused_at = time.time()
                    assert proc.stdout is not None
                    committed = float((await proc.stdout.receive()).decode().split()[0])
                    await proc.wait()
                    windows.append(max(0.0, refused_at - committed) * 1000.0)
                tg.cancel_scope.cancel()
        return windows

    windows = sorted(anyio.run(run))
    return (f"a revocation by another process reached a listening replica after "
            f"{windows[len(windows) // 2]:.1f} ms (median of {trials}; max "
            f"{windows[-1]:.1f} ms; the safety poll bounds a lost notice at 1 s)")


def move_children(pid: int, cpus: set[int]) -> int:
    """Put every thread of ``pid``'s children (the audit writer process, which
    inherited the server's core) on ``cpus``; how many processes were moved."""
    moved = 0
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            for thread in os.listdir(f"/proc/{child}/task"):
                os.sched_setaffinity(int(thread), cpus)
        except OSError:  # gone meanwhile
            continue
        moved += 1
    return moved


def tree_cpu(pid: int) -> tuple[float, float] | None:
    """CPU seconds (user + system, from Linux's /proc) of the server process and of
    its children (the audit writer process), else None."""
    try:
        children = [int(c) for c in
                    Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return None
    totals = [0.0, 0.0]
    for index, one in [(0, pid)] + [(1, c) for c in children]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            if one == pid:
                return None
            continue
        totals[index] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return totals[0], totals[1]


def cpu_per_call(slices: list[tuple[sh.Sample, tuple[float, float] | None]], part: int
                 ) -> float | None:
    """CPU microseconds per answered call of the server (``part`` 0) or its writer
    process (1); None without /proc."""
    if any(cpu is None for _, cpu in slices):
        return None
    return sum(cpu[part] for _, cpu in slices if cpu is not None) \
        / sum(s.requests for s, _ in slices) * 1e6


def load(args: argparse.Namespace, work: Path, counts: list[int],
         off_servers: dict[str, sh.Server],
         secured: dict[str, tuple[sh.Server, str | None]], answered: dict[str, int]
         ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    off_script = script(work, None)
    for server, token in secured.values():
        sh.check_one_call(server.url, "modern", {**sh.MODERN_HEADERS,
                                                 "Authorization": f"Bearer {token}"})
    if args.warmup:
        for url in {off.url for off in off_servers.values()}:
            sh.run_wrk(url, off_script, 4, args.warmup)
        for backend, (server, token) in secured.items():
            answered[backend] += sh.run_wrk(server.url, script(work, token), 4,
                                            args.warmup).requests
    if args.load_cpus is not None:
        for server, _ in secured.values():
            if args.audit_writer == "process" and not move_children(server.pid,
                                                                    args.load_cpus):
                raise sh.BenchmarkError("--pin: the secured server has no writer process")
    print(f"tools/call over Streamable HTTP (2026-07-28 stateless POSTs), wrk, "
          f"{args.rounds} x {args.duration}s slices per point"
          + (f"; servers pinned to CPU {sorted(args.server_cpus)}, wrk, writers and "
             f"PostgreSQL to {sorted(args.load_cpus)}" if args.load_cpus else ""))
    print(f"{'backend':>11}{'M':>4}{'off req/s':>11}{'secured req/s':>15}{'loss':>8}"
          f"{'off p99':>9}{'sec p99':>9}{'loss<=15%':>11}"
          f"{'CPU/call off/sec+writer, loss':>30}{'db off/sec':>11}{'median':>8}"
          "  loss per round")
    for backend, (server, token) in secured.items():
        on_script = script(work, token)
        off = off_servers[backend]
        for m in counts:
            offs, ons = [], []
            # the database server's CPU per call (PostgreSQL: its own processes, which
            # neither server's count includes; SQLite's work is in the servers')
            database = {"off": [0.0, 0], "secured": [0.0, 0]}
            on_postgresql = backend == "postgresql"
            for r in range(args.rounds):
                order = [(off, off_script, offs, "off"), (server, on_script, ons, "secured")]
                for target, lua, into, which in (order if r % 2 == 0 else order[::-1]):
                    before = tree_cpu(target.pid)
                    db_before = postgres_cpu_seconds() if on_postgresql else 0.0
                    sample = sh.run_wrk(target.url, lua, m, args.duration)
                    if on_postgresql:
                        database[which][0] += postgres_cpu_seconds() - db_before
                    database[which][1] += sample.requests
                    after = tree_cpu(target.pid)
                    cpu = None if before is None or after is None else \
                        (after[0] - before[0], after[1] - before[1])
                    into.append((sample, cpu))
            answered[backend] += sum(s.requests for s, _ in ons)
            off_rps = sum(s.rps for s, _ in offs) / len(offs)
            on_rps = sum(s.rps for s, _ in ons) / len(ons)
            loss = 1 - on_rps / off_rps
            losses = [1 - b.rps / a.rps for (a, _), (b, _) in zip(offs, ons, strict=True)]
            per_round = " ".join(f"{x:+.0%}" for x in losses)
            median = sorted(losses)[len(losses) // 2]
            off_p99 = sorted(s.p99_ms for s, _ in offs)[len(offs) // 2]
            on_p99 = sorted(s.p99_ms for s, _ in ons)[len(ons) // 2]
            off_cpu, on_cpu = cpu_per_call(offs, 0), cpu_per_call(ons, 0)
            writer_cpu = cpu_per_call(ons, 1)
            cpu_loss = None if off_cpu is None or on_cpu is None else 1 - off_cpu / on_cpu
            cpu_text = "?" if cpu_loss is None or writer_cpu is None else \
                f"{off_cpu:.0f}/{on_cpu:.0f}+{writer_cpu:.0f}us {cpu_loss:.0%}"
            off_db, on_db = (database[k][0] / max(database[k][1], 1) * 1e6
                             for k in ("off", "secured"))
            db_text = f"{off_db:.0f}/{on_db:.0f}us" if on_postgresql else "-"
            print(f"{backend:>11}{m:>4}{off_rps:>11.0f}{on_rps:>15.0f}{loss:>8.1%}"
                  f"{off_p99:>7.2f}ms{on_p99:>7.2f}ms"
                  f"{'PASS' if loss <= TARGET_LOSS else 'MISS':>11}{cpu_text:>30}"
                  f"{db_text:>11}{median:>8.1%}  {per_round}")
            rows.append({"backend": backend, "sessions": m, "off_rps": off_rps,
                         "secured_rps": on_rps, "loss": loss, "off_p99_ms": off_p99,
                         "secured_p99_ms": on_p99, "off_cpu_us": off_cpu,
                         "secured_cpu_us": on_cpu, "writer_cpu_us": writer_cpu,
                         "database_cpu_us": {"off": off_db, "secured": on_db}
                         if on_postgresql else None,
                         "cpu_loss": cpu_loss, "median_round_loss": median})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--sessions", default="1,8,32")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", help="a PostgreSQL to use instead of starting one")
    parser.add_argument("--audit-writer", choices=("process", "thread"), default="process",
                        help="where the secured servers write audit records (see "
                             "mobius serve --audit-writer)")
    parser.add_argument("--off-store", choices=("same", "none"), default="same",
                        help="same (default): each backend's off server runs on a store of "
                             "that backend too (--no-auth --store: the shared sessions a "
                             "store brings, no security), so only security differs; none: "
                             "one off server without a store")
    parser.add_argument("--pin", action="store_true",
                        help="each server on the first CPU alone; wrk, the audit writer "
                             "processes and PostgreSQL on the others")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.server_cpus = args.load_cpus = None
    if args.pin:  # wrk and PostgreSQL, started later, inherit the load CPUs
        try:
            args.server_cpus, args.load_cpus = sh.split_cpus()
        except ValueError as error:
            parser.error(str(error))
    if sh.shutil.which("wrk") is None:
        raise SystemExit("security.py needs wrk (apt-get install wrk)")
    counts = [int(n) for n in args.sessions.split(",")]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        stores: dict[str, str] = {}
        for backend in backends:
            if backend == "sqlite":
                stores[backend] = f"sqlite:///{work / 'security.db'}"
            elif backend == "postgresql":
                url = postgresql_url(stack, args.pg_url)
                if url is None:
                    continue
                stores[backend] = url
            else:
                parser.error(f"unknown backend {backend!r}")
        answered = {backend: 1 for backend in stores}  # the check call
        with ExitStack() as servers:
            offs: dict[str, sh.Server] = {}
            if args.off_store == "none":
                bare, _ = servers.enter_context(serving(None, work / "off",
                                                         cpus=args.server_cpus))
                offs = dict.fromkeys(stores, bare)
            for backend, url in stores.items():
                if args.off_store == "same":  # SQLite: a file of its own; PostgreSQL: same
                    off_url = f"sqlite:///{work / 'off.db'}" if backend == "sqlite" else url
                    offs[backend], _ = servers.enter_context(
                        serving(None, work / f"off-{backend}", off_store=off_url,
                                cpus=args.server_cpus))
            secured = {}
            for backend, url in stores.items():
                secured[backend] = servers.enter_context(serving(url, work / backend,
                                                                 args.audit_writer,
                                                                 cpus=args.server_cpus))
            rows = load(args, work, counts, offs, secured, answered)
        # the servers stopped (a clean shutdown loses no audit record): check each log
        for backend, url in stores.items():
            print(f"audit ({backend}): {audit_check(url, answered[backend])}")
        if "postgresql" in stores:
            print(f"revocation (postgresql): {revocation_window(stores['postgresql'])}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
