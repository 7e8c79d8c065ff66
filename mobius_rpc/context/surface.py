"""The MCP surface of the context engine: seven tools, four resources, three prompts.

Kept small on purpose (a host pays for every tool in its context window):
``search``, ``definition``, ``references``, ``analyze``, ``summary``, ``read``
and ``reindex``, each with typed, structured output.  Every tool runs under
the engine's time limit, which cancels the work itself (store reads, the
re-ranking, the file reads), and answers within its character budget; an
answer cut by either says so.  Bad arguments are tool errors the model can
correct; an unknown project names the ones there are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio
import orjson

from ..core.revisions import LEGACY_REVISIONS, MODERN_REVISIONS
from ..server.app import Server
from ..server.context import Context
from ..server.hints import Param
from ..server.resources import ResourceNotFound
from ..server.tools import ToolError
from .analysis import analyze, summarize
from .answers import (
    AnalysisAnswer,
    DefinitionAnswer,
    FileSlice,
    IndexStatus,
    ReferencesAnswer,
    SearchAnswer,
    SummaryAnswer,
)
from .engine import ContextEngine, EngineLimits, Project, ProjectNotFound
from .languages.detect import mime_type
from .prompts import register_prompts
from .queries import BadRequest, definitions, read_file, references, search

__all__ = ("build_context_server", "status_of")

T = TypeVar("T")
Kind = Literal["function", "method", "class", "interface", "struct", "enum", "type", "module",
               "text"]
ProjectName = Annotated[str | None, Param(description="Project name (default: the first)")]


def status_of(project: Project) -> IndexStatus:
    report = project.report
    return IndexStatus(project.name, str(project.root), project.state, project.done,
                       project.total, (report.indexed + report.touched + report.unchanged)
                       if report else 0, len(report.skipped) if report else 0,
                       dict(report.notes) if report else {},
                       round(report.seconds, 3) if report else 0.0, project.error)


async def _bounded(engine: ContextEngine, what: str, work: Callable[[], Awaitable[T]]) -> T:
    seconds = engine.limits.operation_seconds
    try:
        with anyio.fail_after(seconds):
            return await work()
    except TimeoutError:
        raise ToolError(f"{what} stopped after its limit of {seconds:g} s: narrow it "
                        "(a filter, a path, a smaller limit)") from None
    except (BadRequest, ProjectNotFound) as exc:
        raise ToolError(str(exc)) from None


def build_context_server(roots: list[Path], store: Any = None, *, store_url: str | None = None,
                         limits: EngineLimits | None = None, legacy: bool = True,
                         modern: bool = True) -> tuple[Server, ContextEngine]:
    """A server for ``roots`` whose index lives in ``store`` (or the store at ``store_url``,
    opened on first use; default: the embedded SQLite store)."""
    engine = ContextEngine(roots, store=store, store_url=store_url, limits=limits)
    names = ", ".join(engine.projects)
    server = Server(
        "mobius-context", version="0.1.0", title="Mobius context engine",
        revisions=LEGACY_REVISIONS if legacy else (),
        modern_revisions=MODERN_REVISIONS if modern else (),
        instructions=f"Code context for the projects {names}: search code, find definitions "
                     "and references, analyse complexity, summarise a project, read files.")
    read_only = {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False}

    async def project_for(name: str | None, wait: float = 2.0) -> tuple[Project, str]:
        try:
            project = engine.project(name)
        except ProjectNotFound as exc:
            raise ToolError(str(exc)) from None
        return project, await engine.ready(project, min(wait, engine.limits.operation_seconds))

    @server.tool(annotations=read_only)
    async def search_code(
            query: Annotated[str, Param(description="Identifiers or words; camelCase and "
                                        "snake_case parts match too", max_length=500)],
            path_glob: Annotated[str | None, Param(description="Shell glob over the "
                                                   "project-relative path, e.g. 'src/*.py'")]
            = None,
            language: str | None = None, kind: Kind | None = None,
            limit: Annotated[int, Param(minimum=1, maximum=50)] = 10,
            cursor: str | None = None, project: ProjectName = None) -> SearchAnswer:
        """Ranked full-text search over the code (BM25), with snippets and line numbers."""
        chosen, note = await project_for(project)
        return await _bounded(engine, "search", lambda: search(
            engine, chosen, query, path_glob=path_glob, language=language, kind=kind,
            limit=limit, cursor=cursor, note=note))

    @server.tool(annotations=read_only)
    async def definition(
            name: Annotated[str, Param(description="A name or qualified name (Class.method)",
                                       max_length=300)],
            limit: Annotated[int, Param(minimum=1, maximum=50)] = 10,
            project: ProjectName = None) -> DefinitionAnswer:
        """Where a symbol is defined: kind, signature, line range and docstring."""
        chosen, note = await project_for(project)
        return await _bounded(engine, "definition",
                              lambda: definitions(engine, chosen, name, limit, note))

    @server.tool(name="references", annotations=read_only)
    async def find_references(
            name: Annotated[str, Param(description="The symbol's name", max_length=300)],
            limit: Annotated[int, Param(minimum=1, maximum=200)] = 50,
            cursor: str | None = None, project: ProjectName = None) -> ReferencesAnswer:
        """Every use of a name (calls, attribute accesses, reads), with the line's text."""
        chosen, note = await project_for(project)
        return await _bounded(engine, "references",
                              lambda: references(engine, chosen, name, limit, cursor, note))

    @server.tool(name="analyze", annotations=read_only)
    async def analyze_code(
            path: Annotated[str, Param(description="Project-relative file path")],
            symbol: Annotated[str | None, Param(description="Only this function or class")]
            = None, project: ProjectName = None) -> AnalysisAnswer:
        """Size, cyclomatic complexity and nesting per function, imports and dependents."""
        chosen, note = await project_for(project)
        return await _bounded(engine, "analysis",
                              lambda: analyze(engine, chosen, path, symbol, note))

    @server.tool(annotations=read_only)
    async def summary(
            budget_tokens: Annotated[int, Param(minimum=100, maximum=10_000)] = 2000,
            project: ProjectName = None) -> SummaryAnswer:
        """Languages, sizes, entry points, the most central modules and their outline."""
        chosen, note = await project_for(project)
        return await _bounded(engine, "summary",
                              lambda: summarize(engine, chosen, budget_tokens, note))

    @server.tool(name="read", annotations=read_only)
    async def read_lines(
            path: Annotated[str, Param(description="Project-relative file path")],
            start_line: Annotated[int, Param(minimum=1)] = 1,
            end_line: Annotated[int | None, Param(minimum=1)] = None,
            project: ProjectName = None) -> FileSlice:
        """A file or a line range of it (capped; the answer says how to continue)."""
        chosen, _ = await project_for(project, wait=0)

        async def work() -> FileSlice:
            return read_file(engine, chosen, path, start_line, end_line)
        return await _bounded(engine, "read", work)

    @server.tool(annotations={"readOnlyHint": False, "idempotentHint": True})
    async def reindex(ctx: Context, project: ProjectName = None) -> IndexStatus:
        """Bring the index up to date now (only changed files are read), with progress."""
        chosen, _ = await project_for(project, wait=0)

        async def progress(done: int, total: int, message: str) -> None:
            await ctx.report_progress(done, total or 1, message)
        await engine.reindex(chosen, progress)
        return status_of(chosen)

    def _json(value: Any) -> dict[str, Any]:
        data = value if isinstance(value, list) else dataclasses.asdict(value)
        return {"text": orjson.dumps(data).decode(), "mimeType": "application/json"}

    def _known(name: str) -> Project:
        try:
            return engine.project(name)
        except ProjectNotFound:
            raise ResourceNotFound(name) from None

    @server.resource("context://projects", name="projects", mime_type="application/json")
    async def projects() -> dict[str, Any]:
        """The projects served and the state of their index."""
        engine.start()
        return _json([dataclasses.asdict(status_of(p)) for p in engine.projects.values()])

    @server.resource("context://projects/{project}/status", name="index-status",
                     mime_type="application/json")
    async def status(project: str) -> dict[str, Any]:
        """How far indexing got, what was skipped and which languages are text-only."""
        engine.start()
        return _json(status_of(_known(project)))

    @server.resource("context://projects/{project}/summary", name="project-summary",
                     mime_type="application/json")
    async def project_summary(project: str) -> dict[str, Any]:
        """The project summary (as the summary tool gives it)."""
        chosen = _known(project)
        note = await engine.ready(chosen, 2.0)
        return _json(await _bounded(engine, "summary",
                                    lambda: summarize(engine, chosen, 2000, note)))

    @server.resource("context://projects/{project}/files/{+path}", name="file")
    async def file(project: str, path: str) -> dict[str, Any]:
        """A project file, capped at the read limit (the read tool pages through lines)."""
        chosen = _known(project)
        try:
            piece = read_file(engine, chosen, path)
        except BadRequest:
            raise ResourceNotFound(path) from None
        return {"text": piece.text, "mimeType": mime_type(piece.language)}

    @server.completion("ref/resource", "context://projects/{project}/files/{+path}")
    async def complete_path(argument: str, value: str, context: dict[str, str]
                            ) -> dict[str, Any]:
        if argument == "project":
            return {"values": [n for n in engine.projects if n.startswith(value)][:100]}
        chosen = engine.projects.get(context.get("project", "")) or engine.project(None)
        rows = await (await engine.index()).files(chosen.name)
        found = [r.path for r in rows if r.path.startswith(value)]
        return {"values": found[:100], "total": len(found), "hasMore": len(found) > 100}

    async def changed(project: Project, report: Any) -> None:
        # subscribers of a changed file, of the summary and of the status hear of it; a
        # file added or removed changes what the files template completes to
        base = f"context://projects/{project.name}"
        for path in report.changed[:10_000]:
            await server.notify_resource_updated(f"{base}/files/{path}")
        for uri in (f"{base}/summary", f"{base}/status", "context://projects"):
            await server.notify_resource_updated(uri)
        if report.files_added_or_removed:
            server.dispatcher.list_changed("resources")

    engine.on_change = changed
    register_prompts(server, engine)
    return server, engine
