"""Where the index lives: the contract, and the in-memory implementation.

:class:`IndexStore` is what the engine needs of a store: the state of each
indexed file (to decide what changed), one write per batch that replaces the
rows of changed files and drops deleted ones, and the reads behind the tools.
:class:`MemoryIndex` keeps it all in dictionaries with an inverted index
scored by BM25 the way the SQL stores score (name tokens weighted above body
tokens); :mod:`.sql_index` is the SQLite/PostgreSQL one.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Protocol

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

__all__ = ("IndexStore", "MemoryIndex", "NAME_WEIGHT", "BODY_WEIGHT")

NAME_WEIGHT = 10.0
BODY_WEIGHT = 1.0
_K1, _B = 1.2, 0.75


class IndexStore(Protocol):
    async def put_project(self, name: str, org_id: str, root: str) -> str | None:
        """Record that ``org_id`` owns project ``name`` (served from ``root``); the
        organization that owned it before, when that was another one."""
        ...

    async def project_owners(self) -> dict[str, str]:
        """Every recorded project and the organization that owns it."""
        ...

    async def file_states(self, project: str) -> dict[str, FileState]: ...

    async def write(self, project: str, files: list[FileIndex], deleted: list[str],
                    touched: list[FileState]) -> None:
        """Drop the rows of ``deleted`` (removed files, and changed ones whose rows
        ``files`` replaces), add ``files``, update ``touched``'s mtime and size."""
        ...

    async def search(self, project: str, tokens: list[str], filters: SearchFilters,
                     limit: int, match_all: bool = False) -> list[SearchHit]:
        """Chunks with any of ``tokens`` (all of them with ``match_all``), best first."""
        ...

    async def definitions(self, project: str, name: str, limit: int) -> list[SymbolRow]: ...

    async def references(self, project: str, name: str, limit: int) -> list[RefRow]: ...

    async def substring_ready(self) -> bool:
        """Whether :meth:`names_containing` is an index search (PostgreSQL's trigrams),
        cheap enough to run beside every identifier search."""
        ...

    async def names_containing(self, project: str, fragment: str, limit: int
                               ) -> list[SymbolRow]:
        """Definitions whose name contains ``fragment`` (case-insensitive): the search of
        last resort, for a piece of an identifier no token matches."""
        ...

    async def symbols(self, project: str, path: str) -> list[SymbolRow]: ...

    async def metrics(self, project: str, path: str) -> list[FunctionMetrics]: ...

    async def imports(self, project: str, path: str) -> list[str]: ...

    async def importers(self, project: str, modules: list[str], limit: int) -> list[str]: ...

    async def import_edges(self, project: str, limit: int) -> list[tuple[str, str]]: ...

    async def files(self, project: str) -> list[FileRow]: ...

    async def file(self, project: str, path: str) -> FileRow | None: ...


def _row(path: str, language: str, s: Any) -> SymbolRow:
    return SymbolRow(path, language, s.name, s.qualname, s.kind, s.line_start, s.line_end,
                     s.signature, s.doc)


class MemoryIndex:
    """The index in dictionaries (tests, ``memory:`` stores)."""

    def __init__(self) -> None:
        self._files: dict[str, dict[str, FileIndex]] = {}
        # project -> token -> {(path, chunk number): (name tf, body tf)}
        self._postings: dict[str, dict[str, dict[tuple[str, int], tuple[int, int]]]] = {}
        self._lengths: dict[str, dict[tuple[str, int], tuple[int, int]]] = {}
        self._owners: dict[str, str] = {}

    async def put_project(self, name: str, org_id: str, root: str) -> str | None:
        before = self._owners.get(name)
        self._owners[name] = org_id
        return before if before not in (None, org_id) else None

    async def project_owners(self) -> dict[str, str]:
        return dict(self._owners)

    async def file_states(self, project: str) -> dict[str, FileState]:
        return {p: f.state for p, f in self._files.get(project, {}).items()}

    def _drop(self, project: str, path: str) -> None:
        old = self._files.get(project, {}).pop(path, None)
        if old is None:
            return
        postings, lengths = self._postings[project], self._lengths[project]
        for number, chunk in enumerate(old.chunks):
            lengths.pop((path, number), None)
            for token in set(chunk.name_tokens.split()) | set(chunk.body_tokens.split()):
                postings.get(token, {}).pop((path, number), None)

    async def write(self, project: str, files: list[FileIndex], deleted: list[str],
                    touched: list[FileState]) -> None:
        table = self._files.setdefault(project, {})
        postings = self._postings.setdefault(project, {})
        lengths = self._lengths.setdefault(project, {})
        for path in deleted:
            self._drop(project, path)
        for state in touched:
            if state.path in table:
                table[state.path].state = state
        for file in files:
            self._drop(project, file.state.path)
            table[file.state.path] = file
            for number, chunk in enumerate(file.chunks):
                names, body = chunk.name_tokens.split(), chunk.body_tokens.split()
                key = (file.state.path, number)
                lengths[key] = (len(names), len(body))
                name_tf, body_tf = Counter(names), Counter(body)
                for token in set(names) | set(body):
                    postings.setdefault(token, {})[key] = (name_tf[token], body_tf[token])

    async def search(self, project: str, tokens: list[str], filters: SearchFilters,
                     limit: int, match_all: bool = False) -> list[SearchHit]:
        files = self._files.get(project, {})
        postings = self._postings.get(project, {})
        lengths = self._lengths.get(project, {})
        total = len(lengths) or 1
        avg_name = sum(n for n, _ in lengths.values()) / total or 1.0
        avg_body = sum(b for _, b in lengths.values()) / total or 1.0
        scores: dict[tuple[str, int], float] = {}
        matched: dict[tuple[str, int], int] = {}
        for token in dict.fromkeys(tokens):
            hits = postings.get(token, {})
            if not hits:
                continue
            idf = math.log(1 + (total - len(hits) + 0.5) / (len(hits) + 0.5))
            for key, (name_tf, body_tf) in hits.items():
                name_len, body_len = lengths[key]
                score = NAME_WEIGHT * _term(name_tf, name_len, avg_name) \
                    + BODY_WEIGHT * _term(body_tf, body_len, avg_body)
                scores[key] = scores.get(key, 0.0) + idf * score
                matched[key] = matched.get(key, 0) + 1
        if match_all:
            needed = len(dict.fromkeys(tokens))
            scores = {key: value for key, value in scores.items() if matched[key] == needed}
        out: list[SearchHit] = []
        for (path, number), score in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])):
            file = files[path]
            chunk = file.chunks[number]
            if filters.language and file.language != filters.language:
                continue
            if filters.kind and chunk.kind != filters.kind:
                continue
            if not path.startswith(filters.path_prefix):
                continue
            out.append(SearchHit(path, file.language, chunk.kind, chunk.name, chunk.line_start,
                                 chunk.line_end, score))
            if len(out) >= limit:
                break
        return out

    async def definitions(self, project: str, name: str, limit: int) -> list[SymbolRow]:
        out = [_row(p, f.language, s) for p, f in sorted(self._files.get(project, {}).items())
               for s in f.symbols if name in (s.name, s.qualname)]
        return out[:limit]

    async def substring_ready(self) -> bool:
        return False  # a scan of every symbol: the search of last resort only

    async def names_containing(self, project: str, fragment: str, limit: int
                               ) -> list[SymbolRow]:
        wanted = fragment.lower()
        out = [_row(p, f.language, s) for p, f in sorted(self._files.get(project, {}).items())
               for s in f.symbols if wanted in s.name.lower()]
        out.sort(key=lambda r: (len(r.name), r.path, r.line_start))
        return out[:limit]

    async def references(self, project: str, name: str, limit: int) -> list[RefRow]:
        out = [RefRow(p, r.name, r.line, r.scope)
               for p, f in sorted(self._files.get(project, {}).items())
               for r in sorted(f.references, key=lambda r: r.line) if r.name == name]
        return out[:limit]

    async def symbols(self, project: str, path: str) -> list[SymbolRow]:
        file = self._files.get(project, {}).get(path)
        if file is None:
            return []
        return [_row(path, file.language, s)
                for s in sorted(file.symbols, key=lambda s: (s.line_start, s.qualname))]

    async def metrics(self, project: str, path: str) -> list[FunctionMetrics]:
        file = self._files.get(project, {}).get(path)
        return sorted(file.metrics, key=lambda m: m.line_start) if file else []

    async def imports(self, project: str, path: str) -> list[str]:
        file = self._files.get(project, {}).get(path)
        return sorted({i.module for i in file.imports}) if file else []

    async def importers(self, project: str, modules: list[str], limit: int) -> list[str]:
        wanted = set(modules)
        out = sorted(p for p, f in self._files.get(project, {}).items()
                     if any(i.module in wanted for i in f.imports))
        return out[:limit]

    async def import_edges(self, project: str, limit: int) -> list[tuple[str, str]]:
        edges = sorted({(p, i.module) for p, f in self._files.get(project, {}).items()
                        for i in f.imports})
        return edges[:limit]

    async def files(self, project: str) -> list[FileRow]:
        return [FileRow(p, f.language, f.state.size, f.lines, f.note)
                for p, f in sorted(self._files.get(project, {}).items())]

    async def file(self, project: str, path: str) -> FileRow | None:
        f = self._files.get(project, {}).get(path)
        return FileRow(path, f.language, f.state.size, f.lines, f.note) if f else None


def _term(tf: int, length: int, average: float) -> float:
    if not tf:
        return 0.0
    return tf * (_K1 + 1) / (tf + _K1 * (1 - _B + _B * length / average))
