"""Which language a file is in: by extension, then by a ``#!`` line for scripts.

The language decides the parser (``ast`` for Python, a tree-sitter grammar for
the others) and is a search filter; files of other kinds (Markdown, TOML,
shell ...) are still indexed for text search under their own label.
"""

from __future__ import annotations

__all__ = ("detect_language", "PARSED_LANGUAGES", "MIME_TYPES", "mime_type")

_BY_EXTENSION = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript",
    ".cjs": "javascript", ".jsx": "javascript", ".ts": "typescript", ".mts": "typescript",
    ".cts": "typescript", ".tsx": "tsx", ".go": "go", ".rs": "rust", ".java": "java",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp",
    ".hh": "cpp", ".hxx": "cpp", ".md": "markdown", ".rst": "rst", ".txt": "text",
    ".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".sh": "shell",
    ".bash": "shell", ".html": "html", ".css": "css", ".sql": "sql", ".ini": "ini",
    ".cfg": "ini", ".xml": "xml", ".rb": "ruby", ".php": "php", ".kt": "kotlin",
    ".swift": "swift", ".cs": "csharp", ".scala": "scala", ".lua": "lua",
}
_SHEBANG = {"python": "python", "node": "javascript", "bash": "shell", "sh": "shell"}

#: languages with a symbol parser (the rest are text search only)
PARSED_LANGUAGES = frozenset({"python", "javascript", "typescript", "tsx", "go", "rust",
                              "java", "c", "cpp"})

MIME_TYPES = {
    "python": "text/x-python", "javascript": "text/javascript", "typescript": "text/x-typescript",
    "tsx": "text/x-typescript", "go": "text/x-go", "rust": "text/x-rust", "java": "text/x-java",
    "c": "text/x-c", "cpp": "text/x-c++", "markdown": "text/markdown", "json": "application/json",
    "yaml": "application/yaml", "toml": "application/toml", "html": "text/html",
    "css": "text/css", "xml": "application/xml", "shell": "text/x-shellscript",
}


def detect_language(path: str, first_line: str = "") -> str:
    """The language label of ``path`` (``"text"`` when nothing says otherwise)."""
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    if dot > 0:
        found = _BY_EXTENSION.get(name[dot:].lower())
        if found:
            return found
    if first_line.startswith("#!"):
        words = first_line[2:].replace("/usr/bin/env", " ").split()
        if words:
            program = words[0].rsplit("/", 1)[-1].rstrip("0123456789.")
            return _SHEBANG.get(program, "text")
    return "text"


def mime_type(language: str) -> str:
    return MIME_TYPES.get(language, "text/plain")
