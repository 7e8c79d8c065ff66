"""``mobius token|org|user|rule|audit|access``: the security store from the command line.

Every command takes ``--store URL`` like ``mobius db`` (else ``$MOBIUS_STORE``,
else the SQLite file in the data directory) and works on the same database
``mobius serve --http`` authenticates against, so a token revoked here fails
on the server's next request.  The command line is a trusted local caller (whoever
can open the database file can change it anyway); each change is still put on
the audit log before the command reports it.  Listings take ``--json``; the
audit commands ``--json`` or ``--csv``.  Exit status: 0 done, 1 ``audit verify``
found tampering, 2 with a one-line error (never a traceback, never a token).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .security_commands import (
    CliError,
    access_explain,
    audit_search,
    audit_tail,
    audit_verify,
    org_add_member,
    org_create,
    org_list,
    org_members,
    org_remove_member,
    rule_add,
    rule_list,
    rule_remove,
    token_create,
    token_list,
    token_revoke,
    user_create,
    user_disable,
    user_enable,
    user_list,
)

__all__ = ("add_security_parsers",)

_ROLES = ("owner", "admin", "member", "viewer")


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URL",
                        help="memory:, sqlite:///PATH or postgresql://... (default: "
                             "$MOBIUS_STORE, else the SQLite file in the data directory)")


def _command(sub: Any, name: str, text: str, run: Callable[..., Awaitable[int]],
             *, listing: bool = False, export: bool = False) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=text)
    _store_arg(parser)
    if listing or export:
        parser.add_argument("--json", action="store_true", help="print JSON")
    if export:
        parser.add_argument("--csv", action="store_true", help="print CSV")
    parser.set_defaults(func=_runner(run))
    return parser


def add_security_parsers(sub: Any) -> None:
    """Register ``token``, ``org``, ``user``, ``rule``, ``audit`` and ``access``."""
    token = sub.add_parser("token", help="API tokens: create, list, revoke").add_subparsers(
        dest="action", required=True)
    p = _command(token, "create", "issue a token (printed once)", token_create)
    p.add_argument("--user", required=True, help="user name or id")
    p.add_argument("--org", required=True, help="organization id or name")
    p.add_argument("--scope", action="append", default=[], help="KIND:ACTION (repeatable)")
    p.add_argument("--expires", help="30d, 12h, 90m, or an ISO 8601 time (default: never)")
    p.add_argument("--description", default="")
    p = _command(token, "list", "list tokens (ids, never the tokens)", token_list,
                 listing=True)
    p.add_argument("--user")
    p.add_argument("--org")
    p = _command(token, "revoke", "revoke a token by its id", token_revoke)
    p.add_argument("id")

    org = sub.add_parser("org", help="organizations and their members").add_subparsers(
        dest="action", required=True)
    p = _command(org, "create", "create an organization with the default rules", org_create)
    p.add_argument("name")
    p.add_argument("--owner", required=True, help="user name or id")
    p.add_argument("--id", dest="org_id")
    p.add_argument("--no-default-rules", action="store_true")
    _command(org, "list", "list organizations", org_list, listing=True)
    p = _command(org, "members", "list an organization's members", org_members, listing=True)
    p.add_argument("org")
    p = _command(org, "add-member", "add a member (or change their role)", org_add_member)
    p.add_argument("org")
    p.add_argument("user")
    p.add_argument("--role", choices=_ROLES, default="member")
    p = _command(org, "remove-member", "remove a member", org_remove_member)
    p.add_argument("org")
    p.add_argument("user")

    user = sub.add_parser("user", help="users").add_subparsers(dest="action", required=True)
    p = _command(user, "create", "create a user", user_create)
    p.add_argument("name")
    _command(user, "list", "list users", user_list, listing=True)
    for action, text in (("disable", "disable a user (their tokens stop working)"),
                         ("enable", "enable a user again")):
        p = _command(user, action, text, user_disable if action == "disable"
                     else user_enable)
        p.add_argument("name")

    rule = sub.add_parser("rule", help="access rules").add_subparsers(dest="action",
                                                                      required=True)
    p = _command(rule, "add", "add a rule", rule_add)
    p.add_argument("--org", required=True)
    p.add_argument("--effect", choices=("allow", "deny"), required=True)
    p.add_argument("--subject", required=True, help="role:NAME, user:NAME or *")
    p.add_argument("--kind", default="tools", help="tools, resources, prompts, ... or *")
    p.add_argument("--pattern", required=True, help="a glob over names or URIs")
    p.add_argument("--action", dest="actions", action="append", default=[],
                   help="list, call, read, get, subscribe, complete or * (repeatable; "
                        "default *)")
    p.add_argument("--when", action="append", default=[], metavar="HINT=VALUE",
                   help="only things whose annotation says so, e.g. readOnlyHint=true")
    p.add_argument("--description", default="")
    p = _command(rule, "list", "list an organization's rules in order", rule_list,
                 listing=True)
    p.add_argument("--org", required=True)
    p = _command(rule, "remove", "remove a rule", rule_remove)
    p.add_argument("--org", required=True)
    p.add_argument("id")

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="action",
                                                                        required=True)
    for action, text, run in (("tail", "the newest records", audit_tail),
                              ("search", "records matching filters", audit_search)):
        p = _command(audit, action, text, run, export=True)
        p.add_argument("-n", "--limit", type=int, default=20 if action == "tail" else None)
        p.add_argument("--user")
        p.add_argument("--org")
        p.add_argument("--method")
        p.add_argument("--outcome")
        p.add_argument("--since", help="ISO 8601 time or epoch seconds")
        p.add_argument("--until", help="ISO 8601 time or epoch seconds")
    p = _command(audit, "verify", "check the hash chain (exit 1 on tampering)", audit_verify)
    p.add_argument("--expect-head", metavar="SEQ:HASH",
                   help="an anchor kept elsewhere: catches records cut off the end")

    access = sub.add_parser("access", help="why access is allowed or denied").add_subparsers(
        dest="action", required=True)
    p = _command(access, "explain", "the decision for a user and a tool, and its rule",
                 access_explain)
    p.add_argument("--user", required=True)
    p.add_argument("--org", help="needed when the user belongs to several organizations")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--tool")
    target.add_argument("--resource")
    target.add_argument("--prompt")
    target.add_argument("--project", help="a context project (mobius serve DIR)")
    p.add_argument("--action", dest="verb", help="call, read, get, list, ... (default: the "
                                                 "kind's use)")
    p.add_argument("--hint", action="append", default=[], metavar="HINT=VALUE",
                   help="the tool's annotations, e.g. readOnlyHint=true")


def _runner(run: Callable[..., Awaitable[int]]) -> Callable[[argparse.Namespace], int]:
    def main(args: argparse.Namespace) -> int:
        import anyio

        from .security.open import open_security_store
        from .security.store import StoreError as SecurityStoreError
        from .security.tokens import TokenError
        from .storage import StoreError, store_url

        name = f"mobius {args.command} {args.action}"

        async def go() -> int:
            async with open_security_store(store_url(args.store)) as (_, security):
                return await run(security, args)

        try:
            return anyio.run(go)
        except (CliError, StoreError, SecurityStoreError, TokenError, ValueError,
                PermissionError) as error:
            text = str(error).splitlines()[0] if str(error) else type(error).__name__
            print(f"{name}: {text}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
    return main
