"""Fixtures for the gateway tests: a Python upstream on stdio, gateways around it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mobius_rpc.gateway import Gateway, UpstreamOptions
from mobius_rpc.server.app import Server

UPSTREAM = Path(__file__).resolve().parent / "upstream_app.py"


def py_entry(name: str = "py-upstream", **env: str) -> dict[str, Any]:
    """An ``mcpServers`` entry launching the Python test upstream over stdio."""
    return {"command": sys.executable, "args": [str(UPSTREAM)],
            "env": {"UPSTREAM_NAME": name, **env}}


def local_server() -> Server:
    """A downstream server with a tool of its own (the gateway serves beside it)."""
    server = Server("front", version="1.0")

    @server.tool()
    def local_echo(text: str) -> str:
        return f"local:{text}"
    return server


FAST = UpstreamOptions(timeout=10.0, connect_timeout=20.0, health_interval=0,
                       backoff_initial=0.2, backoff_max=1.0)

MakeGateway = Callable[..., Any]


@pytest.fixture
async def gateways() -> AsyncIterator[list[Gateway]]:
    """Gateways made by a test, closed at its end."""
    made: list[Gateway] = []
    yield made
    for gateway in made:
        await gateway.aclose()
