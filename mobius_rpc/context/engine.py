"""The context engine: its projects, their index, and the limits every answer keeps.

The store is opened lazily, in the event loop that serves (stdio or uvicorn),
so the same engine runs under either transport without owning a loop.  Each
project is indexed in the background from the first request on; a tool that
needs the index waits for it at most its time limit and otherwise answers
with what is there and a note saying how far indexing got.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from .access import ProjectAccess
from .indexer import IndexReport, index_project
from .sql_index import index_store_for
from .store import IndexStore
from .walk import WalkLimits, read_text

__all__ = ("ContextEngine", "EngineLimits", "Project", "ProjectNotFound")

log = logging.getLogger("mobius_rpc.context")


class ProjectNotFound(LookupError):
    pass


@dataclass(frozen=True)
class EngineLimits:
    #: wall-clock seconds one operation may take before its work is stopped
    operation_seconds: float = 5.0
    #: seconds between incremental runs in watch mode (None: no watching)
    watch_seconds: float | None = None
    #: characters of one answer (about a quarter as many tokens)
    answer_chars: int = 40_000
    #: lines one read returns at most
    read_lines: int = 400
    #: candidates a search ranks before filtering and paging
    search_candidates: int = 400
    #: seconds an answer may spend reading files to quote them (snippets, reference lines)
    quote_seconds: float = 0.015
    walk: WalkLimits = field(default_factory=WalkLimits)


@dataclass
class Project:
    name: str
    root: Path
    #: the organization that owns the project (None: not settled yet, see owners_ready)
    org: str | None = None
    state: str = "pending"  # pending, indexing, ready, failed
    done: int = 0
    total: int = 0
    report: IndexReport | None = None
    error: str = ""
    task: asyncio.Task[None] | None = None
    #: one run at a time per project: two would both insert the rows of a new file
    lock: anyio.Lock = field(default_factory=anyio.Lock)


def _names(roots: list[Path]) -> list[str]:
    names: list[str] = []
    for root in roots:
        base = root.resolve().name or "root"
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


class ContextEngine:
    def __init__(self, roots: list[Path], *, store: Any = None, store_url: str | None = None,
                 limits: EngineLimits | None = None, orgs: Sequence[str | None] | None = None,
                 default_org: Callable[[Any], Awaitable[str | None]] | None = None) -> None:
        """``orgs``: the owner of each root (None: ``default_org`` decides once the store
        is open, e.g. the owner's organization that the first HTTP start created)."""
        self.limits = limits or EngineLimits()
        owners = list(orgs) if orgs is not None else [None] * len(roots)
        self.projects: dict[str, Project] = {
            name: Project(name, root.resolve(), org) for name, root, org in zip(
                _names(roots), roots, owners, strict=True)}
        self._default_org = default_org
        #: moves whenever a project's owner is settled (the access cache's key)
        self.owner_epoch = 0
        self._owners_settled = False
        self.access = ProjectAccess(self)
        self._store = store
        self._store_url = store_url
        self._index: IndexStore | None = index_store_for(store) if store is not None else None
        self._keeper: asyncio.Task[None] | None = None
        self._closing = anyio.Event()
        self._opening = anyio.Lock()
        self._lines: OrderedDict[tuple[str, str], list[str]] = OrderedDict()
        #: what is computed from a finished index (graph, ranks, summaries); a run drops it
        self.derived: dict[tuple[str, str], Any] = {}
        #: awaited after a run that changed something (the server's notifications)
        self.on_change: Callable[[Project, IndexReport], Awaitable[None]] | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def index(self) -> IndexStore:
        """The index, opening the store on first use in a task of its own.

        The store's context (and its background task group) must be entered and
        left by one task; a request's task ends with the request, so a keeper
        task holds the store open until :meth:`aclose` or the loop's end.
        """
        if self._index is None:
            async with self._opening:
                if self._index is None:
                    opened = anyio.Event()
                    failure: list[BaseException] = []
                    self._keeper = asyncio.get_running_loop().create_task(
                        self._keep(opened, failure))
                    await opened.wait()
                    if failure:
                        raise failure[0]
        assert self._index is not None
        return self._index

    async def owners_ready(self) -> None:
        """Settle and record every project's owner, once (the store is opened for it)."""
        if self._owners_settled:
            return
        index = await self.index()
        async with self._opening:
            if self._owners_settled:
                return
            for project in self.projects.values():
                if project.org is None and self._default_org is not None:
                    project.org = await self._default_org(self._store)
                if project.org is None:
                    log.info("project %s has no owning organization: under a security "
                             "policy nobody may see it (serve it with --org)", project.name)
                    continue
                before = await index.put_project(project.name, project.org,
                                                 str(project.root))
                if before is not None:
                    log.warning("project %s now belongs to %s (it belonged to %s)",
                                project.name, project.org, before)
            self._owners_settled = True
            self.owner_epoch += 1

    async def _keep(self, opened: anyio.Event, failure: list[BaseException]) -> None:
        from ..storage import open_store
        try:
            async with open_store(self._store_url) as store:
                self._store = store
                self._index = index_store_for(store)
                opened.set()
                await self._closing.wait()
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
            failure.append(exc)
            opened.set()

    async def aclose(self) -> None:
        for project in self.projects.values():
            if project.task is not None:
                project.task.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        self._closing.set()
        if self._keeper is not None:
            with anyio.move_on_after(5):
                await asyncio.shield(self._keeper)

    def project(self, name: str | None) -> Project:
        """The project ``name`` (None: the first) WITHOUT any access check: for the
        engine's own work and for tests; whatever answers a caller uses :meth:`choose`."""
        found = self.projects.get(name) if name else next(iter(self.projects.values()))
        if found is None:
            raise ProjectNotFound(f"no project {name!r}")
        return found

    async def choose(self, name: str | None) -> Project:
        """The project ``name`` (None: the caller's first) if the caller may see it.

        A project the caller may not see raises exactly what an unknown one does,
        naming only the projects it may see, so nothing tells them apart."""
        found = await self.access.find(name)
        if found is None:
            names = await self.access.visible()
            listed = ", ".join(names) if names else "(none)"
            raise ProjectNotFound(f"no project {name!r}; projects: {listed}" if name
                                  else f"no project to use; projects: {listed}")
        return self.projects[found]

    # ------------------------------------------------------------ indexing

    async def reindex(self, project: Project, progress: Any = None) -> IndexReport:
        """One incremental run now (waits for a run in progress first)."""
        if project.task is not None and not project.task.done():
            await asyncio.shield(project.task)
        return await self._run(project, progress)

    async def _run(self, project: Project, progress: Any = None) -> IndexReport:
        async def track(done: int, total: int, message: str) -> None:
            project.done, project.total = done, total
            if progress is not None:
                await progress(done, total, message)

        await self.owners_ready()  # the project's record (and owner) before its rows
        async with project.lock:
            project.state = "indexing"
            try:
                report = await index_project(project.name, project.root, await self.index(),
                                             limits=self.limits.walk, progress=track)
            except BaseException as exc:
                cancelled = isinstance(exc, asyncio.CancelledError)
                project.state = ("ready" if project.report else "pending") if cancelled \
                    else "failed"
                project.error = f"{type(exc).__name__}: {exc}"
                raise
        project.report, project.state, project.error = report, "ready", ""
        if report.indexed or report.deleted:
            self._forget(project.name)
            if self.on_change is not None:
                await self.on_change(project, report)
        log.info("indexed %s: %d read, %d unchanged, %d removed in %.2fs", project.name,
                 report.indexed, report.unchanged, report.deleted, report.seconds)
        return report

    def _forget(self, name: str) -> None:
        for key in [k for k in self.derived if k[0] == name]:
            del self.derived[key]
        for key in [k for k in self._lines if k[0] == name]:
            del self._lines[key]

    def start(self) -> None:
        """Index every project in the background (once); called on the first request."""
        loop = asyncio.get_running_loop()
        for project in self.projects.values():
            if project.task is None:
                project.task = loop.create_task(self._background(project))
        if self.limits.watch_seconds and self._watcher is None:
            self._watcher = loop.create_task(self._watch(self.limits.watch_seconds))

    async def _watch(self, interval: float) -> None:
        """Watch mode: an incremental run of each project every ``interval`` seconds.

        Polling the file states (a stat per file, no reads) rather than OS file
        events: it needs no extra dependency, works on every file system, and a
        burst of edits costs one run, never one write per event.
        """
        while True:
            await anyio.sleep(interval)
            for project in self.projects.values():
                if project.task is not None and not project.task.done():
                    continue
                try:
                    await self._run(project)
                except Exception:  # noqa: BLE001 - reported by the status; try again later
                    log.exception("watching %s failed", project.name)

    async def _background(self, project: Project) -> None:
        try:
            await self._run(project)
        except Exception:  # noqa: BLE001 - kept in project.error, shown by the status
            log.exception("indexing %s failed", project.name)

    async def ready(self, project: Project, wait: float) -> str:
        """Wait up to ``wait`` seconds for the first index; a note when it is not done."""
        self.start()
        task = project.task
        if project.state != "ready" and task is not None and not task.done():
            with anyio.move_on_after(wait):
                await asyncio.shield(task)
        if project.state == "ready":
            return ""
        if project.state == "failed":
            return f"indexing failed ({project.error}); answers may be incomplete"
        return (f"indexing in progress ({project.done} of {project.total} files): answers "
                "are partial, ask again shortly")

    # ------------------------------------------------------------ files

    def lines(self, project: Project, path: str) -> list[str] | None:
        """The lines of a project file (cached per file until the next re-index)."""
        key = (project.name, path)
        found = self._lines.get(key)
        if found is not None:
            self._lines.move_to_end(key)
            return found
        text, _data, _reason = read_text(project.root, path, self.limits.walk.max_file_bytes)
        if text is None:
            return None
        found = text.splitlines()
        self._lines[key] = found
        if len(self._lines) > 256:
            self._lines.popitem(last=False)
        return found

    async def preload(self, project: Project, paths: list[str], budget: float) -> set[str]:
        """Read the files among ``paths`` not yet cached, in a worker thread, for at most
        ``budget`` seconds; the paths whose lines are then available.

        Answers that quote many files (snippets, reference lines) would otherwise block the
        event loop on cold reads and let one slow disk set the p99; what the budget leaves
        unread is answered without its quote (and says so).
        """
        missing = [p for p in dict.fromkeys(paths) if (project.name, p) not in self._lines]
        if missing:
            limit = self.limits.walk.max_file_bytes

            def read_some() -> dict[str, list[str] | None]:
                start = time.perf_counter()
                out: dict[str, list[str] | None] = {}
                for path in missing:
                    if time.perf_counter() - start > budget:
                        break
                    text = read_text(project.root, path, limit)[0]
                    out[path] = text.splitlines() if text is not None else None
                return out

            for path, lines in (await anyio.to_thread.run_sync(read_some)).items():
                if lines is not None:
                    self._lines[(project.name, path)] = lines
            while len(self._lines) > 256:
                self._lines.popitem(last=False)
        return {p for p in paths if (project.name, p) in self._lines}

    def cached_lines(self, project: Project, path: str) -> list[str] | None:
        """The lines of a file if :meth:`preload` (or an earlier read) cached them."""
        return self._lines.get((project.name, path))

    def read_reason(self, project: Project, path: str) -> str:
        return read_text(project.root, path, self.limits.walk.max_file_bytes)[2]
