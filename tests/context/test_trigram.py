"""PostgreSQL: full-text plus trigrams.  A piece of an identifier that no whole token
matches (``able_stor`` of ``reopenable_storage``) is found through the pg_trgm index
even when full-text search finds other things, and the definition still leads; a
role that may not create the extension gets one log line and full-text search."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import psycopg
import pytest

from mobius_rpc.context.engine import ContextEngine
from mobius_rpc.context.model import SearchFilters
from mobius_rpc.context.queries import search
from mobius_rpc.context.sql_index import SqlIndex
from mobius_rpc.context.tokens import query_tokens
from mobius_rpc.storage import open_store
from tests.storage.pgcluster import PgCluster

QUERY = "able_stor"
TARGET = "reopenable_storage"


def _tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "store.py").write_text(
        f'def {TARGET}(path):\n    """Open the store again."""\n    return path\n')
    for n in range(6):  # full-text search finds these for the word "able"
        (root / "pkg" / f"noise{n}.py").write_text(
            f"def able_{n}(x):\n    able = x\n    return able\n")
    return root


async def _searched(url: str, schema: str, root: Path) -> tuple[list[str], list[str], bool]:
    async with open_store(url, schema=schema) as store:
        engine = ContextEngine([root], store=store)
        project = engine.project(None)
        await engine.reindex(project)
        index = await engine.index()
        assert isinstance(index, SqlIndex)
        fts = [h.name for h in await index.search(project.name, query_tokens(QUERY),
                                                  SearchFilters(), 50)]
        answer = await search(engine, project, QUERY)
        return fts, [h.name for h in answer.hits], await index.substring_ready()


def test_a_partial_identifier_is_found_through_trigrams(pg_cluster: PgCluster,
                                                        tmp_path: Path) -> None:
    root = _tree(tmp_path / "p")
    fts, hits, ready = anyio.run(_searched, pg_cluster.url(), "trgm_ok", root)
    assert ready
    assert fts and TARGET not in fts, fts  # full-text alone finds only the noise
    assert hits[0] == TARGET, hits  # the definition first, the noise after it
    assert any(h.startswith("able_") for h in hits[1:])
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute("SET search_path TO trgm_ok")
        for scan in ("seqscan", "indexscan", "indexonlyscan"):  # leave it a bitmap scan
            conn.execute(f"SET enable_{scan} = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT name FROM ctx_symbols WHERE lower(name) LIKE '%able\\_stor%'"))
    assert "ctx_symbols_name_trgm" in plan, plan


def test_without_the_privilege_one_log_line_and_full_text(
        pg_cluster: PgCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _tree(tmp_path / "p")
    pg_cluster.execute("CREATE ROLE limited LOGIN PASSWORD 'limited-pw'")
    owner_url = pg_cluster.create_database("limited_db")  # no pg_trgm in it

    async def migrate() -> None:  # the schema made by its owner; limited only uses it
        async with open_store(owner_url, schema="mobius"):
            pass
    anyio.run(migrate)
    for grant in ("USAGE ON SCHEMA mobius", "ALL ON ALL TABLES IN SCHEMA mobius",
                  "ALL ON ALL SEQUENCES IN SCHEMA mobius"):
        pg_cluster.execute(f"GRANT {grant} TO limited", "limited_db")
    url = owner_url.replace(f"{pg_cluster.user}:{pg_cluster.password}@", "limited:limited-pw@")
    with caplog.at_level(logging.WARNING, "mobius_rpc.context"):
        fts, hits, ready = anyio.run(_searched, url, "mobius", root)
    assert not ready
    assert [r.message for r in caplog.records].count(next(
        m.message for m in caplog.records if "pg_trgm is not available" in m.message)) == 1
    assert "permission denied" in caplog.text
    assert hits == fts[:len(hits)] or TARGET not in hits  # full-text answers, no crash
