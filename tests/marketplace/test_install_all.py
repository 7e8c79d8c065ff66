"""Every bundled extension installs from its registry, starts sandboxed and lists tools.

One test for the whole catalog (slow but bounded): installs run three at a time
(downloads come from the cache after the first run), then each installation's
launch entry, the one the gateway uses, is started through our Client.
"""

from __future__ import annotations

import time

import anyio
import pytest

from mobius_rpc.marketplace import Marketplace, load_bundled
from mobius_rpc.marketplace.health import list_tools

from .conftest import needs_bwrap, needs_node

pytestmark = [pytest.mark.anyio, pytest.mark.slow, needs_node(), needs_bwrap()]
#: required inputs of bundled entries that have no default
CONFIG = {"io.github.tumf/mcp-shell-server": {"ALLOW_COMMANDS": "ls,cat,echo"},
          "io.github.runekaagaard/mcp-alchemy": {"DB_URL": "sqlite:///data.db"}}


async def test_every_bundled_extension_installs_starts_and_lists_tools(
        market: Marketplace) -> None:
    names = [e.name for e in load_bundled()]
    assert len(names) >= 20
    failures: dict[str, str] = {}
    timings: dict[str, float] = {}
    limiter = anyio.Semaphore(3)

    async def one(name: str) -> None:
        async with limiter:
            started = time.monotonic()
            try:
                await market.install("acme", name, config=CONFIG.get(name, {}))
            except Exception as exc:  # collected: the assertion lists every failure
                failures[name] = f"install: {exc}"[:400]
            timings[name] = time.monotonic() - started

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(one, name)
    entries = await market.launch_entries("acme")
    tools: dict[str, int] = {}
    for name, entry in entries.items():
        try:
            tools[name] = len(await list_tools(entry, timeout=90))
        except Exception as exc:
            failures[name] = f"tools/list: {exc}"[:400]
    report = "\n".join(f"{n}: {timings.get(n, 0):.0f}s install, {tools.get(n)} tools"
                       for n in names)
    print(report)
    assert not failures, "\n".join(f"{n}: {why}" for n, why in failures.items())
    assert all(count > 0 for count in tools.values()) and len(tools) == len(names)
