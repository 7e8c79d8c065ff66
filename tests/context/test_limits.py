"""Every answer within its budget, every operation within its time limit, bad arguments as
tool errors, and nothing outside a project's root through the server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from mobius_rpc.context.engine import EngineLimits
from mobius_rpc.context.surface import build_context_server
from mobius_rpc.storage import open_store
from tests.conftest import connect


def _tree(root: Path) -> Path:
    root.mkdir()
    for n in range(30):
        (root / f"mod{n}.py").write_text(
            "".join(f"def handler_{n}_{k}(request):\n    return request.handle_{k}()\n\n"
                    for k in range(20)))
    (root / "big.txt").write_text("".join(f"line {n}\n" for n in range(2000)))
    (root / "escape").symlink_to("/etc")
    return root




def _run(root: Path, limits: EngineLimits, body: Any, store_url: str = "memory:") -> None:
    async def main() -> None:
        async with open_store(store_url) as store:
            server, engine = build_context_server([root], store, limits=limits)
            await engine.reindex(engine.project(None))
            async with connect(server) as client:
                await body(client)

    anyio.run(main)


def test_answers_fit_the_budget_and_say_so(tmp_path: Path) -> None:
    root = _tree(tmp_path / "p")

    async def body(client: Any) -> None:
        found = await client.call_tool("search_code", {"query": "request", "limit": 50})
        answer = found["structuredContent"]
        assert answer["truncated"] and "budget" in answer["note"]
        assert 0 < len(answer["hits"]) < 50 and answer["next_cursor"]
        assert len(found["content"][0]["text"]) < 4000
        refs = (await client.call_tool("references", {"name": "request", "limit": 200}))
        assert refs["structuredContent"]["truncated"]
        piece = (await client.call_tool("read", {"path": "big.txt"}))["structuredContent"]
        assert piece["truncated"] and "start_line=" in piece["note"]
        summary = (await client.call_tool("summary", {"budget_tokens": 100}))
        assert summary["structuredContent"]["truncated"]

    _run(root, EngineLimits(answer_chars=3000, read_lines=100), body)


def test_the_time_limit_stops_the_work(tmp_path: Path) -> None:
    root = _tree(tmp_path / "p")

    async def body(client: Any) -> None:
        for name, args in (("search_code", {"query": "request"}),
                           ("references", {"name": "request"}),
                           ("summary", {})):
            result = await client.call_tool(name, args)
            assert result["isError"] and "stopped after its limit" in \
                result["content"][0]["text"], (name, result)

    # a limit of a microsecond expires at the first store read (a worker-thread hop)
    _run(root, EngineLimits(operation_seconds=1e-6), body,
         store_url=f"sqlite:///{tmp_path / 'store.db'}")


@pytest.mark.parametrize(("tool", "args", "message"), [
    ("search_code", {"query": "x", "cursor": "bogus"}, "invalid cursor"),
    ("search_code", {"query": "!!!"}, "no searchable words"),
    ("search_code", {"query": "x", "project": "nope"}, "no project 'nope'"),
    ("read", {"path": "../outside.py"}, "outside the project root"),
    ("read", {"path": "/etc/passwd"}, "outside the project root"),
    ("read", {"path": "escape/passwd"}, "outside the project root"),
    ("analyze", {"path": "missing.py"}, "cannot analyse"),
    ("analyze", {"path": "mod1.py", "symbol": "nothing_here"}, "no function or method"),
    ("definition", {"name": " "}, "name is empty"),
])
def test_bad_arguments_are_tool_errors(tmp_path: Path, tool: str, args: dict[str, Any],
                                       message: str) -> None:
    root = _tree(tmp_path / "p")
    (tmp_path / "outside.py").write_text("SECRET = 1\n")

    async def body(client: Any) -> None:
        result = await client.call_tool(tool, args)
        assert result["isError"] and message in result["content"][0]["text"], result
        assert "SECRET" not in str(result) and "root:" not in str(result)

    _run(root, EngineLimits(), body)


def test_resources_outside_the_root_or_unknown_are_not_found(tmp_path: Path) -> None:
    root = _tree(tmp_path / "p")

    async def body(client: Any) -> None:
        from mobius_rpc.core.errors import McpError
        for uri in ("context://projects/p/files/../x", "context://projects/p/files/escape/hosts",
                    "context://projects/nope/status", "context://projects/p/files/nothere"):
            with pytest.raises(McpError):
                await client.read_resource(uri)
        done = await client.complete({"type": "ref/resource",
                                      "uri": "context://projects/{project}/files/{+path}"},
                                     "path", "mod1", {"project": "p"})
        assert set(done["completion"]["values"]) == {"mod1.py"} | {
            f"mod{n}.py" for n in range(10, 20)}

    _run(root, EngineLimits(), body)


def test_concurrent_reindexes_do_not_duplicate_rows(tmp_path: Path) -> None:
    root = _tree(tmp_path / "p")

    async def main() -> None:
        async with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
            server, engine = build_context_server([root], store)
            project = engine.project(None)
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(engine.reindex, project)
            index = await engine.index()
            assert len(await index.definitions("p", "handler_3_4", 10)) == 1

    anyio.run(main)


def test_quoting_files_keeps_to_its_time_budget(tmp_path: Path) -> None:
    root = _tree(tmp_path / "p")

    async def body(client: Any) -> None:
        found = (await client.call_tool("search_code", {"query": "request"}))
        answer = found["structuredContent"]
        assert answer["hits"] and all(h["snippet"] == [] for h in answer["hits"])
        assert "time budget" in answer["note"]
        refs = (await client.call_tool("references", {"name": "request"}))["structuredContent"]
        assert all(r["text"] == "" for r in refs["references"]) and "time budget" in refs["note"]

    # no time at all for reading: every quote is left out, and the answers say so
    _run(root, EngineLimits(quote_seconds=-1), body)
