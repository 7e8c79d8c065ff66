"""Property: whatever the projects' owners and the rules on projects, the projects a
caller is shown are exactly the ones every tool, resource, completion and prompt
accepts (in process: a memory connection, the security middleware, memory stores)."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mobius_rpc.context.serve import owner_org
from mobius_rpc.context.surface import build_context_server
from mobius_rpc.core.errors import McpError
from mobius_rpc.security.audit import AuditLog
from mobius_rpc.security.middleware import SecurityMiddleware
from mobius_rpc.security.policy import make_rule
from mobius_rpc.security.principal import Principal
from mobius_rpc.security.store import AuditQuery, MemorySecurityStore
from tests.conftest import connect
from tests.security.support import Caller, make_world

NAMES = ("app", "api", "secret", "lib")
TOOLS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("search_code", {"query": "entry"}), ("similar", {"snippet": "entry()"}),
    ("definition", {"name": "entry"}), ("references", {"name": "entry"}),
    ("analyze", {"path": "main.py"}), ("summary", {}), ("read", {"path": "main.py"}),
    ("reindex", {}))
TEMPLATE = "context://projects/{project}/files/{+path}"


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("orgs")
    out = []
    for name in NAMES:
        (base / name).mkdir()
        (base / name / "main.py").write_text("def entry():\n    return 1\n")
        out.append(base / name)
    return out


rules = st.lists(st.tuples(
    st.sampled_from(["deny", "allow"]),
    st.sampled_from(["role:viewer", "role:member", "role:owner", "user:u-member", "*"]),
    st.just("projects"),
    st.sampled_from(["app", "a*", "*", "s?cret", "lib", "nothing"]),
    st.sampled_from([("*",), ("list",), ("read",), ("list", "read")])), max_size=4)


async def _accepted(client: Any, names: list[str]) -> dict[str, set[str]]:
    """For each way of naming a project, the projects it accepted."""
    out: dict[str, set[str]] = {}
    for tool, args in TOOLS:
        for name in names:
            try:
                result = await client.request("tools/call", {
                    "name": tool, "arguments": {**args, "project": name}})
            except McpError:
                break  # the tool itself is refused to this caller: not about projects
            if not result.get("isError"):
                out.setdefault(tool, set()).add(name)
            else:
                out.setdefault(tool, set())
                assert "no project" in result["content"][0]["text"], result
    for what in ("files/main.py", "summary", "status", "lines/1/1/main.py"):
        out[what] = set()
        for name in names:
            try:
                await client.request("resources/read",
                                     {"uri": f"context://projects/{name}/{what}"})
                out[what].add(name)
            except McpError:
                pass
    for prompt in ("code_review", "explain", "debug"):
        out[prompt] = set()
        for name in names:
            arguments = {"path": "main.py", "project": name, "error": "boom"}
            if prompt == "code_review":
                arguments.pop("error")
            elif prompt == "explain":
                arguments.pop("error")
            try:
                await client.request("prompts/get", {"name": prompt, "arguments": arguments})
                out[prompt].add(name)
            except McpError:
                pass
    out["complete-path"] = set()
    for name in names:
        found = await client.request("completion/complete", {
            "ref": {"type": "ref/resource", "uri": TEMPLATE},
            "argument": {"name": "path", "value": ""},
            "context": {"arguments": {"project": name}}})
        if found["completion"]["values"]:
            out["complete-path"].add(name)
    return out


@settings(max_examples=20, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(owners=st.lists(st.sampled_from(["A", "B"]), min_size=len(NAMES), max_size=len(NAMES)),
       chosen=rules, who=st.sampled_from(["owner", "member", "viewer", "bowner"]))
def test_listed_projects_are_exactly_the_accepted_ones(
        roots: list[Path], owners: list[str], chosen: list[tuple[Any, ...]], who: str) -> None:
    async def run() -> None:
        security = MemorySecurityStore()
        people: dict[str, Principal] = await make_world(security)
        for n, (effect, subject, kind, pattern, actions) in enumerate(chosen):
            await security.add_rule(make_rule("A", effect, subject, kind, pattern, actions,
                                              rule_id=f"r{n}"))
        server, engine = build_context_server(roots, types.SimpleNamespace(),
                                              orgs=list(owners))
        audit = AuditLog(security)
        server.secure(policy=SecurityMiddleware(security, audit=audit), audit=audit)
        server.dispatcher.use(Caller(people[who]), outermost=True)
        try:
            async with connect(server) as client:
                listed = await client.request("resources/read", {"uri": "context://projects"})
                shown = {p["project"] for p in json.loads(listed["contents"][0]["text"])}
                completed = await client.request("completion/complete", {
                    "ref": {"type": "ref/resource", "uri": TEMPLATE},
                    "argument": {"name": "project", "value": ""}})
                assert set(completed["completion"]["values"]) == shown
                mine = {n for n, o in zip(NAMES, owners, strict=True)
                        if o == people[who].organization}
                assert shown <= mine  # never another organization's
                # a search of every project spans exactly the visible ones
                everywhere = await client.request("tools/call", {"name": "search_code",
                    "arguments": {"query": "entry", "project": "*", "limit": 50}})
                assert {h["project"] for h in everywhere["structuredContent"]["hits"]} \
                    == shown
                for what, accepted in (await _accepted(client, [*NAMES, "nope"])).items():
                    assert accepted == shown, (what, accepted, shown)
                # a refusal of a project that exists is on record; "nope" is not
                denied = {r.target for r in await audit.search(AuditQuery(outcome="denied"))}
                assert {f"project:{n}" for n in set(NAMES) - shown} <= denied
                assert "project:nope" not in denied
        finally:
            await engine.aclose()

    anyio.run(run)


def test_default_owner_is_the_first_starts_owner(tmp_path: Path) -> None:
    async def run() -> None:
        from mobius_rpc.security.open import open_security_store
        from mobius_rpc.security.serving import bootstrap

        url = f"sqlite:///{tmp_path / 's.db'}"
        async with open_security_store(url) as (store, security):
            made = await bootstrap(security)
            assert made is not None
            assert await owner_org(store) == made.org_id
            (tmp_path / "p").mkdir()
            _server, engine = build_context_server([tmp_path / "p"], store,
                                                   default_org=owner_org)
            await engine.owners_ready()
            assert engine.projects["p"].org == made.org_id
            assert await (await engine.index()).project_owners() == {"p": made.org_id}

    anyio.run(run)
