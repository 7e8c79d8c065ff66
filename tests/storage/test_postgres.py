"""PostgreSQL specifics, on the real server: schemas that are not ours, dropped connections."""

from __future__ import annotations

import anyio
import pytest

from mobius_rpc.storage import NotOurDatabase, StoreUnavailable, open_store

from .conftest import Clock
from .pgcluster import PgCluster

pytestmark = pytest.mark.anyio


async def test_a_schema_holding_other_tables_is_refused_untouched(pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("foreign_schema")
    pg_cluster.execute("CREATE SCHEMA mobius", "foreign_schema")
    pg_cluster.execute("CREATE TABLE mobius.invoices (id int)", "foreign_schema")
    with pytest.raises(NotOurDatabase, match=r"schema mobius .*\(invoices\)"):
        async with open_store(url):
            pass
    import psycopg
    with psycopg.connect(url) as conn:
        tables = conn.execute("SELECT table_name FROM information_schema.tables "
                              "WHERE table_schema = 'mobius'").fetchall()
    assert tables == [("invoices",)]


def terminate(cluster: PgCluster, database: str, like: str = "%") -> None:
    cluster.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{database}' AND pid <> pg_backend_pid() "
                    f"AND query LIKE '{like}'")


async def test_dropped_pooled_connections_are_replaced_unseen(pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("dropped")
    async with open_store(url) as store:
        await store.events.append("s", "get", b"before")
        for round_ in range(3):
            terminate(pg_cluster, "dropped")
            # nothing was committed on the dead connection, so the store runs it again
            assert await store.events.append("s", "get", b"after") == round_ + 2
            terminate(pg_cluster, "dropped")
            assert (await store.events.replay("s", "get")).complete
        replay = await store.events.replay("s", "get")
        assert [e.data for e in replay.events] == [b"before"] + [b"after"] * 3


async def test_a_server_that_went_away_is_one_clear_error() -> None:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreUnavailable, match=f"cannot connect to PostgreSQL at .*:{port}") \
            as caught:
        async with open_store(f"postgresql://u:secret@127.0.0.1:{port}/db"):
            pass
    assert "secret" not in str(caught.value) and "\n" not in str(caught.value)


async def test_a_dropped_listen_connection_reconnects(pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("relisten")
    clock = Clock()
    async with open_store(url, clock=clock) as one, open_store(url, clock=clock) as two:
        async with two.channel.subscribe("news") as sub:
            await one.channel.publish("news", b"first")
            with anyio.fail_after(10):
                assert (await sub.__anext__()).payload == b"first"
            terminate(pg_cluster, "relisten", like="LISTEN%")
            got = None
            with anyio.fail_after(20):
                while got is None:  # messages published while it reconnects are lost
                    await one.channel.publish("news", b"again")
                    with anyio.move_on_after(0.5):
                        got = await sub.__anext__()
            assert got.payload == b"again"


async def test_an_append_is_one_statement_until_events_must_go(pg_cluster: PgCluster,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """The event append on PostgreSQL is one round trip outside a transaction (it was
    seven to nine inside one); eviction, when a bound is passed, is a second."""
    from mobius_rpc.storage import Retention
    from mobius_rpc.storage.postgres_db import PgDatabase

    url = pg_cluster.create_database("one_statement")
    statements: list[str] = []
    transactions: list[int] = []
    translate, write = PgDatabase._translate, PgDatabase.write

    def counting(self: PgDatabase, text: str) -> str:
        statements.append(text)
        return translate(self, text)

    async def counted_write(self: PgDatabase, make: object) -> object:
        transactions.append(1)
        return await write(self, make)  # type: ignore[arg-type]

    monkeypatch.setattr(PgDatabase, "_translate", counting)
    monkeypatch.setattr(PgDatabase, "write", counted_write)
    async with open_store(url, retention=Retention(max_events=3)) as store:
        for i in range(3):
            statements.clear()
            transactions.clear()
            assert await store.events.append("s", "get", b"e%d" % i) == i + 1
            assert len(statements) == 1 and not transactions
        assert await store.events.append("s", "get", b"e3") == 4  # past max_events: one goes
        assert len(transactions) == 1
        replay = await store.events.replay("s", "get")
        assert [e.event_id for e in replay.events] == [2, 3, 4] and replay.evicted == (1, 1)
