"""The code-aware tokenizer: identifiers split at camelCase and snake_case boundaries.

The stores' own full-text tokenizers know words, not identifiers: FTS5's
``unicode61`` and PostgreSQL's ``simple`` configuration would keep
``parseHTTPRequest`` as one token and split ``build_server`` into two, so
searching ``request`` or ``build_server`` would rank the wrong chunks.  We
therefore tokenize ourselves, before indexing: every identifier yields itself
(lower-cased, underscores dropped, so the whole name is one token) and each
of its parts.  The store then only has to split on spaces.  Queries go
through the same function, and the match expression sent to the store is
built from these tokens alone (``[a-z0-9]`` only), never from query text.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ("split_identifier", "index_tokens", "query_tokens", "whole_tokens", "MAX_TOKEN")

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
# acronym followed by a word (HTTPRequest -> HTTP, Request), lower->Upper, letters->digits
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
#: longer tokens are cut (minified code and base64 blobs would bloat the index)
MAX_TOKEN = 40


def split_identifier(word: str) -> list[str]:
    """The lower-cased parts of one identifier: ``getHTTPResponse_code`` ->
    ``["get", "http", "response", "code"]``."""
    parts: list[str] = []
    for piece in word.split("_"):
        parts.extend(match.lower() for match in _PART.findall(piece))
    return parts


@lru_cache(maxsize=1 << 16)
def _tokens_of(word: str) -> tuple[str, ...]:
    # cached: code repeats its identifiers, and splitting was most of the indexing time
    whole = word.replace("_", "").lower()[:MAX_TOKEN]
    if not whole:
        return ()
    parts = [part[:MAX_TOKEN] for part in split_identifier(word)]
    if len(parts) <= 1 and (not parts or parts[0] == whole):
        return (whole,)
    return (whole, *parts)


@lru_cache(maxsize=1 << 16)
def _joined(word: str) -> str:
    return " ".join(_tokens_of(word))


def index_tokens(text: str, limit: int = 20_000) -> str:
    """``text`` as a space-separated token string for the store (about ``limit`` tokens
    at most: the cut is made per word, counting each word's tokens as one)."""
    words = _WORD.findall(text)
    if len(words) > limit:
        words = words[:limit]
    return " ".join(filter(None, map(_joined, words)))


def query_tokens(text: str, limit: int = 32) -> list[str]:
    """Distinct tokens of a query, in order (whole identifiers before their parts)."""
    seen: dict[str, None] = {}
    for match in _WORD.finditer(text):
        for token in _tokens_of(match.group()):
            seen.setdefault(token, None)
    return list(seen)[:limit]


def whole_tokens(text: str, limit: int = 32) -> list[str]:
    """Only the whole-identifier tokens of a query (``get_queryset`` -> ``getqueryset``):
    the precise first pass of a search, before parts widen it."""
    seen: dict[str, None] = {}
    for match in _WORD.finditer(text):
        whole = match.group().replace("_", "").lower()[:MAX_TOKEN]
        if whole:
            seen.setdefault(whole, None)
    return list(seen)[:limit]
