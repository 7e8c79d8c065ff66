"""The storage tests' backends and real PostgreSQL, for the replica tests."""

from tests.storage.conftest import make_target, pg_cluster, target

__all__ = ("make_target", "pg_cluster", "target")
