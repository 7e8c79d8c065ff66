"""Projects belong to organizations: one ``mobius serve --http`` (real uvicorn, API tokens)
serving projects of two organizations shows each caller only its own, refuses the
others exactly like projects that do not exist, and keeps the refusals on record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from mobius_rpc.client.client import Client
from mobius_rpc.client.targets import target_from_url
from mobius_rpc.core.errors import McpError
from mobius_rpc.security.admin import create_organization, set_membership
from mobius_rpc.security.open import open_security_store
from mobius_rpc.security.policy import make_rule
from mobius_rpc.security.principal import Role
from mobius_rpc.security.store import User
from mobius_rpc.security.tokens import issue_token

PROJECT = "projects/{project}/files/{+path}"
FILES_TEMPLATE = "context://" + PROJECT


def _project(root: Path, marker: str) -> Path:
    root.mkdir(parents=True)
    (root / "main.py").write_text(f'def {marker}_entry():\n    """The {marker} entry."""\n'
                                  f"    return '{marker}'\n")
    return root


async def _world(url: str) -> dict[str, str]:
    """acme (owner, viewer) and globex (owner); acme hides acme-secret from viewers."""
    tokens: dict[str, str] = {}
    async with open_security_store(url) as (_, security):
        for name in ("acme-owner", "acme-viewer", "globex-owner"):
            await security.create_user(User(id=f"u-{name}", name=name, created_at=time.time()))
        await create_organization(security, "Acme", owner_user_id="u-acme-owner", org_id="acme")
        await create_organization(security, "Globex", owner_user_id="u-globex-owner",
                                  org_id="globex")
        await set_membership(security, "acme", "u-acme-viewer", Role.VIEWER)
        await security.add_rule(make_rule("acme", "deny", "role:viewer", "projects",
                                          "acme-secret", rule_id="hide-secret"))
        for user, org in (("acme-owner", "acme"), ("acme-viewer", "acme"),
                          ("globex-owner", "globex")):
            tokens[user] = (await issue_token(security, user_id=f"u-{user}", org_id=org)).token
    return tokens


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], str, dict[str, str]]]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    tokens = anyio.run(_world, url)
    a = _project(tmp_path / "acme-app", "acme")
    s = _project(tmp_path / "acme-secret", "secret")
    g = _project(tmp_path / "globex-app", "globex")
    env = {**os.environ, "MOBIUS_HOME": str(tmp_path / "home")}
    env.pop("MOBIUS_STORE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mobius_rpc", "serve", "--http", "--port", "0", "--store", url,
         "--org", "Acme", str(a), "--project", f"{s}=acme", "--project", f"{g}=globex"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline()]
        assert "Streamable HTTP" in lines[0], lines
        while not lines[-1].startswith("authentication: ON"):
            lines.append(proc.stderr.readline())
            assert lines[-1], f"serve ended early: {lines}"
        yield lines[0].split()[-1], tokens, url, env
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


class Caller:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def projects(self) -> set[str]:
        found = await self.client.request("resources/read", {"uri": "context://projects"})
        return {p["project"] for p in json.loads(found["contents"][0]["text"])}

    async def tool(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return await self.client.request("tools/call", {"name": name, "arguments": args})

    async def error_of(self, method: str, params: dict[str, Any]) -> tuple[int, str]:
        with pytest.raises(McpError) as caught:
            await self.client.request(method, params)
        return caught.value.code, caught.value.message

    async def complete(self, argument: str, value: str, context: dict[str, str]
                       ) -> list[str]:
        params: dict[str, Any] = {"ref": {"type": "ref/resource", "uri": FILES_TEMPLATE},
                                  "argument": {"name": argument, "value": value}}
        if context:
            params["context"] = {"arguments": context}
        found = await self.client.request("completion/complete", params)
        return list(found["completion"]["values"])


def _text(result: dict[str, Any]) -> str:
    return str(result["content"][0]["text"])


TOOLS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("search_code", {"query": "entry"}), ("similar", {"snippet": "x()"}),
    ("definition", {"name": "x"}), ("references", {"name": "x"}),
    ("analyze", {"path": "main.py"}), ("summary", {}), ("read", {"path": "main.py"}),
    ("reindex", {}))


async def _refused_like_missing(caller: Caller, hidden: str, *, viewer: bool = False) -> None:
    """Every way to name ``hidden`` answers as naming a project that does not exist
    (a viewer may not call reindex at all: the default rules keep it to read-only tools)."""
    for tool, args in TOOLS[:-1] if viewer else TOOLS:
        hidden_answer = await caller.tool(tool, {**args, "project": hidden})
        missing_answer = await caller.tool(tool, {**args, "project": "no-such-project"})
        assert hidden_answer["isError"] is True, (tool, hidden_answer)
        assert _text(hidden_answer).replace(hidden, "?") == \
            _text(missing_answer).replace("no-such-project", "?"), tool
        assert hidden not in _text(hidden_answer).replace(f"'{hidden}'", ""), tool
    for suffix in ("files/main.py", "summary", "status", "lines/1/2/main.py"):
        hidden_error = await caller.error_of("resources/read", {
            "uri": f"context://projects/{hidden}/{suffix}"})
        missing_error = await caller.error_of("resources/read", {
            "uri": f"context://projects/no-such-project/{suffix}"})
        assert hidden_error[0] == missing_error[0]
        assert hidden_error[1].replace(hidden, "?") == \
            missing_error[1].replace("no-such-project", "?")
    for prompt in ("code_review", "explain"):
        hidden_error = await caller.error_of("prompts/get", {
            "name": prompt, "arguments": {"path": "main.py", "project": hidden}})
        missing_error = await caller.error_of("prompts/get", {
            "name": prompt, "arguments": {"path": "main.py", "project": "no-such-project"}})
        assert hidden_error[0] == missing_error[0]
        assert hidden_error[1].replace(hidden, "?") == \
            missing_error[1].replace("no-such-project", "?")
    assert hidden not in await caller.complete("project", "", {})
    assert await caller.complete("path", "", {"project": hidden}) == []


def test_each_organization_sees_and_searches_only_its_projects(
        served: tuple[str, dict[str, str], str, dict[str, str]]) -> None:
    mcp, tokens, url, env = served

    async def as_user(user: str, revision: str | None = None) -> Any:
        target = target_from_url(mcp, headers={"Authorization": f"Bearer {tokens[user]}"})
        return Client(target, timeout=60, connect_timeout=60, revision=revision)

    async def run() -> None:
        with anyio.fail_after(120):
            await scenario()

    async def scenario() -> None:
        async with await as_user("acme-owner") as client:
            acme = Caller(client)
            assert await acme.projects() == {"acme-app", "acme-secret"}
            hits = (await acme.tool("search_code", {"query": "acme_entry"}))
            assert hits["structuredContent"]["hits"][0]["name"] == "acme_entry"
            # searching without a project, or in globex's, never reaches globex's code
            for args in ({"query": "globex_entry"},
                         {"query": "globex_entry", "project": "acme-secret"}):
                found = await acme.tool("search_code", args)
                assert not any("globex" in h["name"]
                               for h in found["structuredContent"]["hits"]), found
            everywhere = await acme.tool("search_code", {"query": "entry", "project": "*",
                                                         "limit": 50})
            assert {h["project"] for h in everywhere["structuredContent"]["hits"]} == \
                {"acme-app", "acme-secret"}, everywhere
            assert await acme.complete("project", "", {}) == ["acme-app", "acme-secret"]
            assert await acme.complete("path", "", {"project": "acme-app"}) == ["main.py"]
            review = await client.request("prompts/get", {
                "name": "code_review", "arguments": {"path": "main.py"}})
            assert "acme_entry" in review["messages"][0]["content"]["resource"]["text"]
            await _refused_like_missing(acme, "globex-app")
        async with await as_user("acme-owner", "2025-11-25") as client:
            answers = [await client.request("resources/subscribe", {
                "uri": f"context://projects/{name}/files/main.py"})
                for name in ("globex-app", "no-such-project")]
            assert answers[0] == answers[1]  # acknowledged alike; neither is subscribed
        async with await as_user("globex-owner") as client:
            globex = Caller(client)
            assert await globex.projects() == {"globex-app"}
            found = await globex.tool("search_code", {"query": "globex_entry"})
            assert found["structuredContent"]["hits"][0]["path"] == "main.py"
            await _refused_like_missing(globex, "acme-app")
        async with await as_user("acme-viewer") as client:
            viewer = Caller(client)
            assert await viewer.projects() == {"acme-app"}
            everywhere = await viewer.tool("search_code", {"query": "entry", "project": "*"})
            assert {h["project"] for h in everywhere["structuredContent"]["hits"]} == \
                {"acme-app"}, everywhere
            await _refused_like_missing(viewer, "acme-secret", viewer=True)

    anyio.run(run)

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "mobius_rpc", *args, "--store", url],
                              capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    denied = cli("audit", "search", "--outcome", "denied", "--json")
    targets = {(r["organization"], r["target"]) for r in json.loads(denied)}
    assert ("acme", "project:globex-app") in targets, targets
    assert ("globex", "project:acme-app") in targets, targets
    assert ("acme", "project:acme-secret") in targets, targets
    assert not any(t == "project:no-such-project" for _, t in targets)
    subscribed = [r for r in json.loads(denied) if r["method"] == "resources/subscribe"]
    assert [r["target"] for r in subscribed] == ["project:globex-app"], subscribed
    explained = cli("access", "explain", "--user", "acme-viewer", "--project", "acme-secret")
    assert explained.startswith("acme-viewer (viewer in acme) read projects 'acme-secret'")
    assert "denied: rule hide-secret denies" in explained, explained
    assert "allowed" in cli("access", "explain", "--user", "acme-owner", "--project",
                            "acme-secret").splitlines()[1]
    other = cli("access", "explain", "--user", "acme-owner", "--project", "globex-app")
    assert "belongs to another organization" in other, other
    assert cli("audit", "verify").startswith("ok: ")


def test_stdio_projects_belong_to_the_os_users_personal_organization(tmp_path: Path) -> None:
    from mobius_rpc.client.targets import StdioTarget
    from mobius_rpc.context.sql_index import SqlIndex
    from mobius_rpc.security.serving import os_user
    from mobius_rpc.storage import open_store

    url = f"sqlite:///{tmp_path / 'store.db'}"
    root = _project(tmp_path / "mine", "mine")

    async def run() -> None:
        target = StdioTarget(sys.executable, ("-m", "mobius_rpc", "serve", "--stdio", "--store",
                                              url, str(root)),
                             env={**os.environ, "MOBIUS_HOME": str(tmp_path / "home")})
        with anyio.fail_after(60):
            async with Client(target, timeout=60, connect_timeout=60) as client:
                assert await Caller(client).projects() == {"mine"}  # its owner sees it
        async with open_store(url) as store:
            owners = await SqlIndex(store.db).project_owners()  # type: ignore[attr-defined]
        assert owners == {"mine": f"personal:{os_user()}"}

    anyio.run(run)


@pytest.mark.parametrize("args, message", [
    (["--http", "--org", "nobody-has-this"], "no organization 'nobody-has-this' in the store"),
    (["--project", "=acme"], "--project '=acme': use DIR=ORG"),
    (["--project", "/no/such/dir=acme"], "not a directory: /no/such/dir"),
    (["--fixture", "demo", "--org", "acme"], "project directories go with the context"),
])
def test_bad_owners_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "mobius_rpc", "serve", "--store",
                           f"sqlite:///{tmp_path / 's.db'}", "--port", "0", *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env={**os.environ, "MOBIUS_HOME": str(tmp_path)})
    assert done.returncode == 2, done
    assert done.stderr.startswith("mobius serve: ") and message in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
