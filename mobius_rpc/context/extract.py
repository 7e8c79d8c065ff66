"""From a file's text to its index rows: parse by language, then cut search chunks.

Chunks are what search ranks.  Each definition is one chunk made of its own
lines (a class's lines minus its methods', which are chunks of their own), so
no line is indexed twice; the lines outside every definition (imports,
module code, prose in Markdown) are cut into windows.  A chunk's name tokens
hold the definition's name and qualified name (for windows: the file path),
which the stores weight above the body.
"""

from __future__ import annotations

from .languages.detect import PARSED_LANGUAGES
from .languages.python_ast import parse_python
from .languages.treesitter import parse_tree_sitter
from .model import Chunk, FileIndex, FileState, ParsedFile, Symbol
from .tokens import index_tokens

__all__ = ("parse_source", "build_file_index", "WINDOW_LINES", "MAX_CHUNK_LINES")

WINDOW_LINES = 40
MAX_CHUNK_LINES = 200
_CHUNKED_KINDS = frozenset({"function", "method", "class", "interface", "struct", "enum",
                            "type", "module"})


def parse_source(path: str, language: str, text: str, data: bytes,
                 prefix: str = "") -> ParsedFile:
    if language not in PARSED_LANGUAGES:
        return ParsedFile()
    if language == "python":
        parsed = parse_python(path, text, prefix)
        if parsed.note and not parsed.symbols:
            fallback = parse_tree_sitter("python", data)  # e.g. Python 2 syntax
            if fallback.symbols:
                fallback.note = "not valid Python 3: symbols from tree-sitter"
                return fallback
        return parsed
    return parse_tree_sitter(language, data)


def _chunks(path: str, lines: list[str], symbols: list[Symbol]) -> list[Chunk]:
    owner: list[int] = [-1] * (len(lines) + 2)  # line -> index of the innermost definition
    chunked = [s for s in symbols if s.kind in _CHUNKED_KINDS]
    # outer definitions first, so inner ones overwrite the lines they own
    order = sorted(range(len(chunked)),
                   key=lambda i: (chunked[i].line_start, -chunked[i].line_end))
    for index in order:
        symbol = chunked[index]
        for line in range(max(1, symbol.line_start), min(len(lines), symbol.line_end) + 1):
            owner[line] = index
    own_lines: dict[int, list[int]] = {}
    loose: list[int] = []
    for line in range(1, len(lines) + 1):
        (own_lines.setdefault(owner[line], []) if owner[line] >= 0 else loose).append(line)
    out: list[Chunk] = []
    for index, numbers in own_lines.items():
        symbol = chunked[index]
        body = "\n".join(lines[n - 1] for n in numbers[:MAX_CHUNK_LINES])
        names = index_tokens(f"{symbol.name} {symbol.qualname}")
        out.append(Chunk(symbol.kind, symbol.qualname, symbol.line_start, symbol.line_end,
                         names, index_tokens(f"{body} {symbol.doc}")))
    path_tokens = index_tokens(path.replace("/", " ").replace(".", " "))
    window: list[int] = []
    for line in loose:
        if window and (line != window[-1] + 1 or len(window) >= WINDOW_LINES):
            out.append(_window(lines, window, path_tokens))
            window = []
        window.append(line)
    if window:
        out.append(_window(lines, window, path_tokens))
    return [chunk for chunk in out if chunk.body_tokens or chunk.name_tokens]


def _window(lines: list[str], numbers: list[int], path_tokens: str) -> Chunk:
    body = "\n".join(lines[n - 1] for n in numbers)
    return Chunk("text", "", numbers[0], numbers[-1], path_tokens, index_tokens(body))


def build_file_index(state: FileState, language: str, text: str, data: bytes,
                     note: str = "", prefix: str = "") -> FileIndex:
    """Every row of one file; ``note`` is kept with the file; ``prefix`` is the package
    the project root is (Python module names)."""
    parsed = parse_source(state.path, language, text, data, prefix)
    lines = text.splitlines()
    return FileIndex(state=state, language=language, lines=len(lines),
                     note=parsed.note or note, symbols=parsed.symbols,
                     references=parsed.references, imports=parsed.imports,
                     metrics=parsed.metrics, chunks=_chunks(state.path, lines, parsed.symbols))
