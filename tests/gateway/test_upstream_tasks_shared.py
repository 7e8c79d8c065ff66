"""A gateway whose tasks are records in a store (:class:`SharedTasks`, as when
replicas share legacy HTTP sessions) follows an upstream task the same way: the
upstream's statusMessage shows in the stored task, and a task cancelled
upstream ends ``cancelled``.  One replica on a memory store, our client over
real Streamable HTTP (uvicorn on 127.0.0.1), the Python upstream over stdio.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from mobius_rpc.client.client import Client
from mobius_rpc.client.targets import HttpTarget
from mobius_rpc.gateway import Gateway
from mobius_rpc.server.shared_tasks import SharedTasks
from mobius_rpc.storage.open import open_store
from mobius_rpc.transports.http_shared import SharedSessions
from tests.conftest import serve_asgi

from .test_upstream_tasks import REVISION, gateway_server, poll_until, start

pytestmark = pytest.mark.anyio


async def test_stored_tasks_follow_the_upstream_task(
        tmp_path: Path, gateways: list[Gateway]) -> None:
    server = await gateway_server(tmp_path, gateways)
    async with open_store(f"memory:t{uuid.uuid4().hex[:12]}") as store:
        app = server.http_app(shared=SharedSessions(store, replica="a", poll_interval=0.2))
        async with serve_asgi(app) as address:
            assert isinstance(server.task_manager, SharedTasks)
            with anyio.fail_after(30):
                async with Client(HttpTarget(f"http://{address}/mcp"),
                                  revision=REVISION) as client:
                    await client.list_tools()
                    task_id = await start(client, "py__phases_task")
                    shown: dict[str, Any] = await poll_until(client, task_id,
                                                             statusMessage="fetching")
                    assert shown["status"] == "working"
                    (tmp_path / "release.fetching").touch()
                    await poll_until(client, task_id, statusMessage="crunching")
                    (tmp_path / "release.crunching").touch()
                    result = await client.request("tasks/result", {"taskId": task_id})
                    assert result["content"][0]["text"] == "phases done"

                    task_id = await start(client, "py__self_cancel_task")
                    await poll_until(client, task_id, status="cancelled")
