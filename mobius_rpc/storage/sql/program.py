"""Programs and the runner interface both SQL backends implement.

Statements use ``?`` placeholders; the PostgreSQL runner rewrites them to
``%s`` (our SQL never contains a literal ``?`` or ``%``).  A write program runs
in one transaction that takes the write lock first (SQLite ``BEGIN
IMMEDIATE``; PostgreSQL row locks taken by the program's first statement), so
its reads and writes are consistent.  A read program runs outside a
transaction, so each of its statements must be self-consistent on its own: read
programs are written as single statements.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, NamedTuple, Protocol, TypeVar

__all__ = ("Statement", "Result", "Program", "Runner", "T")

T = TypeVar("T")

Statement = tuple[str, tuple[Any, ...]]


class Result(NamedTuple):
    """The rows a statement produced (empty for DML) and how many rows it changed."""

    rows: list[tuple[Any, ...]]
    changed: int


Program = Generator[Statement, Result, T]


class Runner(Protocol):
    """Runs programs against one database (see the SQLite and PostgreSQL backends)."""

    dialect: str

    async def write(self, make: Callable[[], Program[T]]) -> T:
        """Run a fresh program from ``make`` in a write transaction (retried when busy)."""
        ...

    async def read(self, make: Callable[[], Program[T]]) -> T:
        """Run a fresh program from ``make`` without a write lock."""
        ...


def run_sync(program: Program[T], execute: Callable[[str, tuple[Any, ...]], Result]) -> T:
    """Drive ``program`` with a synchronous ``execute`` (the SQLite worker thread)."""
    try:
        statement = next(program)
        while True:
            statement = program.send(execute(*statement))
    except StopIteration as done:
        value: T = done.value
        return value
