"""Task-augmented calls of upstream tools (2025-11-25 tasks), run as the gateway's tasks.

A downstream ``tools/call`` with ``params.task`` for an upstream tool gets a
``CreateTaskResult`` from the gateway's own server: the forwarding runs in
the server's :class:`~..server.tasks.TaskManager`, exactly as a local tool
run as a task, so ``tasks/get``, ``tasks/result``, ``tasks/list`` and
``tasks/cancel`` are the server's built-ins and a task belongs to the
downstream session that created it.  Cancelling the task cancels the
forwarding, which sends ``notifications/cancelled`` upstream.

Which tools may run as tasks is what the upstream declares
(``execution.taskSupport``, listed as the upstream gives it): ``forbidden``
(or nothing) is refused as for a local tool.  Why gateway-side tasks and
not the upstream's own: the downstream polls the server that holds the
task, with no upstream task ids to map or expire, no per-upstream session
sharing between downstream callers, and a restarted upstream fails the task
instead of leaving an id that names nothing.  An ``optional`` tool is
therefore called plainly inside the gateway's task (relayed like any call).
A ``required`` one refuses plain calls, so the gateway's task drives an
upstream task: it creates it, waits on ``tasks/result``, and sends
``tasks/cancel`` when its own task is cancelled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..core.errors import INVALID_PARAMS, McpError
from ..core.revisions import has_tasks
from ..server.builtins import start_tool_task
from ..server.context import Context
from ..server.registration import Registration
from ..server.tasks import TASKS_CAPABILITY
from .relay import Relay
from .router import HOP_PARAMS, Router, hop_free
from .upstreams import Upstream

__all__ = ("TASKS_CAPABILITY", "task_support", "start_task")

#: seconds a tasks/cancel sent upstream for a cancelled task may take
_CANCEL_WAIT = 5.0


def task_support(upstream: Upstream, tool: str) -> str:
    """The ``execution.taskSupport`` an upstream declares for one of its tools."""
    for definition in upstream.lists["tools"]:
        if definition.get("name") == tool:
            execution = definition.get("execution")
            support = execution.get("taskSupport") if isinstance(execution, dict) else None
            return support if support in ("optional", "required") else "forbidden"
    return "forbidden"


async def start_task(server: Registration, ctx: Context, public: str, upstream: Upstream,
                     tool: str, params: dict[str, Any], router: Router,
                     forward: Callable[[Context], Awaitable[dict[str, Any]]]
                     ) -> dict[str, Any]:
    """Answer a task-augmented call of upstream ``tool`` with a CreateTaskResult.

    ``forward(ctx)`` is the gateway's plain forwarding of the call; a tool that
    requires tasks upstream is forwarded as an upstream task instead.
    """
    support = task_support(upstream, tool)
    if support == "forbidden":
        raise McpError(INVALID_PARAMS, f"Tool {public} cannot run as a task")
    if support == "required" and has_tasks(upstream.client.protocol_version):
        async def run(task_ctx: Context) -> dict[str, Any]:
            return await _upstream_task(task_ctx, upstream, tool, params, router)
        return await start_tool_task(server, ctx, params, run)
    return await start_tool_task(server, ctx, params, forward)


async def _upstream_task(ctx: Context, upstream: Upstream, tool: str, params: dict[str, Any],
                         router: Router) -> dict[str, Any]:
    """Run the call as a task of the upstream's and wait for its outcome."""
    relay = Relay(ctx, upstream.name)
    forwarded = {k: v for k, v in params.items() if k not in HOP_PARAMS}
    forwarded.update(name=tool, task={})
    created = await upstream.request("tools/call", forwarded, handlers=relay.handlers())
    task = created.get("task")
    task_id = task.get("taskId") if isinstance(task, dict) else None
    if not isinstance(task_id, str):
        raise McpError(INVALID_PARAMS, f"upstream {upstream.name} did not start a task")
    try:
        result = await upstream.request("tasks/result", {"taskId": task_id},
                                        handlers=relay.handlers())
    except BaseException:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CANCEL_WAIT):
            try:
                await upstream.request("tasks/cancel", {"taskId": task_id})
            except McpError:
                pass  # it ended meanwhile, or the upstream is gone: nothing to cancel
        raise
    return dict(router.publish_contents(upstream.name, hop_free(result)))
