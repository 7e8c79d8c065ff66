"""The SQL security store's audit log statements: batched appends, search, retention.

Appending is the store's one hot write (the audit writer sends every request's
record in batches), so how a batch becomes statements is tuned for each
database (see ``_CHUNKS`` and ``_PG_INSERT``); that tuning and the other audit
programs live here, apart from :mod:`.sql_programs`, so that each module stays
small and the batch logic can be tested on its own.

The names keep their leading underscore: they are the SQL store's internals,
imported only by :mod:`.sql_store` and its tests.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import orjson

from ..storage.sql.program import Program
from .sql_programs import _dump, _load, _many, _opt
from .store import AuditCheckpoint, AuditConflict, AuditQuery, AuditRecord

__all__: tuple[str, ...] = ()  # nothing public: the SQL store's internals

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


def _audit(row: tuple[Any, ...]) -> AuditRecord:
    return AuditRecord(int(row[0]), float(row[1]), row[2], row[3], row[4], row[5], row[6],
                       row[7], row[8], row[9], row[10], row[11], row[12],
                       None if row[13] is None else int(row[13]), _opt(row[14]),
                       _load(row[15], {}), row[16], row[17])


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

