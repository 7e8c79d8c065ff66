"""Fixtures for the storage tests: one target per backend, and a real PostgreSQL.

``target`` is parametrized over memory, SQLite and PostgreSQL; each test gets
a fresh location (a named memory store, a new file, a new PostgreSQL schema),
and ``target.open()`` may be called twice to get two replicas on it.  The
PostgreSQL server is started once per test session from the Debian binaries;
without them the PostgreSQL cases skip, saying why.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mobius_rpc.storage import SqliteOptions, Store, open_store

from .pgcluster import PgCluster, find_bindir

BACKENDS = ["memory", "sqlite", "postgresql"]
FAST_SQLITE = SqliteOptions(poll_interval=0.02)


def postgres_missing() -> str | None:
    if importlib.util.find_spec("psycopg") is None or \
            importlib.util.find_spec("psycopg_pool") is None:
        return "psycopg/psycopg_pool are not installed (pip install -e '.[dev]')"
    if find_bindir() is None:
        return ("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
                "(apt-get install postgresql; .ci/run does this)")
    return None


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    reason = postgres_missing()
    if reason:
        pytest.skip(reason)
    bindir = find_bindir()
    assert bindir is not None
    with PgCluster(bindir) as cluster:
        yield cluster


class Clock:
    """A clock the test moves by hand (stores read time only through it)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Target:
    backend: str
    url: str
    schema: str = "mobius"
    options: dict[str, Any] = field(default_factory=dict)

    def open(self, **kw: Any) -> AbstractAsyncContextManager[Store]:
        if self.backend == "sqlite":
            kw.setdefault("sqlite", FAST_SQLITE)
        return open_store(self.url, schema=self.schema, **{**self.options, **kw})


def make_target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Target:
    name = f"t{uuid.uuid4().hex[:12]}"
    if backend == "memory":
        return Target("memory", f"memory:{name}")
    if backend == "sqlite":
        return Target("sqlite", f"sqlite:///{tmp_path / 'store.db'}")
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return Target("postgresql", cluster.url(), schema=name)


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return make_target(request.param, tmp_path, request)


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return make_target(request.param, tmp_path, request)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(target: Target, clock: Clock) -> AsyncIterator[Store]:
    async with target.open(clock=clock) as opened:
        yield opened
