"""Two stdio peers for the end-of-input tests, run as real subprocesses.

``python eof_servers.py mobius GRACE``: a Mobius server whose ``nap`` tool
sleeps for ``ms`` milliseconds, with ``Limits.end_of_input_grace`` = GRACE.

``python eof_servers.py closes-stdout OUT``: a server written on the standard
library only that answers ``initialize``, asks the client for sampling, closes
its stdout at once and then writes whatever arrives on its stdin to OUT: what
a client of ours still sends after its server's output ended.
"""

from __future__ import annotations

import json
import os
import sys


def mobius(grace: float) -> None:
    import anyio

    from mobius_rpc import Server
    from mobius_rpc.core.limits import Limits

    server = Server("eof", limits=Limits(end_of_input_grace=grace))

    @server.tool()
    async def nap(ms: int) -> str:
        """Sleep, then say how long."""
        await anyio.sleep(ms / 1000)
        return f"slept {ms} ms"

    anyio.run(server.run_stdio)


def closes_stdout(out: str) -> None:
    request = json.loads(sys.stdin.readline())
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": {
        "protocolVersion": request["params"]["protocolVersion"], "capabilities": {"tools": {}},
        "serverInfo": {"name": "closes-stdout", "version": "0"}}}) + "\n")
    sys.stdout.flush()
    json.loads(sys.stdin.readline())  # notifications/initialized
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage",
                                 "params": {"messages": [{"role": "user", "content": {
                                     "type": "text", "text": "hi"}}], "maxTokens": 5}}) + "\n")
    sys.stdout.flush()
    sys.stdout.close()
    os.close(1)
    with open(out, "w") as sink:
        for line in sys.stdin:
            sink.write(line)
            sink.flush()


if __name__ == "__main__":
    if sys.argv[1] == "mobius":
        mobius(float(sys.argv[2]))
    else:
        closes_stdout(sys.argv[2])
