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
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

__all__ = ("add_security_parsers", "parse_expiry")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ROLES = ("owner", "admin", "member", "viewer")


class CliError(Exception):
    """A one-line error for the user."""


def parse_expiry(text: str, now: float) -> float:
    """``30d``/``12h``/``90m``/``3600s``/``2w`` from now, or an ISO 8601 time (epoch seconds)."""
    match = _DURATION.match(text.strip())
    if match:
        return now + float(match.group(1)) * _UNITS[match.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(f"--expires {text!r}: use a duration (30d, 12h, 90m) or an ISO 8601 "
                       "time") from None
    return moment.timestamp()


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
    from . import security_commands as c

    token = sub.add_parser("token", help="API tokens: create, list, revoke").add_subparsers(
        dest="action", required=True)
    p = _command(token, "create", "issue a token (printed once)", c.token_create)
    p.add_argument("--user", required=True, help="user name or id")
    p.add_argument("--org", required=True, help="organization id or name")
    p.add_argument("--scope", action="append", default=[], help="KIND:ACTION (repeatable)")
    p.add_argument("--expires", help="30d, 12h, 90m, or an ISO 8601 time (default: never)")
    p.add_argument("--description", default="")
    p = _command(token, "list", "list tokens (ids, never the tokens)", c.token_list,
                 listing=True)
    p.add_argument("--user")
    p.add_argument("--org")
    p = _command(token, "revoke", "revoke a token by its id", c.token_revoke)
    p.add_argument("id")

    org = sub.add_parser("org", help="organizations and their members").add_subparsers(
        dest="action", required=True)
    p = _command(org, "create", "create an organization with the default rules", c.org_create)
    p.add_argument("name")
    p.add_argument("--owner", required=True, help="user name or id")
    p.add_argument("--id", dest="org_id")
    p.add_argument("--no-default-rules", action="store_true")
    _command(org, "list", "list organizations", c.org_list, listing=True)
    p = _command(org, "members", "list an organization's members", c.org_members, listing=True)
    p.add_argument("org")
    p = _command(org, "add-member", "add a member (or change their role)", c.org_add_member)
    p.add_argument("org")
    p.add_argument("user")
    p.add_argument("--role", choices=_ROLES, default="member")
    p = _command(org, "remove-member", "remove a member", c.org_remove_member)
    p.add_argument("org")
    p.add_argument("user")

    user = sub.add_parser("user", help="users").add_subparsers(dest="action", required=True)
    p = _command(user, "create", "create a user", c.user_create)
    p.add_argument("name")
    _command(user, "list", "list users", c.user_list, listing=True)
    for action, text in (("disable", "disable a user (their tokens stop working)"),
                         ("enable", "enable a user again")):
        p = _command(user, action, text, c.user_disable if action == "disable"
                     else c.user_enable)
        p.add_argument("name")

    rule = sub.add_parser("rule", help="access rules").add_subparsers(dest="action",
                                                                      required=True)
    p = _command(rule, "add", "add a rule", c.rule_add)
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
    p = _command(rule, "list", "list an organization's rules in order", c.rule_list,
                 listing=True)
    p.add_argument("--org", required=True)
    p = _command(rule, "remove", "remove a rule", c.rule_remove)
    p.add_argument("--org", required=True)
    p.add_argument("id")

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="action",
                                                                        required=True)
    for action, text, run in (("tail", "the newest records", c.audit_tail),
                              ("search", "records matching filters", c.audit_search)):
        p = _command(audit, action, text, run, export=True)
        p.add_argument("-n", "--limit", type=int, default=20 if action == "tail" else None)
        p.add_argument("--user")
        p.add_argument("--org")
        p.add_argument("--method")
        p.add_argument("--outcome")
        p.add_argument("--since", help="ISO 8601 time or epoch seconds")
        p.add_argument("--until", help="ISO 8601 time or epoch seconds")
    p = _command(audit, "verify", "check the hash chain (exit 1 on tampering)", c.audit_verify)
    p.add_argument("--expect-head", metavar="SEQ:HASH",
                   help="an anchor kept elsewhere: catches records cut off the end")

    access = sub.add_parser("access", help="why access is allowed or denied").add_subparsers(
        dest="action", required=True)
    p = _command(access, "explain", "the decision for a user and a tool, and its rule",
                 c.access_explain)
    p.add_argument("--user", required=True)
    p.add_argument("--org", help="needed when the user belongs to several organizations")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--tool")
    target.add_argument("--resource")
    target.add_argument("--prompt")
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


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def when_pairs(items: list[str]) -> dict[str, Any]:
    """``readOnlyHint=true`` and the like, as typed values."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CliError(f"expected HINT=VALUE, not {item!r}")
        lowered = raw.lower()
        value: Any = raw
        if lowered in ("true", "false"):
            value = lowered == "true"
        else:
            try:
                value = float(raw) if "." in raw else int(raw)
            except ValueError:
                value = raw
        out[key] = value
    return out


def moment(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise CliError(f"not a time: {text!r} (ISO 8601 or epoch seconds)") from None


def now() -> float:
    return time.time()
