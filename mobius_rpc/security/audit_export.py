"""Exports of audit records: JSON and CSV (``mobius audit tail|search --json|--csv``)."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, fields
from typing import Any

import orjson

from .audit_chain import canonical_json
from .store import AuditRecord

__all__ = ("to_json", "to_csv")

_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _row(record: AuditRecord) -> dict[str, Any]:
    return asdict(record)


def to_json(records: list[AuditRecord]) -> str:
    """A JSON array of the records (field names as in :class:`AuditRecord`)."""
    return orjson.dumps([_row(r) for r in records], option=orjson.OPT_INDENT_2).decode()


def to_csv(records: list[AuditRecord]) -> str:
    """CSV with a header row; ``detail`` as canonical JSON.  A cell that would
    start with a spreadsheet formula character gets a leading ``'`` so that
    opening an export never runs what a caller put into an error message."""
    out = io.StringIO()
    names = [f.name for f in fields(AuditRecord)]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for record in records:
        cells: list[str] = []
        for name in names:
            value = getattr(record, name)
            if name == "detail":
                cell = canonical_json(value).decode()
            else:
                cell = "" if value is None else str(value)
            if cell.startswith(_CSV_FORMULA) and not _is_number(cell):
                cell = "'" + cell
            cells.append(cell)
        writer.writerow(cells)
    return out.getvalue()


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
