"""What the security tests share: a world of organizations, a server, and a way
to say who is calling.

The memory transport has no authenticator, so :func:`as_caller` is a
middleware installed *before* the security middleware that puts a principal
into the request's transport context, exactly where an authenticating
transport leaves it (``ctx.transport.principal``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from mobius_rpc.core.types import memory_context
from mobius_rpc.security.admin import create_organization
from mobius_rpc.security.audit import AuditLog
from mobius_rpc.security.middleware import SecurityMiddleware
from mobius_rpc.security.principal import AuthMethod, Principal, Role
from mobius_rpc.security.store import Membership, SecurityStore, User
from mobius_rpc.server.app import Server
from mobius_rpc.server.context import Context

Next = Callable[[Context], Awaitable[dict[str, Any]]]


class Caller:
    """A middleware that makes every request come from ``principal`` (None: nobody)."""

    def __init__(self, principal: Principal | None = None) -> None:
        self.principal = principal

    async def __call__(self, ctx: Context, call_next: Next) -> dict[str, Any]:
        if self.principal is not None:
            transport = ctx.request.transport or memory_context()
            ctx.request = dataclasses.replace(
                ctx.request, transport=transport.with_principal(self.principal))
        return await call_next(ctx)


def principal(user: str, org: str, *roles: Role, scopes: frozenset[str] = frozenset()
              ) -> Principal:
    return Principal(user, org, frozenset(roles), scopes, AuthMethod.API_TOKEN, f"tok-{user}")


def build_server() -> Server:
    """Tools of every annotation shape, two resources, a template, two prompts."""
    server = Server("secured", "1.0")

    @server.tool(annotations={"readOnlyHint": True})
    def lookup(key: str) -> str:
        return f"value of {key}"

    @server.tool(annotations={"readOnlyHint": False, "destructiveHint": True})
    def delete_all() -> str:
        return "deleted"

    @server.tool(annotations={"readOnlyHint": False, "destructiveHint": False})
    def append_note(text: str) -> str:
        return f"appended {text}"

    @server.tool()
    def plain(x: int = 0) -> int:
        return x + 1

    @server.tool(name="b_report", annotations={"readOnlyHint": True})
    def b_report() -> str:
        return "org B's report"

    @server.tool(name="members_only")
    def members_only() -> str:
        return "for members"

    @server.resource("notes://public/readme")
    def readme() -> str:
        return "public"

    @server.resource("notes://secret/plans")
    def plans() -> str:
        return "secret"

    @server.resource("notes://{name}")
    def note(name: str) -> str:
        return f"note {name}"

    @server.prompt()
    def greet(who: str) -> str:
        return f"hello {who}"

    @server.prompt()
    def admin_prompt() -> str:
        return "for admins"

    @server.completion("ref/resource", "notes://{name}")
    def complete_note(argument: str, value: str, context: dict[str, str]) -> list[str]:
        return [n for n in ("public-a", "public-b", "secret-x") if n.startswith(value)]

    @server.completion("ref/prompt", "greet")
    def complete_greet(argument: str, value: str, context: dict[str, str]) -> list[str]:
        return ["ada", "alan"]

    return server


async def make_world(store: SecurityStore) -> dict[str, Principal]:
    """Organizations A and B (default rules), one user per role in A, one owner of B."""
    users = {name: User(f"u-{name}", name, 0.0) for name in
             ("owner", "admin", "member", "viewer", "bowner")}
    for user in users.values():
        await store.create_user(user)
    await create_organization(store, "Org A", owner_user_id="u-owner", org_id="A", now=0.0)
    await create_organization(store, "Org B", owner_user_id="u-bowner", org_id="B", now=0.0)
    for name, role in (("admin", Role.ADMIN), ("member", Role.MEMBER),
                       ("viewer", Role.VIEWER)):
        await store.put_membership(Membership("A", f"u-{name}", role.value, 0.0))
    return {"owner": principal("u-owner", "A", Role.OWNER),
            "admin": principal("u-admin", "A", Role.ADMIN),
            "member": principal("u-member", "A", Role.MEMBER),
            "viewer": principal("u-viewer", "A", Role.VIEWER),
            "bowner": principal("u-bowner", "B", Role.OWNER)}


def secured(server: Server, store: SecurityStore, caller: Caller,
            **options: Any) -> SecurityMiddleware:
    """Install ``caller`` then the security middleware on ``server``."""
    options.setdefault("audit", AuditLog(store))
    middleware = SecurityMiddleware(store, **options)
    server.use(caller)
    server.use(middleware)
    return middleware
