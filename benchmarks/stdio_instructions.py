"""CPU instructions per stdio tools/call, Mobius in both eras next to the bare loop.

``stdio.py`` measures wall-clock time, which drifts on a shared host; this
counts instructions, which do not.  Each server of ``stdio.py`` (``bare``,
the orjson loop; ``mobius``, ``mobius serve --stdio`` in the 2025-11-25 era;
``mobius-modern``, the same server spoken to in 2026-07-28 with per-request
``_meta``) runs as a subprocess under ``valgrind --tool=callgrind`` and gets
its handshake and then tools/call echo requests one at a time over its pipes,
every answer checked.  Two runs per server, with ``--base`` and ``--base +
--requests`` calls, cancel out start-up and shutdown (the process ends at
end of input): their difference divided by ``--requests`` is what one
request costs, the pipe reads and writes included.

``--python`` chooses the interpreter that runs the servers, so one copy of
this harness can measure any checkout: point it at that checkout's venv
(``/path/to/checkout/.venv/bin/python``, an editable install).  The servers
start in a temporary directory, so the checkout this file lives in cannot
shadow the one being measured; the header names the ``mobius_rpc`` that ran.
``--keep DIR`` keeps the callgrind profiles for ``callgrind_annotate``.  The
servers run with ``PYTHONHASHSEED=0`` so that start-up costs the same in both runs.

    python benchmarks/stdio_instructions.py [--requests 500] [--base 50]
        [--servers bare,mobius,mobius-modern] [--python PATH] [--keep DIR]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import orjson
from callgrind import (
    MeasurementError,
    callgrind_command,
    collected,
    per_request,
    require_valgrind,
)
from stdio import Target, targets

DEFAULT_SERVERS = "bare,mobius,mobius-modern"
#: a server under callgrind runs ~50x slower; this bounds a hung run, not a slow one
RUN_TIMEOUT_S = 900
#: a fixed string hash seed: with a random one, start-up alone varies by tens of thousands
#: of instructions from run to run (dict and set layouts), as much as a few requests cost
SERVER_ENV = {**os.environ, "PYTHONHASHSEED": "0"}


def answer(stdout: IO[bytes], request_id: int, what: str) -> dict[str, Any]:
    """The response to ``request_id``, skipping notifications and server requests."""
    while True:
        line = stdout.readline()
        if not line:
            raise MeasurementError(f"{what}: the server closed stdout before answering "
                                   f"request {request_id}")
        message = orjson.loads(line)
        if "method" in message or "id" not in message:
            continue
        if message["id"] != request_id or "result" not in message:
            raise MeasurementError(f"{what}: expected the result of {request_id}, "
                                   f"got {line[:200]!r}")
        result: dict[str, Any] = message["result"]
        return result


def drive(target: Target, stdin: IO[bytes], stdout: IO[bytes], calls: int) -> None:
    """The handshake, then ``calls`` checked echo calls, one in flight at a time."""
    for message in target.handshake():
        stdin.write(orjson.dumps(message) + b"\n")
    stdin.flush()
    answer(stdout, 0, target.name)
    for request_id in range(1, calls + 1):
        stdin.write(target.call(request_id))
        stdin.flush()
        result = answer(stdout, request_id, target.name)
        if result.get("isError") is not False or result.get("content") != [
                {"type": "text", "text": "hello"}]:
            raise MeasurementError(f"{target.name} call {request_id} did not echo: {result}")


def instructions(target: Target, calls: int, workdir: Path) -> int:
    """Instructions a whole server process ran while serving ``calls`` requests."""
    out = workdir / f"callgrind.{target.name}.{calls}"
    log = workdir / f"valgrind.{target.name}.{calls}.log"
    with log.open("w+") as stderr:
        proc = subprocess.Popen(callgrind_command(out, target.command), cwd=workdir,
                                env=SERVER_ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=stderr)
        assert proc.stdin is not None and proc.stdout is not None
        watchdog = threading.Timer(RUN_TIMEOUT_S, proc.kill)
        watchdog.start()
        try:
            drive(target, proc.stdin, proc.stdout, calls)
            proc.stdin.close()  # end of input: the server finishes and exits
            status = proc.wait()
        except (OSError, ValueError) as exc:  # a broken pipe, or a line that is not JSON
            raise MeasurementError(f"{target.name}: {exc}") from None
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr.seek(0)
        text = stderr.read()
    if status != 0:
        raise MeasurementError(f"{target.name} exited with status {status}:\n{text[-800:]}")
    return collected(text, target.name)


def measured_package(python: str, workdir: Path) -> str:
    """Where ``python`` finds mobius_rpc when started as the servers are."""
    done = subprocess.run([python, "-c", "import mobius_rpc; print(mobius_rpc.__file__)"],
                          cwd=workdir, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        raise MeasurementError(f"{python} cannot import mobius_rpc ({why})")
    return str(Path(done.stdout.strip()).parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=500,
                        help="requests whose cost is measured (default 500)")
    parser.add_argument("--base", type=int, default=50,
                        help="requests of the baseline run that is subtracted (default 50)")
    parser.add_argument("--servers", default=DEFAULT_SERVERS,
                        help=f"comma-separated (default {DEFAULT_SERVERS})")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that runs the servers (default: this one)")
    parser.add_argument("--keep", type=Path, help="keep the callgrind profiles in this directory")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    available = targets(args.python)
    names = [name.strip() for name in args.servers.split(",")]
    if unknown := [name for name in names if name not in available]:
        parser.error(f"unknown server(s) {unknown}; choose from {sorted(available)}")
    if args.requests < 1 or args.base < 1:
        parser.error("--requests and --base must be at least 1")
    require_valgrind("stdio_instructions.py")
    runs = [(name, calls) for name in names for calls in (args.base, args.base + args.requests)]
    with tempfile.TemporaryDirectory(prefix="mobius-stdio-instr-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        package = measured_package(args.python, workdir)
        with ThreadPoolExecutor(max_workers=2) as pool:  # counts do not depend on contention
            totals = dict(zip(runs, pool.map(
                lambda run: instructions(available[run[0]], run[1], workdir), runs),
                strict=True))
    cost = per_request(totals, names, args.base, args.requests)
    print(f"Instructions per tools/call over stdio (callgrind; {args.requests} requests one "
          f"at a time, minus a {args.base}-request run; mobius_rpc from {package})")
    print(f"{'server':<16}{'instructions':>14}{'bare/server':>13}")
    for name in names:
        ratio = f"{cost['bare'] / cost[name]:.2f}x" if "bare" in cost else "-"
        print(f"{name:<16}{cost[name]:>14,.0f}{ratio:>13}")
    if args.json:
        args.json.write_text(json.dumps([
            {"server": name, "instructions_per_request": cost[name],
             "totals": {str(calls): totals[(name, calls)]
                        for calls in (args.base, args.base + args.requests)}}
            for name in names], indent=2))


if __name__ == "__main__":
    try:
        main()
    except MeasurementError as exc:
        raise SystemExit(f"stdio_instructions.py: FAILED: {exc}") from None
