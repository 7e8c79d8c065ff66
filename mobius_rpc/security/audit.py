"""The audit log: append-only, hash-chained, searchable, exportable.

Each record's ``hash`` is the SHA-256 of the previous record's hash and the
record's own canonical JSON (sorted keys, no spaces; ``hash`` and
``prev_hash`` left out), starting from :data:`GENESIS`.  Editing a record
breaks its hash; deleting or reordering records breaks the ``seq`` run and the
links; :meth:`AuditLog.verify` says which record.  Cutting records off the
*end* leaves a shorter valid chain, which only an anchor can catch: keep
:meth:`AuditLog.head` somewhere else and pass it to ``verify`` (the log also
remembers the last record it appended itself).

Appends are serialized by a lock, and the store refuses a ``seq`` that is not
the next one, so concurrent writers (tasks here, replicas sharing a database)
queue up instead of forking the chain.  Records that queue while one write is
in flight go to the store together in the next write (group commit), so a
database commit is shared by many requests and each still returns only once
its own record is stored.  Retention deletes the oldest records
and stores a checkpoint (the first kept ``seq`` and the hash it chains from)
so the rest still verifies.

Arguments are never stored, only :func:`digest` of them: the same arguments
give the same digest (an investigator holding a candidate can check it), and
secrets inside them do not end up in the log.

The hashing is :mod:`.audit_chain`, the JSON and CSV exports :mod:`.audit_export`
(both re-exported here), the row a record waits in :mod:`.audit_wire`, and the
background writer in a process of its own :mod:`.audit_process`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import anyio

from .audit_chain import (
    GENESIS,
    canonical_json,
    chain_rows,
    digest,
    record_hash,
)
from .audit_export import to_csv, to_json
from .audit_wire import body_from_wire, to_wire, use_row
from .principal import Principal
from .store import AuditCheckpoint, AuditConflict, AuditQuery, AuditRecord, SecurityStore

__all__ = ("GENESIS", "AuditLog", "VerifyResult", "digest", "canonical_json", "record_hash",
           "to_json", "to_csv")

log = logging.getLogger("mobius_rpc.security")

_PAGE = 1000
_ATTEMPTS = 64
_MAX_PROBLEMS = 100

#: what :meth:`AuditLog.append` accepts (checked when queued: a bad name must
#: fail its caller, not the writer that builds the record later)
_FIELDS = frozenset(("method", "outcome", "principal", "target", "arguments", "session",
                     "request_id", "error", "error_code", "duration_ms", "detail", "at"))


def _check_fields(fields: dict[str, Any]) -> None:
    if not _FIELDS.issuperset(fields) or "method" not in fields or "outcome" not in fields:
        unknown = sorted(set(fields) - _FIELDS)
        raise TypeError(f"audit fields: unknown {unknown}" if unknown
                        else "audit fields: method and outcome are required")


class _Sink(Protocol):
    """Where :meth:`AuditLog.append_later` hands records to a writer elsewhere."""

    @property
    def accepting(self) -> bool: ...

    def offer(self, row: list[Any]) -> bool:
        """Take one record's :mod:`.audit_wire` row if :attr:`accepting`; whether it did."""

    async def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    #: one line per problem, naming the record (by seq)
    problems: tuple[str, ...] = ()
    head_seq: int = 0
    head_hash: str = GENESIS


@dataclass(slots=True)
class _Pending:
    """A record :meth:`AuditLog.append` waits for (:meth:`AuditLog.append_later`
    queues its :mod:`.audit_wire` row alone: nobody waits for that record)."""

    #: what the caller gave (``at`` always set): the record's body is made from it
    #: by the writer, off the request's path
    fields: dict[str, Any]
    record: AuditRecord | None = None


class AuditLog:
    """Appends to, checks and reads the audit records of one store."""

    def __init__(self, store: SecurityStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._lock = anyio.Lock(fast_acquire=True)
        #: (seq, hash) of the last record, once known
        self._head: tuple[int, str] | None = None
        #: the last record this process appended: an anchor for verify
        self._anchor: tuple[int, str] | None = None
        #: records waiting for the lock holder to write them, in order: waited for
        #: (_Pending), rows (lists, see .audit_wire) and bodies made elsewhere (dicts)
        self._pending: list[_Pending | list[Any] | dict[str, Any]] = []
        #: when the oldest of them was queued (perf_counter; for :attr:`stats`)
        self._pending_since = 0.0
        self._wake = anyio.Event()
        self._writer_running = False
        #: a background writer in another process (:mod:`.audit_process`), while it runs
        self._sink: _Sink | None = None
        #: the most records :meth:`append_later` lets wait for the background writer
        self.max_behind = 1000
        #: records and store writes so far, and the longest a record waited to be written
        self.stats: dict[str, float] = {"records": 0, "writes": 0, "max_wait_ms": 0.0}

    async def _load_head(self) -> tuple[int, str]:
        last = await self.store.last_audit()
        if last is not None:
            return last.seq, last.hash
        checkpoint = await self.store.get_audit_checkpoint()
        if checkpoint is not None:
            return checkpoint.seq - 1, checkpoint.prev_hash
        return 0, GENESIS

    def _body(self, *, method: str, outcome: str, principal: Principal | None = None,
              target: str | None = None, arguments: Any = None, session: str | None = None,
              request_id: str | int | None = None, error: str | None = None,
              error_code: int | None = None, duration_ms: float | None = None,
              detail: dict[str, Any] | None = None, at: float | None = None
              ) -> dict[str, Any]:
        # through the row, so that a record hashes alike however it was queued
        return body_from_wire(use_row(
            self._clock() if at is None else at, method, outcome, principal, session,
            request_id, target, arguments, error, error_code, duration_ms, detail))

    async def append(self, **fields: Any) -> AuditRecord:
        """Add one record; returns once the store has it (durable if the store is).

        Fields: ``method``, ``outcome``, and optionally ``principal``, ``target``,
        ``arguments`` (digested here and never kept; None: no arguments),
        ``session``, ``request_id``, ``error``, ``error_code``, ``duration_ms``,
        ``detail``, ``at``."""
        _check_fields(fields)
        if fields.get("at") is None:
            fields["at"] = self._clock()
        pending = _Pending(fields)
        if not self._pending:
            self._pending_since = time.perf_counter()
        self._pending.append(pending)
        async with self._lock:
            # whoever holds the lock writes every record queued so far, in one store
            # call: under load, many requests share one transaction (group commit)
            if pending.record is None:
                await self._write_pending()
        assert pending.record is not None
        return pending.record

    def append_later(self, **fields: Any) -> None:
        """Queue one record for the background writer (:meth:`run`) and return at once.

        Only while :meth:`run` is running; otherwise the record is written by the
        next :meth:`append` or :meth:`flush`.  Its loss window after a crash is the
        time it waits in the queue (:attr:`stats`: the longest wait seen); a clean
        shutdown (the end of :meth:`run`) writes everything queued."""
        _check_fields(fields)
        if fields.get("at") is None:
            fields["at"] = self._clock()
        row = to_wire(fields)
        sink = self._sink
        if sink is not None and sink.offer(row):  # written by another process
            return
        self._queue_row(row)  # else here, by run() or the next append or flush

    def queue_use(self, row: list[Any]) -> bool:
        """Queue one record already made into its :func:`~.audit_wire.use_row` row for
        the background writer; False (nothing queued) when :attr:`writing_behind`
        is not true: :meth:`append` it then.  The request path's way: one call, no
        keyword fields to check or turn into the row."""
        sink = self._sink
        if sink is not None:
            return sink.offer(row)
        if not self._writer_running or len(self._pending) >= self.max_behind:
            return False
        self._queue_row(row)
        return True

    def _queue_row(self, row: list[Any]) -> None:
        # only the row is kept here: digesting the arguments, building, hashing and
        # storing the record are the writer's work, behind the answer
        pending = self._pending
        if not pending:
            self._pending_since = time.perf_counter()
        pending.append(row)
        self._wake.set()

    def use_sink(self, sink: _Sink | None) -> None:
        """Hand :meth:`append_later`'s records to ``sink`` (a writer in another
        process) from now on; None: back to this log's own writer."""
        self._sink = sink

    def requeue(self, items: list[list[Any]]) -> None:
        """Put records (their :mod:`.audit_wire` rows) back in front of everything
        queued: a writer elsewhere gave them back unwritten."""
        if not items:
            return
        if not self._pending:
            self._pending_since = time.perf_counter()
        self._pending[:0] = items
        self._wake.set()

    def append_bodies_later(self, bodies: list[dict[str, Any]]) -> None:
        """Queue records made already, as :meth:`_body` makes them (the writer
        process's path: it builds them from the wire, see :mod:`.audit_process`);
        written by the next :meth:`flush` or the background writer."""
        if not bodies:
            return
        if not self._pending:
            self._pending_since = time.perf_counter()
        self._pending.extend(bodies)
        self._wake.set()

    @property
    def writing_behind(self) -> bool:
        """Whether :meth:`append_later` may be used now: a background writer runs and
        fewer than :attr:`max_behind` records wait (past that, callers write
        themselves, which slows them down to what the store can take and bounds
        what a crash can lose)."""
        sink = self._sink
        if sink is not None:
            return sink.accepting
        return self._writer_running and len(self._pending) < self.max_behind

    @property
    def has_pending(self) -> bool:
        """Whether records wait to be written here."""
        return bool(self._pending)

    @property
    def last_appended(self) -> tuple[int, str] | None:
        """(seq, hash) of the last record this log appended (None before the first)."""
        return self._anchor

    async def flush(self) -> None:
        """Write everything queued now (with a writer process: and wait until it
        has stored everything shipped to it)."""
        sink = self._sink
        if sink is not None:
            await sink.flush()
        async with self._lock:
            if self._pending:
                await self._write_pending()

    async def flush_or_back_off(self) -> bool:
        """:meth:`flush`; when the store fails, log it, wait half a second and return
        False (the records stay queued for the next try: a writer never drops them)."""
        try:
            await self.flush()
        except Exception as error:  # the store is down: keep them, try again
            log.error("audit records not written yet (%s); retrying", type(error).__name__)
            await anyio.sleep(0.5)
            return False
        return True

    async def identities_after(self, seq: int) -> set[tuple[Any, ...]]:
        """(session, request id, time) of every record after ``seq``: how records a
        writer process may have stored before it stopped are told apart."""
        found: set[tuple[Any, ...]] = set()
        while True:
            page = await self.store.list_audit(AuditQuery(after_seq=seq, limit=_PAGE))
            found.update((r.session, r.request_id, r.time) for r in page)
            if len(page) < _PAGE:
                return found
            seq = page[-1].seq

    async def run(self, *, interval: float = 0.025) -> None:
        """The background writer: gathers queued records for ``interval`` seconds and
        writes them in one store call, until cancelled; then writes what is left.
        25 ms by default: on SQLite each write is a hop to a worker thread, and fewer
        hops leave the event loop more of the interpreter (2 ms measured 1,400 req/s
        against 2,250 at 25 ms, 8 clients on a shared 2-core machine).
        A store that fails is retried (the records stay queued), never dropped."""
        self._writer_running = True
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                await anyio.sleep(interval)
                if not await self.flush_or_back_off():
                    self._wake.set()
        finally:
            self._writer_running = False
            with anyio.CancelScope(shield=True):
                await self.flush()

    async def _write_pending(self) -> None:
        batch, self._pending = self._pending, []
        since = self._pending_since
        with anyio.CancelScope(shield=True):  # the batch is others' records too
            try:
                await self._write(batch)
            except BaseException:
                # not written: keep them, in order, before any queued meanwhile
                self._pending[:0] = batch
                self._pending_since = since
                raise
        self.stats["records"] += len(batch)
        self.stats["writes"] += 1
        # the first record of a batch waited longest
        self.stats["max_wait_ms"] = max(self.stats["max_wait_ms"],
                                        (time.perf_counter() - since) * 1000.0)

    async def _write(self, batch: list[_Pending | list[Any] | dict[str, Any]]) -> None:
        make = self._body
        # a list is a row (append_later, queue_use), a dict a body made already
        # (append_bodies_later)
        bodies = [make(**item.fields) if isinstance(item, _Pending)
                  else body_from_wire(item) if isinstance(item, list) else item
                  for item in batch]
        # a store that takes rows (the SQL one) gets each record as its field values:
        # no record object is built for a use nobody waits for
        append_rows = getattr(self.store, "append_audit_rows", None)
        for attempt in range(_ATTEMPTS):
            if self._head is None:
                self._head = await self._load_head()
            rows, head = chain_rows(self._head, bodies)
            try:
                if append_rows is not None:
                    await append_rows(rows)
                else:
                    await self.store.append_audit([AuditRecord(*row) for row in rows])
            except AuditConflict:
                # another writer (a replica on the same database) got there first:
                # back off a random while, holding our lock so that it can finish
                # its burst, then re-read the head
                self._head = None
                await anyio.sleep(random.uniform(0, 0.0005 * 2 ** min(attempt, 7)))
                continue
            for item, row in zip(batch, rows, strict=True):
                if isinstance(item, _Pending):
                    item.record = AuditRecord(*row)
            self._head = self._anchor = head
            return
        raise AuditConflict("could not append to the audit log: too much contention")

    async def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest record: the anchor to keep elsewhere."""
        async with self._lock:
            self._head = await self._load_head()
            return self._head

    async def verify(self, expected_head: tuple[int, str] | None = None) -> VerifyResult:
        """Walk the chain from the checkpoint (or the start) and report every
        record that was edited, deleted or moved."""
        checkpoint = await self.store.get_audit_checkpoint()
        expected_seq = checkpoint.seq if checkpoint else 1
        expected_prev = checkpoint.prev_hash if checkpoint else GENESIS
        problems: list[str] = []
        checked = 0
        after = 0
        last_seen = (expected_seq - 1, expected_prev)
        while True:
            page = await self.store.list_audit(AuditQuery(after_seq=after, limit=_PAGE))
            if not page:
                break
            for record in page:
                checked += 1
                if record.seq < expected_seq:
                    problems.append(f"record {record.seq} is out of order "
                                    f"(expected {expected_seq})")
                elif record.seq > expected_seq:
                    problems.append(f"record(s) {expected_seq}..{record.seq - 1} missing "
                                    f"before record {record.seq}")
                if record.prev_hash != expected_prev and record.seq >= expected_seq:
                    problems.append(f"record {record.seq} does not link to the record "
                                    "before it")
                if record_hash(record, record.prev_hash) != record.hash:
                    problems.append(f"record {record.seq} was edited (hash mismatch)")
                expected_seq = max(expected_seq, record.seq + 1)
                expected_prev = record.hash
                last_seen = (record.seq, record.hash)
                after = max(after, record.seq)
            if len(page) < _PAGE or len(problems) >= _MAX_PROBLEMS:
                break
        for name, anchor in (("expected", expected_head), ("last appended", self._anchor)):
            if anchor is not None and anchor[0] > last_seen[0]:
                problems.append(f"record(s) {last_seen[0] + 1}..{anchor[0]} missing at the end "
                                f"({name} head is {anchor[0]})")
        if expected_head is not None and expected_head[0] <= last_seen[0]:
            found = await self.store.list_audit(AuditQuery(after_seq=expected_head[0] - 1,
                                                           limit=1))
            if not found or found[0].seq != expected_head[0] \
                    or found[0].hash != expected_head[1]:
                problems.append(f"record {expected_head[0]} does not match the expected head")
        return VerifyResult(not problems, checked, tuple(problems[:_MAX_PROBLEMS]),
                            last_seen[0], last_seen[1])

    async def search(self, query: AuditQuery) -> list[AuditRecord]:
        return await self.store.list_audit(query)

    async def tail(self, n: int = 20, query: AuditQuery | None = None) -> list[AuditRecord]:
        """The newest ``n`` records matching ``query``, oldest first."""
        base = query or AuditQuery()
        found = await self.store.list_audit(replace(base, limit=n, newest_first=True))
        return found[::-1]

    async def retain(self, *, before: float | None = None, keep_last: int | None = None,
                     actor: Principal | None = None) -> AuditCheckpoint | None:
        """Delete records older than ``before`` (epoch seconds) or all but the
        newest ``keep_last``; the rest stays verifiable from the new checkpoint.
        The retention itself is then recorded (``audit/retain``)."""
        if (before is None) == (keep_last is None):
            raise ValueError("give exactly one of before= and keep_last=")
        async with self._lock:
            head_seq, head_hash = self._head = await self._load_head()
            first_kept: AuditRecord | None = None
            if keep_last is not None:
                kept = await self.store.list_audit(AuditQuery(limit=max(keep_last, 0),
                                                              newest_first=True))
                first_kept = kept[-1] if kept and keep_last > 0 else None
            else:
                newer = await self.store.list_audit(AuditQuery(since=before, limit=1))
                first_kept = newer[0] if newer else None
            if first_kept is None:
                checkpoint = AuditCheckpoint(head_seq + 1, head_hash, self._clock())
            else:
                checkpoint = AuditCheckpoint(first_kept.seq, first_kept.prev_hash, self._clock())
            removed = await self.store.retain_audit(checkpoint)
        await self.append(method="audit/retain", outcome="ok", principal=actor,
                          detail={"removed": removed, "from_seq": checkpoint.seq})
        return checkpoint
