"""The index in SQL: programs over the store's runner, shared by SQLite and PostgreSQL.

Writes go in batches (one transaction per batch of files) with multi-row
``INSERT``s of a fixed width, so a large project costs a few thousand
statements, not a million, and PostgreSQL sees a bounded set of statement
texts to prepare.  Only search differs between the dialects: FTS5's
``bm25()`` over the external-content table on SQLite (weights 10 for name
tokens, 1 for body tokens), ``ts_rank`` over the weighted ``tsvector`` on
PostgreSQL.  The match expression is built from our own tokens (``[a-z0-9]``
only) and bound as a parameter: query text never reaches the SQL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..storage.errors import StoreError
from ..storage.sql.program import Program, Runner
from .model import (
    FileIndex,
    FileRow,
    FileState,
    FunctionMetrics,
    RefRow,
    SearchFilters,
    SearchHit,
    SymbolRow,
)
from .store import BODY_WEIGHT, NAME_WEIGHT, IndexStore, MemoryIndex

__all__ = ("SqlIndex", "index_store_for")

log = logging.getLogger("mobius_rpc.context")
_BATCH = 100
_TABLES = ("ctx_symbols", "ctx_refs", "ctx_imports", "ctx_metrics", "ctx_chunks")
_SYMBOL_COLUMNS = "path, name, qualname, kind, line_start, line_end, signature, doc"


def _insert(table: str, columns: str, rows: Sequence[tuple[Any, ...]]) -> Iterable[
        tuple[str, tuple[Any, ...]]]:
    width = columns.count(",") + 1
    one = "(" + ", ".join("?" * width) + ")"
    for start in range(0, len(rows), _BATCH):
        part = rows[start:start + _BATCH]
        yield (f"INSERT INTO {table} ({columns}) VALUES " + ", ".join([one] * len(part)),
               tuple(value for row in part for value in row))


def _write(dialect: str, project: str, files: list[FileIndex], deleted: list[str],
           touched: list[FileState]) -> Program[None]:
    if dialect == "postgresql":
        # writers of one project take turns (SQLite's BEGIN IMMEDIATE already makes them),
        # so the delete-then-insert below is whole even with two servers indexing at once
        yield "SELECT pg_advisory_xact_lock(hashtext(?))", (f"mobius-context:{project}",)
    # every path written loses its old rows first, whoever wrote them: a file two runs
    # both saw as new is stored once
    gone = sorted({*deleted, *(f.state.path for f in files)})
    for start in range(0, len(gone), _BATCH):
        part = tuple(gone[start:start + _BATCH])
        marks = ", ".join("?" * len(part))
        for table in (*_TABLES, "ctx_files"):
            yield f"DELETE FROM {table} WHERE project = ? AND path IN ({marks})", (project, *part)
    for state in touched:
        yield ("UPDATE ctx_files SET mtime_ns = ?, size = ? WHERE project = ? AND path = ?",
               (state.mtime_ns, state.size, project, state.path))
    statements: list[tuple[str, tuple[Any, ...]]] = []
    statements += _insert("ctx_files", "project, path, language, size, mtime_ns, sha256, lines, "
                          "note", [(project, f.state.path, f.language, f.state.size,
                                    f.state.mtime_ns, f.state.sha256, f.lines, f.note)
                                   for f in files])
    statements += _insert("ctx_symbols", f"project, {_SYMBOL_COLUMNS}", [
        (project, f.state.path, s.name, s.qualname, s.kind, s.line_start, s.line_end,
         s.signature, s.doc) for f in files for s in f.symbols])
    statements += _insert("ctx_refs", "project, path, name, line, scope", [
        (project, f.state.path, r.name, r.line, r.scope) for f in files for r in f.references])
    statements += _insert("ctx_imports", "project, path, module, line", [
        (project, f.state.path, i.module, i.line) for f in files for i in f.imports])
    statements += _insert("ctx_metrics", "project, path, qualname, line_start, line_end, "
                          "complexity, nesting", [
                              (project, f.state.path, m.qualname, m.line_start, m.line_end,
                               m.complexity, m.nesting) for f in files for m in f.metrics])
    statements += _insert("ctx_chunks", "project, path, language, kind, name, line_start, "
                          "line_end, name_tokens, body_tokens", [
                              (project, f.state.path, f.language, c.kind, c.name, c.line_start,
                               c.line_end, c.name_tokens, c.body_tokens)
                              for f in files for c in f.chunks])
    for statement in statements:  # noqa: UP028 - the runner sends results back in
        yield statement


def _rows(sql: str, params: tuple[Any, ...]) -> Program[list[tuple[Any, ...]]]:
    result = yield sql, params
    return result.rows


def _filters(filters: SearchFilters) -> tuple[str, tuple[Any, ...]]:
    clauses = ""
    params: tuple[Any, ...] = ()
    if filters.language:
        clauses += " AND c.language = ?"
        params += (filters.language,)
    if filters.kind:
        clauses += " AND c.kind = ?"
        params += (filters.kind,)
    if filters.path_prefix:  # a range, not LIKE: no wildcard escaping to get wrong
        clauses += " AND c.path >= ? AND c.path < ?"
        params += (filters.path_prefix, filters.path_prefix + "\U0010ffff")
    return clauses, params


def _hits(rows: list[tuple[Any, ...]]) -> list[SearchHit]:
    return [SearchHit(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), float(r[6])) for r in rows]


class SqlIndex:
    """:class:`~.store.IndexStore` on the store's SQL runner."""

    def __init__(self, db: Runner) -> None:
        self.db = db
        #: whether a trigram index serves substring searches of names (None: not known yet)
        self._trigram: bool | None = None if db.dialect == "postgresql" else False
        # SQLite's reads run in worker threads: this one stops the query itself when the
        # operation's time limit (or a cancellation) hits, not only the wait for it
        self._reader = getattr(db, "read_interruptible", None) or db.read

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = await self._reader(lambda: _rows(sql, params))
        return rows

    async def put_project(self, name: str, org_id: str, root: str) -> str | None:
        def program() -> Program[str | None]:
            result = yield "SELECT org_id FROM ctx_projects WHERE name = ?", (name,)
            yield ("INSERT INTO ctx_projects (name, org_id, root, updated_at) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                   "org_id = excluded.org_id, root = excluded.root, "
                   "updated_at = excluded.updated_at", (name, org_id, root, time.time()))
            before = result.rows[0][0] if result.rows else None
            return before if before not in (None, org_id) else None
        return await self.db.write(program)

    async def project_owners(self) -> dict[str, str]:
        return {r[0]: r[1] for r in await self._read("SELECT name, org_id FROM ctx_projects",
                                                     ())}

    async def file_states(self, project: str) -> dict[str, FileState]:
        rows = await self._read("SELECT path, mtime_ns, size, sha256 FROM ctx_files "
                                "WHERE project = ?", (project,))
        return {r[0]: FileState(r[0], int(r[1]), int(r[2]), r[3]) for r in rows}

    async def write(self, project: str, files: list[FileIndex], deleted: list[str],
                    touched: list[FileState]) -> None:
        await self.db.write(lambda: _write(self.db.dialect, project, files, deleted, touched))

    async def search(self, project: str, tokens: list[str], filters: SearchFilters,
                     limit: int, match_all: bool = False) -> list[SearchHit]:
        if not tokens:
            return []
        where, extra = _filters(filters)
        columns = "c.path, c.language, c.kind, c.name, c.line_start, c.line_end"
        if self.db.dialect == "sqlite":
            expression = (" AND " if match_all else " OR ").join(f'"{t}"' for t in tokens)
            rank = f"-bm25(ctx_fts, {NAME_WEIGHT}, {BODY_WEIGHT})"
            # Rank inside FTS5 alone first, then join the best few: joining every match
            # before sorting costs 2-3x on a common word.  When the filters drop so many of
            # those that the page cannot fill, rank the joined rows instead (exact, slower).
            inner = limit * 2 + 50
            quick = (f"SELECT {columns}, f.score FROM (SELECT rowid AS id, {rank} AS score "
                     "FROM ctx_fts WHERE ctx_fts MATCH ? ORDER BY score DESC LIMIT ?) f "
                     f"JOIN ctx_chunks c ON c.id = f.id WHERE c.project = ?{where} "
                     "ORDER BY f.score DESC, c.path, c.line_start LIMIT ?")
            rows = await self._read(quick, (expression, inner, project, *extra, limit))
            if len(rows) >= limit or not await self._more_than(expression, inner):
                return _hits(rows)
            sql = (f"SELECT {columns}, {rank} AS score "
                   "FROM ctx_fts JOIN ctx_chunks c ON c.id = ctx_fts.rowid "
                   f"WHERE ctx_fts MATCH ? AND c.project = ?{where} "
                   "ORDER BY score DESC, c.path, c.line_start LIMIT ?")
        else:
            expression = (" & " if match_all else " | ").join(tokens)
            # weights for D, C, B, A: body tokens are B, name tokens A
            sql = (f"SELECT {columns}, ts_rank('{{0, 0, {BODY_WEIGHT / NAME_WEIGHT}, 1}}', "
                   "c.tsv, q) AS score FROM ctx_chunks c, to_tsquery('simple', ?) q "
                   f"WHERE c.tsv @@ q AND c.project = ?{where} "
                   "ORDER BY score DESC, c.path, c.line_start LIMIT ?")
        return _hits(await self._read(sql, (expression, project, *extra, limit)))

    async def _more_than(self, expression: str, count: int) -> bool:
        rows = await self._read("SELECT count(*) FROM (SELECT rowid FROM ctx_fts "
                                "WHERE ctx_fts MATCH ? LIMIT ?) m", (expression, count + 1))
        return int(rows[0][0]) > count

    async def definitions(self, project: str, name: str, limit: int) -> list[SymbolRow]:
        # Two indexed lookups, sorted here: with an ORDER BY, SQLite without statistics
        # walks the path index instead of the name index (30 ms on Django, not 0.1).
        select = (f"SELECT s.{_SYMBOL_COLUMNS.replace(', ', ', s.')}, f.language "
                  "FROM ctx_symbols s JOIN ctx_files f ON f.project = s.project "
                  "AND f.path = s.path WHERE s.project = ? AND ")
        rows = await self._read(f"{select}s.name = ? UNION ALL {select}s.qualname = ? "
                                "AND s.name <> ?", (project, name, project, name, name))
        rows.sort(key=lambda r: (r[0], r[4], r[2]))
        return [SymbolRow(r[0], r[8], r[1], r[2], r[3], int(r[4]), int(r[5]), r[6], r[7])
                for r in rows[:limit]]

    async def substring_ready(self) -> bool:
        """On PostgreSQL: the pg_trgm extension and a trigram (GIN) index over the lower-
        cased symbol names, made on first use, so the ``LIKE '%...%'`` of
        :meth:`names_containing` is an index search, not a scan.  Without the privilege
        to create the extension, one log line and False: substring search stays the
        search of last resort, as on SQLite."""
        if self._trigram is None:
            self._trigram = await _trigram_index(self.db)
        return self._trigram

    async def names_containing(self, project: str, fragment: str, limit: int
                               ) -> list[SymbolRow]:
        # the pattern is a parameter with LIKE's own characters escaped; a scan of the
        # symbols table, bounded by the caller's time limit
        escaped = fragment.lower().replace("\\", "\\\\").replace("%", "\\%") \
            .replace("_", "\\_")
        rows = await self._read(
            f"SELECT s.{_SYMBOL_COLUMNS.replace(', ', ', s.')}, f.language FROM ctx_symbols s "
            "JOIN ctx_files f ON f.project = s.project AND f.path = s.path "
            "WHERE s.project = ? AND lower(s.name) LIKE ? ESCAPE '\\' "
            "ORDER BY length(s.name), s.path, s.line_start LIMIT ?",
            (project, f"%{escaped}%", limit))
        return [SymbolRow(r[0], r[8], r[1], r[2], r[3], int(r[4]), int(r[5]), r[6], r[7])
                for r in rows]

    async def references(self, project: str, name: str, limit: int) -> list[RefRow]:
        rows = await self._read("SELECT path, name, line, scope FROM ctx_refs "
                                "WHERE project = ? AND name = ? ORDER BY path, line LIMIT ?",
                                (project, name, limit))
        return [RefRow(r[0], r[1], int(r[2]), r[3]) for r in rows]

    async def symbols(self, project: str, path: str) -> list[SymbolRow]:
        rows = await self._read(
            f"SELECT s.{_SYMBOL_COLUMNS.replace(', ', ', s.')}, f.language FROM ctx_symbols s "
            "JOIN ctx_files f ON f.project = s.project AND f.path = s.path "
            "WHERE s.project = ? AND s.path = ? ORDER BY s.line_start, s.qualname",
            (project, path))
        return [SymbolRow(r[0], r[8], r[1], r[2], r[3], int(r[4]), int(r[5]), r[6], r[7])
                for r in rows]

    async def metrics(self, project: str, path: str) -> list[FunctionMetrics]:
        rows = await self._read("SELECT qualname, line_start, line_end, complexity, nesting "
                                "FROM ctx_metrics WHERE project = ? AND path = ? "
                                "ORDER BY line_start, qualname", (project, path))
        return [FunctionMetrics(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]

    async def imports(self, project: str, path: str) -> list[str]:
        # DISTINCT and ORDER BY are done here: in SQL they make SQLite (without statistics)
        # scan the wrong index, 20 ms instead of 0.1 on Django
        rows = await self._read("SELECT module FROM ctx_imports WHERE project = ? AND path = ?",
                                (project, path))
        return sorted({r[0] for r in rows})

    async def importers(self, project: str, modules: list[str], limit: int) -> list[str]:
        if not modules:
            return []
        marks = ", ".join("?" * len(modules))
        rows = await self._read(f"SELECT path FROM ctx_imports WHERE project = ? "
                                f"AND module IN ({marks})", (project, *modules))
        return sorted({r[0] for r in rows})[:limit]  # see imports()

    async def import_edges(self, project: str, limit: int) -> list[tuple[str, str]]:
        rows = await self._read("SELECT DISTINCT path, module FROM ctx_imports "
                                "WHERE project = ? ORDER BY path, module LIMIT ?",
                                (project, limit))
        return [(r[0], r[1]) for r in rows]

    async def files(self, project: str) -> list[FileRow]:
        rows = await self._read("SELECT path, language, size, lines, note FROM ctx_files "
                                "WHERE project = ? ORDER BY path", (project,))
        return [FileRow(r[0], r[1], int(r[2]), int(r[3]), r[4]) for r in rows]

    async def file(self, project: str, path: str) -> FileRow | None:
        rows = await self._read("SELECT path, language, size, lines, note FROM ctx_files "
                                "WHERE project = ? AND path = ?", (project, path))
        return FileRow(rows[0][0], rows[0][1], int(rows[0][2]), int(rows[0][3]), rows[0][4]) \
            if rows else None


def _ensure_trigram(schema: str | None) -> Program[str]:
    if schema is None:
        yield "CREATE EXTENSION IF NOT EXISTS pg_trgm", ()
        result = yield _TRGM_SCHEMA, ()
        schema = str(result.rows[0][0])
    quoted = '"' + schema.replace('"', '""') + '"'
    yield (f"CREATE INDEX IF NOT EXISTS ctx_symbols_name_trgm ON ctx_symbols "
           f"USING GIN (lower(name) {quoted}.gin_trgm_ops)"), ()
    # fresh statistics, or the planner (believing a bulk-loaded table nearly empty) walks
    # the path index file by file instead of asking the trigram index (8 ms, not 0.5)
    yield "ANALYZE ctx_symbols", ()
    yield "ANALYZE ctx_files", ()
    return schema


_TRGM_SCHEMA = ("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
                "ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'")


async def _trigram_index(db: Runner) -> bool:
    """Make the trigram index (and the extension when missing); False when we may not."""
    def installed() -> Program[list[tuple[Any, ...]]]:
        return _rows(_TRGM_SCHEMA, ())
    for _attempt in range(2):  # a second server may be making the same index right now
        try:
            rows = await db.read(installed)
            schema = str(rows[0][0]) if rows else None
            await db.write(lambda schema=schema: _ensure_trigram(schema))  # type: ignore[misc]
            return True
        except StoreError as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    log.warning("pg_trgm is not available (%s): identifier substring search falls back to "
                "full-text search and, when that finds nothing, a scan", reason)
    return False


def index_store_for(store: Any) -> IndexStore:
    """The index implementation that lives in ``store`` (memory, SQLite or PostgreSQL)."""
    db = getattr(store, "db", None)
    if db is None:
        index: IndexStore | None = getattr(store, "_context_index", None)
        if index is None:
            index = MemoryIndex()
            store._context_index = index
        return index
    return SqlIndex(db)
