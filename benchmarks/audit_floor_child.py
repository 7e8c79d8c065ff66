"""The floor under the audit writer process: its pipe protocol and nothing else.

``benchmarks/audit_writer.py`` starts this in place of
:mod:`mobius_rpc.security.audit_writer` (``AuditWriterProcess(command=...)``) and
feeds it the same way.  It reads the configuration frame, says it is ready,
then reads every batch frame whole without decoding it, and acknowledges the
batches read every commit interval, as the writer does after each commit.  At
the end of its stdin it acknowledges the rest, prints its account and exits.

So its CPU per record is what any asyncio process pays for being woken for
each shipment, reading it and answering: the part of the writer's CPU that no
change to digesting, chaining or storing can remove.
"""

from __future__ import annotations

import asyncio
import sys

import orjson

LENGTH = 4


def say(message: object) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.buffer.flush()


async def serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    size = int.from_bytes(await reader.readexactly(LENGTH), "big")
    interval = float(orjson.loads(await reader.readexactly(size)).get("interval", 0.1))
    say([0, 0])
    state = {"number": 0, "frames": 0, "eof": False}

    async def acknowledge() -> None:
        acked = 0
        while not state["eof"]:
            await asyncio.sleep(interval)
            if state["number"] != acked:
                acked = state["number"]
                say([acked, 0])

    acks = asyncio.ensure_future(acknowledge())
    try:
        while True:
            head = await reader.readexactly(LENGTH)
            payload = await reader.readexactly(int.from_bytes(head, "big"))
            # the batch number is the frame's first JSON value: "[N,[...]]"
            state["number"] = int(payload[1:payload.index(b",")])
            state["frames"] += 1
    except asyncio.IncompleteReadError:
        pass
    state["eof"] = True
    acks.cancel()
    say([state["number"], 0])
    say({"frames": state["frames"]})


if __name__ == "__main__":
    asyncio.run(serve())
