"""What a server launched from a configuration entry inherits of our environment."""

from __future__ import annotations

import os
import sys

import anyio
import orjson
import pytest

from mobius_rpc.client.targets import StdioTarget, target_from_config
from mobius_rpc.core.limits import Limits
from mobius_rpc.transports.process import SAFE_INHERITED_ENV, child_environment

# a child that writes its whole environment as one JSON line, then waits for stdin to end
DUMP_ENV = ("import json, os, sys; sys.stdout.write(json.dumps(dict(os.environ)) + '\\n'); "
            "sys.stdout.flush(); sys.stdin.read()")


async def environment_of(target: StdioTarget) -> dict[str, str]:
    async with anyio.create_task_group() as tg:
        transport = await target.open(tg, Limits())
        try:
            with anyio.fail_after(20):
                line = await transport.receive()
        finally:
            await transport.aclose()
    result: dict[str, str] = orjson.loads(line)
    return result


@pytest.mark.anyio
async def test_a_configured_server_gets_its_declared_variables_not_our_secrets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBIUS_TEST_SECRET", "do-not-leak")
    target = target_from_config({"command": sys.executable, "args": ["-c", DUMP_ENV],
                                 "env": {"GIVEN": "yes"}})
    assert isinstance(target, StdioTarget)
    seen = await environment_of(target)
    assert seen["GIVEN"] == "yes"
    assert "MOBIUS_TEST_SECRET" not in seen
    assert seen["PATH"] == os.environ["PATH"]
    # Python itself may add LC_CTYPE (locale coercion) to its own environment
    assert set(seen) - {"GIVEN"} <= set(SAFE_INHERITED_ENV) | {"LC_CTYPE"}


@pytest.mark.anyio
async def test_a_target_built_in_code_inherits_everything_unless_told(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBIUS_TEST_SECRET", "visible")
    seen = await environment_of(StdioTarget(sys.executable, ("-c", DUMP_ENV)))
    assert seen["MOBIUS_TEST_SECRET"] == "visible"
    narrowed = StdioTarget(sys.executable, ("-c", DUMP_ENV), inherit_env=("PATH",))
    assert "MOBIUS_TEST_SECRET" not in await environment_of(narrowed)


def test_child_environment_rules() -> None:
    parent = {"PATH": "/bin", "HOME": "/h", "TOKEN": "t"}
    assert child_environment(parent, None, None) is None
    assert child_environment(parent, {"A": "1"}, None) == {**parent, "A": "1"}
    assert child_environment(parent, None, ("PATH", "MISSING")) == {"PATH": "/bin"}
    assert child_environment(parent, {"PATH": "/own"}, ("PATH",)) == {"PATH": "/own"}
