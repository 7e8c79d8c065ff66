"""Where security's time goes per tools/call, in one process, without sockets.

The demo server's whole ASGI app (authentication, transports, the security
middleware, the audit writer) is driven directly with the benchmark's
2026-07-28 self-contained POST, secured on a fresh SQLite store or with
security off.  Each layer's own CPU time is measured with ``time.thread_time``
around it minus what it calls (the event loop's thread only, so a loaded
machine moves it less than wall time), and reported per call:

* ``authentication``: the Authorization header, the token check, the scope copy;
* ``  token check``: ``Authenticator.verify`` (epoch, hash, cache);
* ``policy middleware``: the decision, limits and the audit record's queueing;
* ``  tool limits``: the timeout scope and the output-size check;
* ``  audit (request side)``: what the answer waits for of the record;
* ``process CPU per call``: everything, both threads (the audit writer's batch
  writes on its worker thread included), secured and off.

The audit writer's own share is the rest: it runs between requests, so a
thread-time window around it would also count the requests it interleaves with.

``--request-side`` makes the store's audit row writes no-ops, so what is left of
the secured-minus-off difference is the request side (authentication, policy,
limits) plus the writer's in-process record building; ``--profile`` then prints
the functions whose thread time differs most between secured and off (cProfile).

    python benchmarks/security_breakdown.py [--calls 3000] [--rounds 3]
        [--request-side] [--profile]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import streamable_http as sh  # noqa: E402

from mobius_rpc.demo import build_demo_server  # noqa: E402
from mobius_rpc.security import http_auth, limits, middleware, serving  # noqa: E402
from mobius_rpc.security.serving import serve_http_security  # noqa: E402
from mobius_rpc.transports.event_store import MemoryEventStore  # noqa: E402

Spent = dict[str, float]


def _own_time(spent: Spent, label: str, wrap_arg: int | None) -> Callable[[Any], Any]:
    """Wrap an async method: its thread time minus that of the callable passed as
    argument ``wrap_arg`` (None: count everything)."""
    def decorate(method: Any) -> Any:
        async def timed(*args: Any) -> Any:
            inner = [0.0]
            if wrap_arg is not None:
                call = args[wrap_arg]

                async def counted(*a: Any) -> Any:
                    began = time.thread_time()
                    try:
                        return await call(*a)
                    finally:
                        inner[0] += time.thread_time() - began
                args = (*args[:wrap_arg], counted, *args[wrap_arg + 1:])
            began = time.thread_time()
            try:
                return await method(*args)
            finally:
                spent[label] = spent.get(label, 0.0) + time.thread_time() - began - inner[0]
        return timed
    return decorate


def instrument(spent: Spent) -> None:
    auth = http_auth.AuthenticatingApp
    original_call = auth.__call__

    async def auth_call(self: Any, scope: Any, receive: Any, send: Any) -> None:
        app, inner = self.app, [0.0]

        async def counted(*a: Any) -> None:
            began = time.thread_time()
            try:
                await app(*a)
            finally:
                inner[0] += time.thread_time() - began
        self.app = counted
        began = time.thread_time()
        try:
            await original_call(self, scope, receive, send)
        finally:
            self.app = app
            spent["authentication"] = spent.get("authentication", 0.0) \
                + time.thread_time() - began - inner[0]
    auth.__call__ = auth_call  # type: ignore[method-assign]
    serving.Authenticator.verify = _own_time(  # type: ignore[method-assign]
        spent, "  token check", None)(serving.Authenticator.verify)
    middleware.SecurityMiddleware.__call__ = _own_time(  # type: ignore[method-assign]
        spent, "policy middleware", 2)(middleware.SecurityMiddleware.__call__)
    middleware.SecurityMiddleware._record = _own_time(  # type: ignore[method-assign]
        spent, "  audit (request side)", None)(middleware.SecurityMiddleware._record)
    limits.Limiter.run_tool = _own_time(  # type: ignore[method-assign]
        spent, "  tool limits", 2)(limits.Limiter.run_tool)


async def measure(secured: bool, calls: int, spent: Spent, profiler: Any = None) -> float:
    """Process CPU microseconds per call (after a warm-up), filling ``spent``."""
    server = build_demo_server()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/security.db" if secured else None
        async with serve_http_security(server, auth=secured, store_url=url) as security:
            token = next((n.rsplit(" ", 1)[-1] for n in security.notes
                          if n.startswith("API token")), None)
            app = server.asgi_app(event_store=MemoryEventStore()).app
            body = json.dumps(sh.call_body("modern", 1)).encode()
            headers = [(k.lower().encode(), v.encode()) for k, v in sh.MODERN_HEADERS.items()]
            headers += [(b"content-type", b"application/json"), (b"host", b"127.0.0.1"),
                        (b"content-length", str(len(body)).encode())]
            if token:
                headers.append((b"authorization", f"Bearer {token}".encode()))
            one = _caller(app, body, headers)
            for _ in range(300):
                await one()
            await _writer_ready(server)
            spent.clear()
            if profiler is not None:
                profiler.enable()
            began = time.process_time()
            for _ in range(calls):
                await one()
            cpu = (time.process_time() - began) / calls * 1e6
            if profiler is not None:
                profiler.disable()
            return cpu


async def _writer_ready(server: Any, wait: float = 10.0) -> None:
    """Until the audit log's background writer (the writer process) takes records:
    before it does (its start takes a few hundred ms), each record is a durable
    append in this process, which is what the server does at its start, not what
    a call costs later."""
    audit = getattr(server, "audit", None)
    if audit is None:
        return
    deadline = time.monotonic() + wait
    while not audit.writing_behind:
        if time.monotonic() > deadline:
            raise sh.BenchmarkError("the audit writer process did not start")
        await anyio.sleep(0.02)


def _caller(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]
            ) -> Callable[[], Awaitable[None]]:
    async def one() -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/mcp", "raw_path": b"/mcp",
                 "root_path": "", "query_string": b"", "headers": list(headers),
                 "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000)}
        delivered = False
        out: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await anyio.sleep_forever()
            raise AssertionError  # pragma: no cover

        async def send(message: dict[str, Any]) -> None:
            out.append(message)
        await app(scope, receive, send)
        answer = b"".join(m.get("body", b"") for m in out[1:])
        if out[0]["status"] != 200 or sh.SUCCESS_MARK.encode() not in answer:
            raise sh.BenchmarkError(f"bad answer: {out[0]['status']} {answer[:200]!r}")
    return one


def request_side_only() -> None:
    """Make the SQL store's audit row writes no-ops (the benchmark's process only)."""
    from mobius_rpc.security.sql_store import SqlSecurityStore

    async def no_write(self: Any, rows: list[tuple[Any, ...]]) -> None:
        return None
    SqlSecurityStore.append_audit_rows = no_write  # type: ignore[method-assign]


def profile(calls: int) -> None:
    """The functions whose own thread time per call differs most, secured minus off."""
    import cProfile
    import pstats

    per_call: dict[bool, dict[str, float]] = {}
    for secured in (False, True):
        profiler = cProfile.Profile(time.thread_time_ns, 1e-9)
        spent: Spent = {}

        async def run(secured: bool = secured, profiler: Any = profiler,
                      spent: Spent = spent) -> None:
            await measure(secured, calls, spent, profiler)
        anyio.run(run)
        stats = pstats.Stats(profiler)
        table: dict[str, float] = {}
        for (path, line, name), row in stats.stats.items():  # type: ignore[attr-defined]
            label = f"{Path(path).name}:{line}({name})"
            table[label] = row[2] / calls * 1e6
        per_call[secured] = table
    names = set(per_call[True]) | set(per_call[False])
    diffs = sorted(((per_call[True].get(n, 0.0) - per_call[False].get(n, 0.0), n)
                    for n in names), reverse=True)
    print("own thread time per call under cProfile (us), secured minus off, largest first")
    for diff, name in diffs[:40]:
        print(f"{diff:8.2f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--request-side", action="store_true",
                        help="no-op audit row writes: measure the request side")
    parser.add_argument("--plain", action="store_true",
                        help="no per-layer timing wrappers: only the CPU per call")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile secured against off instead of timing")
    args = parser.parse_args()
    if args.request_side:
        request_side_only()
    if args.profile:
        profile(args.calls)
        return
    spent: Spent = {}
    if not args.plain:
        instrument(spent)
    rows: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for secured in (False, True):
            cpu = anyio.run(measure, secured, args.calls, spent)
            rows.setdefault(f"process CPU per call, {'secured' if secured else 'off'}",
                            []).append(cpu)
            if secured:
                for label, seconds in spent.items():
                    rows.setdefault(label, []).append(seconds / args.calls * 1e6)
    print(f"security per tools/call, in process, SQLite store, {args.rounds} rounds x "
          f"{args.calls} calls (median us; thread CPU of the layer's own code)")
    for label, values in rows.items():
        print(f"{label:42s}{statistics.median(values):8.1f}")
    extra = [on - off for on, off in zip(rows["process CPU per call, secured"],
                                         rows["process CPU per call, off"], strict=True)]
    print(f"{'secured minus off (median of rounds)':42s}{statistics.median(extra):8.1f}")


if __name__ == "__main__":
    main()
