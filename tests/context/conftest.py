"""The context tests reuse the storage suite's backends (memory, SQLite, real PostgreSQL)."""

from tests.storage.conftest import pg_cluster, sql_target, target  # noqa: F401
