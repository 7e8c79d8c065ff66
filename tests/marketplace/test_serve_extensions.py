"""``mobius serve --extensions ORG``: an organization's installed extensions, served
through the gateway next to the context engine's own tools, namespaced and pinned."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from mobius_rpc.client.client import Client
from mobius_rpc.client.targets import StdioTarget, target_from_url
from mobius_rpc.core.errors import McpError
from mobius_rpc.gateway_cli import extension_upstreams
from mobius_rpc.marketplace import Installer, Marketplace, SecretBox, load_key, market_store, probe
from mobius_rpc.security.admin import create_organization
from mobius_rpc.security.open import open_security_store
from mobius_rpc.security.store import User
from mobius_rpc.security.tokens import issue_token
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


async def _install(url: str, home: Path, org: str) -> None:
    async with open_store(url) as store:
        market = Marketplace(market_store(store), home=home, box=SecretBox(load_key(home)),
                             sandbox=probe(), installer=Installer(cache=CACHE,
                                                                  python=sys.executable))
        await market.install(org, HELLO)


@needs_node()
@pytest.mark.anyio
async def test_on_http_only_the_owning_organization_sees_its_extensions(tmp_path: Path
                                                                        ) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{tmp_path / 'store.db'}"
    tokens: dict[str, str] = {}
    async with open_security_store(url) as (_, security):
        for org in ("acme", "globex"):
            user = User(id=f"u-{org}", name=f"{org}-owner", created_at=time.time())
            await security.create_user(user)
            await create_organization(security, org, owner_user_id=user.id, org_id=org)
            tokens[org] = (await issue_token(security, user_id=user.id, org_id=org)).token
    await _install(url, home, "acme")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "MOBIUS_HOME": str(home)}
    env.pop("MOBIUS_STORE", None)
    proc = subprocess.Popen([sys.executable, "-m", "mobius_rpc", "serve", "--fixture", "demo",
                             "--http", "--port", str(port), "--store", url, "--extensions",
                             "acme"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("authentication: ON"):
            line = proc.stderr.readline()
            assert line, f"serve ended early: {lines}"
            lines.append(line)

        async def session(org: str) -> tuple[list[str], object]:
            target = target_from_url(f"http://127.0.0.1:{port}/mcp",
                                     headers={"Authorization": f"Bearer {tokens[org]}"})
            async with Client(target, timeout=60, connect_timeout=60) as client:
                names = [t["name"] for t in await client.list_tools()]
                try:
                    outcome: object = await client.call_tool("mcp-hello-world__echo",
                                                             {"message": f"from {org}"})
                except McpError as exc:
                    outcome = exc
                return names, outcome

        with anyio.fail_after(120):
            names, outcome = await session("acme")
            assert "mcp-hello-world__echo" in names and "echo" in names, names
            assert isinstance(outcome, dict) and "from acme" in outcome["content"][0]["text"]
            names, outcome = await session("globex")
            assert "echo" in names and not any(n.startswith("mcp-hello-world__")
                                               for n in names), names
            assert isinstance(outcome, McpError) and outcome.code == -32602
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
    denied = subprocess.run([sys.executable, "-m", "mobius_rpc", "audit", "search", "--store",
                             url, "--outcome", "denied", "--org", "globex"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert "mcp-hello-world__echo denied u-globex@globex" in denied.stdout, denied.stdout
    # the middleware's log and the gateway's (first-use approval) wrote one intact chain
    approved = subprocess.run([sys.executable, "-m", "mobius_rpc", "audit", "search",
                               "--store", url, "--method", "gateway/tools.approve"],
                              capture_output=True, text=True, timeout=60, env=env)
    assert "gateway/tools.approve mcp-hello-world ok" in approved.stdout, approved.stdout
    verify = subprocess.run([sys.executable, "-m", "mobius_rpc", "audit", "verify", "--store",
                             url], capture_output=True, text=True, timeout=60, env=env)
    assert verify.returncode == 0 and verify.stdout.startswith("ok: "), verify.stdout


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
