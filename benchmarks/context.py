"""Context engine benchmark: indexing a large real codebase, and every operation over stdio.

Prints numbers; asserts nothing.  The codebase is the source distribution of a
big PyPI project (default Django 5.1: ~2,800 Python files, ~6,800 files in
all), fetched once with ``pip download --no-binary :all: --no-deps`` into
``--cache`` (or any directory given with ``--project``).  A real ``mobius
serve --stdio`` subprocess on a fresh SQLite store is driven by our Client:

* cold: spawn to the end of the first full index (``reindex`` waits for the
  background run that ``initialize`` started);
* edit 10: ten Python files changed (one line appended), then ``reindex``;
  touch 10: ten other files get a new mtime with the same bytes;
* size: the SQLite files (database, WAL) after indexing;
* every tool, resource and prompt: ``--n`` calls each, cycling over
  identifiers sampled from the project's own definitions; p50/p99 in ms;
* ripgrep, the floor: ``rg -n -w -F -m 20 IDENT DIR`` on the same
  identifiers (process spawn included, as a host pays it), when ``rg`` is on
  PATH (``apt-get install ripgrep``); otherwise the run says so.

    python benchmarks/context.py [--n 200] [--project DIR] [--sdist django==5.1]
        [--cache DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mobius_rpc.client.client import Client  # noqa: E402
from mobius_rpc.client.targets import StdioTarget  # noqa: E402


def fetch_sdist(spec: str, cache: Path) -> Path:
    """The extracted source tree of ``spec`` (downloaded once into ``cache``)."""
    cache.mkdir(parents=True, exist_ok=True)
    name = spec.split("==")[0].lower()
    trees = [p for p in cache.iterdir() if p.is_dir() and p.name.lower().startswith(name)]
    if trees:
        return trees[0]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:",
                    "--no-deps", spec, "-d", str(cache)], check=True)
    archive = next(p for p in cache.iterdir() if p.name.lower().startswith(name)
                   and p.name.endswith(".tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    return next(p for p in cache.iterdir() if p.is_dir() and p.name.lower().startswith(name))


def identifiers(project: Path, count: int, seed: int = 7) -> list[tuple[str, str]]:
    """(name, path) of ``count`` functions/classes defined in the project's Python files."""
    found: list[tuple[str, str]] = []
    for path in sorted(project.rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and len(node.name) > 5:
                found.append((node.name, str(path.relative_to(project))))
    random.Random(seed).shuffle(found)
    return found[:count]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))])


async def timed(n: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    await call(0)  # warm-up
    out = []
    for i in range(n):
        start = time.perf_counter()
        await call(i)
        out.append((time.perf_counter() - start) * 1000)
    return out


def ripgrep(project: Path, names: list[str], n: int) -> list[float] | None:
    rg = shutil.which("rg")
    if rg is None:
        return None
    out = []
    for i in range(n):
        start = time.perf_counter()
        subprocess.run([rg, "-n", "-w", "-F", "-m", "20", names[i % len(names)], str(project)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        out.append((time.perf_counter() - start) * 1000)
    return out


def _edit(paths: list[Path]) -> dict[Path, bytes]:
    saved = {p: p.read_bytes() for p in paths}
    for path in paths:
        path.write_bytes(saved[path] + b"\n# touched by benchmarks/context.py\n")
    return saved


async def run(args: argparse.Namespace) -> dict[str, Any]:
    project = Path(args.project) if args.project else fetch_sdist(args.sdist, Path(args.cache))
    sample = identifiers(project, 60)
    names = [name for name, _ in sample]
    paths = [path for _, path in sample]
    python_files = sorted(project.rglob("*.py"))
    edited, touched = python_files[:10], python_files[10:20]
    results: dict[str, Any] = {"project": str(project), "files_py": len(python_files)}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "context.db"
        command = [sys.executable, "-m", "mobius_rpc", "serve", "--store", f"sqlite:///{db}",
                   "--stdio", str(project)]
        target = StdioTarget(command[0], tuple(command[1:]),
                             env={**os.environ, "MOBIUS_HOME": tmp})
        start = time.perf_counter()
        async with Client(target) as client:
            status = (await client.call_tool("reindex", {}, timeout=3600))["structuredContent"]
            results["cold_s"] = round(time.perf_counter() - start, 2)
            results["indexed_files"] = status["files"]
            results["skipped_files"] = status["skipped"]
            saved = _edit(edited)
            try:
                for path in touched:
                    os.utime(path)
                start = time.perf_counter()
                await client.call_tool("reindex", {})
                results["edit10_touch10_s"] = round(time.perf_counter() - start, 3)
            finally:
                for path, data in saved.items():
                    path.write_bytes(data)
            await client.call_tool("reindex", {})
            results["index_mb"] = round(sum(p.stat().st_size for p in Path(tmp).glob(
                "context.db*")) / 1e6, 1)
            name = project.name
            operations: dict[str, Callable[[int], Awaitable[Any]]] = {
                "search_code": lambda i: client.call_tool("search_code",
                                                          {"query": names[i % len(names)]}),
                "definition": lambda i: client.call_tool("definition",
                                                         {"name": names[i % len(names)]}),
                "references": lambda i: client.call_tool("references",
                                                         {"name": names[i % len(names)]}),
                "analyze": lambda i: client.call_tool("analyze", {"path": paths[i % len(paths)]}),
                "summary": lambda i: client.call_tool("summary", {}),
                "read": lambda i: client.call_tool("read", {"path": paths[i % len(paths)],
                                                            "end_line": 100}),
                "resource file": lambda i: client.read_resource(
                    f"context://projects/{name}/files/{paths[i % len(paths)]}"),
                "resource summary": lambda i: client.read_resource(
                    f"context://projects/{name}/summary"),
                "resource status": lambda i: client.read_resource(
                    f"context://projects/{name}/status"),
                "prompt code_review": lambda i: client.get_prompt(
                    "code_review", {"path": paths[i % len(paths)]}),
            }
            latency = {}
            for label, call in operations.items():
                p50, p99 = percentiles(await timed(args.n, call))
                latency[label] = {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2)}
            results["latency"] = latency
    floor = ripgrep(project, names, min(args.n, 100))
    results["ripgrep"] = ({"p50_ms": round(percentiles(floor)[0], 2),
                           "p99_ms": round(percentiles(floor)[1], 2)} if floor else
                          "rg not installed (apt-get install ripgrep): no floor in this run")
    return results


async def access_run(args: argparse.Namespace) -> dict[str, Any]:
    """The cost of the per-project visibility check on ``search_code``: one in-process
    server (memory transport) guarded by the security middleware, with an API-token
    principal; rounds alternate the check on, the check bypassed, and the check on with
    plain (not interruptible) SQLite reads; the medians of the rounds' p50/p99."""
    import dataclasses
    import statistics

    from mobius_rpc.client.session import ClientSession
    from mobius_rpc.context.surface import build_context_server
    from mobius_rpc.core.types import memory_context
    from mobius_rpc.security.admin import create_organization
    from mobius_rpc.security.audit import AuditLog
    from mobius_rpc.security.middleware import SecurityMiddleware
    from mobius_rpc.security.open import security_store_for
    from mobius_rpc.security.principal import AuthMethod, Principal, Role
    from mobius_rpc.security.store import User
    from mobius_rpc.storage import open_store
    from mobius_rpc.transports.memory import memory_pair

    project = Path(args.project) if args.project else ROOT
    names = [name for name, _ in identifiers(project, 60)]
    who = Principal("u-bench", "bench", frozenset({Role.MEMBER}), method=AuthMethod.API_TOKEN,
                    credential="tok")

    async def as_caller(ctx: Any, call_next: Any) -> Any:
        transport = ctx.request.transport or memory_context()
        ctx.request = dataclasses.replace(ctx.request, transport=transport.with_principal(who))
        return await call_next(ctx)

    with tempfile.TemporaryDirectory() as tmp:
        async with open_store(f"sqlite:///{Path(tmp) / 'bench.db'}") as store:
            security = security_store_for(store)
            await security.create_user(User("u-bench", "bench", time.time()))
            await create_organization(security, "bench", owner_user_id="u-bench",
                                      org_id="bench")
            server, engine = build_context_server([project], store, orgs=["bench"])
            audit = AuditLog(security)
            server.secure(policy=SecurityMiddleware(security, audit=audit), audit=audit)
            server.dispatcher.use(as_caller, outermost=True)
            await engine.reindex(engine.project(None))
            checked = engine.access.visible_names
            spent: list[float] = []

            async def check() -> frozenset[str] | None:
                begun = time.perf_counter()
                try:
                    return await checked()
                finally:
                    spent.append(time.perf_counter() - begun)

            async def bypass() -> frozenset[str] | None:
                return None
            index: Any = await engine.index()
            interruptible = index._reader
            server_end, client_end = memory_pair()
            rounds: dict[str, list[tuple[float, float]]] = {"check": [], "bypass": [],
                                                            "check_plain_reads": []}
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve, server_end)
                client = ClientSession(client_end)
                await client.start(tg)
                await client.initialize("2025-11-25")

                async def search(i: int) -> Any:
                    return await client.call_tool("search_code", {"query": names[i % len(names)]})
                await timed(50, search)  # warm caches
                arms = [("check", check, interruptible), ("bypass", bypass, interruptible),
                        ("check_plain_reads", check, store.db.read)]
                for number in range(args.rounds):
                    # each round starts with another arm: no arm always runs warm or first
                    for label, gate, reader in arms[number % 3:] + arms[:number % 3]:
                        engine.access.visible_names = gate  # type: ignore[method-assign]
                        index._reader = reader
                        rounds[label].append(percentiles(await timed(args.n, search)))
                engine.access.visible_names = checked  # type: ignore[method-assign]
                index._reader = interruptible
                await client.aclose()
                tg.cancel_scope.cancel()
    spent.sort()
    out: dict[str, Any] = {"project": str(project), "rounds": args.rounds, "n": args.n,
                           "visibility_check_us": {
                               "p50": round(spent[len(spent) // 2] * 1e6, 1),
                               "p99": round(spent[int(len(spent) * 0.99)] * 1e6, 1)}}
    for label, samples in rounds.items():
        out[label] = {"p50_ms": round(statistics.median(p for p, _ in samples), 3),
                      "p99_ms": round(statistics.median(q for _, q in samples), 3),
                      "raw": [(round(p, 3), round(q, 3)) for p, q in samples]}
    for label in ("check", "check_plain_reads"):
        out[f"{label}/bypass p50"] = round(out[label]["p50_ms"] / out["bypass"]["p50_ms"], 3)
        out[f"{label}/bypass p99"] = round(out[label]["p99_ms"] / out["bypass"]["p99_ms"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--access", action="store_true",
                        help="only the visibility check's cost on search_code (in process, "
                             "this repository unless --project), A/B interleaved")
    parser.add_argument("--rounds", type=int, default=5, help="--access: A/B rounds")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--project", help="index this directory instead of an sdist")
    parser.add_argument("--sdist", default="django==5.1")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "mobius-bench"))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.access:
        found = anyio.run(access_run, args)
        print(json.dumps({k: v for k, v in found.items()}, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(found, indent=2))
        return
    results = anyio.run(run, args)
    print(f"project {results['project']}: {results['indexed_files']} files indexed "
          f"({results['files_py']} Python), {results['skipped_files']} skipped")
    print(f"cold index {results['cold_s']} s; 10 edited + 10 touched "
          f"{results['edit10_touch10_s']} s; index {results['index_mb']} MB")
    print(f"{'operation':<22}{'p50 ms':>10}{'p99 ms':>10}")
    for label, row in results["latency"].items():
        print(f"{label:<22}{row['p50_ms']:>10}{row['p99_ms']:>10}")
    floor = results["ripgrep"]
    if isinstance(floor, dict):
        print(f"{'ripgrep (floor)':<22}{floor['p50_ms']:>10}{floor['p99_ms']:>10}")
    else:
        print(floor)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
