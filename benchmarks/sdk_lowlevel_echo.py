"""The official Python SDK's low-level server with one echo tool, over stdio (a peer)."""

import anyio
import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server


async def list_tools(ctx, params):  # type: ignore[no-untyped-def]
    return types.ListToolsResult(tools=[types.Tool(
        name="echo", input_schema={"type": "object", "properties": {"text": {"type": "string"}},
                                   "required": ["text"]})])


async def call_tool(ctx, params):  # type: ignore[no-untyped-def]
    text = (params.arguments or {}).get("text", "")
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


server = Server("sdk-echo", version="0", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


anyio.run(main)
