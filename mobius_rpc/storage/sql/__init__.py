"""The SQL shared by the SQLite and PostgreSQL stores, written once as programs.

A *program* is a generator that yields ``(sql, params)`` statements and
receives each statement's :class:`~.program.Result`; it returns the value of
the operation.  It holds the whole logic of one transaction (retention, the
terminal-status rule, cursors) without doing any I/O, so the SQLite backend
runs it synchronously in a worker thread and the PostgreSQL backend runs it
with ``await`` on a pooled connection: one logic, two drivers, and the dialect
differences stay in the drivers and the migration files.
"""

from .events import SqlEventStore
from .program import Program, Result, Runner
from .sessions import SqlSessionStore
from .tasks import SqlTaskStore

__all__ = ("Program", "Result", "Runner", "SqlEventStore", "SqlSessionStore", "SqlTaskStore")
