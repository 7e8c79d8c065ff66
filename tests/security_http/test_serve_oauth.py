"""``mobius serve --http --oauth-issuer``: a real process accepting the tokens of a real
authorization server (oidc-provider, as in test_authorization_server.py).

The client finds the authorization server from the 401 as an MCP client does.
The token's subject (the client id of a client_credentials grant) acts as the
Mobius user named ``oauth:SUBJECT``: before that user exists it authenticates but
may use nothing (deny by default), nor does a local user named like the bare
subject make it anyone; once an admin makes ``oauth:SUBJECT`` a member of the
token's organization, the same token calls a tool, on record under the user's id; once
the user is disabled, the token is refused.  Options that do not fit are a
one-line error before anything starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mobius_rpc.core.errors import McpError
from mobius_rpc.transports.http_client import StreamableHTTPClientStream
from tests.conftest import client_on

from .env import HEADERS, INIT
from .test_authorization_server import (
    CLIENT_ID,
    authorization_server,
    discover_and_get_token,
    provider_script,  # noqa: F401  (the fixture)
)
from .test_serve_auth import env_for, mobius, serving

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

#: the Mobius user a token of the test client acts as
SUBJECT = f"oauth:{CLIENT_ID}"


async def tools_and_call(url: str, token: str) -> tuple[list[str], Any]:
    """The tools the token lists, and the echo call's result (or the McpError)."""
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            stream = StreamableHTTPClientStream(url, tg,
                                                headers={"Authorization": f"Bearer {token}"})
            async with client_on(stream, tg, "2025-11-25") as client:
                listed = await client.request("tools/list", {})
                try:
                    called: Any = await client.call_tool("echo", {"text": "via oauth"})
                except McpError as error:
                    called = error
            tg.cancel_scope.cancel()
    return [tool["name"] for tool in listed["tools"]], called


def owner_of(lines: list[str]) -> str:
    created = [line for line in lines if "created user" in line]
    assert len(created) == 1, lines
    return created[0].split("created user '")[1].split("'")[0]


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_the_issuers_tokens_act_as_the_member_their_subject_names(
        provider_script: Path, tmp_path: Path) -> None:  # noqa: F811
    async with authorization_server(provider_script) as provider:
        with serving(tmp_path, "--oauth-issuer", provider["issuer"],
                     "--oauth-scope", "mcp:tools") as (url, lines):
            base = url.removesuffix("/mcp")
            token = await discover_and_get_token(base)
            # no user is named for the subject: authenticated, allowed nothing, and a
            # refused call reads as an unknown tool (it does not say the tool exists)
            listed, called = await tools_and_call(url, token)
            assert listed == []
            assert isinstance(called, McpError) and called.code == -32602

            owner = owner_of(lines)
            ok(mobius(tmp_path, "org", "create", "Acme", "--owner", owner, "--id", "acme"))
            # a local user named like the subject is not who the token is
            ok(mobius(tmp_path, "user", "create", CLIENT_ID))
            ok(mobius(tmp_path, "org", "add-member", "acme", CLIENT_ID, "--role", "owner"))
            listed, called = await tools_and_call(url, token)
            assert listed == [] and isinstance(called, McpError)
            ok(mobius(tmp_path, "user", "create", SUBJECT))
            ok(mobius(tmp_path, "org", "add-member", "acme", SUBJECT, "--role", "member"))
            listed, called = await tools_and_call(url, token)
            assert "echo" in listed
            assert called["content"][0]["text"] == "via oauth"

            ok(mobius(tmp_path, "user", "disable", SUBJECT))
            async with httpx.AsyncClient(timeout=10) as http:
                refused = await http.post(url, json=INIT, headers={
                    **HEADERS, "authorization": f"Bearer {token}"})
            assert refused.status_code == 401
            assert "disabled" in refused.headers["www-authenticate"]
    users = {u["name"]: u["id"] for u in json.loads(ok(mobius(tmp_path, "user", "list",
                                                                "--json")))}
    found = ok(mobius(tmp_path, "audit", "search", "--json", "--method", "tools/call"))
    records = json.loads(found)
    outcomes = [(r["user"], r["outcome"], r["organization"]) for r in records]
    assert (users[SUBJECT], "ok", "acme") in outcomes
    assert (SUBJECT, "denied", "acme") in outcomes
    assert users[CLIENT_ID] not in {user for user, _, _ in outcomes}
    failed = json.loads(ok(mobius(tmp_path, "audit", "search", "--json",
                                  "--method", "auth/failed")))
    assert any("disabled" in (r.get("error") or "") for r in failed)


@pytest.mark.parametrize(("flags", "says"), [
    (["--oauth-scope", "mcp:tools"], "--oauth-scope goes with --oauth-issuer"),
    (["--oauth-issuer", "http://127.0.0.1:9", "--no-auth"], "needs authentication on"),
    (["--oauth-issuer", "ftp://issuer.example"], "must be an http(s) URL"),
    (["--oauth-issuer", "http://127.0.0.1:9", "--oauth-resource", "mcp"],
     "the resource must be an absolute http(s) URL"),
    (["--oauth-issuer", "http://127.0.0.1:9", "--oauth-scope", "two words"],
     "is not a scope token"),
])
def test_options_that_do_not_fit_are_a_one_line_error(tmp_path: Path, flags: list[str],
                                                      says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "mobius_rpc", "serve", "--fixture", "demo",
                           "--http", "--port", "1", *flags],
                          capture_output=True, text=True, timeout=60, env=env_for(tmp_path))
    assert done.returncode == 2
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
