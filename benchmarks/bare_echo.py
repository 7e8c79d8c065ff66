"""The floor: a bare orjson stdin/stdout loop that answers like an MCP echo server.

No validation, no event loop, no state: it reads a line, answers initialize
with a minimal result and every request with an echo of ``arguments.text``.
Anything an MCP engine adds shows up as its distance from this loop.
"""

import sys

import orjson

out = sys.stdout.buffer
for line in sys.stdin.buffer:
    message = orjson.loads(line)
    if "id" not in message or "method" not in message:
        continue
    if message["method"] == "initialize":
        result = {"protocolVersion": message["params"]["protocolVersion"],
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "bare", "version": "0"}}
    else:
        text = message["params"]["arguments"]["text"]
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    out.write(orjson.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}) + b"\n")
    out.flush()
