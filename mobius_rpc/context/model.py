"""Plain records the context engine passes between its parts and keeps in the store.

Everything here is data: the parsers produce a :class:`ParsedFile`, the indexer
turns it into a :class:`FileIndex` (the rows of one file), and the index
stores hand back :class:`SymbolRow`, :class:`RefRow` and :class:`SearchHit`.
Keeping them free of behaviour lets the memory, SQLite and PostgreSQL stores
share one contract and lets tests compare them field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ("Symbol", "Reference", "Import", "FunctionMetrics", "ParsedFile", "Chunk",
           "FileState", "FileIndex", "SymbolRow", "RefRow", "SearchHit", "FileRow",
           "SearchFilters")


@dataclass(frozen=True, slots=True)
class Symbol:
    """A definition: ``kind`` is function, method, class, interface, struct, enum,
    type, module, variable or constant; lines are 1-based and inclusive."""

    name: str
    qualname: str
    kind: str
    line_start: int
    line_end: int
    signature: str = ""
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Reference:
    """A use of a name (a call, an attribute, a bare name) at a 1-based line."""

    name: str
    line: int
    scope: str = ""  # qualified name of the enclosing definition ("" at module level)


@dataclass(frozen=True, slots=True)
class Import:
    module: str
    line: int


@dataclass(frozen=True, slots=True)
class FunctionMetrics:
    """Cyclomatic complexity (McCabe: decisions + 1) and deepest block nesting."""

    qualname: str
    line_start: int
    line_end: int
    complexity: int
    nesting: int


@dataclass(slots=True)
class ParsedFile:
    """What a parser found in one file; ``note`` says why it found less than usual."""

    symbols: list[Symbol] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    metrics: list[FunctionMetrics] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True, slots=True)
class Chunk:
    """A searchable piece of a file: one definition's own lines, or a window of the
    lines outside every definition.  ``name_tokens``/``body_tokens`` are already
    split by :func:`~.tokens.index_tokens`; the store indexes them as given."""

    kind: str
    name: str
    line_start: int
    line_end: int
    name_tokens: str
    body_tokens: str


@dataclass(frozen=True, slots=True)
class FileState:
    """What decides whether a file must be read again: mtime first, then the hash."""

    path: str
    mtime_ns: int
    size: int
    sha256: str


@dataclass(slots=True)
class FileIndex:
    """Every row one file contributes to the index (replaced as a whole on change)."""

    state: FileState
    language: str
    lines: int
    note: str
    symbols: list[Symbol]
    references: list[Reference]
    imports: list[Import]
    metrics: list[FunctionMetrics]
    chunks: list[Chunk]


@dataclass(frozen=True, slots=True)
class SymbolRow:
    path: str
    language: str
    name: str
    qualname: str
    kind: str
    line_start: int
    line_end: int
    signature: str
    doc: str


@dataclass(frozen=True, slots=True)
class RefRow:
    path: str
    name: str
    line: int
    scope: str


@dataclass(frozen=True, slots=True)
class FileRow:
    path: str
    language: str
    size: int
    lines: int
    note: str


@dataclass(frozen=True, slots=True)
class SearchFilters:
    language: str | None = None
    kind: str | None = None
    #: only paths that start with this (the literal head of a path glob)
    path_prefix: str = ""


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A ranked chunk; ``score`` is larger for better matches on every backend."""

    path: str
    language: str
    kind: str
    name: str
    line_start: int
    line_end: int
    score: float
