"""The :class:`~.store.SecurityStore` on SQLite and PostgreSQL, as programs.

Each operation is a program (a generator of ``(sql, params)`` statements, see
:mod:`mobius_rpc.storage.sql.program`) run on the store's ``db`` runner, so the
same logic serves both databases.  The atomic steps the protocol asks for are
single write programs:

* ``create_organization_with_owner`` inserts the organization (its primary key
  decides a race: a concurrent creator waits for the winner's commit, then
  finds the row and gets :class:`~.store.DuplicateError`), the owner's
  membership and the rules in one transaction, so a failure anywhere (a rule
  that clashes, a crash) leaves none of them;
* ``add_rule``/``delete_rule`` change the rule and bump the organization's
  ``rules_version`` in one transaction;
* ``append_audit`` first moves the single-row ``audit_head`` from the seq the
  batch expects (``UPDATE ... WHERE seq = ?``): a second writer, on another
  replica too, waits for that row and then finds it moved, so it gets
  :class:`~.store.AuditConflict` and nothing of its batch is written;
* ``consume_bucket`` locks (or creates) the bucket row with an upsert, then
  refills and takes from it;
* ``retain_audit`` deletes and moves the checkpoint together.

A write returns only after its transaction committed, which is what makes
refusals and admin changes durable before the answer is sent.

The security epoch is asked for on every request (:mod:`.epoch`): on SQLite
it is a one-row read on the calling thread, on a connection of its own (about
4 us, and it sees every process's commits); on PostgreSQL every access-narrowing write is announced
on the store's notification channel after it committed, so that
:class:`~.epoch.EpochWatch` need not read it for every request.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import fields, replace
from typing import Any, TypeVar

import orjson

from ..storage.base import Channel
from ..storage.sql.program import Program, Result, Runner
from .epoch import EPOCH_CHANNEL, note_local_change
from .sqlite_epoch import SqliteEpoch
from .store import (
    ApiToken,
    AuditCheckpoint,
    AuditConflict,
    AuditQuery,
    AuditRecord,
    BucketResult,
    DuplicateError,
    Membership,
    Organization,
    RateBucket,
    ResolvedToken,
    Rule,
    StoreError,
    User,
    check_new_organization,
    refill,
)

__all__ = ("SqlSecurityStore",)

log = logging.getLogger("mobius_rpc.security")
T = TypeVar("T")

_ORG = "id, name, created_at, rules_version, settings"
_USER = "id, name, created_at, disabled, attributes"
_MEMBER = "org_id, user_id, role, created_at"
_TOKEN = ("id, user_id, org_id, hash, created_at, scopes, expires_at, revoked_at, "
          "last_used_at, description")
_RULE = ("id, org_id, effect, subject_type, subject, kind, pattern, actions, created_at, "
         "conditions, description, position")
_AUDIT = ("seq, at, method, outcome, user_id, organization, auth_method, credential, "
          "session_id, request_id, target, arguments_digest, error, error_code, "
          "duration_ms, detail, prev_hash, hash")


_AUDIT_ROW = "(" + ", ".join("?" * 18) + ")"
#: rows per INSERT statement: a batch is cut into these sizes (largest first: a batch
#: of fewer than 512 rows takes one statement per set bit of its size, 3-4 for a
#: typical 100) so that only nine statement texts ever occur and each stays in the
#: driver's statement cache, prepared (a text per batch size made SQLite compile a
#: statement of up to 500 rows for every write: 10 us a record at 100 records a write).
#: 18 parameters a row: 256 rows are far below SQLite's limit of 32766 a statement
_CHUNKS = (256, 128, 64, 32, 16, 8, 4, 2, 1)
_INSERTS = {n: f"INSERT INTO audit_records ({_AUDIT}) VALUES " + ", ".join([_AUDIT_ROW] * n)
            for n in _CHUNKS}


#: PostgreSQL: one statement with one parameter for any batch: the rows as a JSON
#: array of arrays, taken apart by the server.  psycopg parses a query text for its
#: placeholders on every execution when the text is longer than its cache takes
#: (4 kB): the multi-row VALUES texts above are longer, and parsing them cost the
#: writer about 45 us a record; 18 array parameters still cost 20 us a record in
#: psycopg's array dumping.  One JSON string costs orjson about 1 us a record
_PG_TYPES = ("bigint", "double precision", "text", "text", "text", "text", "text", "text",
             "text", "text", "text", "text", "text", "bigint", "double precision", "text",
             "text", "text")
_PG_INSERT = (f"INSERT INTO audit_records ({_AUDIT}) SELECT "
              + ", ".join(f"(r->>{i})::{t}" for i, t in enumerate(_PG_TYPES))
              + " FROM jsonb_array_elements(?::jsonb) AS r")

_RECORD_FIELDS = tuple(f.name for f in fields(AuditRecord))


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


def _audit(row: tuple[Any, ...]) -> AuditRecord:
    return AuditRecord(int(row[0]), float(row[1]), row[2], row[3], row[4], row[5], row[6],
                       row[7], row[8], row[9], row[10], row[11], row[12],
                       None if row[13] is None else int(row[13]), _opt(row[14]),
                       _load(row[15], {}), row[16], row[17])


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


def _append_audit(records: list[AuditRecord], dialect: str = "sqlite") -> Program[None]:
    return _append_audit_rows([_values(r) for r in records], dialect)


def _values(record: AuditRecord) -> tuple[Any, ...]:
    """``record``'s fields in declaration order (what ``append_audit_rows`` takes)."""
    return tuple(getattr(record, name) for name in _RECORD_FIELDS)


def _append_audit_rows(rows: list[tuple[Any, ...]], dialect: str = "sqlite"
                       ) -> Program[None]:
    """Rows are :class:`AuditRecord` field values in declaration order."""
    if not rows:
        return
    first = rows[0][0]
    if any(r[0] != first + i for i, r in enumerate(rows)):
        raise AuditConflict("audit records must have consecutive seq numbers")
    moved = yield ("UPDATE audit_head SET seq = ? WHERE id = 1 AND seq = ?",
                   (rows[-1][0], first - 1))
    if moved.changed == 0:
        raise AuditConflict(f"audit seq {first} is not the next one")
    if dialect == "postgresql":
        yield _PG_INSERT, (_rows_json(rows),)
        return
    # many rows per statement: few round trips for a whole batch (group commit)
    start = 0
    while start < len(rows):
        size = next(n for n in _CHUNKS if n <= len(rows) - start)
        params: list[Any] = []
        for r in rows[start:start + size]:
            detail = r[15]
            params += r[:15]
            params += ("{}" if not detail else _dump(detail), r[16], r[17])
        start += size
        yield _INSERTS[size], tuple(params)


def _rows_json(rows: list[tuple[Any, ...]]) -> str:
    """The rows as ``_PG_INSERT``'s JSON (``detail`` as its canonical JSON text)."""
    return orjson.dumps([(*r[:15], "{}" if not r[15] else _dump(r[15]), r[16], r[17])
                         for r in rows]).decode()


def _list_audit(q: AuditQuery) -> Program[list[AuditRecord]]:
    where: list[str] = ["seq > ?"]
    params: list[Any] = [q.after_seq]
    for column, value in (("user_id", q.user), ("organization", q.organization),
                          ("method", q.method), ("outcome", q.outcome)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if q.since is not None:
        where.append("at >= ?")
        params.append(q.since)
    if q.until is not None:
        where.append("at < ?")
        params.append(q.until)
    sql = (f"SELECT {_AUDIT} FROM audit_records WHERE {' AND '.join(where)} "
           f"ORDER BY seq {'DESC' if q.newest_first else 'ASC'}")
    if q.limit is not None:
        sql += " LIMIT ?"
        params.append(max(q.limit, 0))
    return (yield from _many(sql, tuple(params), _audit))


def _retain(checkpoint: AuditCheckpoint) -> Program[int]:
    removed = yield "DELETE FROM audit_records WHERE seq < ?", (checkpoint.seq,)
    yield ("INSERT INTO audit_checkpoint (id, seq, prev_hash, created_at) VALUES (1, ?, ?, ?) "
           "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, prev_hash = excluded.prev_hash, "
           "created_at = excluded.created_at",
           (checkpoint.seq, checkpoint.prev_hash, checkpoint.created_at))
    return removed.changed


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


class SqlSecurityStore:
    """A :class:`~.store.SecurityStore` on an SQL runner (a store's ``db``)."""

    def __init__(self, db: Runner, *, channel: Channel | None = None) -> None:
        """``channel``: where access-narrowing changes are announced to other
        replicas (the PostgreSQL store's LISTEN/NOTIFY channel; see :mod:`.epoch`)."""
        self.db = db
        self.channel = channel
        #: SQLite: the connection the epoch is read on (see :meth:`_security_epoch_now`)
        self._epoch_conn: SqliteEpoch | None = None

    async def _narrowing(self, write: Awaitable[T]) -> T:
        """An access-narrowing write: counted for this process, then announced."""
        try:
            return await write
        finally:
            note_local_change()  # even on failure: a commit may have happened
            if self.channel is not None:
                try:
                    await self.channel.publish(EPOCH_CHANNEL, b"")
                except Exception as error:  # the replicas' safety poll catches up
                    log.warning("could not announce a security change (%s)",
                                type(error).__name__)

    def epoch_notices(self) -> AbstractAsyncContextManager[Any] | None:
        """Announcements of other replicas' access-narrowing changes, if this store
        has a channel to hear them on (else None: the epoch is cheap to read)."""
        return None if self.channel is None else self.channel.subscribe(EPOCH_CHANNEL)

    # organizations and users
    async def create_organization(self, org: Organization) -> None:
        await self.db.write(lambda: _insert_unique(
            f"INSERT INTO security_orgs ({_ORG}) VALUES (?, ?, ?, ?, ?)",
            (org.id, org.name, org.created_at, org.rules_version, _dump(org.settings)),
            f"organization {org.id}"))

    async def create_organization_with_owner(self, org: Organization, owner: Membership,
                                             rules: Sequence[Rule] = ()) -> Organization:
        check_new_organization(org, owner, rules)
        batch = tuple(rules)
        return await self._narrowing(self.db.write(
            lambda: _create_org_with_owner(org, owner, batch)))

    async def get_organization(self, org_id: str) -> Organization | None:
        found: Organization | None = await self.db.read(lambda: _one(
            f"SELECT {_ORG} FROM security_orgs WHERE id = ?", (org_id,), _org))
        return found

    async def list_organizations(self) -> list[Organization]:
        return await self.db.read(lambda: _many(
            f"SELECT {_ORG} FROM security_orgs ORDER BY created_at, id", (), _org))

    async def create_user(self, user: User) -> None:
        await self.db.write(lambda: _create_user(user))

    async def get_user(self, user_id: str) -> User | None:
        found: User | None = await self.db.read(lambda: _one(
            f"SELECT {_USER} FROM security_users WHERE id = ?", (user_id,), _user))
        return found

    async def get_user_by_name(self, name: str) -> User | None:
        found: User | None = await self.db.read(lambda: _one(
            f"SELECT {_USER} FROM security_users WHERE name = ?", (name,), _user))
        return found

    async def list_users(self) -> list[User]:
        return await self.db.read(lambda: _many(
            f"SELECT {_USER} FROM security_users ORDER BY created_at, id", (), _user))

    async def set_user_disabled(self, user_id: str, disabled: bool) -> bool:
        return await self._narrowing(self.db.write(lambda: _bumping(
            "UPDATE security_users SET disabled = ? WHERE id = ?", (int(disabled), user_id))))

    # memberships
    async def put_membership(self, membership: Membership) -> None:
        m = membership
        await self._narrowing(self.db.write(lambda: _bumping(
            f"INSERT INTO security_memberships ({_MEMBER}) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role, "
            "created_at = excluded.created_at", (m.org_id, m.user_id, m.role, m.created_at))))

    async def get_membership(self, org_id: str, user_id: str) -> Membership | None:
        found: Membership | None = await self.db.read(lambda: _one(
            f"SELECT {_MEMBER} FROM security_memberships WHERE org_id = ? AND user_id = ?",
            (org_id, user_id), _member))
        return found

    async def delete_membership(self, org_id: str, user_id: str) -> bool:
        return await self._narrowing(self.db.write(lambda: _bumping(
            "DELETE FROM security_memberships WHERE org_id = ? AND user_id = ?",
            (org_id, user_id))))

    async def list_memberships(self, *, org_id: str | None = None,
                               user_id: str | None = None) -> list[Membership]:
        sql, params = _filtered(f"SELECT {_MEMBER} FROM security_memberships",
                                org_id=org_id, user_id=user_id)
        return await self.db.read(lambda: _many(sql + " ORDER BY created_at, org_id, user_id",
                                                params, _member))

    # API tokens
    async def add_token(self, token: ApiToken) -> None:
        t = token
        await self.db.write(lambda: _insert_unique(
            f"INSERT INTO security_tokens ({_TOKEN}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (t.id, t.user_id, t.org_id, t.hash, t.created_at, _dump(list(t.scopes)),
             t.expires_at, t.revoked_at, t.last_used_at, t.description), f"token {t.id}"))

    async def get_token(self, token_id: str) -> ApiToken | None:
        found: ApiToken | None = await self.db.read(lambda: _one(
            f"SELECT {_TOKEN} FROM security_tokens WHERE id = ?", (token_id,), _token))
        return found

    async def list_tokens(self, *, user_id: str | None = None,
                          org_id: str | None = None) -> list[ApiToken]:
        sql, params = _filtered(f"SELECT {_TOKEN} FROM security_tokens",
                                user_id=user_id, org_id=org_id)
        return await self.db.read(lambda: _many(sql + " ORDER BY created_at, id", params,
                                                _token))

    async def revoke_token(self, token_id: str, at: float) -> bool:
        return await self._narrowing(self.db.write(lambda: _bumping(
            "UPDATE security_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (at, token_id))))

    async def touch_token(self, token_id: str, at: float) -> None:
        await self.db.write(lambda: _changed(
            "UPDATE security_tokens SET last_used_at = ? WHERE id = ?", (at, token_id)))

    async def resolve_token(self, token_id: str) -> ResolvedToken | None:
        found: ResolvedToken | None = await self.db.read(lambda: _one(
            _RESOLVE, (token_id,), _resolved))
        return found

    async def security_epoch(self) -> int:
        """The number every access-narrowing change moves (see the migration)."""
        if self.epoch_reader() is not None:
            return self._security_epoch_now()
        found: int | None = await self.db.read(lambda: _one(
            "SELECT epoch FROM security_state WHERE id = 1", (), lambda row: int(row[0])))
        return found or 0

    def epoch_reader(self) -> Callable[[], int] | None:
        """A synchronous :meth:`security_epoch`, where one is as exact and cheaper than
        the coroutine (SQLite: on the calling thread already, see below); None on
        PostgreSQL (a round trip: :class:`~.epoch.EpochWatch` listens instead)."""
        if getattr(self.db, "path", None) is None or getattr(self.db, "read_now", None) is None:
            return None
        return self._security_epoch_now

    def _security_epoch_now(self) -> int:
        """SQLite: the epoch on this store's own connection, on the calling thread, read
        from the database only after some transaction committed (:mod:`.sqlite_epoch`:
        a 96-byte ``pread`` of the WAL index header instead of the row, 0.5 against
        4.8 us, asked on every request).  A WAL reader sees every commit made before
        it began, by any process, and never waits for a writer."""
        try:
            epoch = self._epoch_conn
            if epoch is None:
                epoch = self._epoch_conn = SqliteEpoch(str(self.db.path))  # type: ignore[attr-defined]
            return epoch.current()
        except sqlite3.Error:  # the store's own read below says what is wrong
            self._epoch_conn = None
        # a one-row read on the calling thread (WAL readers never wait for writers)
        # costs less than the hop to a worker thread it would otherwise take
        found: int | None = self.db.read_now(  # type: ignore[attr-defined]
            lambda: _one("SELECT epoch FROM security_state WHERE id = 1", (),
                         lambda row: int(row[0])))
        return found or 0

    # rules
    async def add_rule(self, rule: Rule) -> Rule:
        return await self._narrowing(self.db.write(lambda: _add_rule(rule)))

    async def delete_rule(self, org_id: str, rule_id: str) -> bool:
        return await self._narrowing(self.db.write(lambda: _delete_rule(org_id, rule_id)))

    async def list_rules(self, org_id: str) -> list[Rule]:
        return await self.db.read(lambda: _many(
            f"SELECT {_RULE} FROM security_rules WHERE org_id = ? ORDER BY position",
            (org_id,), _rule))

    # audit
    async def append_audit(self, records: list[AuditRecord]) -> None:
        batch = list(records)
        dialect = self.db.dialect
        await self.db.write(lambda: _append_audit(batch, dialect))

    async def append_audit_rows(self, rows: list[tuple[Any, ...]]) -> None:
        """:meth:`append_audit` of records given as their field values in declaration
        order (the audit writer's form: no record object built per row)."""
        batch = list(rows)
        dialect = self.db.dialect
        await self.db.write(lambda: _append_audit_rows(batch, dialect))

    async def last_audit(self) -> AuditRecord | None:
        found: AuditRecord | None = await self.db.read(lambda: _one(
            f"SELECT {_AUDIT} FROM audit_records ORDER BY seq DESC LIMIT 1", (), _audit))
        return found

    async def list_audit(self, query: AuditQuery) -> list[AuditRecord]:
        return await self.db.read(lambda: _list_audit(query))

    async def get_audit_checkpoint(self) -> AuditCheckpoint | None:
        found: AuditCheckpoint | None = await self.db.read(lambda: _one(
            "SELECT seq, prev_hash, created_at FROM audit_checkpoint WHERE id = 1", (),
            lambda row: AuditCheckpoint(int(row[0]), row[1], float(row[2]))))
        return found

    async def retain_audit(self, checkpoint: AuditCheckpoint) -> int:
        return await self.db.write(lambda: _retain(checkpoint))

    # rate limits
    async def consume_bucket(self, key: str, capacity: float, per_second: float,
                             cost: float, now: float) -> BucketResult:
        return await self.db.write(lambda: _consume(key, capacity, per_second, cost, now))


def _filtered(sql: str, **equal: str | None) -> tuple[str, tuple[Any, ...]]:
    pairs = [(column, value) for column, value in equal.items() if value is not None]
    if not pairs:
        return sql, ()
    return (sql + " WHERE " + " AND ".join(f"{column} = ?" for column, _ in pairs),
            tuple(value for _, value in pairs))
