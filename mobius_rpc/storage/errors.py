"""What can go wrong with a store, as exceptions whose text is one line a user can act on.

Every failure a user can cause or meet (a malformed URL, an unreachable or
misconfigured database, a file that is not ours, a schema newer than the code)
is a :class:`StoreError` subclass whose ``str()`` is a single line naming what
failed and never containing a password, so a command line can print it and exit
with status 2 instead of showing a traceback.
"""

from __future__ import annotations

__all__ = (
    "StoreError",
    "StoreConfigError",
    "StoreUnavailable",
    "StoreBusy",
    "NotOurDatabase",
    "StoreCorrupt",
    "SchemaTooNew",
    "SchemaOutdated",
    "StoreConflict",
    "StreamFinished",
)


class StoreError(Exception):
    """Base of every store failure; the message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class StoreConfigError(StoreError):
    """The store was named wrongly: a malformed URL, or a driver that is not installed."""


class StoreUnavailable(StoreError):
    """The database could not be reached or refused us (network, credentials, permissions)."""


class StoreBusy(StoreError):
    """Other writers held the database for longer than the retry deadline."""


class NotOurDatabase(StoreError):
    """The file is not SQLite, or is a database of another application: left untouched."""


class StoreCorrupt(StoreError):
    """The database file is damaged (SQLite reported a malformed image)."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer version of the code: refused, left untouched."""


class SchemaOutdated(StoreError):
    """The database needs migrations that were not allowed to run (``migrate=False``)."""


class StoreConflict(StoreError):
    """A record with that key already exists (e.g. a task id created twice)."""


class StreamFinished(StoreError):
    """An event was appended to a stream that was already marked finished."""
