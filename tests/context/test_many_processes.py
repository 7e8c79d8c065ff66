"""Eight ``mobius serve --stdio`` processes on one SQLite file, the way a host launches one
context server per window: every call answers and no "database is locked" reaches anyone."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from mobius_rpc.client.client import Client
from mobius_rpc.client.targets import StdioTarget

REPO = Path(__file__).resolve().parents[2]
SERVERS = 8
ROUNDS = 15


def _project(root: Path) -> Path:
    """A real tree to index: a copy of this repository's core and storage packages."""
    for package in ("core", "storage"):
        shutil.copytree(REPO / "mobius_rpc" / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.mark.slow
def test_eight_stdio_servers_share_one_sqlite_file_without_lock_errors(tmp_path: Path) -> None:
    root = _project(tmp_path / "project")
    database = tmp_path / "shared.db"
    command = [sys.executable, "-m", "mobius_rpc", "serve", "--store", f"sqlite:///{database}",
               "--stdio", str(root)]
    failures: list[str] = []
    stderr_tails: list[str] = []

    async def one(index: int) -> None:
        target = StdioTarget(command[0], tuple(command[1:]))
        async with Client(target) as client:
            async def call(name: str, args: dict[str, Any]) -> Any:
                result = await client.call_tool(name, args)
                if result.get("isError"):
                    failures.append(f"server {index} {name}: {result['content'][0]['text']}")
                return result.get("structuredContent") or {}

            await call("reindex", {})
            for round_ in range(ROUNDS):
                if round_ % 5 == index % 5:
                    # one writer at a time somewhere: edit a file and index again
                    edited = root / "core" / f"edited_{index}.py"
                    edited.write_text(f"def edited_{index}_{round_}():\n    return {round_}\n")
                    await call("reindex", {})
                hits = await call("search_code", {"query": "RequestId"})
                if not hits.get("hits"):
                    failures.append(f"server {index}: search found nothing")
                await call("definition", {"name": "open_store"})
            stderr_tails.extend(client.stderr_tail)

    async def run() -> None:
        with anyio.fail_after(600):
            async with anyio.create_task_group() as tg:
                for index in range(SERVERS):
                    tg.start_soon(one, index)

    anyio.run(run)
    assert failures == []
    assert not [line for line in stderr_tails if "locked" in line.lower()]
