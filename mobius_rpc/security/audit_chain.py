"""The audit log's hash chain: canonical JSON, digests and record hashes.

A record's ``hash`` is the SHA-256 of the previous record's hash, a newline and
the record's canonical JSON (sorted keys, no spaces; ``hash`` and ``prev_hash``
left out), so the same record always hashes alike wherever it is built: in the
serving process, in the audit writer process, or in ``mobius audit verify``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from typing import Any

import orjson

from .store import AuditRecord

__all__ = ("GENESIS", "canonical_json", "digest", "record_hash", "chain_hash", "chain_rows",
           "safe_digest", "storable")

#: the ``prev_hash`` of the first record
GENESIS = "0" * 64


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same value always gives the same bytes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits, and the like
        return json.dumps(value, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, default=str).encode()


def digest(value: Any) -> str:
    """SHA-256 (hex) of ``value``'s canonical JSON."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


#: the fields a record's hash covers, in record order
_BODY = tuple(f.name for f in fields(AuditRecord) if f.name not in ("hash", "prev_hash"))

_sha256 = hashlib.sha256
_dumps = orjson.dumps
_SORTED = orjson.OPT_SORT_KEYS


def chain_hash(prev_hash: str, body: dict[str, Any]) -> str:
    """The hash of a record body (its fields in record order, without the two
    hashes) that follows a record hashed ``prev_hash``."""
    # canonical_json inlined: the writer hashes every record
    try:
        data = _dumps(body, option=_SORTED)
    except TypeError:
        data = canonical_json(body)
    return _sha256(prev_hash.encode("ascii") + b"\n" + data).hexdigest()


def chain_rows(head: tuple[int, str], bodies: list[dict[str, Any]]
               ) -> tuple[list[tuple[Any, ...]], tuple[int, str]]:
    """Number and chain ``bodies`` after the record ``head`` (its seq and hash).

    Sets each body's ``seq`` and returns the rows to store (the body's values in
    record order, then ``prev_hash`` and ``hash``) with the new head.  One place
    for the chain step, so the audit log and its benchmark time the same code.
    """
    seq, prev = head
    rows: list[tuple[Any, ...]] = []
    for body in bodies:
        seq += 1
        body["seq"] = seq
        digest = chain_hash(prev, body)
        rows.append((*body.values(), prev, digest))  # the body is in field order
        prev = digest
    return rows, (seq, prev)


def record_hash(record: AuditRecord, prev_hash: str) -> str:
    """The hash ``record`` must carry when it follows a record hashed ``prev_hash``."""
    return chain_hash(prev_hash, {name: getattr(record, name) for name in _BODY})


def storable(text: str | None) -> str | None:
    """``text`` with NUL characters replaced (U+FFFD): PostgreSQL's text refuses them,
    and a method name, tool name, request id or error message is the caller's to
    choose.  Applied before the hash, so the stored record is the hashed one."""
    if text is None or "\x00" not in text:
        return text
    return text.replace("\x00", "\ufffd")


def safe_digest(value: Any) -> str:
    """:func:`digest`, or a marker for a value no JSON encoder takes (a cycle)."""
    try:  # digest inlined (the writer digests every record's arguments)
        return _sha256(_dumps(value, option=_SORTED)).hexdigest()
    except TypeError:
        pass
    try:
        return digest(value)
    except (TypeError, ValueError, RecursionError):
        return "undigestible"
