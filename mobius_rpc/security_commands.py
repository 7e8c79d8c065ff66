"""What each ``mobius token|org|user|rule|audit|access`` command does (see security_cli).

Each function gets the open security store and the parsed arguments, prints
its answer and returns the exit status; errors are raised as exceptions that
the runner turns into one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
import uuid
from datetime import datetime
from typing import Any

from .security import admin
from .security.audit import AuditLog
from .security.audit_export import to_csv, to_json
from .security.policy import Kind, PolicyEngine, make_rule
from .security.principal import AuthMethod, Principal, Role
from .security.store import AuditQuery, Organization, SecurityStore, User
from .security.tokens import issue_token, revoke_token

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


async def _user(store: SecurityStore, ref: str) -> User:
    found = await store.get_user_by_name(ref) or await store.get_user(ref)
    if found is None:
        raise CliError(f"no user {ref!r}")
    return found


async def _org(store: SecurityStore, ref: str) -> Organization:
    found = await store.get_organization(ref)
    if found is None:
        named = [o for o in await store.list_organizations() if o.name == ref]
        if len(named) > 1:
            raise CliError(f"several organizations are called {ref!r}: use the id")
        found = named[0] if named else None
    if found is None:
        raise CliError(f"no organization {ref!r}")
    return found


def _log(store: SecurityStore) -> AuditLog:
    return AuditLog(store)


# ------------------------------------------------------------------ tokens

async def token_create(store: SecurityStore, args: argparse.Namespace) -> int:
    user, org = await _user(store, args.user), await _org(store, args.org)
    at = time.time()
    expires = parse_expiry(args.expires, at) if args.expires else None
    issued = await issue_token(store, user_id=user.id, org_id=org.id, scopes=args.scope,
                               expires_at=expires, description=args.description, now=at)
    await _log(store).append(method="admin/token.create", outcome="ok",
                             target=issued.record.id, detail={"user": user.id, "org": org.id})
    print(issued.token)
    print(f"token id {issued.record.id} for {user.name} in {org.id}"
          f"{'' if expires is None else f', expires {time.ctime(expires)}'}; shown only "
          "this once", file=sys.stderr)
    return 0


async def token_list(store: SecurityStore, args: argparse.Namespace) -> int:
    user_id = (await _user(store, args.user)).id if args.user else None
    org_id = (await _org(store, args.org)).id if args.org else None
    tokens = await store.list_tokens(user_id=user_id, org_id=org_id)
    rows = [{k: v for k, v in dataclasses.asdict(t).items() if k != "hash"} for t in tokens]
    if args.json:
        print_json(rows)
        return 0
    now = time.time()
    for t in tokens:
        state = ("revoked" if t.revoked_at is not None else "expired"
                 if t.expires_at is not None and t.expires_at <= now else "active")
        used = time.ctime(t.last_used_at) if t.last_used_at else "never"
        print(f"{t.id}  {state:8}  user={t.user_id} org={t.org_id} "
              f"scopes={','.join(t.scopes) or '-'} last-used={used}")
    return 0


async def token_revoke(store: SecurityStore, args: argparse.Namespace) -> int:
    if not await revoke_token(store, args.id):
        raise CliError(f"no active token {args.id!r}")
    await _log(store).append(method="admin/token.revoke", outcome="ok", target=args.id)
    print(f"revoked {args.id}")
    return 0


# ------------------------------------------------------------------ orgs and users

async def org_create(store: SecurityStore, args: argparse.Namespace) -> int:
    owner = await _user(store, args.owner)
    org = await admin.create_organization(store, args.name, owner_user_id=owner.id,
                                          org_id=args.org_id,
                                          default_rules=not args.no_default_rules,
                                          audit=_log(store))
    print(org.id)
    return 0


async def org_list(store: SecurityStore, args: argparse.Namespace) -> int:
    orgs = await store.list_organizations()
    if args.json:
        print_json([dataclasses.asdict(o) for o in orgs])
    for o in orgs if not args.json else ():
        print(f"{o.id}  {o.name}  rules-version={o.rules_version}")
    return 0


async def org_members(store: SecurityStore, args: argparse.Namespace) -> int:
    org = await _org(store, args.org)
    members = await store.list_memberships(org_id=org.id)
    if args.json:
        print_json([dataclasses.asdict(m) for m in members])
        return 0
    for m in members:
        user = await store.get_user(m.user_id)
        print(f"{m.user_id}  {user.name if user else '?'}  {m.role}")
    return 0


async def org_add_member(store: SecurityStore, args: argparse.Namespace) -> int:
    org, user = await _org(store, args.org), await _user(store, args.user)
    await admin.set_membership(store, org.id, user.id, Role(args.role), audit=_log(store))
    print(f"{user.name} is {args.role} of {org.id}")
    return 0


async def org_remove_member(store: SecurityStore, args: argparse.Namespace) -> int:
    org, user = await _org(store, args.org), await _user(store, args.user)
    if not await admin.remove_membership(store, org.id, user.id, audit=_log(store)):
        raise CliError(f"{user.name} is not a member of {org.id}")
    print(f"removed {user.name} from {org.id}")
    return 0


async def user_create(store: SecurityStore, args: argparse.Namespace) -> int:
    name = args.name.strip()
    if not name or len(name) > 200:
        raise CliError("a user name is 1 to 200 characters")
    user = User(id=uuid.uuid4().hex[:12], name=name, created_at=time.time())
    await store.create_user(user)
    await _log(store).append(method="admin/user.create", outcome="ok", target=user.id,
                             detail={"name": name})
    print(user.id)
    return 0


async def user_list(store: SecurityStore, args: argparse.Namespace) -> int:
    users = await store.list_users()
    if args.json:
        print_json([dataclasses.asdict(u) for u in users])
        return 0
    for u in users:
        print(f"{u.id}  {u.name}{'  (disabled)' if u.disabled else ''}")
    return 0


async def _set_disabled(store: SecurityStore, args: argparse.Namespace, disabled: bool) -> int:
    user = await _user(store, args.name)
    await store.set_user_disabled(user.id, disabled)
    await _log(store).append(method="admin/user.disable" if disabled else "admin/user.enable",
                             outcome="ok", target=user.id)
    print(f"{user.name} {'disabled' if disabled else 'enabled'}")
    return 0


async def user_disable(store: SecurityStore, args: argparse.Namespace) -> int:
    return await _set_disabled(store, args, True)


async def user_enable(store: SecurityStore, args: argparse.Namespace) -> int:
    return await _set_disabled(store, args, False)


# ------------------------------------------------------------------ rules

async def rule_add(store: SecurityStore, args: argparse.Namespace) -> int:
    org = await _org(store, args.org)
    subject = args.subject
    if subject.startswith("user:"):
        subject = "user:" + (await _user(store, subject[5:])).id
    rule = make_rule(org.id, args.effect, subject, args.kind, args.pattern,
                     args.actions or ("*",), when_pairs(args.when), args.description)
    stored = await admin.add_rule(store, rule, audit=_log(store))
    print(stored.id)
    return 0


async def rule_list(store: SecurityStore, args: argparse.Namespace) -> int:
    org = await _org(store, args.org)
    rules = await store.list_rules(org.id)
    if args.json:
        print_json([dataclasses.asdict(r) for r in rules])
        return 0
    for r in rules:
        when = "".join(f" {k}={v}" for k, v in r.when.items())
        print(f"{r.id}  {r.effect:5} {r.subject_type}:{r.subject} {r.kind} {r.pattern!r} "
              f"{','.join(r.actions)}{when}  {r.description}")
    return 0


async def rule_remove(store: SecurityStore, args: argparse.Namespace) -> int:
    org = await _org(store, args.org)
    if not await admin.remove_rule(store, org.id, args.id, audit=_log(store)):
        raise CliError(f"no rule {args.id!r} in {org.id}")
    print(f"removed {args.id}")
    return 0


# ------------------------------------------------------------------ audit

def _query(args: argparse.Namespace) -> AuditQuery:
    if args.json and args.csv:
        raise CliError("choose one of --json and --csv")
    if args.limit is not None and args.limit < 0:
        raise CliError("--limit must be 0 or more")
    return AuditQuery(user=args.user, organization=args.org, method=args.method,
                      outcome=args.outcome, since=moment(args.since), until=moment(args.until),
                      limit=args.limit)


def _show(records: list[Any], args: argparse.Namespace) -> None:
    if args.json:
        print(to_json(records))
    elif args.csv:
        print(to_csv(records), end="")
    else:
        for r in records:
            who = f"{r.user or '-'}@{r.organization or '-'}"
            err = f" error={r.error_code}: {r.error}" if r.error else ""
            print(f"{r.seq:>6} {time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(r.time))}Z "
                  f"{r.method} {r.target or '-'} {r.outcome} {who}{err}")


async def audit_tail(store: SecurityStore, args: argparse.Namespace) -> int:
    query = _query(args)
    _show(await _log(store).tail(query.limit or 20, query), args)
    return 0


async def audit_search(store: SecurityStore, args: argparse.Namespace) -> int:
    _show(await _log(store).search(_query(args)), args)
    return 0


async def audit_verify(store: SecurityStore, args: argparse.Namespace) -> int:
    expected = None
    if args.expect_head:
        seq, sep, digest = args.expect_head.partition(":")
        if not sep or not seq.isdigit() or len(digest) != 64:
            raise CliError("--expect-head is SEQ:HASH (as printed by a verify that passed)")
        expected = (int(seq), digest)
    result = await _log(store).verify(expected)
    for line in result.problems:
        print(line)
    state = "ok" if result.ok else "TAMPERED"
    print(f"{state}: {result.checked} records checked; head {result.head_seq}:{result.head_hash}")
    return 0 if result.ok else 1


# ------------------------------------------------------------------ access

async def access_explain(store: SecurityStore, args: argparse.Namespace) -> int:
    user = await _user(store, args.user)
    if args.org:
        org_id = (await _org(store, args.org)).id
    else:
        orgs = await store.list_memberships(user_id=user.id)
        if len(orgs) != 1:
            raise CliError(f"{user.name} belongs to {len(orgs)} organizations: say which "
                           "with --org")
        org_id = orgs[0].org_id
    membership = await store.get_membership(org_id, user.id)
    roles = frozenset({Role(membership.role)}) if membership and \
        membership.role in Role._value2member_map_ else frozenset()
    who = Principal(user.id, org_id, roles, method=AuthMethod.LOCAL)
    kind, name = ((Kind.TOOLS, args.tool) if args.tool else
                  (Kind.RESOURCES, args.resource) if args.resource else
                  (Kind.PROJECTS, args.project) if getattr(args, "project", None) else
                  (Kind.PROMPTS, args.prompt))
    verb = args.verb or {Kind.TOOLS: "call", Kind.RESOURCES: "read", Kind.PROMPTS: "get",
                         Kind.PROJECTS: "read"}[kind]
    owner = await _project_owner(store, name) if kind is Kind.PROJECTS else None
    rules = await PolicyEngine(store).rules_for(org_id)
    explanation = rules.explain(who, verb, kind, name, when_pairs(args.hint), owner=owner)
    print(f"{user.name} ({', '.join(sorted(roles)) or 'no role'} in {org_id}) {verb} "
          f"{kind.value} {name!r}:")
    for line in explanation.lines():
        print(line)
    if membership is None:
        print(f"  {user.name} is not a member of {org_id}")
    return 0


async def _project_owner(store: SecurityStore, name: str) -> str | None:
    """The organization owning context project ``name`` (as ``mobius serve`` recorded it)."""
    db = getattr(store, "db", None)
    if db is None:
        return None
    from .context.sql_index import SqlIndex
    return (await SqlIndex(db).project_owners()).get(name)


# ------------------------------------------------------------------ helpers

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
        return float(datetime.fromisoformat(text).timestamp())
    except ValueError:
        raise CliError(f"not a time: {text!r} (ISO 8601 or epoch seconds)") from None


def now() -> float:
    return time.time()
