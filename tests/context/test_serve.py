"""``mobius serve`` for real: a stdio subprocess and an HTTP server, driven by our Client and
by the official Python SDK client, over every tool, resource and prompt; and precision on
this repository itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from mobius_rpc.client.client import Client
from mobius_rpc.client.targets import HttpTarget, StdioTarget
from mobius_rpc.context.surface import build_context_server
from mobius_rpc.storage import open_store
from tests.conftest import connect

REPO = Path(__file__).resolve().parents[2]
TOOLS = {"search_code", "similar", "definition", "references", "analyze", "summary", "read",
         "reindex"}
PROMPTS = {"code_review", "debug", "explain"}


def _project(root: Path) -> Path:
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "cart.py").write_text(
        '"""Carts."""\n\n\ndef total_price(items):\n    """Sum of prices."""\n'
        "    total = 0\n    for item in items:\n        if item.price > 0 and item.count:\n"
        "            total += item.price * item.count\n    return total\n")
    (root / "shop" / "checkout.py").write_text(
        "from shop.cart import total_price\n\n\ndef checkout(cart):\n"
        "    return total_price(cart.items)\n")
    (root / "web.ts").write_text("export function renderCart(x: number): string "
                                 "{ return x > 1 ? 'a' : 'b' }\n")
    return root


async def _exercise(call: Any, read: Any, prompt: Any, project: str) -> None:
    """Every tool, resource and prompt, through the three callables of one client."""
    piece = await call("search_code", {"query": "tal_pri"})
    assert piece["hits"][0]["name"] == "total_price"
    found = await call("search_code", {"query": "total_price"})
    assert found["hits"][0]["name"] == "total_price" and found["hits"][0]["snippet"]
    alike = await call("similar", {"snippet": "for item in items:\n    total += item.price"})
    assert alike["hits"][0]["name"] == "total_price" and 0 < alike["hits"][0]["score"] <= 1
    defined = await call("definition", {"name": "total_price"})
    assert defined["definitions"][0]["path"] == "shop/cart.py"
    assert defined["definitions"][0]["doc"] == "Sum of prices."
    used = await call("references", {"name": "total_price"})
    assert {"checkout"} <= {r["scope"] for r in used["references"]}
    analysis = await call("analyze", {"path": "shop/cart.py"})
    assert analysis["functions"][0]["complexity"] == 4 and analysis["max_nesting"] == 2
    assert analysis["dependents"] == ["shop/checkout.py"]
    summary = await call("summary", {"budget_tokens": 500})
    assert summary["languages"]["python"] == 3 and summary["outline"]
    piece = await call("read", {"path": "shop/cart.py", "start_line": 4, "end_line": 5})
    assert piece["text"].startswith("def total_price")
    status = await call("reindex", {})
    assert status["state"] == "ready" and status["files"] == 4
    listed = await read("context://projects")
    assert project in listed
    assert '"ready"' in await read(f"context://projects/{project}/status")
    assert "total_price" in await read(f"context://projects/{project}/summary")
    assert "def checkout" in await read(f"context://projects/{project}/files/shop/checkout.py")
    assert await read(f"context://projects/{project}/lines/4/5/shop/cart.py") == \
        'def total_price(items):\n    """Sum of prices."""'
    review = await prompt("code_review", {"path": "shop/cart.py", "focus": "overflow"})
    assert "total_price" in review and "overflow" in review
    assert "KeyError" in await prompt("debug", {"error": "KeyError: x", "path": "shop/cart.py",
                                                "line": "6"})
    assert "checkout" in await prompt("explain", {"path": "shop/checkout.py"})


async def _with_our_client(client: Client, project: str) -> None:
    listed = await client.list_tools()
    assert {t["name"] for t in listed} == TOOLS
    assert all("outputSchema" in t for t in listed)

    async def call(name: str, args: dict[str, Any]) -> Any:
        result = await client.call_tool(name, args)
        assert not result.get("isError"), result
        return result["structuredContent"]

    async def read(uri: str) -> str:
        return str((await client.read_resource(uri))["contents"][0]["text"])

    async def prompt(name: str, args: dict[str, str]) -> str:
        return str(await client.get_prompt(name, args))

    await _exercise(call, read, prompt, project)
    bad = await client.call_tool("read", {"path": "../../etc/passwd"})
    assert bad["isError"] and "outside the project root" in bad["content"][0]["text"]


def _serve_command(root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mobius_rpc", "serve", "--store", "memory:", *extra, str(root)]


def test_stdio_subprocess_with_our_client(tmp_path: Path) -> None:
    root = _project(tmp_path / "shop-project")
    command = _serve_command(root, "--stdio")

    async def run() -> None:
        with anyio.fail_after(60):
            async with Client(StdioTarget(command[0], tuple(command[1:]))) as client:
                await _with_our_client(client, "shop-project")

    anyio.run(run)


@pytest.fixture
def http_url(tmp_path: Path) -> Any:
    root = _project(tmp_path / "shop-project")
    proc = subprocess.Popen(_serve_command(root, "--http", "--port", "0", "--no-auth"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "Streamable HTTP" in line, line
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def test_http_server_with_our_client(http_url: str) -> None:
    async def run() -> None:
        with anyio.fail_after(60):
            async with Client(HttpTarget(http_url)) as client:
                await _with_our_client(client, "shop-project")

    anyio.run(run)


def _sdk_callables(client: Any) -> tuple[Any, Any, Any]:
    async def call(name: str, args: dict[str, Any]) -> Any:
        result = await client.call_tool(name, args)
        assert not result.is_error, result
        return result.structured_content

    async def read(uri: str) -> str:
        return str((await client.read_resource(uri)).contents[0].text)

    async def prompt(name: str, args: dict[str, str]) -> str:
        return str((await client.get_prompt(name, args)).messages)

    return call, read, prompt


@pytest.mark.peers
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_official_sdk_over_stdio(tmp_path: Path, mode: str) -> None:
    mcp = pytest.importorskip("mcp")
    root = _project(tmp_path / "shop-project")
    command = _serve_command(root, "--stdio")
    params = mcp.StdioServerParameters(command=command[0], args=command[1:])

    async def run() -> None:
        with anyio.fail_after(60):
            async with mcp.Client(params, mode=mode) as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                assert tools == TOOLS
                assert {p.name for p in (await client.list_prompts()).prompts} == PROMPTS
                await _exercise(*_sdk_callables(client), "shop-project")

    anyio.run(run)


@pytest.mark.peers
def test_official_sdk_over_http(http_url: str) -> None:
    mcp = pytest.importorskip("mcp")

    async def run() -> None:
        with anyio.fail_after(60):
            async with mcp.Client(http_url) as client:
                await _exercise(*_sdk_callables(client), "shop-project")

    anyio.run(run)


def test_precision_on_this_repository() -> None:
    async def run() -> None:
        async with open_store("memory:repo") as store:
            server, engine = build_context_server([REPO], store)
            await engine.reindex(engine.project(None))
            async with connect(server) as client:
                async def call(name: str, args: dict[str, Any]) -> Any:
                    return (await client.call_tool(name, args))["structuredContent"]

                for identifier, path in (("build_demo_server", "mobius_rpc/demo.py"),
                                         ("parse_python",
                                          "mobius_rpc/context/languages/python_ast.py"),
                                         ("StoreBusy", "mobius_rpc/storage/errors.py")):
                    hits = (await call("search_code", {"query": identifier}))["hits"]
                    assert (hits[0]["path"], hits[0]["name"]) == (path, identifier)
                refs = (await call("references", {"name": "parse_python", "limit": 200}))
                assert ("mobius_rpc/context/extract.py", "parse_source") in {
                    (r["path"], r["scope"]) for r in refs["references"]}
                refs = (await call("references", {"name": "build_demo_server", "limit": 200}))
                assert "mobius_rpc/cli.py" in {r["path"] for r in refs["references"]}
                small = await call("search_code", {"query": "server", "limit": 50})
                assert small["next_cursor"] and len(small["hits"]) == 50
                more = await call("search_code", {"query": "server", "limit": 50,
                                                  "cursor": small["next_cursor"]})
                assert not {(h["path"], h["line_start"]) for h in more["hits"]} & {
                    (h["path"], h["line_start"]) for h in small["hits"]}
                globbed = await call("search_code", {"query": "server",
                                                     "path_glob": "mobius_rpc/storage/*"})
                assert globbed["hits"] and all(h["path"].startswith("mobius_rpc/storage/")
                                               for h in globbed["hits"])

    anyio.run(run)


def test_watch_mode_notifies_subscribers(tmp_path: Path) -> None:
    root = _project(tmp_path / "shop-project")
    command = _serve_command(root, "--stdio", "--watch", "0.2")
    uri = "context://projects/shop-project/files/shop/cart.py"

    async def run() -> None:
        with anyio.fail_after(60):
            seen: list[tuple[str, Any]] = []
            # subscriptions are the 2025-11-25 way (2026-07-28 listens instead)
            async with Client(StdioTarget(command[0], tuple(command[1:])),
                              revision="2025-11-25",
                              on_notification=lambda m, p: seen.append((m, p))) as client:
                await client.call_tool("reindex", {})
                await client.subscribe(uri)
                (root / "shop" / "cart.py").write_text("def total_price(items):\n    return 0\n")
                (root / "shop" / "new.py").write_text("def fresh():\n    return 1\n")
                while not ({"notifications/resources/updated",
                            "notifications/resources/list_changed"} <= {m for m, _ in seen}):
                    await anyio.sleep(0.05)
                assert ("notifications/resources/updated", {"uri": uri}) in seen
                found = await client.call_tool("definition", {"name": "fresh"})
                assert found["structuredContent"]["definitions"]

    anyio.run(run)


def _check_ts_summary(stdout: str) -> None:
    import json
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["serverName"] == "mobius-context"
    assert set(summary["tools"]) == TOOLS and set(summary["prompts"]) == PROMPTS
    assert summary["reindex"] == "ready" and summary["search"] == "total_price"
    assert summary["similar"] == "total_price" and summary["lines"] == "def total_price(items):"
    assert summary["definition"] == "shop/cart.py" and "checkout" in summary["references"]
    assert summary["complexity"] == 4 and summary["languages"]["python"] == 3
    assert summary["read"] == "def total_price(items):" and "shop-project" in summary["projects"]
    assert summary["status"] == "ready" and summary["summaryResource"] == 4
    assert "def checkout" in summary["file"] and "rounding" in summary["review"]
    assert "ZeroDivisionError" in summary["debug"] and "checkout" in summary["explain"]


@pytest.fixture(scope="module")
def ts_client() -> Path:
    import shutil
    node_dir = REPO / "tests" / "interop" / "node"
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the TypeScript SDK peer")
    if not (node_dir / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=node_dir, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"could not install the TypeScript SDK: {done.stderr[-500:]}")
    return node_dir / "context_client.mjs"


@pytest.mark.peers
def test_typescript_sdk_over_stdio(ts_client: Path, tmp_path: Path) -> None:
    root = _project(tmp_path / "shop-project")
    done = subprocess.run(["node", str(ts_client), "shop-project",
                           *_serve_command(root, "--stdio")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    _check_ts_summary(done.stdout)


@pytest.mark.peers
def test_typescript_sdk_over_http(ts_client: Path, http_url: str) -> None:
    done = subprocess.run(["node", str(ts_client), "shop-project", "--url", http_url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    _check_ts_summary(done.stdout)
