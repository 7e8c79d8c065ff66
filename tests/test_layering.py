"""Imports flow one way: transports -> framing -> core; nothing imports upward.

``storage`` imports no other layer of the package (and no MCP or web library).

Parses every module and checks its ``mobius_rpc`` imports against the layer
rules of docs/architecture.md, and that the core never imports I/O libraries.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mobius_rpc"

# layer -> layers it may import (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "framing": {"core"},
    "transports": {"core", "framing"},
    "runtime": {"core", "transports"},
    "server": {"core", "runtime", "transports", "framing"},
    "client": {"core", "runtime", "transports", "framing"},
    # storage sits beside the protocol layers and knows nothing of them, nor of MCP
    "storage": set(),
}
CORE_FORBIDDEN = {"anyio", "asyncio", "socket", "starlette", "websockets", "psycopg", "sqlite3",
                  "threading", "time", "trio", "subprocess", "select"}
# what persists is plain data: no protocol, no schema validation, no web stack below it
STORAGE_FORBIDDEN = {"mcp", "jsonschema", "jsonschema_rs", "starlette", "sse_starlette",
                     "uvicorn", "httpx", "websockets"}


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    module_parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_parts[:len(module_parts) - node.level]
                names.append(".".join(base + ((node.module,) if node.module else ())))
            elif node.module:
                names.append(node.module)
    return names


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "mobius_rpc" else None


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts[0]
    if own not in ALLOWED:
        return  # top-level modules (cli, demo, __init__) may use anything
    for name in imports_of(path):
        layer = layer_of(name)
        if layer is None:
            if own == "core":
                assert name.split(".")[0] not in CORE_FORBIDDEN, f"core imports {name}"
            if own == "storage":
                assert name.split(".")[0] not in STORAGE_FORBIDDEN, f"storage imports {name}"
            continue
        if name.startswith("mobius_rpc.transports.") and own in ("runtime", "server"):
            # the runtime sees only the transport interface; the server picks
            # concrete transports only in its run_* entry points
            assert own == "server" or name == "mobius_rpc.transports.base", name
            continue
        assert layer == own or layer in ALLOWED[own], f"{path.name} imports {name}"
