"""The client program the official conformance suite drives: ``client.py <server-url>``.

The suite starts a mock MCP server per scenario and runs this with the URL as
the last argument and the scenario's name in ``MCP_CONFORMANCE_SCENARIO``.
One generic behaviour covers the scenarios: connect with
:class:`mobius_rpc.client.Client` (the era chosen by the probe, or pinned to
``MCP_CONFORMANCE_PROTOCOL_VERSION`` when the suite sets it), list the tools,
call each one with arguments made from its input schema, answer sampling,
elicitation (accepting, so schema defaults apply) and roots, then close.

Every connection carries an :class:`~mobius_rpc.client.oauth.OAuth`, which
stays idle unless the server answers 401: the suite's authorization server
redirects at once, with no person involved, so the ``authorize`` callback
fetches the authorization URL without following the redirect and returns
its ``Location`` (nothing listens at the redirect URI).  Credentials come
from ``MCP_CONFORMANCE_CONTEXT``: a ``client_id`` (and ``client_secret``) is a
pre-registered client; the client-credentials scenarios use that grant, with
``private_key_pem`` for ``private_key_jwt``; workload identity and
enterprise-managed authorization use the JWT-bearer grant with the context's
workload token, or with an ID-JAG exchanged at the context's identity provider.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import anyio
import httpx

from mobius_rpc.client import Client, target_from_url
from mobius_rpc.client.oauth import (
    OAuth,
    OAuthError,
    id_jag_exchange,
    load_signing_key,
    static_assertion,
)
from mobius_rpc.core.errors import McpError

log = logging.getLogger("conformance-client")


def sample_value(schema: Any) -> Any:
    """A plain value that satisfies a simple property schema."""
    if not isinstance(schema, dict):
        return "test"
    if "default" in schema:
        return schema["default"]
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
    if kind in ("number", "integer"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return arguments_for(schema)
    return "test-value"


def arguments_for(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    properties = schema.get("properties") or {}
    required = schema.get("required") or []
    return {name: sample_value(properties.get(name)) for name in required
            if isinstance(name, str)}


async def sampling(params: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "model": "mobius-conformance",
            "content": {"type": "text", "text": "A sampled answer."}, "stopReason": "endTurn"}


async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
    if params.get("mode") == "url":
        return {"action": "accept"}
    return {"action": "accept", "content": {}}


async def roots() -> list[dict[str, Any]]:
    return [{"uri": "file:///tmp/conformance", "name": "conformance"}]


def planned_calls(tools: list[dict[str, Any]], context: dict[str, Any]
                  ) -> list[tuple[str, dict[str, Any]]]:
    """The tool calls to make: the ones the scenario's context spells out, the
    schema round trip of the 2020-12 preservation scenario, or one call of
    every tool with arguments made from its schema."""
    if isinstance(context.get("toolCalls"), list):
        return [(call["name"], call.get("arguments") or {}) for call in context["toolCalls"]]
    names = {tool["name"] for tool in tools}
    if "json_schema_echo" in names:
        return [("json_schema_echo", {"schema": tool.get("inputSchema")})
                for tool in tools if tool["name"] != "json_schema_echo"]
    return [(tool["name"], arguments_for(tool.get("inputSchema"))) for tool in tools]


#: where the suite's authorization server sends the browser (nothing listens there)
REDIRECT_URI = "http://localhost:3000/callback"
#: the client ID metadata document URL the suite's authorization server expects
CLIENT_METADATA_URL = "https://conformance-test.local/client-metadata.json"


async def authorize_headless(url: str) -> str:
    """The user agent of a login that needs no person: where the authorization
    endpoint redirects, read from its ``Location`` without following it."""
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as http:
        response = await http.get(url)
    location = response.headers.get("location")
    if not response.is_redirect or not location:
        raise OAuthError(f"the authorization endpoint answered HTTP {response.status_code} "
                         f"without a redirect", "no-redirect")
    return str(httpx.URL(url).join(location))


def oauth_for(scenario: str, context: dict[str, Any]) -> OAuth:
    oauth = OAuth(authorize=authorize_headless, redirect_uri=REDIRECT_URI,
                  client_metadata_url=CLIENT_METADATA_URL,
                  client_name="mobius-conformance-client",
                  client_id=context.get("client_id"), client_secret=context.get("client_secret"))
    if scenario.startswith("auth/client-credentials"):
        oauth.grant = "client_credentials"
        if context.get("private_key_pem"):
            oauth.signing_key = load_signing_key(context["private_key_pem"],
                                                 context.get("signing_algorithm"))
    elif scenario == "auth/wif-jwt-bearer":
        oauth.grant, oauth.assertion = "jwt_bearer", static_assertion(context["valid_jwt"])
    elif scenario in ("auth/enterprise-managed-authorization",
                      "auth/cross-app-access-complete-flow"):
        oauth.grant = "jwt_bearer"
        oauth.assertion = id_jag_exchange(context["idp_token_endpoint"],
                                          context["idp_id_token"],
                                          client_id=context.get("idp_client_id"))
    return oauth


async def main(url: str) -> int:
    revision = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION") or None
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    target = target_from_url(url, oauth=oauth_for(scenario, context))
    async with Client(target, revision=revision, sampling=sampling, elicitation=elicitation,
                      roots=roots, timeout=20, name="mobius-conformance-client") as client:
        tools = await client.list_tools() if "tools" in client.server_capabilities else []
        for name, arguments in planned_calls(tools, context):
            try:
                await client.call_tool(name, arguments)
            except McpError as exc:
                log.info("tool %s: %s", name, exc)
    return 0


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    raise SystemExit(anyio.run(main, sys.argv[-1]))
