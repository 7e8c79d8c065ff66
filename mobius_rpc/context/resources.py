"""The context engine's resources, their completion, and the notifications of change.

``context://projects`` lists the projects and their index state;
``context://projects/{project}/status`` and ``/summary`` are JSON;
``/files/{+path}`` is a file with its language's MIME type (capped at the read
limit) and ``/lines/{start}/{end}/{+path}`` a range of one, for large files.
Paths complete from the index.  Nothing outside a project's root resolves:
such a URI is "not found", like a file that is not there, and so is every URI
of a project the caller may not see (:mod:`.access`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from ..server.app import Server
from ..server.resources import ResourceNotFound
from .analysis import summarize
from .engine import ContextEngine, Project
from .languages.detect import mime_type
from .queries import BadRequest, read_file
from .status import bounded, status_of

__all__ = ("register_resources",)


def register_resources(server: Server, engine: ContextEngine) -> None:
    def _json(value: Any) -> dict[str, Any]:
        data = value if isinstance(value, list) else dataclasses.asdict(value)
        return {"text": orjson.dumps(data).decode(), "mimeType": "application/json"}

    async def _known(name: str) -> Project:
        # a project the caller may not see is "not found", like one that is not there
        found = await engine.access.find(name) if name else None
        if found is None:
            raise ResourceNotFound(name)
        return engine.projects[found]

    @server.resource("context://projects", name="projects", mime_type="application/json")
    async def projects() -> dict[str, Any]:
        """The projects the caller may use and the state of their index."""
        engine.start()
        return _json([dataclasses.asdict(status_of(engine.projects[n]))
                      for n in await engine.access.visible()])

    @server.resource("context://projects/{project}/status", name="index-status",
                     mime_type="application/json")
    async def status(project: str) -> dict[str, Any]:
        """How far indexing got, what was skipped and which languages are text-only."""
        engine.start()
        return _json(status_of(await _known(project)))

    @server.resource("context://projects/{project}/summary", name="project-summary",
                     mime_type="application/json")
    async def project_summary(project: str) -> dict[str, Any]:
        """The project summary (as the summary tool gives it)."""
        chosen = await _known(project)
        note = await engine.ready(chosen, 2.0)
        return _json(await bounded(engine, "summary",
                                    lambda: summarize(engine, chosen, 2000, note)))

    @server.resource("context://projects/{project}/files/{+path}", name="file")
    async def file(project: str, path: str) -> dict[str, Any]:
        """A project file, capped at the read limit (the read tool pages through lines)."""
        chosen = await _known(project)
        try:
            piece = read_file(engine, chosen, path)
        except BadRequest:
            raise ResourceNotFound(path) from None
        return {"text": piece.text, "mimeType": mime_type(piece.language)}

    @server.resource("context://projects/{project}/lines/{start}/{end}/{+path}",
                     name="file-lines")
    async def lines(project: str, start: str, end: str, path: str) -> dict[str, Any]:
        """Lines ``start`` to ``end`` (1-based, inclusive) of a project file."""
        chosen = await _known(project)
        if not (start.isdigit() and end.isdigit()) or int(start) < 1:
            raise ResourceNotFound(f"{start}-{end}")
        try:
            piece = read_file(engine, chosen, path, int(start), int(end))
        except BadRequest:
            raise ResourceNotFound(path) from None
        return {"text": piece.text, "mimeType": mime_type(piece.language)}

    @server.completion("ref/resource", "context://projects/{project}/files/{+path}")
    async def complete_path(argument: str, value: str, context: dict[str, str]
                            ) -> dict[str, Any]:
        if argument == "project":
            names = await engine.access.visible()
            return {"values": [n for n in names if n.startswith(value)][:100]}
        # no project named: the caller's first; one they may not see completes to nothing
        chosen = await engine.access.find(context.get("project") or None)
        if chosen is None:
            return {"values": []}
        rows = await (await engine.index()).files(chosen)
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
