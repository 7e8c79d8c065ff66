"""What the search, definition, references and read tools compute.

Search asks the store for a bounded number of ranked candidates, then
re-ranks them by one rule the stores cannot express (a chunk that *is* the
definition of the searched identifier goes first), applies the path glob,
pages, and cuts snippets from the file around the first matching line.
Every answer is fitted to the engine's character budget; whatever is cut is
counted in the answer's note.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Sequence
from typing import TypeVar

import orjson

from .answers import (
    Definition,
    DefinitionAnswer,
    FileSlice,
    Hit,
    Line,
    ReferencesAnswer,
    SearchAnswer,
    Use,
)
from .engine import ContextEngine, Project
from .languages.detect import detect_language
from .model import SearchFilters, SearchHit, SymbolRow
from .store import IndexStore
from .tokens import query_tokens, split_identifier, whole_tokens

__all__ = ("search", "search_all", "definitions", "references", "read_file", "fit", "parse_cursor",
           "BadRequest")

T = TypeVar("T")
_SNIPPET_LINES = 3


class BadRequest(ValueError):
    """An argument the tool cannot use (reported to the model as a tool error)."""


def parse_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    if not cursor.startswith("o") or not cursor[1:].isdigit() or len(cursor) > 12:
        raise BadRequest(f"invalid cursor {cursor[:40]!r}: pass back a next_cursor unchanged")
    return int(cursor[1:])


def fit(items: Sequence[T], budget: int) -> tuple[list[T], bool]:
    """The longest prefix of ``items`` whose JSON fits ``budget`` characters."""
    out: list[T] = []
    used = 0
    for item in items:
        used += len(orjson.dumps(dataclasses.asdict(item))) + 1  # type: ignore[call-overload]
        if used > budget:
            return out, True
        out.append(item)
    return out, False


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_DEFINING = frozenset({"function", "method", "class", "interface", "struct", "enum", "type",
                       "module"})


def _test_path(path: str) -> bool:
    return any(part in ("test", "tests", "testing") or part.startswith("test_")
               for part in path.split("/"))


async def _definitions_as_hits(index: IndexStore, project: str, name: str,
                               filters: SearchFilters, score: float) -> list[SearchHit]:
    rows = await index.definitions(project, name, 20)
    rows = [r for r in rows if r.kind in _DEFINING
            and (not filters.language or r.language == filters.language)
            and (not filters.kind or r.kind == filters.kind)
            and r.path.startswith(filters.path_prefix)]
    # library code before its tests, then the shorter (more central) path
    rows.sort(key=lambda r: (_test_path(r.path), r.path.count("/"), r.path, r.line_start))
    return [SearchHit(r.path, r.language, r.kind, r.qualname, r.line_start, r.line_end,
                      score - n * 1e-6) for n, r in enumerate(rows)]


def _containing(rows: list[SymbolRow], filters: SearchFilters, score: float
                ) -> list[SearchHit]:
    """Definitions whose name contains the query, shortest name first, as hits."""
    kept = [r for r in rows if r.kind in _DEFINING
            and (not filters.language or r.language == filters.language)
            and (not filters.kind or r.kind == filters.kind)
            and r.path.startswith(filters.path_prefix)]
    return [SearchHit(r.path, r.language, r.kind, r.qualname, r.line_start, r.line_end,
                      score - n * 1e-6) for n, r in enumerate(kept)]


def _norm(text: str) -> str:
    return text.replace("_", "").lower()


def _snippet(lines: list[str] | None, start: int, end: int, words: list[str]) -> list[Line]:
    if not lines:
        return []
    first = start
    for number in range(start, min(end, len(lines)) + 1):
        lowered = lines[number - 1].lower()
        if any(word in lowered for word in words):
            first = number
            break
    begin = max(start, first - 1)
    return [Line(n, lines[n - 1][:300])
            for n in range(begin, min(end, len(lines), begin + _SNIPPET_LINES - 1) + 1)]


async def search(engine: ContextEngine, project: Project, query: str, *,
                 path_glob: str | None = None, language: str | None = None,
                 kind: str | None = None, limit: int = 10, cursor: str | None = None,
                 note: str = "") -> SearchAnswer:
    offset = parse_cursor(cursor)
    tokens = query_tokens(query)
    if not tokens:
        raise BadRequest("the query has no searchable words (letters, digits, underscores)")
    index = await engine.index()
    cap = engine.limits.search_candidates
    wanted = min(cap, (offset + limit) * 3 + 20 if not path_glob else cap)
    prefix = re.split(r"[*?\[]", path_glob, maxsplit=1)[0] if path_glob else ""
    filters = SearchFilters(language, kind, prefix)
    # Narrow to wide, stopping at the first pass that finds anything (so every page of one
    # query uses the same pass): all whole identifiers, any of them, then any part.
    whole = whole_tokens(query)
    passes = ([(whole, True)] if len(whole) > 1 else []) + [(whole, False), (tokens, False)]
    found = []
    for pass_tokens, match_all in passes:
        found = await index.search(project.name, pass_tokens, filters, wanted, match_all)
        if found:
            break
    if not found and len(query.strip()) >= 3:
        # no token matches: a piece of an identifier ("ueryS" of QuerySet)
        found = [SearchHit(r.path, r.language, r.kind, r.qualname, r.line_start, r.line_end,
                           1.0 / (1 + n))
                 for n, r in enumerate(await index.names_containing(
                     project.name, query.strip(), min(wanted, 100)))
                 if (not language or r.language == language) and (not kind or r.kind == kind)
                 and r.path.startswith(prefix)]
    exact = _norm(query.strip())
    words = [w for w in {query.strip().lower(), *split_identifier(query)} if len(w) > 1]
    top = max((h.score for h in found), default=1.0)

    def boosted(score: float, name: str) -> float:
        last = name.rsplit(".", 1)[-1]
        if _norm(last) == exact or _norm(name) == exact:
            return score * 4
        return score

    ranked = sorted(found, key=lambda h: (-boosted(h.score, h.name), h.path, h.line_start))
    if _IDENTIFIER.fullmatch(query.strip()):
        # the definitions of the identifier itself lead, whatever their chunk's BM25; when
        # there are none and a trigram index makes it cheap, the definitions whose name
        # contains the query (a partial identifier like open_sto, no whole token matches)
        defined = await _definitions_as_hits(index, project.name, query.strip(), filters,
                                             top * 8)
        if not defined and len(query.strip()) >= 3 and await index.substring_ready():
            defined += _containing(await index.names_containing(
                project.name, query.strip(), 20), filters, top * 6)
        seen: set[tuple[str, int]] = set()
        leading = []
        for hit in defined:
            if (hit.path, hit.line_start) not in seen:
                seen.add((hit.path, hit.line_start))
                leading.append(hit)
        ranked = leading + [h for h in ranked if (h.path, h.line_start) not in seen]
    if path_glob:
        ranked = [h for h in ranked if fnmatch.fnmatchcase(h.path, path_glob)]
    page = ranked[offset:offset + limit]
    quoted = await engine.preload(project, [h.path for h in page], engine.limits.quote_seconds)
    hits = [Hit(h.path, h.line_start, h.line_end, h.kind, h.name, h.language,
                round(boosted(h.score, h.name), 4),
                _snippet(engine.cached_lines(project, h.path), h.line_start, h.line_end, words),
                project.name)
            for h in page]
    kept, cut = fit(hits, engine.limits.answer_chars)
    more = len(ranked) > offset + len(kept)
    notes = [note] if note else []
    if len(quoted) < len({h.path for h in page}):
        notes.append("some snippets left out (time budget for reading files): use read")
    if cut:
        notes.append(f"answer budget reached: {len(hits) - len(kept)} hits left out")
    if len(found) >= wanted and not more:
        notes.append(f"ranked the best {wanted} candidates only: narrow the query or filters")
    return SearchAnswer(query, kept, f"o{offset + len(kept)}" if more and kept else None,
                        cut, "; ".join(notes))


async def search_all(engine: ContextEngine, projects: Sequence[Project], query: str, *,
                     path_glob: str | None = None, language: str | None = None,
                     kind: str | None = None, limit: int = 10, cursor: str | None = None,
                     note: str = "") -> SearchAnswer:
    """:func:`search` in each of ``projects`` (the caller's visible ones), merged by score;
    the cursor pages through the merged ranking."""
    offset = parse_cursor(cursor)
    merged: list[Hit] = []
    notes = [note] if note else []
    more = False
    for project in projects:
        answer = await search(engine, project, query, path_glob=path_glob, language=language,
                              kind=kind, limit=offset + limit)
        merged += answer.hits
        more = more or answer.next_cursor is not None
        if answer.note:
            notes.append(f"{project.name}: {answer.note}")
    merged.sort(key=lambda h: (-h.score, h.project, h.path, h.line_start))
    kept, cut = fit(merged[offset:offset + limit], engine.limits.answer_chars)
    more = more or len(merged) > offset + len(kept)
    if not projects:
        notes.append("no projects to search")
    if cut:
        notes.append("answer budget reached: page on with next_cursor")
    return SearchAnswer(query, kept, f"o{offset + len(kept)}" if more and kept else None,
                        cut, "; ".join(notes))


async def definitions(engine: ContextEngine, project: Project, name: str, limit: int,
                      note: str = "") -> DefinitionAnswer:
    if not name.strip():
        raise BadRequest("name is empty")
    index = await engine.index()
    rows = await index.definitions(project.name, name.strip(), limit + 1)
    items = [Definition(r.path, r.name, r.qualname, r.kind, r.line_start, r.line_end,
                        r.signature, r.doc, r.language) for r in rows[:limit]]
    kept, cut = fit(items, engine.limits.answer_chars)
    notes = [note] if note else []
    if len(rows) > limit or cut:
        notes.append("more definitions exist: use a qualified name or a larger limit")
    if not rows:
        notes.append(f"no definition of {name!r} in the index (search finds text uses)")
    return DefinitionAnswer(name, kept, len(rows) > limit or cut, "; ".join(notes))


async def references(engine: ContextEngine, project: Project, name: str, limit: int,
                     cursor: str | None, note: str = "") -> ReferencesAnswer:
    offset = parse_cursor(cursor)
    simple = name.strip().rsplit(".", 1)[-1]
    if not simple:
        raise BadRequest("name is empty")
    index = await engine.index()
    rows = await index.references(project.name, simple, offset + limit + 1)
    page = rows[offset:offset + limit]
    quoted = await engine.preload(project, [r.path for r in page], engine.limits.quote_seconds)
    uses = []
    for row in page:
        lines = engine.cached_lines(project, row.path)
        text = lines[row.line - 1].strip()[:300] if lines and row.line <= len(lines) else ""
        uses.append(Use(row.path, row.line, row.scope, text))
    kept, cut = fit(uses, engine.limits.answer_chars)
    more = len(rows) > offset + len(kept)
    notes = [note] if note else []
    if len(quoted) < len({r.path for r in page}):
        notes.append("some lines' text left out (time budget for reading files)")
    if cut:
        notes.append("answer budget reached: page on with next_cursor")
    if simple != name.strip():
        notes.append(f"matched uses of the name {simple!r} (references are by name)")
    return ReferencesAnswer(name, kept, f"o{offset + len(kept)}" if more and kept else None,
                            cut or more, "; ".join(notes))


def read_file(engine: ContextEngine, project: Project, path: str, start_line: int = 1,
              end_line: int | None = None) -> FileSlice:
    lines = engine.lines(project, path)
    if lines is None:
        raise BadRequest(f"cannot read {path!r}: {engine.read_reason(project, path)}")
    total = len(lines)
    start = max(1, start_line)
    cap = engine.limits.read_lines
    end = min(total, end_line if end_line is not None else total)
    notes: list[str] = []
    truncated = False
    if end - start + 1 > cap:
        end = start + cap - 1
        truncated = True
        notes.append(f"at most {cap} lines per read: continue with start_line={end + 1}")
    text = "\n".join(lines[start - 1:end]) if start <= end else ""
    budget = engine.limits.answer_chars
    if len(text) > budget:
        text = text[:budget]
        end = start + text.count("\n")
        truncated = True
        notes.append(f"answer budget reached: continue with start_line={end + 1}")
    return FileSlice(path, detect_language(path), start, end, total, text, truncated,
                     "; ".join(notes))


