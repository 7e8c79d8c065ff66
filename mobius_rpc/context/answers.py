"""The typed answers of the context tools (their ``outputSchema`` comes from these).

Every list answer carries ``truncated`` and a ``note`` saying what was left
out and how to get it (a narrower query, the next cursor, a line range),
because a host that silently gets a partial answer acts on it as if whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ("Line", "Hit", "SearchAnswer", "Definition", "DefinitionAnswer", "Use",
           "ReferencesAnswer", "FunctionInfo", "AnalysisAnswer", "ModuleRank", "OutlineEntry",
           "SummaryAnswer", "FileSlice", "IndexStatus")


@dataclass
class Line:
    line: int
    text: str


@dataclass
class Hit:
    path: str
    line_start: int
    line_end: int
    kind: str
    name: str
    language: str
    score: float
    snippet: list[Line] = field(default_factory=list)
    #: the project of the hit (searches with ``project="*"`` span every visible one)
    project: str = ""


@dataclass
class SearchAnswer:
    query: str
    hits: list[Hit]
    next_cursor: str | None = None
    truncated: bool = False
    note: str = ""


@dataclass
class Definition:
    path: str
    name: str
    qualname: str
    kind: str
    line_start: int
    line_end: int
    signature: str
    doc: str
    language: str


@dataclass
class DefinitionAnswer:
    name: str
    definitions: list[Definition]
    truncated: bool = False
    note: str = ""


@dataclass
class Use:
    path: str
    line: int
    scope: str
    text: str


@dataclass
class ReferencesAnswer:
    name: str
    references: list[Use]
    next_cursor: str | None = None
    truncated: bool = False
    note: str = ""


@dataclass
class FunctionInfo:
    qualname: str
    line_start: int
    line_end: int
    complexity: int
    nesting: int


@dataclass
class AnalysisAnswer:
    path: str
    language: str
    lines: int
    size: int
    functions: list[FunctionInfo]
    max_complexity: int
    max_nesting: int
    imports: list[str]
    dependents: list[str]
    truncated: bool = False
    note: str = ""


@dataclass
class ModuleRank:
    path: str
    score: float
    dependents: int


@dataclass
class OutlineEntry:
    path: str
    symbols: list[str]


@dataclass
class SummaryAnswer:
    project: str
    files: int
    lines: int
    bytes: int
    languages: dict[str, int]
    entry_points: list[str]
    central_modules: list[ModuleRank]
    outline: list[OutlineEntry]
    truncated: bool = False
    note: str = ""


@dataclass
class FileSlice:
    path: str
    language: str
    start_line: int
    end_line: int
    total_lines: int
    text: str
    truncated: bool = False
    note: str = ""


@dataclass
class IndexStatus:
    project: str
    root: str
    state: str
    done: int
    total: int
    files: int
    skipped: int
    text_only_languages: dict[str, str]
    seconds: float
    note: str = ""
