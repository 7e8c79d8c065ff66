"""What persists: sessions, stream events, tasks and replica notifications.

``async with open_store(url) as store`` gives a :class:`Store` backed by
memory, SQLite (the default: one file under the data directory) or PostgreSQL,
all with the same behaviour.  Plain data goes in and out (the dataclasses of
:mod:`.records`, JSON objects as dicts, payloads as bytes); this package knows
nothing of the protocol that uses it.  See docs/storage.md.
"""

from .base import (
    MAX_MESSAGE_BYTES,
    Channel,
    EventStore,
    SessionStore,
    Store,
    Subscription,
    TaskStore,
)
from .errors import (
    NotOurDatabase,
    SchemaOutdated,
    SchemaTooNew,
    StoreBusy,
    StoreConfigError,
    StoreConflict,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
    StreamFinished,
)
from .migrate import LATEST as SCHEMA_VERSION
from .open import (
    data_dir,
    default_sqlite_path,
    inspect_store,
    open_store,
    parse_store_url,
    store_url,
    upgrade_store,
)
from .records import (
    TERMINAL_STATUSES,
    Message,
    Replay,
    Retention,
    SchemaStatus,
    SessionRecord,
    StoredEvent,
    SweepReport,
    TaskPage,
    TaskRecord,
)
from .sqlite_db import SqliteOptions

__all__ = (
    "Channel", "EventStore", "SessionStore", "Store", "Subscription", "TaskStore",
    "MAX_MESSAGE_BYTES", "SCHEMA_VERSION",
    "NotOurDatabase", "SchemaOutdated", "SchemaTooNew", "StoreBusy", "StoreConfigError",
    "StoreConflict", "StoreCorrupt", "StoreError", "StoreUnavailable", "StreamFinished",
    "data_dir", "default_sqlite_path", "inspect_store", "open_store", "parse_store_url",
    "store_url", "upgrade_store",
    "TERMINAL_STATUSES", "Message", "Replay", "Retention", "SchemaStatus", "SessionRecord",
    "StoredEvent", "SweepReport", "TaskPage", "TaskRecord", "SqliteOptions",
)
