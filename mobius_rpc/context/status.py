"""Two things every part of the surface shares: an index's status, and the time limit.

:func:`bounded` runs one operation under the engine's time limit, whose expiry
cancels the work itself (store reads, re-ranking, file reads) rather than only
the reply, and turns the engine's own errors into tool errors the model can act on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ..server.tools import ToolError
from .answers import IndexStatus
from .engine import ContextEngine, Project, ProjectNotFound
from .queries import BadRequest

__all__ = ("bounded", "status_of")

T = TypeVar("T")


def status_of(project: Project) -> IndexStatus:
    report = project.report
    return IndexStatus(project.name, str(project.root), project.state, project.done,
                       project.total, (report.indexed + report.touched + report.unchanged)
                       if report else 0, len(report.skipped) if report else 0,
                       dict(report.notes) if report else {},
                       round(report.seconds, 3) if report else 0.0, project.error)


async def bounded(engine: ContextEngine, what: str, work: Callable[[], Awaitable[T]]) -> T:
    seconds = engine.limits.operation_seconds
    try:
        with anyio.fail_after(seconds):
            return await work()
    except TimeoutError:
        raise ToolError(f"{what} stopped after its limit of {seconds:g} s: narrow it "
                        "(a filter, a path, a smaller limit)") from None
    except (BadRequest, ProjectNotFound) as exc:
        raise ToolError(str(exc)) from None
