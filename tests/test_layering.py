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
    # transports may use storage's interfaces (a leaf: storage imports no layer), so
    # legacy sessions and their streams can live in a store replicas share
    "transports": {"core", "framing", "storage"},
    "runtime": {"core", "transports"},
    "server": {"core", "runtime", "transports", "framing", "storage"},
    "client": {"core", "runtime", "transports", "framing"},
    # storage sits beside the protocol layers and knows nothing of them, nor of MCP
    "storage": set(),
    # the integration layers sit above server and client
    "security": {"core", "runtime", "transports", "framing", "server", "client", "storage"},
    # the context engine's projects belong to organizations: it asks security who may see them
    "context": {"core", "runtime", "transports", "framing", "server", "client", "storage",
                "security"},
    # the gateway re-serves upstreams (client) through a server, under security's audit
    "gateway": {"core", "runtime", "transports", "framing", "server", "client", "storage",
                "security"},
    # the marketplace installs and sandboxes extensions for organizations: above security
    "marketplace": {"core", "runtime", "transports", "framing", "server", "client", "storage",
                    "security"},
    # the client's persistent tokens: the client's TokenStore on storage's database
    "credentials": {"core", "runtime", "transports", "framing", "client", "storage"},
}
#: what of storage a transport may import
STORAGE_INTERFACES = {"mobius_rpc.storage.base", "mobius_rpc.storage.records",
                      "mobius_rpc.storage.errors"}
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
        if name.startswith("mobius_rpc.storage.") and own in ("transports", "server"):
            # the protocols and plain records only: which database is chosen above
            assert name in STORAGE_INTERFACES, f"{path.name} imports {name}"
            continue
        if name.startswith("mobius_rpc.transports.") and own in ("runtime", "server"):
            # the runtime sees only the transport interface; the server picks
            # concrete transports only in its run_* entry points
            assert own == "server" or name == "mobius_rpc.transports.base", name
            continue
        assert layer == own or layer in ALLOWED[own], f"{path.name} imports {name}"


# ---------------------------------------------------------------- module graph

def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolved_imports(path: Path) -> set[str]:
    """The package modules ``path`` imports (``from .x import y`` may name a
    module ``x.y`` or a name in ``x``: whichever exists), anywhere in the file."""
    known = {module_name(p) for p in MODULES}
    tree = ast.parse(path.read_text(), str(path))
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1] + ("__init__",)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(parts[:len(parts) - node.level])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if candidate in known:
                    found.add(candidate)
                elif base in known:
                    found.add(base)
    found.discard(module_name(path))
    return found


def test_no_import_cycles() -> None:
    """No module imports one that (directly or not) imports it back, lazily or
    under TYPE_CHECKING included: the layers stay a tree people can read
    bottom-up.  (Package ``__init__`` files re-export their modules and are
    left out, as they import down into their own package by design.)"""
    graph = {module_name(p): {m for m in resolved_imports(p)
                              if not m.endswith("__init__") and m != "mobius_rpc"}
             for p in MODULES if p.name != "__init__.py"}
    packages = {module_name(p) for p in MODULES if p.name == "__init__.py"}
    graph = {m: {d for d in deps if d not in packages} for m, deps in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("path", [p for p in MODULES if p != PACKAGE / "__init__.py"],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_the_package_root(path: Path) -> None:
    """``mobius_rpc/__init__`` is the public face; importing it from inside the
    package would load everything and make cycles through it."""
    tree = ast.parse(path.read_text(), str(path))
    depth = len(path.relative_to(PACKAGE).parts)  # level that reaches the root
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert all(alias.name != "mobius_rpc" for alias in node.names), path
        elif isinstance(node, ast.ImportFrom):
            root = (node.level == 0 and node.module == "mobius_rpc") or (
                node.level == depth and node.module is None and path.name != "__init__.py")
            assert not root, f"{path.name} imports the package root"


# --------------------------------------------------------- transport capabilities

def _transport_classes() -> list[type]:
    import importlib
    import inspect

    from mobius_rpc.transports.base import TransportCapabilities

    classes = []
    for path in sorted((PACKAGE / "transports").glob("*.py")):
        module = importlib.import_module(module_name(path))
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and isinstance(
                    cls.__dict__.get("capabilities"), TransportCapabilities):
                classes.append(cls)
    return classes


def test_every_message_stream_states_its_capabilities() -> None:
    import inspect

    from mobius_rpc.transports import base

    stated = set(_transport_classes())
    names = {cls.__name__ for cls in stated}
    for must in ("StdioTransport", "ProcessTransport", "WebSocketStream", "WebSocketClientStream",
                 "MemoryStream", "HttpMessageStream", "ExchangeResponse", "_SseSessionStream"):
        assert must in names, f"{must} does not state its capabilities"
    flags = {"routed": base.RoutedMessageStream, "attaches_receiver": base.ReceiverAttaching,
             "reports_unanswered": base.UnansweredReporting,
             "detaches_responses": base.ResponseDetaching}
    for cls in stated:
        caps = cls.__dict__["capabilities"]
        for flag, protocol in flags.items():
            methods = [name for name, member in inspect.getmembers(protocol)
                       if callable(member) and not name.startswith("_")
                       and name not in ("receive", "send", "aclose")]
            has = all(callable(getattr(cls, name, None)) for name in methods)
            assert getattr(caps, flag) == has, f"{cls.__name__}.{flag} disagrees with its methods"


@pytest.mark.parametrize("layer", ["runtime", "server", "client"])
def test_layers_above_transports_do_not_probe_streams(layer: str) -> None:
    """The optional parts of a stream are known from its capabilities, not by
    asking ``getattr`` for a method name."""
    probes = {"attach_receiver", "unanswered", "send_routed", "detach_response",
              "may_send_early", "answers_after_end_of_input"}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2 \
                    and isinstance(node.args[1], ast.Constant):
                assert node.args[1].value not in probes, f"{path.name} probes {node.args[1].value}"
