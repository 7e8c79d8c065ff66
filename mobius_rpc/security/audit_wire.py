"""An audit record's fields as one flat row of plain values: the form records wait in.

A record nobody waits for (an allowed use) is queued as this row, whoever writes
it: the background writer in this process, or the writer process, to which the
rows go over a pipe as JSON (:mod:`.audit_process`).  Making the row is the
whole of what a record costs the request that caused it: a list of sixteen
values, no dict, no digest.  The writer turns it into the record's body
(:func:`body_from_wire`), which :meth:`~.audit.AuditLog.append` makes from the
same fields, so a record hashes alike whichever way it came.

The row's slots, in order: time, method, outcome, user, organization, how the
caller authenticated, credential id, session, request id, target, arguments,
arguments digest (set only when the arguments cannot go as JSON; the
arguments slot is None then), error, error code, duration (ms), detail.
"""

from __future__ import annotations

from typing import Any

from .audit_chain import safe_digest, storable
from .principal import Principal

__all__ = ("use_row", "to_wire", "body_from_wire", "row_identity", "ARGUMENTS", "DIGESTED")

#: the slots of the arguments and of their digest (see the module docstring)
ARGUMENTS = 10
DIGESTED = 11


def use_row(at: float, method: str, outcome: str, principal: Principal | None,
            session: str | None, request_id: Any, target: str | None, arguments: Any,
            error: str | None = None, error_code: int | None = None,
            duration_ms: float | None = None, detail: dict[str, Any] | None = None
            ) -> list[Any]:
    """The row of one record (positional: the request path makes one per call)."""
    if principal is None:
        return [at, method, outcome, None, None, None, None, session,
                None if request_id is None else str(request_id), target, arguments, None,
                error, error_code, duration_ms, detail or None]
    return [at, method, outcome, principal.user, principal.organization,
            principal.method._value_, principal.credential, session,
            None if request_id is None else str(request_id), target, arguments, None,
            error, error_code, duration_ms, detail or None]


def to_wire(fields: dict[str, Any]) -> list[Any]:
    """The row of a record given as :meth:`~.audit.AuditLog.append`'s keyword fields
    (``at`` set)."""
    get = fields.get
    return use_row(fields["at"], fields["method"], fields["outcome"], get("principal"),
                   get("session"), get("request_id"), get("target"), get("arguments"),
                   get("error"), get("error_code"), get("duration_ms"), get("detail"))


def body_from_wire(row: list[Any]) -> dict[str, Any]:
    """The record body (:class:`~.store.AuditRecord`'s fields but the two hashes, in
    its order; ``seq`` set by the writer) of a row."""
    (at, method, outcome, user, organization, auth_method, credential, session, request_id,
     target, arguments, digested, error, error_code, duration_ms, detail) = row
    return {
        "seq": 0, "time": at, "method": storable(method), "outcome": outcome, "user": user,
        "organization": organization or None, "auth_method": auth_method,
        "credential": credential, "session": storable(session),
        "request_id": storable(request_id), "target": storable(target),
        "arguments_digest": digested if arguments is None else safe_digest(arguments),
        "error": storable(error), "error_code": error_code,
        "duration_ms": None if duration_ms is None else round(duration_ms, 3),
        "detail": detail or {}}


def row_identity(row: list[Any]) -> tuple[Any, ...]:
    """(session, request id, time) as the store holds them: how a record a writer
    process may have stored before it stopped is recognised
    (:meth:`~.audit.AuditLog.identities_after`)."""
    return storable(row[7]), storable(row[8]), row[0]
