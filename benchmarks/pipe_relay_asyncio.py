"""The floor of a second stdio hop for an asyncio program: a process that copies
bytes between its own stdio and a child's through the event loop, parsing nothing.

    python benchmarks/pipe_relay_asyncio.py COMMAND [ARGS ...]

``benchmarks/gateway.py --floor`` puts it where the gateway would be, next to
``pipe_relay.py`` (threads and blocking reads).  The gateway is an asyncio
program, so what this relay costs (a loop wake-up, a read and a write per
message each way, nothing else) is the least its stdio path can cost on this
machine; the difference to the threaded relay is the event loop's own share.
"""

from __future__ import annotations

import asyncio
import os
import sys


async def main() -> int:
    loop = asyncio.get_running_loop()
    child = await asyncio.create_subprocess_exec(*sys.argv[1:], stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    to_child = child.stdin.transport
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(1, "wb", 0))
    ended = loop.create_future()

    class FromParent(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            to_child.write(data)

        def eof_received(self) -> None:
            to_child.close()
            if not ended.done():
                ended.set_result(None)

    await loop.connect_read_pipe(FromParent, os.fdopen(0, "rb", 0))
    while data := await child.stdout.read(1 << 16):
        out.write(data)
    return await child.wait()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
