"""``mobius serve --extensions ORG``: an organization's installed extensions, served
through the gateway next to the context engine's own tools, namespaced and pinned."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from mobius_rpc.client.client import Client
from mobius_rpc.client.targets import StdioTarget
from mobius_rpc.gateway_cli import extension_upstreams
from mobius_rpc.marketplace import Installer, Marketplace, SecretBox, load_key, market_store, probe
from mobius_rpc.storage import open_store

from .conftest import CACHE, needs_node

HELLO = "dev.mobius-rpc.curated/mcp-hello-world"


def _serve(url: str, home: Path, root: Path, *extra: str) -> StdioTarget:
    return StdioTarget(sys.executable, ("-m", "mobius_rpc", "serve", "--stdio", "--store", url,
                                        *extra, str(root)), env={"MOBIUS_HOME": str(home)})


@needs_node()
@pytest.mark.anyio
async def test_installed_extension_is_served_beside_the_context_engine(tmp_path: Path) -> None:
    home, root = tmp_path / "home", tmp_path / "project"
    root.mkdir()
    (root / "a.py").write_text("def hello():\n    return 1\n")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    async with open_store(url) as store:
        market = Marketplace(market_store(store), home=home, box=SecretBox(load_key(home)),
                             sandbox=probe(), installer=Installer(cache=CACHE,
                                                                  python=sys.executable))
        await market.install("acme", HELLO)
    with anyio.fail_after(120):
        async with Client(_serve(url, home, root, "--extensions", "acme"),
                          timeout=60, connect_timeout=60) as client:
            tools = {t["name"]: t for t in await client.list_tools()}
            ours = [n for n in tools if "__" not in n]
            assert ours, tools  # the context engine's own tools are still there
            assert "mcp-hello-world__echo" in tools, sorted(tools)
            schema = tools["mcp-hello-world__echo"]["inputSchema"]
            arg = next(iter(schema.get("required") or schema["properties"]))
            result = await client.call_tool("mcp-hello-world__echo", {arg: "ping-42"})
            assert "ping-42" in result["content"][0]["text"]
        # another organization's serve does not get acme's extension
        async with Client(_serve(url, home, root, "--extensions", "globex"),
                          timeout=60, connect_timeout=60) as client:
            names = [t["name"] for t in await client.list_tools()]
            assert names and not any(n.startswith("mcp-hello-world__") for n in names)
    # the extension's first tool set was pinned on first use, in the store's audit log
    audit = subprocess.run([sys.executable, "-m", "mobius_rpc", "audit", "search", "--store",
                            url, "--method", "gateway/tools.approve"],
                           capture_output=True, text=True, timeout=60)
    assert "gateway/tools.approve mcp-hello-world ok" in audit.stdout, audit.stdout


def test_extension_upstream_names() -> None:
    entry = {"command": "x"}
    named = extension_upstreams({"a.b/hello": entry, "c.d/hello": entry, "e/git": entry},
                                {"git"})
    assert named == {"hello": entry, "c.d_hello": entry, "e_git": entry}
    assert set(extension_upstreams({"x/y z": entry}, set())) == {"y-z"}


def test_extension_errors_are_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mobius_rpc", "serve", "--stdio", "--fixture",
                           "demo", "--extensions", "acme", "--store", "nosuch://x"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env={"MOBIUS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and done.stderr.startswith("mobius serve: --extensions acme: ")
    assert done.stderr.count("\n") == 1, done.stderr
