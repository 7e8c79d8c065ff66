"""A Python upstream for the gateway tests: a Mobius server with one tool per
thing a gateway must relay or survive.

Run as ``python upstream_app.py`` (stdio) or imported (``build()``) to serve
over HTTP.  ``UPSTREAM_DESCRIPTION`` sets the description of ``described`` (a
changed definition between two runs); ``UPSTREAM_MARKER`` names a file that
``hang`` appends to when it is cancelled (so a test can see the cancel arrive).

The ``*_task`` tools run only as tasks (2025-11-25); they append what happens
to them to ``UPSTREAM_MARKER`` too, and ``phases_task`` and ``pid_task`` wait
for files named after ``UPSTREAM_RELEASE`` (so a test decides when they go on).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mobius_rpc.server.app import Server  # noqa: E402
from mobius_rpc.server.context import Context  # noqa: E402


def build(name: str = "py-upstream") -> Server:
    server = Server(name, version="1.0")
    # a gateway closing its stdin means "stop": no need to let a listen stream linger
    server.limits = replace(server.limits, end_of_input_grace=0.1)
    notes = {"1": "first note", "2": "second note"}

    @server.tool()
    def echo(text: str) -> str:
        """Return the text."""
        return f"{name}:{text}"

    @server.tool(description=os.environ.get("UPSTREAM_DESCRIPTION", "The original description."))
    def described() -> str:
        return "described"

    @server.tool()
    async def slow(ctx: Context, steps: int = 3) -> str:
        """Report progress and log at each step."""
        for i in range(steps):
            await ctx.report_progress(i + 1, steps, f"step {i + 1}")
            await ctx.info(f"step {i + 1} of {steps}")
        return "slow done"

    @server.tool()
    async def ask(ctx: Context, question: str) -> str:
        """Ask the user (form elicitation)."""
        answer = await ctx.elicit(question, {"type": "object",
                                             "properties": {"answer": {"type": "string"}},
                                             "required": ["answer"]})
        return f"{answer.get('action')}:{(answer.get('content') or {}).get('answer')}"

    @server.tool()
    async def ask_url(ctx: Context) -> str:
        """Send the user to a URL (URL elicitation)."""
        answer = await ctx.elicit_url("Sign in please", "https://example.invalid/login", "e1")
        return f"url:{answer.get('action')}"

    @server.tool()
    async def sample(ctx: Context, prompt: str) -> str:
        """Ask the client's model."""
        result = await ctx.sample(prompt, max_tokens=20)
        return f"model said: {result['content']['text']}"

    @server.tool()
    async def impatient(ctx: Context) -> str:
        """Ask the client's model, and give up (cancel the request) after 0.3 s."""
        with anyio.move_on_after(0.3):
            await ctx.sample("slow?", max_tokens=5)
            return "answered"
        return "gave up"

    @server.tool()
    async def roots(ctx: Context) -> str:
        """The client's roots."""
        return ",".join(r["uri"] for r in await ctx.list_roots())

    @server.tool()
    def crash() -> str:
        """Exit the process in the middle of the call."""
        os._exit(3)

    @server.tool()
    def freeze() -> str:
        """Block the whole process (its event loop too): it stops answering pings."""
        import time
        time.sleep(3600)
        return "never"

    @server.tool()
    async def hang() -> str:
        """Never answer (until cancelled)."""
        try:
            await anyio.sleep_forever()
        finally:
            marker = os.environ.get("UPSTREAM_MARKER")
            if marker:
                with open(marker, "a") as out:
                    out.write("cancelled\n")
        return "never"

    @server.tool()
    async def add_tool(tool_name: str) -> str:
        """Register another tool (the tools list changes)."""
        server.tools.add(lambda: "new", name=tool_name, description="added at run time")
        return "added"

    @server.tool()
    async def touch(uri: str) -> str:
        """Tell subscribers that ``uri`` changed."""
        await server.notify_resource_updated(uri)
        return "touched"

    @server.tool()
    async def flood(ctx: Context, count: int) -> str:
        """Send many log messages unrelated to any call."""
        for i in range(count):
            await ctx.session.notify("notifications/message",
                                     {"level": "info", "data": f"flood {i}"}, unrelated=True)
        return "flooded"

    def mark(line: str) -> None:
        marker = os.environ.get("UPSTREAM_MARKER")
        if marker:
            with open(marker, "a") as out:
                out.write(line + "\n")

    async def released(suffix: str) -> None:
        release = os.environ.get("UPSTREAM_RELEASE", "")
        while not os.path.exists(release + suffix):
            await anyio.sleep(0.02)

    def status(ctx: Context, state: str, message: str) -> None:
        assert ctx.task_id is not None
        ctx.server.task_manager.set_status(ctx.session, ctx.task_id, state, message)

    @server.tool(task_support="optional")
    async def long_optional(seconds: float) -> str:
        """Work for ``seconds``; may run as a task or be called plainly."""
        await anyio.sleep(seconds)
        return f"long optional done after {seconds}"

    @server.tool(task_support="required")
    async def long_task(seconds: float) -> str:
        """Work for ``seconds`` (longer than a short per-request timeout)."""
        await anyio.sleep(seconds)
        return f"long done after {seconds}"

    @server.tool(task_support="required")
    async def phases_task(ctx: Context) -> str:
        """Announce each phase in the task's statusMessage; go on when released."""
        mark(f"task {ctx.task_id}")
        for phase in ("fetching", "crunching"):
            status(ctx, "working", phase)
            await released("." + phase)
        return "phases done"

    @server.tool(task_support="required")
    async def ask_task(ctx: Context, wait: float = 0.0) -> str:
        """Work a while, then ask the user (elicitation related to the task)."""
        status(ctx, "working", "warming up")
        await anyio.sleep(wait)
        answer = await ctx.elicit("Colour?", {"type": "object",
                                              "properties": {"answer": {"type": "string"}},
                                              "required": ["answer"]})
        mark(f"answer {(answer.get('content') or {}).get('answer')}")
        return f"colour {(answer.get('content') or {}).get('answer')}"

    @server.tool(task_support="required")
    async def hang_task() -> str:
        """Never finish (until cancelled)."""
        mark("started")
        try:
            await anyio.sleep_forever()
        finally:
            mark("cancelled")
        return "never"

    @server.tool(task_support="required")
    async def pid_task() -> str:
        """Tell its process id, then never finish (a test kills the process)."""
        mark(f"pid {os.getpid()}")
        await anyio.sleep_forever()
        return "never"

    @server.tool(task_support="required")
    async def self_cancel_task(ctx: Context) -> str:
        """Its own server cancels it (as an operator would)."""
        assert ctx.task_id is not None
        await ctx.server.task_manager.cancel(ctx.session, {"taskId": ctx.task_id})
        await anyio.sleep_forever()
        return "never"

    @server.resource("mem://notes/{id}", description="A note")
    def note(id: str) -> str:
        if id not in notes:
            from mobius_rpc.server.resources import ResourceNotFound
            raise ResourceNotFound(f"mem://notes/{id}")
        return notes[id]

    @server.resource("mem://static", mime_type="text/plain")
    def static() -> str:
        return "static text"

    @server.prompt()
    def greet(who: str) -> str:
        """Greet someone."""
        return f"Hello, {who}!"

    @server.completion("ref/prompt", "greet")
    def complete_who(argument: str, value: str, context: dict[str, str]) -> list[str]:
        return [w for w in ("alice", "albert", "bob") if w.startswith(value)]

    return server


if __name__ == "__main__":
    anyio.run(build(os.environ.get("UPSTREAM_NAME", "py-upstream")).run_stdio)
