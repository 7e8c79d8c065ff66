"""Versioned SQL migrations, shipped inside the package, one file per version.

``migrations/NNNN_name.sql`` is version NNNN.  Its SQL is shared by SQLite and
PostgreSQL except between a ``-- dialect: sqlite`` or ``-- dialect: postgresql``
line and the next ``-- dialect: all`` (or the next dialect line): the dialects
differ in a few types and identity columns only, so the branches stay small
and a reader sees both versions of a table side by side.

Each backend applies the pending migrations in one transaction under its own
lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock) and records each
version in ``mobius_schema``; :func:`apply_program` is that shared part.  A
database whose version is above :data:`LATEST` was written by newer code and is
refused before anything is written (:func:`check_not_newer`).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Generator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from .errors import SchemaTooNew

__all__ = ("Migration", "migrations", "LATEST", "check_not_newer", "apply_program",
           "split_statements", "pending", "DIALECTS")

DIALECTS = ("sqlite", "postgresql")
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SECTION = re.compile(r"^--\s*dialect:\s*(\w+)\s*$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(sql: str) -> list[str]:
    """Complete statements of ``sql`` in order (comments-only chunks dropped)."""
    out: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            text = "\n".join(part for part in buffer.splitlines()
                             if part.strip() and not part.strip().startswith("--")).strip()
            if text:
                out.append(text.rstrip(";").strip())
            buffer = ""
    if any(part.strip() and not part.strip().startswith("--") for part in buffer.splitlines()):
        raise ValueError(f"unterminated SQL statement: {buffer.strip()[:60]!r}")
    return out


def _for_dialect(text: str, dialect: str) -> str:
    kept: list[str] = []
    section = "all"
    for line in text.splitlines():
        match = _SECTION.match(line.strip())
        if match:
            section = match.group(1)
            if section not in (*DIALECTS, "all"):
                raise ValueError(f"unknown dialect section {section!r}")
            continue
        if section in ("all", dialect):
            kept.append(line)
    return "\n".join(kept) + "\n"


@cache
def migrations(dialect: str) -> tuple[Migration, ...]:
    """Every migration for ``dialect``, by version; versions must run 1, 2, 3, ..."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}")
    found: list[Migration] = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            sql = _for_dialect(entry.read_text(encoding="utf-8"), dialect)
            found.append(Migration(int(match.group(1)), match.group(2),
                                   tuple(split_statements(sql))))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError("migration files must be numbered 0001, 0002, ... without gaps")
    return tuple(found)


LATEST = len(migrations("sqlite"))


def check_not_newer(version: int, location: str) -> None:
    if version > LATEST:
        raise SchemaTooNew(f"the database at {location} has schema version {version}, newer "
                           f"than this code knows ({LATEST}): upgrade mobius-rpc to use it; "
                           f"the database was left untouched")


def pending(version: int, dialect: str, target: int | None = None) -> tuple[Migration, ...]:
    goal = LATEST if target is None else target
    return tuple(m for m in migrations(dialect) if version < m.version <= goal)


Statement = tuple[str, tuple[Any, ...]]


def apply_program(dialect: str, version: int, now: float,
                  target: int | None = None) -> Generator[Statement, Any, int]:
    """Statements that take a database at ``version`` to ``target`` (default: latest).

    Runs inside the caller's locked transaction; returns the new version.
    """
    new = version
    for migration in pending(version, dialect, target):
        for statement in migration.statements:
            yield statement, ()
        yield ("INSERT INTO mobius_schema (version, name, applied_at) VALUES (?, ?, ?)",
               (migration.version, migration.name, now))
        new = migration.version
    return new
