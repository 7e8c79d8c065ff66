"""The client's persistent token store on memory, SQLite and a real PostgreSQL.

The same contract holds on every backend; on the SQL ones the database must
never hold a token or client secret in clear, a row moved to another server
must not open (a token is only offered to the server it was obtained for),
and what was saved must survive closing and reopening the store.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobius_rpc.client.oauth import ClientRegistration, TokenSet
from mobius_rpc.credentials import SqlTokenStore, token_store_for
from mobius_rpc.credentials.sealing import KEY_ENV, KEY_FILE, Sealer, SealError, load_client_key
from mobius_rpc.storage import Store
from mobius_rpc.storage.sql.program import Program

from .conftest import Target

pytestmark = pytest.mark.anyio

SERVER = "https://mcp.example.test/mcp"
OTHER = "https://other.example.test/mcp"
ISSUER = "https://login.example.test"
ACCESS = "at-3f9c2b7e-secret-access-value"
REFRESH = "rt-81d0aa55-secret-refresh-value"
SECRET = "cs-77aa19e0-secret-client-value"

TOKENS = TokenSet(ACCESS, "Bearer", 2_000_000.0, REFRESH, "mcp:tools mcp:read", ISSUER, SERVER)
CLIENT = ClientRegistration("client-1", SECRET, "client_secret_basic", ISSUER,
                            ("http://127.0.0.1:4321/callback",))


async def test_tokens_and_registrations_round_trip(store: Store) -> None:
    tokens = token_store_for(store, sealer=Sealer(os.urandom(32)))
    assert await tokens.get_tokens(SERVER) is None
    await tokens.set_tokens(SERVER, TOKENS)
    await tokens.set_client(ISSUER, CLIENT)
    assert await tokens.get_tokens(SERVER) == TOKENS
    assert await tokens.get_client(ISSUER) == CLIENT
    assert await tokens.get_tokens(OTHER) is None  # kept per server, never shared
    assert await tokens.get_client("https://elsewhere.test") is None
    renewed = TokenSet("at-new", "Bearer", None, None, None, ISSUER, SERVER)
    await tokens.set_tokens(SERVER, renewed)
    assert await tokens.get_tokens(SERVER) == renewed
    public = ClientRegistration("client-2", None, "none", ISSUER, ())
    await tokens.set_client(ISSUER, public)
    assert await tokens.get_client(ISSUER) == public
    await tokens.set_tokens(SERVER, None)
    await tokens.set_client(ISSUER, None)
    assert await tokens.get_tokens(SERVER) is None and await tokens.get_client(ISSUER) is None
    await tokens.set_tokens(SERVER, None)  # forgetting twice is fine


def _rows(table: str) -> Program[list[tuple[object, ...]]]:
    result = yield f"SELECT * FROM {table}", ()
    return result.rows


async def test_the_database_holds_no_secret_in_clear(sql_target: Target) -> None:
    sealer = Sealer(os.urandom(32))
    async with sql_target.open() as store:
        tokens = token_store_for(store, sealer=sealer)
        await tokens.set_tokens(SERVER, TOKENS)
        await tokens.set_client(ISSUER, CLIENT)
        db = store.db  # type: ignore[attr-defined]
        rows = await db.read(lambda: _rows("client_tokens")) \
            + await db.read(lambda: _rows("client_registrations"))
    text = repr(rows)
    assert ISSUER in text and "mcp:tools" in text  # what is not secret stays readable
    for secret in (ACCESS, REFRESH, SECRET):
        assert secret not in text
    if sql_target.backend == "sqlite":  # the file itself, and its write-ahead log
        path = Path("/" + sql_target.url.removeprefix("sqlite:").lstrip("/"))
        for file in path.parent.glob(path.name + "*"):
            data = file.read_bytes()
            for secret in (ACCESS, REFRESH, SECRET):
                assert secret.encode() not in data, file


def _move(table: str, column: str, old: str, new: str) -> Program[int]:
    result = yield f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (new, old)
    return result.changed


async def test_a_row_moved_to_another_server_does_not_open(sql_target: Target) -> None:
    sealer = Sealer(os.urandom(32))
    async with sql_target.open() as store:
        tokens = token_store_for(store, sealer=sealer)
        await tokens.set_tokens(SERVER, TOKENS)
        await tokens.set_client(ISSUER, CLIENT)
        db = store.db  # type: ignore[attr-defined]
        assert await db.write(lambda: _move("client_tokens", "server", SERVER, OTHER)) == 1
        assert await db.write(lambda: _move("client_registrations", "issuer", ISSUER,
                                            "https://evil.test")) == 1
        assert await tokens.get_tokens(OTHER) is None
        assert await tokens.get_client("https://evil.test") is None
        # another key opens nothing either
        await tokens.set_tokens(SERVER, TOKENS)
        assert await token_store_for(store, sealer=Sealer(os.urandom(32))).get_tokens(
            SERVER) is None


async def test_saved_tokens_outlive_the_store(sql_target: Target) -> None:
    sealer = Sealer(os.urandom(32))
    async with sql_target.open() as store:
        await token_store_for(store, sealer=sealer).set_tokens(SERVER, TOKENS)
    async with sql_target.open() as store:
        kept = token_store_for(store, sealer=sealer)
        assert isinstance(kept, SqlTokenStore)
        assert await kept.get_tokens(SERVER) == TOKENS
        assert await kept.servers() == [SERVER]


async def test_the_key_is_loaded_only_when_a_secret_is_touched(sql_target: Target) -> None:
    made: list[Sealer] = []

    def make() -> Sealer:
        made.append(Sealer(os.urandom(32)))
        return made[-1]

    async with sql_target.open() as store:
        tokens = SqlTokenStore(store.db, make, lambda: 0.0)  # type: ignore[attr-defined]
        assert await tokens.get_tokens(SERVER) is None and not made
        await tokens.set_tokens(SERVER, TOKENS)
        assert await tokens.get_tokens(SERVER) == TOKENS and len(made) == 1


def test_the_key_file_is_private_and_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = load_client_key(home, {})
    path = home / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 32
    assert load_client_key(home, {}) == key
    path.chmod(0o644)
    with pytest.raises(SealError, match="readable by others"):
        load_client_key(home, {})
    with pytest.raises(SealError, match="32 bytes"):
        load_client_key(home, {KEY_ENV: "c2hvcnQ="})
    with pytest.raises(SealError, match="base64"):
        load_client_key(home, {KEY_ENV: "not base64 at all!"})


@settings(max_examples=50, deadline=None)
@given(value=st.text(max_size=300), row=st.text(max_size=60), field=st.text(max_size=20),
       other=st.text(max_size=60))
def test_sealed_values_open_only_in_their_place(value: str, row: str, field: str,
                                                other: str) -> None:
    sealer = Sealer(b"k" * 32)
    sealed = sealer.seal(row, field, value)
    assert sealer.open(row, field, sealed) == value
    if len(value) >= 8:
        assert value not in sealed
    if other != row:
        with pytest.raises(SealError):
            sealer.open(other, field, sealed)
    with pytest.raises(SealError):
        Sealer(b"j" * 32).open(row, field, sealed)
    with pytest.raises(SealError):
        sealer.open(row, field, sealed[:-4] + ("AAAA" if sealed[-4:] != "AAAA" else "BBBB"))
