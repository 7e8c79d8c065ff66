"""The standard request methods a server answers from its registrations.

Each built-in is a plain function of the :class:`~.registration.Registration`
it serves, the request's :class:`~.context.Context` and its (validated)
params; :data:`BUILTINS` maps methods to them.  The dispatcher looks a method
up here unless the application took it over (``Server.request_handler``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.errors import INVALID_PARAMS, METHOD_NOT_FOUND, McpError
from ..core.revisions import has_tasks, served_capabilities, served_tool
from .context import Context
from .pagination import paginate
from .registration import Registration

__all__ = ("BUILTINS", "QUIET_METHODS", "Builtin", "start_tool_task")

Params = dict[str, Any]
Result = dict[str, Any]
Builtin = Callable[[Registration, Context, Params], Awaitable[Result]]


async def tools_list(server: Registration, ctx: Context, params: Params) -> Result:
    page, cursor = paginate("tools", server.tools.definitions(), params, server.page_size)
    revision = ctx.protocol_version
    return _page({"tools": [served_tool(tool, revision) for tool in page]}, cursor)


async def tools_call(server: Registration, ctx: Context, params: Params) -> Result:
    name = params["name"]
    tool = server.tools.get(name)
    as_task = ctx.session.connection.is_task_request(ctx.request_id)
    if tool is not None and as_task:
        if tool.task_support == "forbidden":
            raise McpError(INVALID_PARAMS, f"Tool {name} cannot run as a task")
        return await start_tool_task(server, ctx, params, lambda task_ctx: server.tools.call(
            name, params.get("arguments"), task_ctx))
    if tool is not None and tool.task_support == "required":
        if not has_tasks(ctx.protocol_version):
            raise McpError(METHOD_NOT_FOUND, f"Tool {name} runs only as a task, which protocol "
                           f"revision {ctx.protocol_version} does not have")
        raise McpError(METHOD_NOT_FOUND, f"Tool {name} must be called as a task (params.task)")
    return await server.tools.call(name, params.get("arguments"), ctx)


async def start_tool_task(server: Registration, ctx: Context, params: Params,
                          work: Callable[[Context], Awaitable[Result]]) -> Result:
    """Run ``work`` as a task of the session and answer its ``CreateTaskResult``.

    ``work`` gets a context of its own, which names the task (its elicitation
    and sampling say which task asks) and outlives the request."""
    task_ctx = Context(ctx.server, ctx.session, ctx.request)
    limit = ctx.limit_task  # the security limiter's, when one runs: the run's limits
    record = await server.task_manager.begin(
        ctx.session, params.get("task") or {},
        (lambda: work(task_ctx)) if limit is None
        else (lambda: limit(task_ctx, lambda: work(task_ctx))))
    task_ctx.task_id = record["task"]["taskId"]
    return record


async def tasks_get(server: Registration, ctx: Context, params: Params) -> Result:
    return await server.task_manager.get(ctx.session, params)


async def tasks_result(server: Registration, ctx: Context, params: Params) -> Result:
    return await server.task_manager.result(ctx.session, params)


async def tasks_list(server: Registration, ctx: Context, params: Params) -> Result:
    return await server.task_manager.list(ctx.session, params)


async def tasks_cancel(server: Registration, ctx: Context, params: Params) -> Result:
    return await server.task_manager.cancel(ctx.session, params)


async def resources_list(server: Registration, ctx: Context, params: Params) -> Result:
    page, cursor = paginate("resources", server.resources.definitions(), params,
                            server.page_size)
    return _page({"resources": list(page)}, cursor)


async def templates_list(server: Registration, ctx: Context, params: Params) -> Result:
    page, cursor = paginate("templates", server.resources.template_definitions(), params,
                            server.page_size)
    return _page({"resourceTemplates": list(page)}, cursor)


async def resources_read(server: Registration, ctx: Context, params: Params) -> Result:
    return await server.resources.read(params["uri"], ctx)


async def subscribe(server: Registration, ctx: Context, params: Params) -> Result:
    ctx.session.state.setdefault("subscriptions", set()).add(params["uri"])
    session_id = ctx.transport.session_id
    if server.relay is not None and session_id is not None:
        await server.relay.set_subscribed(session_id, params["uri"], True)
    return {}


async def unsubscribe(server: Registration, ctx: Context, params: Params) -> Result:
    ctx.session.state.setdefault("subscriptions", set()).discard(params["uri"])
    session_id = ctx.transport.session_id
    if server.relay is not None and session_id is not None:
        await server.relay.set_subscribed(session_id, params["uri"], False)
    return {}


async def prompts_list(server: Registration, ctx: Context, params: Params) -> Result:
    page, cursor = paginate("prompts", server.prompts.definitions(), params, server.page_size)
    return _page({"prompts": list(page)}, cursor)


async def prompts_get(server: Registration, ctx: Context, params: Params) -> Result:
    return await server.prompts.render(params["name"], params.get("arguments"), ctx)


async def set_level(server: Registration, ctx: Context, params: Params) -> Result:
    ctx.session.state["log_level"] = params["level"]
    session_id = ctx.transport.session_id
    if server.relay is not None and session_id is not None:
        await server.relay.set_log_level(session_id, params["level"])
    return {}


async def discover(server: Registration, ctx: Context, params: Params) -> Result:
    result: dict[str, Any] = {"supportedVersions": list(server.modern_revisions),
                              "capabilities": served_capabilities(server.capabilities(),
                                                                  ctx.protocol_version)}
    if server.instructions:
        result["instructions"] = server.instructions
    return result


async def complete(server: Registration, ctx: Context, params: Params) -> Result:
    ref = params["ref"]
    ref_type = ref.get("type")
    key = ref.get("name") if ref_type == "ref/prompt" else ref.get("uri")
    argument = params["argument"]
    context_args = (params.get("context") or {}).get("arguments") or {}
    if ref_type == "ref/prompt" and server.prompts.get(str(key)) is None:
        raise McpError(INVALID_PARAMS, f"Unknown prompt: {key}")
    if ref_type == "ref/resource" and server.resources.find_template(str(key)) is None:
        raise McpError(INVALID_PARAMS, f"Unknown resource template: {key}")
    completer = server.completers.get((str(ref_type), str(key)))
    values: list[str] = []
    extra: dict[str, Any] = {}
    if completer is not None:
        outcome = completer(argument["name"], argument["value"], context_args)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if isinstance(outcome, dict):
            values = list(outcome.get("values", []))
            extra = {k: outcome[k] for k in ("total", "hasMore") if k in outcome}
        else:
            values = list(outcome or [])
    # The spec caps one answer at 100 values.
    completion: dict[str, Any] = {"values": values[:100], **extra}
    if len(values) > 100:
        completion.setdefault("total", len(values))
        completion["hasMore"] = True
    return {"completion": completion}


def _page(result: dict[str, Any], cursor: str | None) -> dict[str, Any]:
    if cursor is not None:
        result["nextCursor"] = cursor
    return result


#: built-in methods that run no application code: they send nothing before their answer
QUIET_METHODS = frozenset(("ping", "tools/list", "resources/list", "resources/templates/list",
                            "prompts/list", "server/discover"))

#: the standard request methods a server answers itself (subscriptions/listen aside:
#: the dispatcher answers it, as it holds the streams)
BUILTINS: dict[str, Builtin] = {
    "tools/list": tools_list,
    "tools/call": tools_call,
    "resources/list": resources_list,
    "resources/templates/list": templates_list,
    "resources/read": resources_read,
    "resources/subscribe": subscribe,
    "resources/unsubscribe": unsubscribe,
    "prompts/list": prompts_list,
    "prompts/get": prompts_get,
    "logging/setLevel": set_level,
    "completion/complete": complete,
    "tasks/get": tasks_get,
    "tasks/result": tasks_result,
    "tasks/list": tasks_list,
    "tasks/cancel": tasks_cancel,
    "server/discover": discover,
}
