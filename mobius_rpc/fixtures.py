"""The fixture server the official MCP conformance suite expects.

``mobius serve --http --fixture conformance`` serves this surface: tools,
resources and prompts with the fixed names the suite's server scenarios call
(``test_simple_text``, ``test://static-text``, ``test_simple_prompt`` ...).
It is a real server on the same engine as everything else; only the names
and canned contents are dictated by the suite.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

import anyio

from .server import content
from .server.app import Server
from .server.context import Context
from .server.hints import Param
from .server.tools import ToolError

__all__ = ("build_conformance_server",)

_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
# 44-byte WAV header with no samples: a valid, silent audio clip.
_WAV = base64.b64decode("UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=")


def build_conformance_server() -> Server:
    server = Server("mobius-conformance-fixture", version="0.1.0")
    tool = server.tool

    @tool()
    def test_simple_text() -> str:
        """Answers with a fixed text."""
        return "This is a simple text response for testing."

    @tool()
    def test_image_content() -> dict[str, Any]:
        """Answers with a 1x1 PNG."""
        return content.image(_PNG, "image/png")

    @tool()
    def test_audio_content() -> dict[str, Any]:
        """Answers with a short WAV clip."""
        return content.audio(_WAV, "audio/wav")

    @tool()
    def test_embedded_resource() -> dict[str, Any]:
        """Answers with an embedded text resource."""
        return content.embedded_text("test://embedded-resource",
                                     "This is an embedded resource content.")

    @tool()
    def test_multiple_content_types() -> list[dict[str, Any]]:
        """Answers with text, an image and an embedded resource."""
        return [content.text("Multiple content types test:"), content.image(_PNG, "image/png"),
                content.embedded_text("test://mixed-content-resource",
                                      '{"test": "data", "value": 123}', "application/json")]

    @tool()
    async def test_tool_with_logging(ctx: Context) -> str:
        """Sends three log messages during the call."""
        for step in ("Tool execution started", "Tool processing data", "Tool execution completed"):
            await ctx.log("info", step)
            await anyio.sleep(0.05)
        return "Tool with logging executed successfully"

    @tool()
    async def test_tool_with_progress(ctx: Context) -> str:
        """Reports progress 0, 50 and 100 of 100."""
        for value in (0, 50, 100):
            await ctx.report_progress(value, 100, f"Completed step {value} of 100")
            await anyio.sleep(0.05)
        return "Tool with progress executed successfully"

    @tool()
    def test_error_handling() -> str:
        """Always fails, as a tool error."""
        raise ToolError("This tool intentionally returns an error for testing")

    @tool()
    async def test_sampling(prompt: str, ctx: Context) -> str:
        """Asks the client's model."""
        result = await ctx.sample(prompt, max_tokens=100)
        block = result.get("content")
        text = block.get("text") if isinstance(block, dict) else None
        return f"LLM response: {text}"

    @tool()
    async def test_elicitation(message: str, ctx: Context) -> str:
        """Asks the user for a username and an email."""
        answer = await ctx.elicit(message, {
            "type": "object", "required": ["username", "email"],
            "properties": {"username": {"type": "string", "description": "User's response"},
                           "email": {"type": "string", "description": "User's email address"}}})
        return f"User response: action={answer.get('action')}, content={answer.get('content')}"

    @tool()
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
        """Elicits a form whose every field has a default."""
        answer = await ctx.elicit("Please review and update the form fields with defaults", {
            "type": "object", "required": [],
            "properties": {
                "name": {"type": "string", "description": "User name", "default": "John Doe"},
                "age": {"type": "integer", "description": "User age", "default": 30},
                "score": {"type": "number", "description": "User score", "default": 95.5},
                "status": {"type": "string", "description": "User status",
                           "enum": ["active", "inactive", "pending"], "default": "active"},
                "verified": {"type": "boolean", "description": "Verification status",
                             "default": True}}})
        return f"Elicitation completed: action={answer.get('action')}, " \
               f"content={answer.get('content')}"

    @tool()
    async def test_elicitation_sep1330_enums(ctx: Context) -> str:
        """Elicits the five enum shapes of 2025-11-25."""
        options = [{"const": "option1", "title": "First Option"},
                   {"const": "option2", "title": "Second Option"},
                   {"const": "option3", "title": "Third Option"}]
        plain = ["option1", "option2", "option3"]
        answer = await ctx.elicit("Please select options from the enum fields", {
            "type": "object", "required": [],
            "properties": {
                "untitledSingle": {"type": "string", "description": "Select one", "enum": plain},
                "titledSingle": {"type": "string", "description": "Select one",
                                 "oneOf": options},
                "legacyEnum": {"type": "string", "description": "Select one (legacy)",
                               "enum": plain,
                               "enumNames": ["First Option", "Second Option", "Third Option"]},
                "untitledMulti": {"type": "array", "description": "Select several",
                                  "items": {"type": "string", "enum": plain}},
                "titledMulti": {"type": "array", "description": "Select several",
                                "items": {"anyOf": options}}}})
        return f"Elicitation completed: action={answer.get('action')}, " \
               f"content={answer.get('content')}"

    @tool(input_schema={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"address": {"$anchor": "address", "type": "object", "properties": {
            "street": {"type": "string"}, "city": {"type": "string"}}}},
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": False,
        # composition and conditionals that any object of the shape above satisfies,
        # except that the name "geo" needs an address
        "allOf": [{"anyOf": [{"required": ["name"]}, {"not": {"required": ["name"]}}]}],
        "if": {"properties": {"name": {"const": "geo"}}, "required": ["name"]},
        "then": {"required": ["address"]},
        "else": {}})
    def json_schema_2020_12_tool(name: str | None = None,
                                 address: dict[str, Any] | None = None) -> str:
        """A tool whose input schema uses 2020-12 keywords, published verbatim."""
        return f"name={name}, address={address}"

    # -- the 2026-07-28 diagnostic surface (multi round-trip requests) --------

    form = {"type": "object", "properties": {"name": {"type": "string"}},
            "required": ["name"]}

    @tool()
    async def test_missing_capability(ctx: Context) -> str:
        """Needs sampling: -32021 when the request did not declare it."""
        result = await ctx.sample("What is 2 + 2?", max_tokens=10)
        return f"sampled: {result.get('content')}"

    @tool()
    async def test_logging_tool(ctx: Context) -> str:
        """Logs three messages (only sent when the request asked for logs)."""
        for step in ("first", "second", "third"):
            await ctx.log("info", f"{step} log message")
        return "logged"

    @tool()
    async def test_streaming_elicitation(ctx: Context) -> str:
        """Reports progress, then needs an answer from the user."""
        await ctx.report_progress(1, 2, "asking")
        answer = await ctx.elicit("What is your name?", form)
        return f"User response: {answer.get('content')}"

    @tool()
    async def test_input_required_result_elicitation(ctx: Context) -> str:
        """Needs one elicitation (under the key the suite expects)."""
        answer = await ctx.elicit("What is your name?", form, key="user_name")
        return f"Hello, {(answer.get('content') or {}).get('name')}"

    @tool()
    async def test_input_required_result_sampling(ctx: Context) -> str:
        """Needs one sampling round trip."""
        result = await ctx.sample("What is the capital of France?", max_tokens=100)
        block = result.get("content")
        return f"LLM said: {block.get('text') if isinstance(block, dict) else block}"

    @tool()
    async def test_input_required_result_list_roots(ctx: Context) -> str:
        """Needs the client's roots."""
        roots = await ctx.list_roots()
        return "Roots: " + ", ".join(str(r.get("uri")) for r in roots)

    @tool()
    async def test_input_required_result_request_state(ctx: Context) -> str:
        """Needs one answer; the retry must echo the sealed requestState."""
        answer = await ctx.elicit("Confirm?", {"type": "object", "properties": {
            "confirm": {"type": "boolean"}}})
        return f"confirmed={(answer.get('content') or {}).get('confirm')}"

    @tool()
    async def test_input_required_result_multiple_inputs(ctx: Context) -> str:
        """Needs an elicitation, a sampling answer and the roots, in one round."""
        got = await ctx.gather(name=ctx.elicit("What is your name?", form),
                               greeting=ctx.sample("Say hello", max_tokens=20),
                               roots=ctx.list_roots())
        return f"{(got['name'].get('content') or {}).get('name')}: {got['greeting']}, " \
               f"roots {got['roots']}"

    @tool()
    async def test_input_required_result_multi_round(ctx: Context) -> str:
        """Needs two answers, one round each."""
        first = await ctx.elicit("First question?", form)
        second = await ctx.elicit("Second question?", form)
        return f"{(first.get('content') or {}).get('name')} then " \
               f"{(second.get('content') or {}).get('name')}"

    @tool()
    async def test_input_required_result_tampered_state(ctx: Context) -> str:
        """Needs one answer; a tampered requestState is refused."""
        answer = await ctx.elicit("What is your name?", form)
        return f"Hello, {(answer.get('content') or {}).get('name')}"

    @tool()
    async def test_input_required_result_capabilities(ctx: Context) -> str:
        """Asks only for input kinds the client declared."""
        caps = ctx.client_capabilities
        if "elicitation" in caps:
            answer = await ctx.elicit("What is your name?", form)
            return f"Hello, {(answer.get('content') or {}).get('name')}"
        if "sampling" in caps:
            result = await ctx.sample("Say hello", max_tokens=20)
            return f"LLM said: {result.get('content')}"
        return "The client declared no input capability; nothing was asked"

    @server.prompt(description="A prompt that needs an answer from the user first")
    async def test_input_required_result_prompt(ctx: Context) -> str:
        answer = await ctx.elicit("Which topic?", {"type": "object", "properties": {
            "topic": {"type": "string"}}, "required": ["topic"]})
        return f"Write about {(answer.get('content') or {}).get('topic')}"

    @tool()
    def test_custom_headers(
            region: Annotated[str, Param(header="Region", description="Where to route")],
            query: str,
            priority: Annotated[int, Param(header="Priority")] = 0,
            verbose: Annotated[bool, Param(header="Verbose")] = False) -> str:
        """Arguments mirrored into Mcp-Param-* headers (2026-07-28 Streamable HTTP)."""
        return f"region={region} priority={priority} verbose={verbose} query={query}"

    @tool()
    async def test_reconnection(ctx: Context) -> str:
        """Ends its own SSE response mid-call (2025-11-25 polling); the client gets the
        result by reconnecting with GET and Last-Event-ID."""
        ctx.close_sse_stream()
        await anyio.sleep(0.3)
        return "Reconnection test completed"

    @tool()
    def test_trigger_tool_change() -> str:
        """Registers a new tool (tools list_changed)."""
        server.tool(name=f"dynamic_tool_{len(server.tools)}",
                    description="A tool added at run time")(lambda: "dynamic")
        return "tool added"

    @tool()
    def test_trigger_prompt_change() -> str:
        """Registers a new prompt (prompts list_changed)."""
        server.prompt(name=f"dynamic_prompt_{len(server.prompts)}",
                      description="A prompt added at run time")(lambda: "dynamic")
        return "prompt added"

    @server.resource("test://static-text", name="static-text", mime_type="text/plain",
                     description="A static text resource")
    def static_text() -> str:
        return "This is the content of the static text resource."

    @server.resource("test://static-binary", name="static-binary", mime_type="image/png",
                     description="A static binary resource")
    def static_binary() -> bytes:
        return _PNG

    @server.resource("test://template/{id}/data", name="template", mime_type="application/json",
                     description="A resource template with an id")
    def template(id: str) -> str:  # noqa: A002 - the template variable is called id
        return f'{{"id": "{id}", "templateTest": true, "data": "Data for ID: {id}"}}'

    @server.resource("test://watched-resource", name="watched-resource", mime_type="text/plain",
                     description="A resource to subscribe to")
    def watched() -> str:
        return "Watched resource content"

    @server.prompt(description="A simple prompt without arguments")
    def test_simple_prompt() -> str:
        return "This is a simple prompt for testing."

    @server.prompt(description="A prompt with required arguments")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    @server.prompt(description="A prompt with an embedded resource")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[dict[str, Any]]:  # noqa: N803
        return [{"role": "user", "content": content.embedded_text(
                    resourceUri, "Embedded resource content for testing.")},
                {"role": "user", "content": content.text(
                    "Please process the embedded resource above.")}]

    @server.prompt(description="A prompt with an image")
    def test_prompt_with_image() -> list[dict[str, Any]]:
        return [{"role": "user", "content": content.image(_PNG, "image/png")},
                {"role": "user", "content": content.text("Please analyze the image above.")}]

    @server.completion("ref/prompt", "test_prompt_with_arguments")
    def complete_args(argument: str, value: str, context: dict[str, str]) -> list[str]:
        return [v for v in ("paris", "park", "party") if v.startswith(value)]

    return server
