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
upstream task: it creates it, follows it for as long as the task lives
(:class:`_Follower`: the outcome, the upstream's status and statusMessage,
its questions to the task's owner, the loss of the upstream's session), and
sends ``tasks/cancel`` when its own task is cancelled or gives up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import anyio

from ..client.session import Callback, ClientSession
from ..core.errors import INTERNAL_ERROR, INVALID_PARAMS, McpError, RequestTimeoutError
from ..core.revisions import has_tasks
from ..server.builtins import start_tool_task
from ..server.context import Context
from ..server.registration import Registration
from ..server.tasks import TASKS_CAPABILITY, TERMINAL, TaskCancelled
from .relay import Relay
from .router import HOP_PARAMS, Router, hop_free
from .upstreams import Upstream, UpstreamDown

__all__ = ("TASKS_CAPABILITY", "task_support", "start_task", "upstream_task_status")

#: seconds a tasks/cancel sent upstream for a cancelled task may take
_CANCEL_WAIT = 5.0
#: bounds of the interval (seconds) at which an upstream task is polled: its
#: pollInterval, but never so often that polling is the load, nor so seldom
#: that the gateway task's status lags the upstream's by much
_POLL_MIN = 0.1
_POLL_MAX = 5.0
#: seconds (at most; a tenth of the ttl for short ones) before its ttl ends at
#: which a still unfinished upstream task is given up and cancelled
_TTL_MARGIN = 5.0


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
    """Run the call as a task of the upstream's, follow it, and return its outcome."""
    ttl_ms = await _own_ttl(ctx, params)
    started = time.monotonic()
    follower = _Follower(ctx, upstream)
    forwarded = {k: v for k, v in params.items() if k not in HOP_PARAMS}
    forwarded.update(name=tool, task={"ttl": ttl_ms} if ttl_ms is not None else {})
    created = await upstream.request("tools/call", forwarded, handlers=follower.handlers)
    # Nothing may wait between here and follow()'s tasks/result: an upstream that
    # asks its user at once must find a call of this task's owner in flight.
    task = created.get("task")
    task_id = task.get("taskId") if isinstance(task, dict) else None
    if not isinstance(task_id, str) or not isinstance(task, dict):
        raise McpError(INVALID_PARAMS, f"upstream {upstream.name} did not start a task")
    lifetimes = [t / 1000 for t in (ttl_ms, task.get("ttl"))
                 if isinstance(t, (int, float)) and not isinstance(t, bool) and t >= 0]
    # given up a little before the ttl ends: a record past its ttl may be gone
    # upstream, and a tasks/cancel naming it then would stop nothing
    life = min(lifetimes) if lifetimes else math.inf
    deadline = started + life - min(_TTL_MARGIN, life / 10)
    try:
        result = await follower.follow(task_id, task, deadline)
    except BaseException:
        if follower.same_session():
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CANCEL_WAIT):
                try:
                    await upstream.request("tasks/cancel", {"taskId": task_id})
                except McpError:
                    pass  # it ended meanwhile, or the upstream is gone: nothing to cancel
        raise
    return dict(router.publish_contents(upstream.name, hop_free(result)))


async def _own_ttl(ctx: Context, params: dict[str, Any]) -> int | None:
    """The gateway task's ttl (ms), as its manager granted it."""
    if ctx.task_id is not None:
        try:
            record = await ctx.server.task_manager.get(ctx.session, {"taskId": ctx.task_id})
            granted = record.get("ttl")
            return granted if isinstance(granted, int) else None
        except McpError:
            pass
    requested = params.get("task")
    ttl = requested.get("ttl") if isinstance(requested, dict) else None
    manager = ctx.server.task_manager
    return min(ttl, manager.max_ttl_ms) if isinstance(ttl, int) and ttl >= 0 \
        else manager.default_ttl_ms


def upstream_task_status(upstream: Upstream, params: dict[str, Any]) -> bool:
    """An upstream's ``notifications/tasks/status``: wake the gateway task following it
    (it polls at once).  Whether one follows that task.  Optional: polling alone works."""
    task_id = params.get("taskId")
    follower = _FOLLOWERS.get((upstream, task_id)) if isinstance(task_id, str) else None
    if follower is None:
        return False
    follower.observe(params)
    follower.wake.set()
    return True


#: the followers of running upstream tasks, by (upstream, upstream task id)
_FOLLOWERS: dict[tuple[Upstream, str], _Follower] = {}


class _Follower:
    """Follows one upstream task for the gateway task that drives it.

    ``tasks/result`` stays in flight for the task's whole life, without the
    upstream's per-request timeout (a task may run for hours): it is bounded
    by the task's ttl instead, and it is what an upstream's elicitation or
    sampling request made meanwhile is attributed to (a legacy connection
    attributes such a request to the calls in flight, here all of this
    task's owner).  Beside it ``tasks/get`` polls at the upstream's
    ``pollInterval`` (kept within ``_POLL_MIN``..``_POLL_MAX``) and mirrors
    the upstream's status and ``statusMessage`` into the gateway task.
    A lost upstream session fails the task at once: the upstream task died
    with it, or names nothing on the new session.
    """

    def __init__(self, ctx: Context, upstream: Upstream) -> None:
        self.ctx = ctx
        self.upstream = upstream
        self.session = _session_of(upstream)
        relay = Relay(ctx, upstream.name)
        base = relay.handlers()
        #: downstream requests (elicitation, sampling) of this task still unanswered
        self.asking = 0
        self.handlers = replace(base, sampling=self._counted(base.sampling),
                                elicitation=self._counted(base.elicitation))
        self.wake = anyio.Event()
        self.interval = _POLL_MIN
        self.upstream_status: tuple[str, str | None] = ("working", None)
        self._shown: tuple[str, str | None] = ("working", None)
        self._failure: BaseException | None = None

    def _counted(self, callback: Callback | None) -> Callback | None:
        if callback is None:
            return None
        ask = callback

        async def counted(params: dict[str, Any]) -> dict[str, Any]:
            self.asking += 1
            self._shown = ("input_required", None)  # what the task context shows meanwhile
            try:
                return await ask(params)
            finally:
                self.asking -= 1
                self._shown = ("working", None)  # what the task context left shown
                self._show()
        return counted

    def same_session(self) -> bool:
        """Whether the upstream's session is still the one the task started on."""
        return self.session is not None and _session_of(self.upstream) is self.session

    async def follow(self, task_id: str, task: dict[str, Any], deadline: float
                     ) -> dict[str, Any]:
        self.task_id = task_id
        self.observe(task)
        key = (self.upstream, task_id)
        _FOLLOWERS[key] = self
        # its questions come here by the task they name, whoever else's calls are in flight
        session = self.session
        unfollow = session.follow_task(task_id, self.handlers) \
            if isinstance(session, ClientSession) else None
        result: dict[str, Any] | None = None
        try:
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())) as timer:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._poll, tg.cancel_scope)
                    try:
                        result = await self.upstream.request(
                            "tasks/result", {"taskId": task_id}, handlers=self.handlers,
                            timeout=math.inf)
                    except McpError as exc:
                        self._failure = await self._outcome_of(exc)
                    tg.cancel_scope.cancel()
        finally:
            _FOLLOWERS.pop(key, None)
            if unfollow is not None:
                unfollow()
        if result is not None:
            return result
        if self._failure is not None:
            raise self._failure
        assert timer.cancelled_caught  # no result and no failure: the ttl ran out
        raise McpError(INTERNAL_ERROR, f"upstream {self.upstream.name} task {task_id} did "
                       "not finish within the task's ttl", {"upstream": self.upstream.name})

    async def _outcome_of(self, exc: McpError) -> BaseException:
        """What ``tasks/result``'s error means for the gateway task."""
        if isinstance(exc, UpstreamDown) or not self.same_session():
            return UpstreamDown(self.upstream.name, f"its session was lost while task "
                                f"{self.task_id} ran ({exc.message})")
        if self.upstream_status[0] != "cancelled":
            try:  # cancelled upstream, or failed? the error alone does not say
                self.observe(await self.upstream.request("tasks/get",
                                                         {"taskId": self.task_id}))
            except McpError:
                pass
        if self.upstream_status[0] == "cancelled":
            return TaskCancelled(self.upstream_status[1] or "cancelled upstream")
        return exc

    async def _poll(self, scope: anyio.CancelScope) -> None:
        while True:
            with anyio.move_on_after(self.interval):
                await self.wake.wait()
            self.wake = anyio.Event()
            if not self.same_session():
                self._failure = UpstreamDown(self.upstream.name, "its session was lost "
                                             f"while task {self.task_id} ran")
                scope.cancel()
                return
            try:
                task = await self.upstream.request("tasks/get", {"taskId": self.task_id},
                                                   handlers=self.handlers)
            except RequestTimeoutError:
                continue  # a slow answer; a stuck upstream is restarted by its supervisor
            except McpError as exc:
                if not self.same_session():
                    self._failure = UpstreamDown(self.upstream.name, "its session was lost "
                                                 f"while task {self.task_id} ran")
                    scope.cancel()
                    return
                if isinstance(exc, UpstreamDown):
                    continue  # its breaker is open (others' calls failed): poll later
                if exc.code == INVALID_PARAMS:  # the upstream no longer knows the task
                    self._failure = McpError(INTERNAL_ERROR, f"upstream {self.upstream.name} "
                                             f"lost task {self.task_id}: {exc.message}")
                    scope.cancel()
                    return
                continue
            self.observe(task)

    def observe(self, task: dict[str, Any]) -> None:
        """Take in the upstream task's state (a ``Task`` object, polled or notified)."""
        status, message = task.get("status"), task.get("statusMessage")
        if status not in ("working", "input_required", *TERMINAL):
            return
        self.upstream_status = (status, message if isinstance(message, str) else None)
        interval = task.get("pollInterval")
        if isinstance(interval, (int, float)) and not isinstance(interval, bool):
            self.interval = min(_POLL_MAX, max(_POLL_MIN, interval / 1000))
        self._show()

    def _show(self) -> None:
        """Mirror the upstream's status into the gateway task (terminal states are
        the outcome's: the gateway task ends when ``tasks/result`` answers)."""
        status, message = self.upstream_status
        if status in TERMINAL:
            return
        if self.asking:
            status = "input_required"  # a question of this task's waits downstream
        shown = (status, message)
        if shown != self._shown and self.ctx.task_id is not None:
            self._shown = shown
            self.ctx.server.task_manager.set_status(self.ctx.session, self.ctx.task_id,
                                                    status, message)


def _session_of(upstream: Upstream) -> object | None:
    """The upstream client's current session (None: not connected)."""
    try:
        return upstream.client.session
    except McpError:
        return None
