"""Every bundled extension installs from its registry, starts sandboxed and lists tools.

One test for the whole catalog (slow but bounded): installs run three at a time
(downloads come from the cache after the first run), then each installation's
launch entry is started through our Client, and finally all of them at once behind
one gateway, whose merged list must hold every extension's tools.
"""

from __future__ import annotations

import time

import anyio
import pytest

from mobius_rpc.gateway import Gateway, UpstreamOptions
from mobius_rpc.gateway_cli import extension_upstreams
from mobius_rpc.marketplace import Marketplace, load_bundled
from mobius_rpc.marketplace.health import list_tools
from mobius_rpc.server.app import Server
from tests.conftest import connect

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
    await _every_extension_through_one_gateway(entries, tools)


async def _every_extension_through_one_gateway(entries: dict[str, dict[str, object]],
                                               direct: dict[str, int]) -> None:
    """The installations behind one gateway, the way ``mobius serve --extensions`` runs
    them: each lists, namespaced, the tools it listed when started alone."""
    upstreams = extension_upstreams(entries, set())
    options = UpstreamOptions(timeout=90.0, connect_timeout=180.0, health_interval=0)
    front = Server("front")
    gateway = Gateway(upstreams, options=options, list_wait=240.0).attach(front)
    try:
        await gateway.wait_ready()
        not_ready = [h for h in gateway.health() if h["state"] != "ready"]
        assert not not_ready, not_ready
        listed: list[str] = []
        async with connect(front) as client:
            cursor = None
            while True:  # the merged list comes in pages
                page = await client.list_tools(cursor)
                listed += [tool["name"] for tool in page["tools"]]
                cursor = page.get("nextCursor")
                if not cursor:
                    break
    finally:
        await gateway.aclose()
    by_upstream = {upstream: sum(name.startswith(f"{upstream}__") for name in listed)
                   for upstream in upstreams}
    # At least what it listed alone: the gateway declares the client capabilities it relays
    # (sampling, elicitation, roots), and some servers offer more tools to such a client.
    short = [upstream for upstream, name in zip(upstreams, sorted(entries), strict=True)
             if by_upstream[upstream] < direct[name] or by_upstream[upstream] == 0]
    assert not short, {upstream: by_upstream[upstream] for upstream in short}
