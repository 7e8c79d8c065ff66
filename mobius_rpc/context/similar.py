"""Similar code for a snippet, scored, with no embedding service.

The snippet's own identifiers (keywords and one-letter names left out, the
longest first: they are the rarest) become one ranked full-text query; the
best candidates are then re-scored by the Jaccard similarity of their token
sets with the snippet's (identifier parts included, so ``userName`` and
``user_name`` agree).  The score is that similarity: 1.0 is the same
vocabulary, 0.3 a near relative; it needs nothing beyond the index itself.
"""

from __future__ import annotations

from .answers import Hit, Line, SearchAnswer
from .engine import ContextEngine, Project
from .model import SearchFilters
from .queries import BadRequest, fit
from .tokens import index_tokens, whole_tokens

__all__ = ("similar_code",)

_COMMON = frozenset("""
    and as assert async await break case catch class const continue def del do elif else
    enum except export extends false final finally fn for from func function go if impl
    import in interface is lambda let match mut new nil none not null or package pass pub
    raise return self static struct super switch this throw true try type use var void
    while with yield int str bool float string char long double public private protected
""".split())
_QUERY_TOKENS = 24
_CANDIDATES = 60
_CHUNK_LINES = 200


def _vocabulary(text: str) -> set[str]:
    return {t for t in index_tokens(text).split() if len(t) > 1 and t not in _COMMON}


async def similar_code(engine: ContextEngine, project: Project, snippet: str, limit: int,
                       language: str | None = None, note: str = "") -> SearchAnswer:
    own = _vocabulary(snippet)
    query = sorted((t for t in whole_tokens(snippet) if len(t) > 1 and t not in _COMMON),
                   key=lambda t: (-len(t), t))[:_QUERY_TOKENS]
    if not query or not own:
        raise BadRequest("the snippet has no identifiers to compare (keywords alone do not "
                         "count)")
    index = await engine.index()
    found = await index.search(project.name, query, SearchFilters(language), _CANDIDATES)
    # comparing needs each candidate's text: read within a budget, compare what was read
    readable = await engine.preload(project, [h.path for h in found],
                                    engine.limits.quote_seconds * 3)
    scored: list[Hit] = []
    for hit in found:
        lines = engine.cached_lines(project, hit.path)
        if not lines:
            continue
        end = min(hit.line_end, hit.line_start + _CHUNK_LINES - 1, len(lines))
        body = "\n".join(lines[hit.line_start - 1:end])
        theirs = _vocabulary(body)
        score = len(own & theirs) / len(own | theirs) if theirs else 0.0
        snippet_lines = [Line(n, lines[n - 1][:300])
                         for n in range(hit.line_start, min(end, hit.line_start + 2) + 1)]
        scored.append(Hit(hit.path, hit.line_start, hit.line_end, hit.kind, hit.name,
                          hit.language, round(score, 4), snippet_lines))
    scored.sort(key=lambda h: (-h.score, h.path, h.line_start))
    kept, cut = fit(scored[:limit], engine.limits.answer_chars)
    notes = [note] if note else []
    notes.append("score: Jaccard similarity of identifier tokens with the snippet (1.0: the "
                 "same vocabulary)")
    if len(readable) < len({h.path for h in found}):
        notes.append("some candidates not compared (time budget for reading files)")
    if cut:
        notes.append("answer budget reached: ask for fewer")
    return SearchAnswer(snippet[:80], kept, None, cut, "; ".join(notes))
