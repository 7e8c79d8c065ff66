"""A small stdio MCP server (2025-06-18) with one deliberate fault, for testing the checker.

``python broken_server.py --fault NAME``; without a fault it is a correct,
minimal server, which the checker must pass.  Written on the standard library
only, so that none of our own protocol code can hide the fault.

Two faults are about time rather than content: ``drops-malformed`` reads and
silently drops what it cannot handle (text that is not JSON, broken envelopes,
batches, unknown methods), as some real servers do, and ``slow-tools`` answers
a good ``tools/call`` only after ``SLOW_SECONDS`` (from a thread: it answers a
ping at once meanwhile), which is slow but correct.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

REVISION = "2025-06-18"
FAULTS = ("none", "wrong-error-code", "missing-result-field", "hang", "crash",
          "wrong-version", "answers-notifications", "drops-malformed", "slow-tools")
SLOW_SECONDS = 1.0

TOOL = {"name": "echo", "description": "Echo the text.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                        "required": ["text"]}}
PROMPT = {"name": "greet", "description": "Say hello.", "arguments": []}
RESOURCE = {"uri": "test://readme", "name": "readme", "mimeType": "text/plain"}


class Broken:
    def __init__(self, fault: str) -> None:
        self.fault = fault
        self.initialized = False
        self.lock = threading.Lock()
        self.pending: list[threading.Thread] = []  # slow answers still to write

    def send(self, message: dict[str, Any]) -> None:
        if self.fault == "drops-malformed" and "error" in message and (
                message["id"] is None or message["error"]["code"] == -32601):
            return  # the seeded fault: what it cannot read, or does not know, it drops
        with self.lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    def error(self, request_id: Any, code: int, message: str) -> None:
        if self.fault == "wrong-error-code" and code in (-32601, -32602):
            code = -32603  # the seeded fault: every client mistake reported as internal
        self.send({"jsonrpc": "2.0", "id": request_id, "error": {"code": code,
                                                                 "message": message}})

    def handle(self, message: Any) -> None:
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" \
                or not isinstance(message.get("method"), str) \
                or ("id" in message and (isinstance(message["id"], bool)
                                         or not isinstance(message["id"], (str, int)))):
            self.error(None, -32600, "Invalid Request")
            return
        method, params = message["method"], message.get("params", {})
        if "id" not in message:
            if self.fault == "answers-notifications":
                self.send({"jsonrpc": "2.0", "id": None, "result": {}})
            return
        request_id = message["id"]
        if not isinstance(params, dict):
            self.error(request_id, -32602, "params must be an object")
            return
        handler = getattr(self, "on_" + method.replace("/", "_"), None)
        if handler is None:
            self.error(request_id, -32601, f"Method not found: {method}")
            return
        result = handler({**params, "_request_id": request_id} if method == "tools/call"
                         else params)
        if result is not None:
            if "error" in result:
                self.error(request_id, *result["error"])
            else:
                self.send({"jsonrpc": "2.0", "id": request_id, "result": result})

    def on_initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        version = "2025-99-99" if self.fault == "wrong-version" else REVISION
        return {"protocolVersion": version,
                "capabilities": {"tools": {}, "prompts": {}, "resources": {}, "logging": {}},
                "serverInfo": {"name": "broken", "version": "1"}}

    def on_ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def on_tools_list(self, params: dict[str, Any]) -> dict[str, Any]:
        if "cursor" in params and not isinstance(params["cursor"], str):
            return {"error": (-32602, "cursor must be a string")}
        if params.get("cursor"):
            return {"error": (-32602, "invalid cursor")}
        if self.fault == "missing-result-field":
            return {"items": [TOOL]}  # the seeded fault: no "tools"
        return {"tools": [TOOL]}

    def on_tools_call(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if not isinstance(params.get("name"), str):
            return {"error": (-32602, "name is required")}
        if self.fault == "hang":
            return None  # the seeded fault: never answered
        if self.fault == "crash":
            sys.exit(3)  # the seeded fault: the process dies
        arguments = params.get("arguments", {})
        if not isinstance(arguments, dict):
            return {"error": (-32602, "arguments must be an object")}
        if params["name"] != "echo":
            return {"error": (-32602, f"Unknown tool: {params['name']}")}
        if not isinstance(arguments.get("text"), str):
            result = {"content": [{"type": "text", "text": "text is required"}],
                      "isError": True}
        else:
            result = {"content": [{"type": "text", "text": arguments["text"]}],
                      "isError": False}
        if self.fault == "slow-tools":  # slow but correct: answered later, pings meanwhile
            request_id = params["_request_id"]

            def later() -> None:
                time.sleep(SLOW_SECONDS)
                self.send({"jsonrpc": "2.0", "id": request_id, "result": result})

            thread = threading.Thread(target=later, daemon=True)
            thread.start()
            self.pending.append(thread)
            return None
        return result

    def _paged(self, params: dict[str, Any], key: str, items: list[Any]) -> dict[str, Any]:
        if "cursor" in params and not isinstance(params["cursor"], str):
            return {"error": (-32602, "cursor must be a string")}
        if params.get("cursor"):
            return {"error": (-32602, "invalid cursor")}
        return {key: items}

    def on_prompts_list(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._paged(params, "prompts", [PROMPT])

    def on_prompts_get(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("name") != "greet":
            return {"error": (-32602, "Unknown prompt")}
        return {"messages": [{"role": "user", "content": {"type": "text", "text": "Hello"}}]}

    def on_resources_list(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._paged(params, "resources", [RESOURCE])

    def on_resources_templates_list(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._paged(params, "resourceTemplates", [])

    def on_resources_read(self, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(params.get("uri"), str):
            return {"error": (-32602, "uri is required")}
        if params["uri"] != RESOURCE["uri"]:
            return {"error": (-32002, "Resource not found")}
        return {"contents": [{"uri": RESOURCE["uri"], "mimeType": "text/plain",
                              "text": "read me"}]}

    def on_logging_setLevel(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        levels = ("debug", "info", "notice", "warning", "error", "critical", "alert",
                  "emergency")
        if params.get("level") not in levels:
            return {"error": (-32602, "invalid level")}
        return {}

    def on_completion_complete(self, params: dict[str, Any]) -> dict[str, Any]:
        ref, argument = params.get("ref"), params.get("argument")
        if not isinstance(ref, dict) or not isinstance(argument, dict) \
                or ref.get("type") not in ("ref/prompt", "ref/resource"):
            return {"error": (-32602, "ref (a prompt or resource) and argument are required")}
        context = params.get("context", {})
        values = context.get("arguments", {}) if isinstance(context, dict) else None
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            return {"error": (-32602, "context.arguments must map names to strings")}
        return {"completion": {"values": []}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fault", choices=FAULTS, default="none")
    server = Broken(parser.parse_args().fault)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            server.send({"jsonrpc": "2.0", "id": None,
                         "error": {"code": -32700, "message": "Parse error"}})
            continue
        if isinstance(message, list):
            server.error(None, -32600, "batches are not supported in 2025-06-18")
            continue
        server.handle(message)
    for thread in server.pending:  # let the late answers out before exiting
        thread.join()


if __name__ == "__main__":
    main()
