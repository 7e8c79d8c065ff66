"""The security middleware on a real Server over the memory transport."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mobius_rpc.core.errors import INVALID_PARAMS, METHOD_NOT_FOUND, RESOURCE_NOT_FOUND, McpError
from mobius_rpc.core.events import RequestReceived
from mobius_rpc.security.admin import add_rule
from mobius_rpc.security.middleware import UNAUTHENTICATED, Ownership, SecurityMiddleware
from mobius_rpc.security.policy import make_rule
from mobius_rpc.security.principal import ANONYMOUS, AuthMethod, Principal, Role
from mobius_rpc.security.store import AuditQuery, MemorySecurityStore, SecurityStore
from mobius_rpc.server.context import Context
from tests.conftest import connect
from tests.security.conftest import audit_rows
from tests.security.support import Caller, build_server, make_world, secured

pytestmark = pytest.mark.anyio


async def error_of(call: Any) -> McpError:
    with pytest.raises(McpError) as info:
        await call
    return info.value


async def names(client: Any) -> set[str]:
    return {t["name"] for t in (await client.list_tools())["tools"]}


async def test_viewer_cannot_call_a_tool_a_rule_reserves_for_members(
        sec_store: SecurityStore) -> None:
    store = sec_store
    people = await make_world(store)
    await add_rule(store, make_rule("A", "deny", "role:viewer", "tools", "members_only"))
    caller = Caller(people["viewer"])
    server = build_server()
    secured(server, store, caller)
    async with connect(server) as client:
        # viewers see read-only tools only, and not the reserved one
        assert await names(client) == {"lookup", "b_report"}
        refused = await error_of(client.call_tool("members_only", {}))
        unknown = await error_of(client.call_tool("no_such_tool", {}))
        assert (refused.code, refused.message) == (INVALID_PARAMS, "Unknown tool: members_only")
        assert unknown.code == INVALID_PARAMS and unknown.message == "Unknown tool: no_such_tool"
        assert refused.data == {"name": "members_only"}
        # unannotated and destructive tools are refused the same way
        for tool in ("delete_all", "plain", "append_note"):
            assert (await error_of(client.call_tool(tool, {}))).code == INVALID_PARAMS
        assert (await client.call_tool("lookup", {"key": "k"}))["isError"] is False
        caller.principal = people["member"]
        assert "members_only" in await names(client)
        result = await client.call_tool("members_only", {})
        assert result["content"][0]["text"] == "for members"


async def test_an_organization_sees_and_calls_none_of_another_organizations_tools(
        sec_store: SecurityStore) -> None:
    store = sec_store
    people = await make_world(store)
    owners = Ownership()
    owners.assign("tools", "b_report", "B")
    caller = Caller(people["owner"])
    server = build_server()
    secured(server, store, caller, owners=owners)
    async with connect(server) as client:
        assert "b_report" not in await names(client)  # A's owner may do everything in A
        refused = await error_of(client.call_tool("b_report", {}))
        assert refused.message == "Unknown tool: b_report"
        caller.principal = people["bowner"]
        assert "b_report" in await names(client)
        assert (await client.call_tool("b_report", {}))["isError"] is False
        # a principal of an organization the store does not know gets nothing
        caller.principal = Principal("u-owner", "C", frozenset({Role.OWNER}),
                                     method=AuthMethod.API_TOKEN)
        assert await names(client) == set()
        await error_of(client.call_tool("lookup", {"key": "x"}))
    rec = [r for r in (await audit_rows(store))
           if r.target == "b_report" and r.outcome == "denied"]
    assert rec and rec[0].organization == "A" and "another organization" in rec[0].detail["reason"]


@pytest.mark.parametrize("revision,code", [("2025-11-25", RESOURCE_NOT_FOUND),
                                           ("2026-07-28", INVALID_PARAMS)])
async def test_resource_refusals_are_the_eras_not_found(revision: str, code: int,
        sec_store: SecurityStore) -> None:
    store = sec_store
    people = await make_world(store)
    await add_rule(store, make_rule("A", "deny", "*", "resources", "notes://secret/*"))
    server = build_server()
    secured(server, store, Caller(people["member"]))
    async with connect(server, revision=revision) as client:
        listed = {r["uri"] for r in (await client.request("resources/list", {}))["resources"]}
        assert listed == {"notes://public/readme"}
        refused = await error_of(client.read_resource("notes://secret/plans"))
        missing = await error_of(client.read_resource("unknown://thing"))
        assert (refused.code, refused.message) == (code, "Resource not found: "
                                                         "notes://secret/plans")
        assert missing.code == code and refused.data == {"uri": "notes://secret/plans"}
        # the template reads what the rules allow
        assert (await client.read_resource("notes://x"))["contents"][0]["text"] == "note x"
        if revision == "2025-11-25":
            refused = await error_of(client.request("resources/subscribe",
                                                    {"uri": "notes://secret/plans"}))
            assert refused.code == code
            assert await client.request("resources/subscribe", {"uri": "notes://x"}) == {}


async def test_prompts_and_completions_are_checked_and_filtered(sec_store: SecurityStore) -> None:
    store = sec_store
    people = await make_world(store)
    await add_rule(store, make_rule("A", "deny", "role:member", "prompts", "admin_*"))
    await add_rule(store, make_rule("A", "deny", "role:member", "resources", "notes://secret-*",
                                    ("read",)))
    server = build_server()
    secured(server, store, Caller(people["member"]))
    async with connect(server) as client:
        prompts = {p["name"] for p in (await client.request("prompts/list", {}))["prompts"]}
        assert prompts == {"greet"}
        refused = await error_of(client.get_prompt("admin_prompt"))
        assert (refused.code, refused.message) == (INVALID_PARAMS, "Unknown prompt: admin_prompt")
        assert (await client.get_prompt("greet", {"who": "x"}))["messages"]
        done = await client.complete({"type": "ref/resource", "uri": "notes://{name}"},
                                     "name", "")
        assert done["completion"]["values"] == ["public-a", "public-b"]
        done = await client.complete({"type": "ref/prompt", "name": "greet"}, "who", "a")
        assert done["completion"]["values"] == ["ada", "alan"]
        refused = await error_of(client.complete({"type": "ref/prompt", "name": "admin_prompt"},
                                                 "x", ""))
        assert refused.message == "Unknown prompt: admin_prompt"


async def test_without_a_principal_only_the_handshake_passes(sec_store: SecurityStore) -> None:
    store = sec_store
    await make_world(store)
    server = build_server()
    secured(server, store, Caller(None))
    async with connect(server) as client:
        await client.request("ping", {})
        for method, params in (("tools/list", {}), ("tools/call", {"name": "lookup"}),
                               ("prompts/list", {}), ("resources/read", {"uri": "notes://x"})):
            err = await error_of(client.request(method, params))
            assert err.code == UNAUTHENTICATED, method
    denied = [r for r in (await audit_rows(store)) if r.outcome == "denied"]
    assert [r.method for r in denied] == ["tools/list", "tools/call", "prompts/list",
                                          "resources/read"]
    assert all(r.user is None and r.error_code == UNAUTHENTICATED for r in denied)


async def test_a_configured_default_principal_stands_in_for_a_missing_one(
        sec_store: SecurityStore) -> None:
    store = sec_store
    people = await make_world(store)
    server = build_server()
    secured(server, store, Caller(None), default_principal=people["viewer"])
    async with connect(server) as client:
        assert await names(client) == {"lookup", "b_report"}
    # the anonymous principal acts in no organization: it may do nothing
    server = build_server()
    secured(server, store, Caller(None), default_principal=ANONYMOUS)
    async with connect(server) as client:
        assert await names(client) == set()


class _Session:
    """What the middleware needs of a session: its state."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}


async def test_methods_it_does_not_know_are_refused_as_unknown_and_audited(
        sec_store: SecurityStore) -> None:
    # compliant clients send only standard methods (all of which the middleware
    # knows), so a method added later is driven through the middleware directly
    from mobius_rpc.core.events import RequestReceived
    from mobius_rpc.core.types import memory_context
    from mobius_rpc.security.audit import AuditLog
    from mobius_rpc.security.middleware import SecurityMiddleware
    from mobius_rpc.server.context import Context

    store = sec_store
    people = await make_world(store)
    server = build_server()
    request = RequestReceived(7, "future/thing", {"a": 1},
                              transport=memory_context().with_principal(people["owner"]))

    async def answer(ctx: Any) -> dict[str, Any]:
        return {"done": True}

    ctx = Context(server, _Session(), request)  # type: ignore[arg-type]
    strict = SecurityMiddleware(store, audit=AuditLog(store))
    err = await error_of(strict(ctx, answer))
    assert (err.code, err.message) == (METHOD_NOT_FOUND, "Method not found: future/thing")
    last = (await audit_rows(store))[-1]
    assert (last.method, last.outcome, last.request_id) == ("future/thing", "denied", "7")
    lenient = SecurityMiddleware(store, extra_methods={"future/thing"})
    assert await lenient(ctx, answer) == {"done": True}


async def test_every_use_is_audited_with_a_digest_never_the_arguments(
        sec_store: SecurityStore) -> None:
    store = sec_store
    people = await make_world(store)
    server = build_server()
    secured(server, store, Caller(people["member"]))
    async with connect(server) as client:
        await client.call_tool("lookup", {"key": "hunter2-secret"})
        await client.read_resource("notes://public/readme")
        await client.get_prompt("greet", {"who": "x"})
        await client.complete({"type": "ref/prompt", "name": "greet"}, "who", "a")
        await client.list_tools()
    records = [r for r in (await audit_rows(store)) if not r.method.startswith("admin/")]
    assert [r.method for r in records] == ["tools/call", "resources/read", "prompts/get",
                                           "completion/complete"]
    call = records[0]
    assert (call.user, call.organization, call.target, call.outcome) == (
        "u-member", "A", "lookup", "ok")
    assert call.session and call.request_id is not None and call.duration_ms is not None
    assert call.credential == "tok-u-member" and call.auth_method == "api-token"
    assert "hunter2" not in repr(await audit_rows(store))
    from mobius_rpc.security.audit import digest
    assert call.arguments_digest == digest({"key": "hunter2-secret"})
    assert await store.list_audit(AuditQuery(method="prompts/get")) == [records[2]]


async def test_a_modern_listen_keeps_only_the_subscriptions_the_caller_may_have(
        sec_store: SecurityStore) -> None:
    store = sec_store
    people = await make_world(store)
    await add_rule(store, make_rule("A", "deny", "*", "resources", "notes://secret/*"))
    server = build_server()
    secured(server, store, Caller(people["member"]))
    async with connect(server, revision="2026-07-28") as client, \
            anyio.create_task_group() as tg:
        async def listen() -> None:
            await client.request("subscriptions/listen", {"notifications": {
                "resourceSubscriptions": ["notes://secret/plans", "notes://public/readme"]}},
                timeout=30)

        tg.start_soon(listen)
        with anyio.fail_after(5):
            while not client.notifications:
                await anyio.sleep(0.01)
        method, params = client.notifications[0]
        assert method == "notifications/subscriptions/acknowledged"
        assert params["notifications"]["resourceSubscriptions"] == ["notes://public/readme"]
        tg.cancel_scope.cancel()
    listen_record = [r for r in (await audit_rows(store)) if r.method == "subscriptions/listen"]
    assert listen_record[0].detail == {"refused": 1}


async def test_a_cancelled_call_is_still_recorded(sec_store: SecurityStore) -> None:
    store = sec_store
    people = await make_world(store)
    server = build_server()

    @server.tool()
    async def forever() -> str:
        await anyio.sleep_forever()
        return "never"  # pragma: no cover

    secured(server, store, Caller(people["member"]))
    async with connect(server) as client:
        with pytest.raises(McpError):
            await client.call_tool("forever", {}, timeout=0.1)
        with anyio.fail_after(5):
            while not any(r.outcome == "cancelled" for r in (await audit_rows(store))):
                await anyio.sleep(0.01)
    record = next(r for r in (await audit_rows(store)) if r.outcome == "cancelled")
    assert (record.method, record.target) == ("tools/call", "forever")


def test_the_policy_does_not_make_plain_requests_cancellable() -> None:
    """A stateless request gets the transport's cancel scope only when its handling
    may send before the answer; the security middleware never does, so a plain tool
    stays on the cheap path behind it, while a tool that gets a Context, or another
    middleware, still makes the request one that may send early."""
    server = build_server()

    @server.tool()
    async def chatty(ctx: Context) -> str:
        return "sent progress first"

    def request(method: str, **params: Any) -> RequestReceived:
        return RequestReceived(1, method, params)

    server.use(SecurityMiddleware(MemorySecurityStore()))
    dispatcher = server.dispatcher
    assert dispatcher.may_send_early(request("tools/call", name="plain")) is False
    assert dispatcher.may_send_early(request("tools/call", name="chatty")) is True
    assert dispatcher.may_send_early(request("prompts/get", name="greet")) is True

    async def passing(ctx: Context, call_next: Any) -> dict[str, Any]:
        return await call_next(ctx)  # a middleware that says nothing: it may send

    server.use(passing)
    assert dispatcher.may_send_early(request("tools/call", name="plain")) is True
