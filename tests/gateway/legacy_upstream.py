"""A legacy-only upstream (2024-11-05 ... 2025-11-25, no 2026-07-28) whose tools
count their runs, for the parked-call and task tests.

Run as ``python legacy_upstream.py`` (stdio).  ``RUNS_FILE`` names a file each
tool appends a line to when it starts (``run <tool>``), when it gets an answer
and when it is cancelled, so a test sees how often a tool ran and what reached it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mobius_rpc.core.errors import McpError  # noqa: E402
from mobius_rpc.server.app import Server  # noqa: E402
from mobius_rpc.server.context import Context  # noqa: E402

FORM = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def note(line: str) -> None:
    path = os.environ.get("RUNS_FILE")
    if path:
        with open(path, "a") as out:
            out.write(line + "\n")


def build() -> Server:
    server = Server("legacy-upstream", version="1.0", modern_revisions=())
    server.limits = replace(server.limits, end_of_input_grace=0.1)

    @server.tool()
    async def order(ctx: Context, item: str) -> str:
        """A side effect (an order is placed), then a question."""
        note(f"run order {item}")
        answer = await ctx.elicit(f"Deliver the {item} where?", FORM)
        where = (answer.get("content") or {}).get("answer")
        note(f"answer {where}")
        return f"ordered {item} to {where}"

    @server.tool()
    async def two_questions(ctx: Context) -> str:
        """Two elicitations at once (concurrent requests), then a sampling request."""
        note("run two_questions")
        answers: dict[str, Any] = {}

        async def one(name: str) -> None:
            answers[name] = await ctx.elicit(f"{name}?", FORM)
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "first")
            tg.start_soon(one, "second")
        model = await ctx.sample("and then?", max_tokens=5)
        got = [answers[n]["content"]["answer"] for n in ("first", "second")]
        return f"{got[0]}+{got[1]}+{model['content']['text']}"

    @server.tool()
    async def ask_then_hang(ctx: Context) -> str:
        """A question, then never an answer (until cancelled, at either point)."""
        note("run ask_then_hang")
        try:
            await ctx.elicit("ready?", FORM)
            note("answered")
            await anyio.sleep_forever()
        except BaseException:
            note("cancelled")
            raise
        return "never"

    @server.tool()
    async def ask_then_fail(ctx: Context) -> str:
        note("run ask_then_fail")
        await ctx.elicit("sure?", FORM)
        raise McpError(-32000, "the upstream tool failed on purpose")

    @server.tool(task_support="optional")
    async def slow_task(ctx: Context, steps: int = 2) -> str:
        """Runs as a task or not; waits for RELEASE_FILE to exist (if named)."""
        note("run slow_task")
        release = os.environ.get("RELEASE_FILE")
        try:
            while release and not os.path.exists(release):
                await anyio.sleep(0.02)
        except BaseException:
            note("cancelled")
            raise
        for i in range(steps):
            await ctx.report_progress(i + 1, steps)
        return f"slow_task done in {steps}"

    @server.tool(task_support="optional")
    async def failing_task() -> str:
        note("run failing_task")
        raise McpError(-32000, "failing_task failed upstream")

    @server.tool(task_support="optional")
    async def ask_task(ctx: Context) -> str:
        """Asks the user while running (as a task or not)."""
        note("run ask_task")
        answer = await ctx.elicit("Colour?", FORM)
        return f"colour {(answer.get('content') or {}).get('answer')}"

    @server.tool(task_support="required")
    async def task_only(text: str) -> str:
        note("run task_only")
        return f"task_only:{text}"

    @server.tool()
    def plain() -> str:
        return "plain"

    @server.prompt()
    async def greeting(ctx: Context) -> str:
        """A prompt that asks whom to greet."""
        note("run greeting")
        answer = await ctx.elicit("Whom?", FORM)
        return f"Hello, {(answer.get('content') or {}).get('answer')}!"

    return server


if __name__ == "__main__":
    anyio.run(build().run_stdio)
