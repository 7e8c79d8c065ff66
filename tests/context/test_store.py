"""The index in each store (memory, SQLite, PostgreSQL): same answers from all three."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from mobius_rpc.context.indexer import index_project
from mobius_rpc.context.model import SearchFilters
from mobius_rpc.context.sql_index import index_store_for
from mobius_rpc.context.tokens import query_tokens
from tests.storage.conftest import Target

FILES = {
    "app/server.py": ('"""The server."""\nfrom app.util import parseHttpRequest\n\n'
                      'class RequestRouter:\n    """Routes requests."""\n\n'
                      '    def route(self, raw):\n        if raw:\n'
                      '            return parseHttpRequest(raw)\n        return None\n'),
    "app/util.py": ('def parseHttpRequest(raw):\n    """Parse one request."""\n'
                    '    return raw.split()\n\n\ndef unrelated():\n    return 42\n'),
    "app/client.py": ("from app import util\n\n\ndef fetch(raw):\n"
                      "    return util.parseHttpRequest(raw)\n"),
    "web/main.ts": "export function parseHttpRequest(raw: string): string[] { return [] }\n",
    "README.md": "# Demo\n\nThis project parses HTTP requests.\n",
}


def _write(root: Path) -> None:
    for path, text in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def test_index_and_query_on_every_backend(target: Target, tmp_path: Path) -> None:
    root = tmp_path / "project"
    _write(root)

    async def run() -> None:
        async with target.open() as store:
            index = index_store_for(store)
            report = await index_project("p", root, index)
            assert report.indexed == len(FILES)
            hits = await index.search("p", query_tokens("parse_http_request"), SearchFilters(), 10)
            assert hits and hits[0].name == "parseHttpRequest", hits
            assert hits == sorted(hits, key=lambda h: -h.score)
            py = await index.search("p", query_tokens("parseHttpRequest"),
                                    SearchFilters(language="typescript"), 10)
            assert [h.path for h in py] == ["web/main.ts"]
            classes = await index.search("p", query_tokens("request"),
                                         SearchFilters(kind="class"), 10)
            assert [h.name for h in classes] == ["RequestRouter"]
            for hostile in ('"', "*", "NEAR(a b)", "a OR", "'; DROP TABLE ctx_files; --",
                            "\x00", "é", "a:b", "-x", "{}"):
                await index.search("p", query_tokens(hostile), SearchFilters(), 5)
            piece = await index.names_containing("p", "TTPREQ", 10)
            assert {(r.path, r.name) for r in piece} == {("app/util.py", "parseHttpRequest"),
                                                        ("web/main.ts", "parseHttpRequest")}
            for wild in ("%", "_", "\\", "a%b_c"):
                assert await index.names_containing("p", wild, 10) == []
            found = await index.definitions("p", "RequestRouter.route", 5)
            assert [(d.path, d.kind, d.line_start, d.line_end) for d in found] == [
                ("app/server.py", "method", 7, 10)]
            refs = await index.references("p", "parseHttpRequest", 50)
            assert {(r.path, r.scope) for r in refs} >= {
                ("app/server.py", "RequestRouter.route"), ("app/client.py", "fetch")}
            outline = await index.symbols("p", "app/server.py")
            assert [s.qualname for s in outline] == ["RequestRouter", "RequestRouter.route"]
            metrics = await index.metrics("p", "app/server.py")
            assert [(m.qualname, m.complexity) for m in metrics] == [("RequestRouter.route", 2)]
            assert "app.util" in await index.imports("p", "app/server.py")
            assert await index.importers("p", ["app.util"], 10) == ["app/client.py",
                                                                   "app/server.py"]
            assert len(await index.files("p")) == len(FILES)
            # a change replaces the file's rows, never adds to them
            (root / "app/util.py").write_text("def parseHttpRequest(raw):\n    return raw\n")
            again = await index_project("p", root, index)
            assert again.indexed == 1
            assert len(await index.definitions("p", "parseHttpRequest", 10)) == 2
            assert not await index.definitions("p", "unrelated", 10)
            assert len(await index.search("p", query_tokens("unrelated"), SearchFilters(),
                                          10)) == 0
            # another project in the same store is separate
            assert await index.files("other") == []

    anyio.run(run)


@pytest.mark.parametrize("query", ["parseHttpRequest", "RequestRouter"])
def test_backends_rank_the_definition_first(sql_target: Target, tmp_path: Path,
                                            query: str) -> None:
    root = tmp_path / "project"
    _write(root)

    async def run() -> None:
        async with sql_target.open() as store:
            index = index_store_for(store)
            await index_project("p", root, index)
            hits = await index.search("p", query_tokens(query), SearchFilters(), 5)
            assert hits[0].name.rsplit(".", 1)[-1] == query
            assert hits[0].kind in ("function", "class")

    anyio.run(run)


def test_filters_that_drop_the_best_matches_still_fill_the_page(target: Target,
                                                               tmp_path: Path) -> None:
    crowd, alone = tmp_path / "crowd", tmp_path / "alone"
    crowd.mkdir()
    alone.mkdir()
    for n in range(120):
        # a name match (weighted 10) in a short chunk: these outrank the other project's
        (crowd / f"m{n}.py").write_text("def common_name():\n    return 1\n")
    filler = " ".join(f"word{n}" for n in range(300))
    (alone / "only.ts").write_text(f"// {filler}\nexport const x = commonName\n")
    (crowd / "x.ts").write_text("export const commonName = 2\n")

    async def run() -> None:
        async with target.open() as store:
            index = index_store_for(store)
            await index_project("crowd", crowd, index)
            await index_project("alone", alone, index)
            hits = await index.search("alone", ["commonname"], SearchFilters(), 1)
            assert [h.path for h in hits] == ["only.ts"]
            typed = await index.search("crowd", ["commonname"], SearchFilters("typescript"), 1)
            assert [h.path for h in typed] == ["x.ts"]

    anyio.run(run)


def test_two_indexers_of_one_project_store_each_file_once(sql_target: Target,
                                                          tmp_path: Path) -> None:
    root = tmp_path / "project"
    _write(root)

    async def run() -> None:
        async with sql_target.open() as one, sql_target.open() as two:
            first, second = index_store_for(one), index_store_for(two)
            async with anyio.create_task_group() as tg:  # two servers, one store, one project
                tg.start_soon(index_project, "p", root, first)
                tg.start_soon(index_project, "p", root, second)
            assert len(await first.definitions("p", "RequestRouter", 10)) == 1
            assert len(await first.files("p")) == len(FILES)

    anyio.run(run)
