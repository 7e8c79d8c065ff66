"""The :class:`~.store.SecurityStore` on SQLite and PostgreSQL, as programs.

Each operation is a program (a generator of ``(sql, params)`` statements, see
:mod:`mobius_rpc.storage.sql.program`) run on the store's ``db`` runner, so the
same logic serves both databases (the programs and the row decoders are in
:mod:`.sql_programs`, the audit log's in :mod:`.sql_audit`; this module maps the
protocol's methods onto them).  The atomic steps the protocol asks for are
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
from typing import Any, TypeVar

from ..storage.base import Channel
from ..storage.sql.program import Runner
from .epoch import EPOCH_CHANNEL, note_local_change
from .sql_audit import _AUDIT, _append_audit, _append_audit_rows, _audit, _list_audit, _retain
from .sql_programs import (
    _MEMBER,
    _ORG,
    _RESOLVE,
    _RULE,
    _TOKEN,
    _USER,
    _add_rule,
    _bumping,
    _changed,
    _consume,
    _create_org_with_owner,
    _create_user,
    _delete_rule,
    _dump,
    _filtered,
    _insert_unique,
    _many,
    _member,
    _one,
    _org,
    _resolved,
    _rule,
    _token,
    _user,
)
from .sqlite_epoch import SqliteEpoch
from .store import (
    ApiToken,
    AuditCheckpoint,
    AuditQuery,
    AuditRecord,
    BucketResult,
    Membership,
    Organization,
    ResolvedToken,
    Rule,
    User,
    check_new_organization,
)

__all__ = ("SqlSecurityStore",)

log = logging.getLogger("mobius_rpc.security")
T = TypeVar("T")


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

