"""Our MCP definitions on their own: the notation, the compiler, the validators.

These run without the official schema files.  ``FIXTURES`` are hand-built,
realistic messages with the verdict the specification gives them, revision by
revision; ``test_schema_differential`` also runs them through the official
schemas, so a wrong verdict here cannot survive there.
"""

from __future__ import annotations

import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mobius_rpc.core import methods
from mobius_rpc.core.revisions import ALL_REVISIONS
from mobius_rpc.core.schema import SchemaError, schema_for
from mobius_rpc.core.schemagen import (
    DIALECT,
    REVISIONS,
    NotationError,
    apply_delta,
    compile_defs,
    compile_revision,
)

LEGACY = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN = ("2026-07-28",)
FROM_2025_03 = LEGACY[1:] + MODERN
FROM_2025_06 = LEGACY[2:] + MODERN

META_2026 = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
             "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
             "io.modelcontextprotocol/clientInfo": {"name": "probe", "version": "1.0"}}


def req(method: str, params: dict[str, Any] | None = None, id_: int | str = 1) -> dict[str, Any]:
    out: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        out["params"] = params
    return out


def note(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        out["params"] = params
    return out


def req26(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return req(method, {"_meta": META_2026, **(params or {})})


def result26(**fields: Any) -> dict[str, Any]:
    return {"resultType": "complete", **fields}


TEXT = {"type": "text", "text": "hello"}
IMAGE = {"type": "image", "data": "aGk=", "mimeType": "image/png"}
AUDIO = {"type": "audio", "data": "aGk=", "mimeType": "audio/wav"}
LINK = {"type": "resource_link", "uri": "file:///a.txt", "name": "a.txt"}
TOOL = {"name": "add", "description": "Add", "inputSchema": {
    "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}
INIT = {"protocolVersion": "2025-06-18", "clientInfo": {"name": "c", "version": "1"},
        "capabilities": {"roots": {"listChanged": True}, "sampling": {}}}
SERVER_CAPS = {"tools": {"listChanged": True}, "logging": {}, "prompts": {},
               "resources": {"subscribe": True}}
TASK = {"taskId": "t1", "status": "working", "createdAt": "2025-11-25T00:00:00Z",
        "lastUpdatedAt": "2025-11-25T00:00:01Z", "ttl": None, "pollInterval": 500}
CACHE = {"ttlMs": 60000, "cacheScope": "private"}
CONFIRM = {"method": "elicitation/create", "params": {"message": "Sure?", "requestedSchema": {
    "type": "object", "properties": {"ok": {"type": "boolean"}}}}}

#: (revisions, definition, instance, verdict "ok"/"bad" + what the case shows)
_CASES: list[tuple[tuple[str, ...], str, Any, str]] = [
    # ---- legacy lifecycle and utilities
    (LEGACY, "InitializeRequest", req("initialize", INIT), "ok"),
    (LEGACY, "InitializeResult", {"protocolVersion": "2025-06-18", "capabilities": SERVER_CAPS,
                                  "serverInfo": {"name": "s", "version": "1"},
                                  "instructions": "hi"}, "ok"),
    (LEGACY, "InitializeResult", {"protocolVersion": "2025-06-18", "capabilities": {}},
     "bad-no-serverInfo"),
    (LEGACY, "InitializedNotification", note("notifications/initialized"), "ok"),
    (LEGACY, "PingRequest", req("ping"), "ok"),
    (LEGACY, "EmptyResult", {}, "ok"),
    (MODERN, "EmptyResult", {}, "bad-no-resultType"),
    (LEGACY, "SetLevelRequest", req("logging/setLevel", {"level": "warning"}), "ok"),
    (LEGACY, "SetLevelRequest", req("logging/setLevel", {"level": "verbose"}), "bad-level"),
    (LEGACY, "ListRootsRequest", req("roots/list"), "ok"),
    (LEGACY, "RootsListChangedNotification", note("notifications/roots/list_changed"), "ok"),
    (LEGACY, "SubscribeRequest", req("resources/subscribe", {"uri": "file:///a"}), "ok"),
    (LEGACY, "UnsubscribeRequest", req("resources/unsubscribe", {}), "bad-no-uri"),
    # ---- the feature methods, every revision
    (LEGACY, "CallToolRequest", req("tools/call", {"name": "add", "arguments": {"a": 1}}), "ok"),
    (LEGACY, "CallToolRequest", req("tools/call", {"arguments": {"a": 1}}), "bad-no-name"),
    (LEGACY, "CallToolRequest", req("tools/call", {"name": "add", "arguments": [1]}),
     "bad-arguments-array"),
    (LEGACY, "CallToolRequest", req("tools/list", {"name": "add"}), "bad-method"),
    (LEGACY, "CallToolResult", {"content": [TEXT, IMAGE], "isError": False}, "ok"),
    (LEGACY, "CallToolResult", {"content": [{"type": "text"}]}, "bad-text-missing"),
    (LEGACY, "ListToolsRequest", req("tools/list"), "ok"),
    (LEGACY, "ListToolsResult", {"tools": [TOOL], "nextCursor": "n2"}, "ok"),
    (LEGACY, "ListToolsResult", {"tools": [{"name": "x", "inputSchema": {"type": "array"}}]},
     "bad-inputSchema-type"),
    (LEGACY, "ListPromptsResult", {"prompts": [{"name": "p", "arguments": [{"name": "a"}]}]},
     "ok"),
    (LEGACY, "GetPromptRequest", req("prompts/get", {"name": "p", "arguments": {"a": "x"}}), "ok"),
    (LEGACY, "GetPromptRequest", req("prompts/get", {"name": "p", "arguments": {"a": 1}}),
     "bad-argument-not-string"),
    (LEGACY, "GetPromptResult", {"messages": [{"role": "user", "content": TEXT}]}, "ok"),
    (LEGACY, "GetPromptResult", {"messages": [{"role": "system", "content": TEXT}]}, "bad-role"),
    (LEGACY, "ListResourcesResult", {"resources": [{"uri": "file:///a", "name": "a"}]}, "ok"),
    (LEGACY, "ListResourceTemplatesResult",
     {"resourceTemplates": [{"uriTemplate": "file:///{p}", "name": "t"}]}, "ok"),
    (LEGACY, "ReadResourceRequest", req("resources/read", {"uri": "file:///a"}), "ok"),
    (LEGACY, "ReadResourceResult", {"contents": [{"uri": "file:///a", "text": "x"},
                                                 {"uri": "file:///b", "blob": "aGk="}]}, "ok"),
    (LEGACY, "ReadResourceResult", {"contents": [{"uri": "file:///a"}]}, "bad-no-text-or-blob"),
    (LEGACY, "CompleteRequest", req("completion/complete", {
        "ref": {"type": "ref/prompt", "name": "p"}, "argument": {"name": "a", "value": "x"}}),
     "ok"),
    (LEGACY, "CompleteResult", {"completion": {"values": ["a", "b"], "hasMore": False}}, "ok"),
    (LEGACY, "CreateMessageRequest", req("sampling/createMessage", {
        "messages": [{"role": "user", "content": TEXT}], "maxTokens": 100,
        "modelPreferences": {"hints": [{"name": "claude"}], "speedPriority": 0.5}}), "ok"),
    (LEGACY, "CreateMessageRequest", req("sampling/createMessage", {
        "messages": [], "maxTokens": 100, "modelPreferences": {"costPriority": 1.5}}),
     "bad-priority-above-1"),
    (LEGACY, "CreateMessageResult", {"role": "assistant", "content": TEXT, "model": "m",
                                     "stopReason": "endTurn"}, "ok"),
    (LEGACY, "ListRootsResult", {"roots": [{"uri": "file:///home", "name": "home"}]}, "ok"),
    (LEGACY, "LoggingMessageNotification", note("notifications/message", {
        "level": "info", "logger": "db", "data": {"rows": 3}}), "ok"),
    (LEGACY, "ProgressNotification", note("notifications/progress", {
        "progressToken": "tok", "progress": 0.5, "total": 1}), "ok"),
    (LEGACY, "ProgressNotification", note("notifications/progress", {"progress": 1}),
     "bad-no-token"),
    (LEGACY + MODERN, "CancelledNotification", note("notifications/cancelled", {
        "requestId": 7, "reason": "user"}), "ok"),
    (LEGACY + MODERN, "ResourceUpdatedNotification",
     note("notifications/resources/updated", {"uri": "file:///a"}), "ok"),
    (LEGACY + MODERN, "ToolListChangedNotification", note("notifications/tools/list_changed"),
     "ok"),
    # ---- envelopes
    (LEGACY + MODERN, "JSONRPCRequest", req("anything", {"x": 1}, id_="abc"), "ok"),
    (LEGACY + MODERN, "JSONRPCRequest", {"jsonrpc": "2.0", "id": None, "method": "m"},
     "bad-null-id"),
    (LEGACY + MODERN, "JSONRPCRequest", {"jsonrpc": "1.0", "id": 1, "method": "m"}, "bad-version"),
    (LEGACY + MODERN, "JSONRPCNotification", note("anything"), "ok"),
    (LEGACY[:3], "JSONRPCResponse", {"jsonrpc": "2.0", "id": 1, "result": {}}, "ok"),
    (LEGACY[:3], "JSONRPCError", {"jsonrpc": "2.0", "id": 1,
                                  "error": {"code": -32601, "message": "nope"}}, "ok"),
    # legacy schemas cannot express an id-less parse error; 2025-11-25 can
    (LEGACY[:3], "JSONRPCError", {"jsonrpc": "2.0", "error": {"code": -32700, "message": "x"}},
     "bad-no-id"),
    (LEGACY[3:] + MODERN, "JSONRPCErrorResponse",
     {"jsonrpc": "2.0", "error": {"code": -32700, "message": "parse error"}}, "ok"),
    (LEGACY[3:] + MODERN, "JSONRPCResponse",
     {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "bad"}}, "ok"),
    (LEGACY, "JSONRPCMessage", {"jsonrpc": "2.0", "id": 1, "result": {"x": 1}}, "ok"),
    (MODERN, "JSONRPCMessage", {"jsonrpc": "2.0", "id": 1, "result": {"x": 1}},
     "bad-no-resultType"),
    (MODERN, "JSONRPCMessage", {"jsonrpc": "2.0", "id": 1, "result": result26(x=1)}, "ok"),
    # batches exist only in 2025-03-26
    (("2025-03-26",), "JSONRPCMessage", [req("ping"), note("notifications/initialized")], "ok"),
    (("2025-03-26",), "JSONRPCBatchResponse", [{"jsonrpc": "2.0", "id": 1, "result": {}}], "ok"),
    (("2024-11-05", "2025-06-18", "2025-11-25"), "JSONRPCMessage", [req("ping")], "bad-batch"),
    # ---- open world: unknown fields are always accepted, undeclared ones unchecked
    (LEGACY, "CallToolRequest", req("tools/call", {"name": "x", "vendorExtra": {"a": [1]}}), "ok"),
    (("2024-11-05",), "ProgressNotification", note("notifications/progress", {
        "progressToken": 1, "progress": 1, "message": 5}), "ok-message-undeclared"),
    (FROM_2025_03[:-1], "ProgressNotification", note("notifications/progress", {
        "progressToken": 1, "progress": 1, "message": 5}), "bad-message-not-string"),
    # ---- <= 2025-06-18: concrete defs check method/params only; 2025-11-25 adds the envelope
    (LEGACY[:3], "CallToolRequest", {"method": "tools/call", "params": {"name": "x"}},
     "ok-no-envelope"),
    (LEGACY[3:] + MODERN, "CallToolRequest", {"method": "tools/call", "params": {"name": "x"}},
     "bad-no-envelope"),
    (LEGACY[:3], "ListToolsRequest", {"method": "tools/list"}, "ok-params-optional"),
    # ---- content blocks by revision
    (("2024-11-05",), "CallToolResult", {"content": [AUDIO]}, "bad-no-audio-yet"),
    (FROM_2025_03[:-1], "CallToolResult", {"content": [AUDIO]}, "ok-audio"),
    (LEGACY[:2], "CallToolResult", {"content": [LINK]}, "bad-no-resource-link-yet"),
    (FROM_2025_06[:-1], "CallToolResult", {"content": [LINK], "structuredContent": {"sum": 3}},
     "ok-resource-link"),
    (FROM_2025_06[:-1], "CallToolResult", {"content": [], "structuredContent": [1, 2]},
     "bad-structuredContent-array"),
    (FROM_2025_03[:-1], "ListToolsResult", {"tools": [{**TOOL, "annotations": {
        "readOnlyHint": True, "title": "Adder"}}]}, "ok-tool-annotations"),
    # ---- elicitation (2025-06-18+)
    (FROM_2025_06[:-1], "ElicitRequest", req("elicitation/create", {
        "message": "Name?", "requestedSchema": {"type": "object", "properties": {
            "name": {"type": "string", "minLength": 1},
            "age": {"type": "integer", "minimum": 0.5},
            "ok": {"type": "boolean", "default": True}}, "required": ["name"]}}), "ok"),
    (FROM_2025_06[:-1], "ElicitRequest", req("elicitation/create", {
        "message": "Name?", "requestedSchema": {"type": "object", "properties": {
            "nested": {"type": "object"}}}}), "bad-nested-property-schema"),
    (FROM_2025_06, "ElicitResult", {"action": "accept", "content": {"name": "Ada", "age": 36}},
     "ok"),
    (FROM_2025_06, "ElicitResult", {"action": "maybe"}, "bad-action"),
    (("2025-06-18",), "ElicitResult", {"action": "accept", "content": {"tags": ["a"]}},
     "bad-no-multi-select-yet"),
    (("2025-11-25", "2026-07-28"), "ElicitResult",
     {"action": "accept", "content": {"tags": ["a"]}}, "ok-multi-select"),
    # ---- 2025-11-25: tasks, icons, URL elicitation, sampling with tools
    (("2025-11-25",), "CallToolRequest",
     req("tools/call", {"name": "slow", "task": {"ttl": 60000}}), "ok-task-augmented"),
    (("2025-11-25",), "CreateTaskResult", {"task": TASK}, "ok"),
    (("2025-11-25",), "GetTaskRequest", req("tasks/get", {"taskId": "t1"}), "ok"),
    (("2025-11-25",), "GetTaskResult", TASK, "ok"),
    (("2025-11-25",), "GetTaskResult", {**TASK, "status": "paused"}, "bad-status"),
    (("2025-11-25",), "ListTasksResult", {"tasks": [TASK], "nextCursor": "c"}, "ok"),
    (("2025-11-25",), "CancelTaskResult", {**TASK, "status": "cancelled"}, "ok"),
    (("2025-11-25",), "GetTaskPayloadResult", {"content": [TEXT]}, "ok"),
    (("2025-11-25",), "TaskStatusNotification", note("notifications/tasks/status", TASK), "ok"),
    (("2025-11-25",), "CancelledNotification", note("notifications/cancelled", {}),
     "ok-requestId-optional-in-2025-11-25"),
    (LEGACY[:3] + MODERN, "CancelledNotification", note("notifications/cancelled", {}),
     "bad-no-requestId"),
    (("2025-11-25",), "ElicitRequest", req("elicitation/create", {
        "mode": "url", "message": "Sign in", "url": "https://example.com/auth",
        "elicitationId": "e1"}), "ok-url-mode"),
    (("2025-11-25",), "ElicitationCompleteNotification",
     note("notifications/elicitation/complete", {"elicitationId": "e1"}), "ok"),
    (("2025-11-25",), "URLElicitationRequiredError", {"jsonrpc": "2.0", "id": 3, "error": {
        "code": -32042, "message": "auth", "data": {"elicitations": [{
            "mode": "url", "message": "m", "url": "https://x", "elicitationId": "e"}]}}}, "ok"),
    (("2025-11-25",), "URLElicitationRequiredError", {"jsonrpc": "2.0", "id": 3, "error": {
        "code": -32000, "message": "auth", "data": {"elicitations": []}}}, "bad-code"),
    (LEGACY[3:] + MODERN, "Implementation", {
        "name": "s", "version": "1", "websiteUrl": "https://x",
        "icons": [{"src": "https://x/i.png", "sizes": ["48x48"], "theme": "dark"}]}, "ok-icons"),
    (LEGACY[3:] + MODERN, "Icon", {"src": "https://x/i.png", "theme": "sepia"}, "bad-theme"),
    (("2025-11-25",), "CreateMessageRequest", req("sampling/createMessage", {
        "messages": [{"role": "user", "content": TEXT}], "maxTokens": 10, "tools": [TOOL],
        "toolChoice": {"mode": "auto"}}), "ok-sampling-tools"),
    (("2025-11-25",), "CreateMessageResult", {"role": "assistant", "model": "m", "content": [
        {"type": "tool_use", "id": "u1", "name": "add", "input": {"a": 1}}]}, "ok-tool-use"),
    (("2025-11-25",), "SamplingMessage", {"role": "user", "content": {
        "type": "tool_result", "toolUseId": "u1", "content": [TEXT]}}, "ok-tool-result"),
    (("2025-11-25",), "ListToolsResult", {"tools": [{**TOOL, "execution": {
        "taskSupport": "sometimes"}}]}, "bad-taskSupport"),
    # ---- 2026-07-28: per-request _meta, resultType, discovery, MRTR, cache hints
    (MODERN, "DiscoverRequest", req26("server/discover"), "ok"),
    (MODERN, "DiscoverRequest", req("server/discover"), "bad-no-params"),
    (MODERN, "DiscoverResult", result26(supportedVersions=["2026-07-28"], capabilities=SERVER_CAPS,
                                        **CACHE), "ok"),
    (MODERN, "DiscoverResult", result26(supportedVersions=["2026-07-28"], capabilities={}),
     "bad-no-cache-hints"),
    (MODERN, "CallToolRequest", req26("tools/call", {"name": "add", "arguments": {"a": 1}}), "ok"),
    (MODERN, "CallToolRequest", req("tools/call", {"name": "add"}), "bad-no-meta"),
    (MODERN, "CallToolRequest", req("tools/call", {"name": "add", "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}), "bad-no-client-capabilities"),
    (MODERN, "CallToolRequest", req26("tools/call", {
        "name": "add", "requestState": "opaque", "inputResponses": {
            "confirm": {"action": "accept", "content": {"ok": True}}}}), "ok-mrtr-retry"),
    (MODERN, "CallToolResult", result26(content=[TEXT], structuredContent=[1, 2]),
     "ok-structuredContent-any-json"),
    (MODERN, "CallToolResult", {"content": [TEXT]}, "bad-no-resultType"),
    (MODERN, "InputRequiredResult", {"resultType": "input_required", "requestState": "s",
                                     "inputRequests": {"confirm": CONFIRM}}, "ok"),
    (MODERN, "InputRequiredResult", {"resultType": "input_required", "inputRequests": {
        "x": {"method": "ping"}}}, "bad-not-an-input-request"),
    (MODERN, "ListToolsRequest", req26("tools/list", {"cursor": "c"}), "ok"),
    (MODERN, "ListToolsRequest", req("tools/list"), "bad-params-required"),
    (MODERN, "ListToolsResult", result26(tools=[TOOL], **CACHE), "ok"),
    (MODERN, "ListToolsResult", result26(tools=[TOOL], ttlMs=-1, cacheScope="private"),
     "bad-negative-ttl"),
    (MODERN, "ListToolsResult", result26(tools=[TOOL], ttlMs=1, cacheScope="shared"),
     "bad-cacheScope"),
    (MODERN, "ReadResourceResult", result26(contents=[{"uri": "file:///a", "text": "x"}], **CACHE),
     "ok"),
    (MODERN, "GetPromptResult", result26(messages=[{"role": "user", "content": TEXT}]), "ok"),
    (MODERN, "CompleteResult", result26(completion={"values": ["v"] * 101}), "bad-over-100-values"),
    (MODERN, "SubscriptionsListenRequest", req26("subscriptions/listen", {"notifications": {
        "toolsListChanged": True, "resourceSubscriptions": ["file:///a"]}}), "ok"),
    (MODERN, "SubscriptionsListenResult", result26(
        _meta={"io.modelcontextprotocol/subscriptionId": 4}), "ok"),
    (MODERN, "SubscriptionsListenResult", result26(), "bad-no-subscription-id"),
    (MODERN, "SubscriptionsAcknowledgedNotification", note(
        "notifications/subscriptions/acknowledged", {"notifications": {"toolsListChanged": True}}),
     "ok"),
    (MODERN, "ToolListChangedNotification", note("notifications/tools/list_changed", {
        "_meta": {"io.modelcontextprotocol/subscriptionId": 4}}), "ok"),
    (MODERN, "UnsupportedProtocolVersionError", {"jsonrpc": "2.0", "id": 1, "error": {
        "code": -32022, "message": "unsupported", "data": {
            "supported": ["2026-07-28"], "requested": "2099-01-01"}}}, "ok"),
    (MODERN, "UnsupportedProtocolVersionError", {"jsonrpc": "2.0", "id": 1, "error": {
        "code": -32022, "message": "unsupported"}}, "bad-no-data"),
    (MODERN, "MissingRequiredClientCapabilityError", {"jsonrpc": "2.0", "id": 1, "error": {
        "code": -32021, "message": "m", "data": {"requiredCapabilities": {"sampling": {}}}}}, "ok"),
    (MODERN, "InvalidParamsError", {"code": -32602, "message": "bad"}, "ok"),
    (MODERN, "InvalidParamsError", {"code": -32002, "message": "not found"}, "bad-code"),
    # the official JSONValue has no float and no null: a quirk, mirrored faithfully
    (MODERN, "ClientCapabilities", {"experimental": {"x": {"ratio": 1, "tags": ["a"]}}}, "ok"),
    (MODERN, "ClientCapabilities", {"experimental": {"x": {"ratio": 0.5}}}, "bad-float-jsonvalue"),
    (MODERN, "ElicitRequest", {"method": "elicitation/create", "params": {
        "mode": "url", "message": "m", "url": "https://x"}}, "ok-embedded-no-envelope"),
]

FIXTURES: list[tuple[str, str, Any, str]] = [
    (revision, name, instance, label)
    for revisions, name, instance, label in _CASES for revision in revisions]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f"{f[0]}-{f[1]}-{f[3]}")
def test_fixture_verdicts(fixture: tuple[str, str, Any, str]) -> None:
    revision, name, instance, label = fixture
    schema = schema_for(revision)
    expected = label.startswith("ok")
    assert schema.is_valid(name, instance) is expected
    if expected:
        schema.check(name, instance)
    else:
        with pytest.raises(SchemaError) as caught:
            schema.check(name, instance)
        assert caught.value.definition == name and caught.value.message
    # the self-contained schema means the same thing to python-jsonschema
    reference = jsonschema.Draft202012Validator(schema.json_schema(name))
    assert reference.is_valid(instance) is expected


@pytest.mark.parametrize(("revision", "name", "instance", "path", "words"), [
    ("2025-06-18", "CallToolRequest", req("tools/call", {"name": 5}), "params.name", "string"),
    ("2025-11-25", "CallToolRequest", req("tools/call", {}), "params", "name"),
    ("2025-11-25", "CallToolRequest", req("tools/call", {"name": "x", "arguments": [1]}),
     "params.arguments", "object"),
    ("2026-07-28", "CallToolRequest", req("tools/call", {"name": "x"}), "params", "_meta"),
    ("2026-07-28", "CallToolRequest", req("tools/call", {"name": "x", "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}), "params._meta", "clientCap"),
    ("2024-11-05", "CallToolResult", {"content": [TEXT, {"type": "text", "text": 5}]},
     "content.1.text", "string"),
    # inside a union, the error comes from the variant whose constants match
    ("2025-11-25", "ClientRequest", req("tools/call", {"name": 5}), "params.name", "string"),
    ("2025-06-18", "CallToolResult", {"content": [{"type": "texts", "text": "a"}]},
     "content.0.type", "text"),
    ("2025-06-18", "CallToolResult", "nope", "", "object"),
    ("2026-07-28", "ListToolsResult", result26(tools=[], ttlMs=-5, cacheScope="public"),
     "ttlMs", "minimum"),
])
def test_error_path_and_message(revision: str, name: str, instance: Any, path: str,
                                words: str) -> None:
    with pytest.raises(SchemaError) as caught:
        schema_for(revision).check(name, instance)
    assert caught.value.path == path
    assert words in caught.value.message
    assert len(caught.value.message) <= 200
    assert str(caught.value).startswith(path or "<root>")


def test_long_messages_are_truncated() -> None:
    huge = {"content": [{"type": "nope", "text": "x" * 5000}]}
    with pytest.raises(SchemaError) as caught:
        schema_for("2025-06-18").check("CallToolResult", huge)
    assert len(caught.value.message) <= 200


def test_revisions_are_the_ones_we_speak() -> None:
    assert REVISIONS == ALL_REVISIONS


@pytest.mark.parametrize("revision", REVISIONS)
def test_method_table_names_existing_definitions(revision: str) -> None:
    names = schema_for(revision).names()
    specs = methods.methods_for(revision)
    assert specs, f"no methods for {revision}"
    for spec in specs.values():
        assert spec.message_def in names, (spec.method, spec.message_def)
        assert spec.result_def is None or spec.result_def in names, (spec.method, spec.result_def)


@pytest.mark.parametrize("revision", REVISIONS)
def test_compiled_revision_is_a_sound_open_world_schema(revision: str) -> None:
    document = compile_revision(revision)
    assert document["$schema"] == DIALECT
    jsonschema.Draft202012Validator.check_schema(document)
    text = repr(document)
    assert "'additionalProperties': False" not in text
    schema = schema_for(revision)
    for name in sorted(schema.names()):  # every definition compiles
        schema.is_valid(name, {})


def test_schema_objects_are_cached_and_reject_unknown_names() -> None:
    assert schema_for("2025-06-18") is schema_for("2025-06-18")
    with pytest.raises(KeyError):
        schema_for("1999-01-01")
    with pytest.raises(KeyError):
        schema_for("2026-07-28").check("PingRequest", req("ping"))
    with pytest.raises(KeyError):
        schema_for("2025-06-18").json_schema("NoSuchThing")
    # json_schema hands out copies: mutating one does not change the validators
    copy_ = schema_for("2025-06-18").json_schema("Role")
    copy_["$defs"]["Role"]["enum"].append("system")
    assert not schema_for("2025-06-18").is_valid("Role", "system")


def test_json_schema_is_self_contained() -> None:
    doc = schema_for("2025-11-25").json_schema("CallToolRequest")
    assert doc["$ref"] == "#/$defs/CallToolRequest"
    assert {"CallToolRequestParams", "RequestId", "TaskMetadata"} <= set(doc["$defs"])
    assert "InitializeResult" not in doc["$defs"]  # only what it references


def test_concurrent_first_use_settles_on_one_validator() -> None:
    schema = schema_for("2025-03-26")
    message = req("tools/call", {"name": "x"})
    results: list[bool] = []
    used: list[int] = []

    def work() -> None:
        results.append(schema.is_valid("CallToolRequest", message))
        used.append(id(schema._validator("CallToolRequest")))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 8
    assert len(set(used)) == 1


def test_valid_check_is_fast() -> None:
    """The hot path must stay compiled: ~1 µs here, python-jsonschema would be ~160 µs."""
    schema = schema_for("2025-11-25")
    message = req("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2},
                                 "_meta": {"progressToken": 3}})
    schema.check("CallToolRequest", message)
    runs = 5000
    start = time.perf_counter()
    for _ in range(runs):
        schema.check("CallToolRequest", message)
    per_call = (time.perf_counter() - start) / runs
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per check"


# ------------------------------------------------------------------ the notation itself

def test_notation_compiles_each_construct() -> None:
    defs = {
        "Id": {"$types": ["string", "integer"]},
        "Base": {"id": "Id", "note?": "string"},
        "Thing": {"$extends": "Base", "note": "integer", "kind": {"$const": "t"},
                  "mode?": {"$enum": ["a", "b"]}, "tags?": {"$list": "string", "$maxItems": 2},
                  "attrs?": {"$map": "any"}, "score?": {"$num": {"minimum": 0, "maximum": 1}},
                  "count?": {"$int": {"minimum": 0}}, "either?": {"$any": ["Id", "null"]},
                  "both?": {"$all": ["Base", {"extra": "boolean"}]}, "$schema?": "string"},
    }
    out = compile_defs(defs)
    thing = out["Thing"]
    assert thing["required"] == ["id", "note", "kind"]
    assert thing["properties"]["note"] == {"type": "integer"}  # local field wins
    assert thing["properties"]["tags"] == {"type": "array", "items": {"type": "string"},
                                           "maxItems": 2}
    assert thing["properties"]["attrs"] == {"type": "object"}
    assert thing["properties"]["count"] == {"type": "integer", "minimum": 0}
    assert thing["properties"]["either"] == {"anyOf": [{"$ref": "#/$defs/Id"}, {"type": "null"}]}
    assert out["Id"] == {"type": ["string", "integer"]}
    assert "$schema" in thing["properties"]


@pytest.mark.parametrize(("defs", "words"), [
    ({"A": {"x": "Missing"}}, "unknown definition"),
    ({"A": {"$list": "string", "$extends": "B"}}, "does not combine"),
    ({"A": {"$extend": "B", "x": "string"}}, "notation keywords"),
    ({"A": {"$types": ["string", "Thing"]}}, "primitives only"),
    ({"A": {"$int": {"minimum": 0, "pattern": "x"}}}, "bounds"),
    ({"A": {"$extends": "B"}, "B": {"$extends": "A"}}, "cannot extend"),
    ({"A": {"$extends": "B"}, "B": {"$list": "string"}}, "cannot extend"),
    ({"A": 5}, "a type is"),
])
def test_notation_errors_are_loud(defs: dict[str, Any], words: str) -> None:
    with pytest.raises(NotationError, match=words):
        compile_defs(defs)


def test_deltas_apply_in_order_and_strictly() -> None:
    base = {"A": {"x": "string", "y?": "integer"}, "B": "string", "U": {"$any": ["A", "B"]}}
    out = apply_delta(base, {"revision": "r2", "remove": ["B"],
                             "define": {"B": "integer", "C": {"z": "A"}},
                             "amend": {"A": {"y": "number", "-x": None}}})
    assert out == {"A": {"y": "number"}, "B": "integer", "U": {"$any": ["A", "B"]},
                   "C": {"z": "A"}}
    assert base["A"] == {"x": "string", "y?": "integer"}  # the base is untouched
    for bad, words in [({"remove": ["Nope"]}, "remove unknown"),
                       ({"amend": {"U": {"x": "string"}}}, "only amend object"),
                       ({"amend": {"Nope": {"x": "string"}}}, "only amend object"),
                       ({"amend": {"A": {"-nope": None}}}, "no field"),
                       ({"replace": {}}, "unknown delta keys")]:
        with pytest.raises(NotationError, match=words):
            apply_delta(base, bad)


def test_wheel_ships_the_definitions() -> None:
    """The notation files are force-included as mobius_rpc/_schemas, the fallback location."""
    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    include = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert include["schemas"] == "mobius_rpc/_schemas"
    shipped = sorted(p.name for p in (root / "schemas").glob("mcp-*.json"))
    assert shipped == [f"mcp-{REVISIONS[0]}.json"] + [f"mcp-{r}.delta.json" for r in REVISIONS[1:]]
