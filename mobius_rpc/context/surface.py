"""The MCP surface of the context engine: eight tools, five resources, three prompts.

Kept small on purpose (a host pays for every tool in its context window):
``search_code``, ``similar``, ``definition``, ``references``, ``analyze``, ``summary``, ``read``
and ``reindex``, each with typed, structured output.  Every tool runs under
the engine's time limit, which cancels the work itself (store reads, the
re-ranking, the file reads), and answers within its character budget; an
answer cut by either says so.  Bad arguments are tool errors the model can
correct; an unknown project names the ones there are.  A project the caller may
not see (another organization's, or one a rule hides) is answered like an
unknown one (:mod:`.access`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from ..core.revisions import LEGACY_REVISIONS, MODERN_REVISIONS
from ..server.app import Server
from ..server.context import Context
from ..server.hints import Param
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
from .prompts import register_prompts
from .queries import definitions, read_file, references, search, search_all
from .resources import register_resources
from .similar import similar_code
from .status import bounded, status_of

__all__ = ("build_context_server",)

T = TypeVar("T")
Kind = Literal["function", "method", "class", "interface", "struct", "enum", "type", "module",
               "text"]
ProjectName = Annotated[str | None, Param(description="Project name (default: the first "
                                          "you may see)")]


def build_context_server(roots: list[Path], store: Any = None, *, store_url: str | None = None,
                         limits: EngineLimits | None = None, legacy: bool = True,
                         modern: bool = True, orgs: list[str | None] | None = None,
                         default_org: Callable[[Any], Awaitable[str | None]] | None = None
                         ) -> tuple[Server, ContextEngine]:
    """A server for ``roots`` whose index lives in ``store`` (or the store at ``store_url``,
    opened on first use; default: the embedded SQLite store); ``orgs`` and
    ``default_org`` say which organization owns each root (see :class:`ContextEngine`)."""
    engine = ContextEngine(roots, store=store, store_url=store_url, limits=limits, orgs=orgs,
                           default_org=default_org)
    server = Server(
        "mobius-context", version="0.1.0", title="Mobius context engine",
        revisions=LEGACY_REVISIONS if legacy else (),
        modern_revisions=MODERN_REVISIONS if modern else (),
        # no project names here: initialize is answered before anyone is identified
        instructions="Code context for your projects (context://projects lists them): search "
                     "code, find definitions and references, analyse complexity, summarise a "
                     "project, read files.")
    read_only = {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False}

    async def project_for(name: str | None, wait: float = 2.0) -> tuple[Project, str]:
        try:
            project = await engine.choose(name)
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
        """Ranked full-text search over the code (BM25), with snippets and line numbers;
        project "*" searches every project you may see."""
        if project == "*":
            everywhere = [engine.projects[n] for n in await engine.access.visible()]
            notes = [await engine.ready(p, 2.0 / max(1, len(everywhere))) for p in everywhere]
            return await bounded(engine, "search", lambda: search_all(
                engine, everywhere, query, path_glob=path_glob, language=language, kind=kind,
                limit=limit, cursor=cursor, note="; ".join(n for n in notes if n)))
        chosen, note = await project_for(project)
        return await bounded(engine, "search", lambda: search(
            engine, chosen, query, path_glob=path_glob, language=language, kind=kind,
            limit=limit, cursor=cursor, note=note))

    @server.tool(annotations=read_only)
    async def similar(
            snippet: Annotated[str, Param(description="A piece of code", max_length=20_000)],
            limit: Annotated[int, Param(minimum=1, maximum=30)] = 10,
            language: str | None = None, project: ProjectName = None) -> SearchAnswer:
        """Code that looks like a snippet (same identifiers), each with a 0-1 score."""
        chosen, note = await project_for(project)
        return await bounded(engine, "similar", lambda: similar_code(
            engine, chosen, snippet, limit, language, note))

    @server.tool(annotations=read_only)
    async def definition(
            name: Annotated[str, Param(description="A name or qualified name (Class.method)",
                                       max_length=300)],
            limit: Annotated[int, Param(minimum=1, maximum=50)] = 10,
            project: ProjectName = None) -> DefinitionAnswer:
        """Where a symbol is defined: kind, signature, line range and docstring."""
        chosen, note = await project_for(project)
        return await bounded(engine, "definition",
                              lambda: definitions(engine, chosen, name, limit, note))

    @server.tool(name="references", annotations=read_only)
    async def find_references(
            name: Annotated[str, Param(description="The symbol's name", max_length=300)],
            limit: Annotated[int, Param(minimum=1, maximum=200)] = 50,
            cursor: str | None = None, project: ProjectName = None) -> ReferencesAnswer:
        """Every use of a name (calls, attribute accesses, reads), with the line's text."""
        chosen, note = await project_for(project)
        return await bounded(engine, "references",
                              lambda: references(engine, chosen, name, limit, cursor, note))

    @server.tool(name="analyze", annotations=read_only)
    async def analyze_code(
            path: Annotated[str, Param(description="Project-relative file path")],
            symbol: Annotated[str | None, Param(description="Only this function or class")]
            = None, project: ProjectName = None) -> AnalysisAnswer:
        """Size, cyclomatic complexity and nesting per function, imports and dependents."""
        chosen, note = await project_for(project)
        return await bounded(engine, "analysis",
                              lambda: analyze(engine, chosen, path, symbol, note))

    @server.tool(annotations=read_only)
    async def summary(
            budget_tokens: Annotated[int, Param(minimum=100, maximum=10_000)] = 2000,
            project: ProjectName = None) -> SummaryAnswer:
        """Languages, sizes, entry points, the most central modules and their outline."""
        chosen, note = await project_for(project)
        return await bounded(engine, "summary",
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
        return await bounded(engine, "read", work)

    @server.tool(annotations={"readOnlyHint": False, "idempotentHint": True})
    async def reindex(ctx: Context, project: ProjectName = None) -> IndexStatus:
        """Bring the index up to date now (only changed files are read), with progress."""
        chosen, _ = await project_for(project, wait=0)

        async def progress(done: int, total: int, message: str) -> None:
            await ctx.report_progress(done, total or 1, message)
        await engine.reindex(chosen, progress)
        return status_of(chosen)

    register_resources(server, engine)
    register_prompts(server, engine)
    # every project check, subscriptions included, is the engine's (see .access): the
    # security middleware's ownership lookup would refuse another organization's project
    # URIs with an error a project that does not exist does not get
    server.use(engine.access.middleware)
    return server, engine
