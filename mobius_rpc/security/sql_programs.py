"""The SQL security store's row decoders and programs, apart from the audit log's.

:class:`~.sql_store.SqlSecurityStore` is a thin map from the
:class:`~.store.SecurityStore` methods to programs over its ``db`` runner; the
programs themselves, with the column lists and the functions that turn a row
back into a record, live here so that the store's module stays a readable list
of operations and each part stays small.  The audit log's statements, which are
tuned for batch writes, are in :mod:`.sql_audit`.

The names keep their leading underscore: they are the SQL store's internals,
imported only by :mod:`.sql_store` and :mod:`.sql_audit`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import orjson

from ..storage.sql.program import Program, Result
from .store import (
    ApiToken,
    BucketResult,
    DuplicateError,
    Membership,
    Organization,
    RateBucket,
    ResolvedToken,
    Rule,
    StoreError,
    User,
    refill,
)

__all__: tuple[str, ...] = ()  # nothing public: the SQL store's internals

_ORG = "id, name, created_at, rules_version, settings"
_USER = "id, name, created_at, disabled, attributes"
_MEMBER = "org_id, user_id, role, created_at"
_TOKEN = ("id, user_id, org_id, hash, created_at, scopes, expires_at, revoked_at, "
          "last_used_at, description")
_RULE = ("id, org_id, effect, subject_type, subject, kind, pattern, actions, created_at, "
         "conditions, description, position")


def _dump(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _load(text: str | bytes | None, default: Any) -> Any:
    return default if text is None else orjson.loads(text)


def _org(row: tuple[Any, ...]) -> Organization:
    return Organization(row[0], row[1], float(row[2]), int(row[3]), _load(row[4], {}))


def _user(row: tuple[Any, ...]) -> User:
    return User(row[0], row[1], float(row[2]), bool(row[3]), _load(row[4], {}))


def _member(row: tuple[Any, ...]) -> Membership:
    return Membership(row[0], row[1], row[2], float(row[3]))


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def _token(row: tuple[Any, ...]) -> ApiToken:
    return ApiToken(row[0], row[1], row[2], row[3], float(row[4]), tuple(_load(row[5], [])),
                    _opt(row[6]), _opt(row[7]), _opt(row[8]), row[9])


_RESOLVE = (f"SELECT {', '.join('t.' + c for c in _TOKEN.split(', '))}, u.disabled, m.role, "
            "o.rules_version FROM security_tokens t "
            "LEFT JOIN security_users u ON u.id = t.user_id "
            "LEFT JOIN security_memberships m ON m.org_id = t.org_id AND m.user_id = t.user_id "
            "LEFT JOIN security_orgs o ON o.id = t.org_id WHERE t.id = ?")


def _resolved(row: tuple[Any, ...]) -> ResolvedToken:
    return ResolvedToken(_token(row[:10]), row[10] is not None and not row[10], row[11],
                         None if row[12] is None else int(row[12]))


def _rule(row: tuple[Any, ...]) -> Rule:
    return Rule(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                tuple(_load(row[7], [])), float(row[8]), _load(row[9], {}), row[10],
                int(row[11]))



def _one(sql: str, params: tuple[Any, ...], make: Callable[[tuple[Any, ...]], Any]
         ) -> Program[Any]:
    result = yield sql, params
    return make(result.rows[0]) if result.rows else None


def _many(sql: str, params: tuple[Any, ...], make: Callable[[tuple[Any, ...]], Any]
          ) -> Program[list[Any]]:
    result = yield sql, params
    return [make(row) for row in result.rows]


def _changed(sql: str, params: tuple[Any, ...]) -> Program[bool]:
    result = yield sql, params
    return result.changed > 0


_BUMP = "UPDATE security_state SET epoch = epoch + 1 WHERE id = 1"


def _bumping(sql: str, params: tuple[Any, ...]) -> Program[bool]:
    """A change that can end or narrow access: it moves the security epoch too."""
    result = yield sql, params
    if result.changed:
        yield _BUMP, ()
    return result.changed > 0


def _insert_unique(sql: str, params: tuple[Any, ...], what: str) -> Program[None]:
    result = yield sql + " ON CONFLICT DO NOTHING", params
    if result.changed == 0:
        raise DuplicateError(f"{what} exists")


def _create_user(user: User) -> Program[None]:
    yield from _insert_unique(
        f"INSERT INTO security_users ({_USER}) VALUES (?, ?, ?, ?, ?)",
        (user.id, user.name, user.created_at, int(user.disabled), _dump(user.attributes)),
        f"user {user.name}")


def _insert_rule(rule: Rule, position: int) -> Program[Rule]:
    yield from _insert_unique(
        f"INSERT INTO security_rules ({_RULE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (rule.id, rule.org_id, rule.effect, rule.subject_type, rule.subject, rule.kind,
         rule.pattern, _dump(list(rule.actions)), rule.created_at, _dump(rule.when),
         rule.description, position), f"rule {rule.id}")
    return replace(rule, position=position)


def _create_org_with_owner(org: Organization, owner: Membership, rules: Sequence[Rule]
                           ) -> Program[Organization]:
    stored = replace(org, rules_version=org.rules_version + len(rules))
    # first: the organization's primary key, which a concurrent creator waits on
    yield from _insert_unique(
        f"INSERT INTO security_orgs ({_ORG}) VALUES (?, ?, ?, ?, ?)",
        (stored.id, stored.name, stored.created_at, stored.rules_version,
         _dump(stored.settings)), f"organization {org.id} already")
    yield (f"INSERT INTO security_memberships ({_MEMBER}) VALUES (?, ?, ?, ?) "
           "ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role, "
           "created_at = excluded.created_at",
           (owner.org_id, owner.user_id, owner.role, owner.created_at))
    if rules:
        top = yield "SELECT COALESCE(MAX(position), 0) FROM security_rules", ()
        first = int(top.rows[0][0]) + 1
        for i, rule in enumerate(rules):
            yield from _insert_rule(rule, first + i)
    yield _BUMP, ()
    return stored


def _add_rule(rule: Rule) -> Program[Rule]:
    # the version bump comes first: it locks the organization's row (PostgreSQL)
    bumped: Result = yield ("UPDATE security_orgs SET rules_version = rules_version + 1 "
                            "WHERE id = ?", (rule.org_id,))
    if bumped.changed == 0:
        raise StoreError(f"no organization {rule.org_id}")
    yield _BUMP, ()
    top = yield "SELECT COALESCE(MAX(position), 0) FROM security_rules", ()
    return (yield from _insert_rule(rule, int(top.rows[0][0]) + 1))


def _delete_rule(org_id: str, rule_id: str) -> Program[bool]:
    gone = yield "DELETE FROM security_rules WHERE org_id = ? AND id = ?", (org_id, rule_id)
    if gone.changed == 0:
        return False
    yield ("UPDATE security_orgs SET rules_version = rules_version + 1 WHERE id = ?",
           (org_id,))
    yield _BUMP, ()
    return True



def _consume(key: str, capacity: float, per_second: float, cost: float, now: float
             ) -> Program[BucketResult]:
    # the upsert creates a full bucket or locks the existing row, and returns it
    found = yield ("INSERT INTO rate_buckets (key, tokens, updated_at) VALUES (?, ?, ?) "
                   "ON CONFLICT (key) DO UPDATE SET tokens = rate_buckets.tokens "
                   "RETURNING tokens, updated_at", (key, capacity, now))
    tokens, updated = found.rows[0]
    bucket, result = refill(RateBucket(key, float(tokens), float(updated)), key, capacity,
                            per_second, cost, now)
    yield ("UPDATE rate_buckets SET tokens = ?, updated_at = ? WHERE key = ?",
           (bucket.tokens, bucket.updated_at, key))
    return result


def _filtered(sql: str, **equal: str | None) -> tuple[str, tuple[Any, ...]]:
    pairs = [(column, value) for column, value in equal.items() if value is not None]
    if not pairs:
        return sql, ()
    return (sql + " WHERE " + " AND ".join(f"{column} = ?" for column, _ in pairs),
            tuple(value for _, value in pairs))
