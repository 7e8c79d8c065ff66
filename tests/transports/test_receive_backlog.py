"""The receive loop never waits on a send, yet a peer that keeps sending and never
reads cannot grow the server's output backlog without bound: past
``RECEIVE_BACKLOG`` bytes waiting behind a stuck send, the loop stops reading."""

from __future__ import annotations

from collections import deque

import anyio
import pytest

from mobius_rpc.runtime import session as runtime_session
from mobius_rpc.server.app import Server

pytestmark = pytest.mark.anyio


class _NeverRead:
    """A peer that sends malformed lines and never reads what it is sent."""

    def __init__(self, count: int) -> None:
        self.inbox = deque(b'{"jsonrpc": "2.0", "id": %d, "method": 5}' % n
                           for n in range(count))
        self.reads = 0
        self.sends = 0

    async def receive(self) -> bytes:
        if not self.inbox:
            await anyio.sleep_forever()
        self.reads += 1
        return self.inbox.popleft()

    async def send(self, message: bytes) -> None:
        self.sends += 1
        await anyio.sleep_forever()  # its side of the pipe is full

    async def aclose(self) -> None:
        pass


async def test_a_peer_that_never_reads_is_not_read_without_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_session, "RECEIVE_BACKLOG", 20_000)
    peer = _NeverRead(5_000)
    with anyio.move_on_after(3):
        await Server("backlog").serve(peer)  # type: ignore[arg-type]
    # each refusal is about 100 bytes: the loop stopped after a few hundred of them
    assert peer.sends >= 1
    assert peer.reads < 1_000, peer.reads
    assert len(peer.inbox) > 4_000
