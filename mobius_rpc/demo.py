"""The server ``mobius serve`` runs: a small notes service with real behaviour.

It exercises every feature a host can try: tools with structured output,
progress and logging, sampling and elicitation round trips, roots, static
resources (text and binary), a resource template with completion,
subscriptions with updates, and prompts with argument completion.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated, Literal

import anyio

from .core.revisions import LEGACY_REVISIONS, MODERN_REVISIONS
from .server.app import Server
from .server.context import Context
from .server.hints import Param
from .server.resources import ResourceNotFound
from .server.tools import ToolError

__all__ = ("build_demo_server",)

# A 1x1 transparent PNG.
_PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

_LANGUAGES = ("c", "go", "java", "javascript", "python", "rust", "typescript")


@dataclass
class Stats:
    words: int
    lines: int
    characters: int


@dataclass
class Preferences:
    name: str
    color: Literal["red", "green", "blue"] = "blue"


def build_demo_server(*, legacy: bool = True, modern: bool = True) -> Server:
    """The demo server; ``legacy``/``modern`` choose which protocol eras it serves."""
    server = Server(
        "mobius-demo", version="0.1.0", title="Mobius RPC demo",
        revisions=LEGACY_REVISIONS if legacy else (),
        modern_revisions=MODERN_REVISIONS if modern else (),
        instructions="A notes service: add_note/list notes as resources; echo, add and "
                     "text_stats are pure tools; ask_user, summarize and roots talk to the client.")
    notes: dict[str, str] = {"welcome": "Welcome to Mobius RPC.", "todo": "Write more tests."}

    @server.tool(annotations={"readOnlyHint": True, "idempotentHint": True})
    def echo(text: Annotated[str, Param(description="Text to send back")]) -> str:
        """Return the text unchanged."""
        return text

    @server.tool(title="Add two numbers", annotations={"readOnlyHint": True})
    def add(a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    @server.tool()
    def text_stats(text: str) -> Stats:
        """Count words, lines and characters of a text."""
        return Stats(words=len(text.split()), lines=len(text.splitlines()) or 1,
                     characters=len(text))

    @server.tool(annotations={"destructiveHint": False})
    async def add_note(name: Annotated[str, Param(description="Note name", pattern=r"^[\w-]+$")],
                       body: str) -> str:
        """Create or replace a note; subscribers of its URI are told it changed."""
        notes[name] = body
        await server.notify_resource_updated(f"notes://{name}")
        return f"saved notes://{name}"

    @server.tool(task_support="optional")
    async def slow_count(to: Annotated[int, Param(minimum=1, maximum=50)], ctx: Context,
                         delay: float = 0.01) -> str:
        """Count up to `to`, reporting progress and logging each step."""
        for i in range(1, to + 1):
            await ctx.report_progress(i, to, f"step {i} of {to}")
            await ctx.debug(f"counted {i}")
            await anyio.sleep(delay)
        return f"counted to {to}"

    @server.tool()
    async def summarize(text: str, ctx: Context) -> str:
        """Ask the client's model for a one-line summary (sampling)."""
        result = await ctx.sample(f"Summarize in one line:\n\n{text}", max_tokens=100)
        content = result.get("content")
        if isinstance(content, dict) and content.get("type") == "text":
            return str(content["text"])
        raise ToolError("the client's model answered without text")

    @server.tool()
    async def ask_user(question: str, ctx: Context) -> str:
        """Ask the user for their name and favourite colour (elicitation)."""
        answer = await ctx.elicit(question, Preferences)
        if answer.get("action") != "accept":
            return f"user chose to {answer.get('action')}"
        content = answer.get("content") or {}
        return f"hello {content.get('name')}, you like {content.get('color', 'blue')}"

    @server.tool()
    async def roots(ctx: Context) -> list[str]:
        """The client's roots (roots/list)."""
        return [str(root.get("uri")) for root in await ctx.list_roots()]

    @server.tool()
    def image() -> dict[str, object]:
        """A one-pixel PNG as image content."""
        return {"type": "image", "data": base64.b64encode(_PIXEL).decode(),
                "mimeType": "image/png"}

    @server.resource("mobius://readme", name="readme", mime_type="text/markdown")
    def readme() -> str:
        """What this server is."""
        return "# Mobius RPC demo\n\nNotes live at notes://{name}.\n"

    @server.resource("mobius://pixel.png", name="pixel", mime_type="image/png")
    def pixel() -> bytes:
        return _PIXEL

    @server.resource("notes://{name}", name="note", mime_type="text/plain")
    def note(name: str) -> str:
        """One note by name."""
        if name not in notes:
            raise ResourceNotFound(name)
        return notes[name]

    @server.completion("ref/resource", "notes://{name}")
    def complete_note(argument: str, value: str, context: dict[str, str]) -> list[str]:
        return sorted(n for n in notes if n.startswith(value))

    @server.prompt(title="Review code")
    def review_code(code: Annotated[str, Param(description="The code to review")],
                    language: Annotated[str, Param(description="Programming language")] = "python"
                    ) -> str:
        """Ask for a careful code review."""
        return f"Please review this {language} code:\n\n```{language}\n{code}\n```"

    @server.prompt()
    def greet(name: str) -> list[dict[str, object]]:
        """A short two-message conversation."""
        return [{"role": "user", "content": {"type": "text", "text": f"Say hello to {name}."}},
                {"role": "assistant", "content": {"type": "text", "text": f"Hello, {name}!"}}]

    @server.completion("ref/prompt", "review_code")
    def complete_language(argument: str, value: str, context: dict[str, str]) -> list[str]:
        if argument != "language":
            return []
        return [lang for lang in _LANGUAGES if lang.startswith(value.lower())]

    return server
