"""The context engine's prompts: code review, debugging, and explaining code.

Each embeds the code it is about as a resource (``context://.../files/...``)
so the host shows the model the real file, capped like any read.
"""

from __future__ import annotations

from typing import Annotated, Any

from ..core.errors import INVALID_PARAMS, McpError
from ..server import content
from ..server.app import Server
from ..server.hints import Param
from .engine import ContextEngine, Project, ProjectNotFound
from .languages.detect import mime_type
from .queries import BadRequest, read_file

__all__ = ("register_prompts",)


def _embed(engine: ContextEngine, project: Project, path: str, start: int = 1,
           end: int | None = None) -> dict[str, Any]:
    try:
        piece = read_file(engine, project, path, start, end)
    except BadRequest as exc:
        return content.text(f"({exc})")
    uri = f"context://projects/{project.name}/files/{path}"
    return content.embedded_text(uri, piece.text, mime_type(piece.language))


async def _project(engine: ContextEngine, name: str | None) -> Project:
    try:
        return await engine.choose(name)
    except ProjectNotFound as exc:  # the caller's mistake, not the server's failure
        raise McpError(INVALID_PARAMS, str(exc)) from None


def register_prompts(server: Server, engine: ContextEngine) -> None:
    @server.prompt(title="Review code")
    async def code_review(
            path: Annotated[str, Param(description="Project-relative file to review")],
            focus: Annotated[str, Param(description="Focus areas, e.g. 'security, "
                                        "error handling'")] = "correctness",
            project: str | None = None) -> list[dict[str, Any]]:
        """Review one file of the project with the given focus."""
        chosen = await _project(engine, project)
        return [{"role": "user", "content": _embed(engine, chosen, path)},
                {"role": "user", "content": content.text(
                    f"Review {path} above, focusing on {focus}. Point to lines, explain each "
                    "problem and propose a fix. Use the search_code, definition and references "
                    "tools to check how the code is used before judging it.")}]

    @server.prompt(title="Debug an error")
    async def debug(
            error: Annotated[str, Param(description="The error message or traceback")],
            path: Annotated[str | None, Param(description="File the error points to")] = None,
            line: Annotated[str | None, Param(description="Line number in that file")] = None,
            context_lines: str = "20", project: str | None = None) -> list[dict[str, Any]]:
        """Find the cause of an error, with the code around where it happened."""
        chosen = await _project(engine, project)
        messages: list[dict[str, Any]] = []
        if path:
            around = int(context_lines) if context_lines.isdigit() else 20
            at = int(line) if line and line.isdigit() else None
            start, end = (max(1, at - around), at + around) if at else (1, None)
            messages.append({"role": "user", "content": _embed(engine, chosen, path, start,
                                                               end)})
        messages.append({"role": "user", "content": content.text(
            f"This error happened:\n\n{error}\n\nFind its cause. Use the definition and "
            "references tools to follow the failing names, then propose the smallest fix.")})
        return messages

    @server.prompt(title="Explain code")
    async def explain(path: Annotated[str, Param(description="Project-relative file")],
                      symbol: str | None = None, project: str | None = None
                      ) -> list[dict[str, Any]]:
        """Explain what a file (or one symbol in it) does and how it fits the project."""
        chosen = await _project(engine, project)
        what = f"{symbol} in {path}" if symbol else path
        return [{"role": "user", "content": _embed(engine, chosen, path)},
                {"role": "user", "content": content.text(
                    f"Explain what {what} does, who uses it (the references tool) and what "
                    "it depends on (the analyze tool).")}]
