"""Parked calls with server-everything (npm, a legacy upstream) and a 2026-07-28
downstream: its elicitation and sampling tools ask once, the call waits upstream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from mobius_rpc.gateway import Gateway
from tests.conftest import connect
from tests.external.conftest import npm_servers  # noqa: F401 - a fixture

from .conftest import FAST, local_server
from .test_parking import MODERN, raw_call

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

EVERYTHING = "@modelcontextprotocol/server-everything"


async def test_everythings_elicitation_and_sampling_park_and_resume(
        gateways: list[Gateway], npm_servers: dict[str, Path]) -> None:  # noqa: F811
    server = local_server()
    gateway = Gateway({"everything": {"command": "node",
                                      "args": [str(npm_servers[EVERYTHING]), "stdio"]}},
                      options=FAST).attach(server)
    gateways.append(gateway)
    with anyio.fail_after(60):
        await gateway.wait_ready()
        era = gateway.upstreams["everything"].client.era
        if era is None or era.value != "legacy":
            pytest.skip("server-everything speaks 2026-07-28 here: nothing to park")

        async def elicit(params: dict[str, Any]) -> dict[str, Any]:
            return {}

        async def sample(params: dict[str, Any]) -> dict[str, Any]:
            return {}

        async with connect(server, revision=MODERN, elicitation=elicit,
                           sampling=sample) as client:
            first = await raw_call(client, "everything__trigger-elicitation-request")
            assert first["resultType"] == "input_required"
            ((key, asked),) = first["inputRequests"].items()
            assert asked["method"] == "elicitation/create"
            assert asked["params"]["requestedSchema"]["required"] == ["name"]
            assert len(gateway.parking.calls) == 1  # waiting upstream, not cancelled
            done = await raw_call(
                client, "everything__trigger-elicitation-request",
                inputResponses={key: {"action": "accept", "content": {
                    "name": "Ada", "check": True, "email": "ada@example.org"}}},
                requestState=first["requestState"])
            report = "\n".join(c["text"] for c in done["content"] if c["type"] == "text")
            assert "- Name: Ada" in report and "- Email: ada@example.org" in report

            args = {"prompt": "capital of France?", "maxTokens": 9}
            first = await raw_call(client, "everything__trigger-sampling-request", args)
            ((key, asked),) = first["inputRequests"].items()
            assert asked["method"] == "sampling/createMessage"
            assert "capital of France?" in str(asked["params"]["messages"])
            done = await raw_call(
                client, "everything__trigger-sampling-request", args,
                inputResponses={key: {"role": "assistant", "model": "our-model", "content": {
                    "type": "text", "text": "Paris"}}},
                requestState=first["requestState"])
            text = "\n".join(c["text"] for c in done["content"] if c["type"] == "text")
            assert "Paris" in text and "our-model" in text
        assert not gateway.parking.calls
