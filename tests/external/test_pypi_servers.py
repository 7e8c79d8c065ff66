"""Our ``Client`` against the reference MCP servers published on PyPI.

``mcp-server-time``, ``mcp-server-git`` and ``mcp-server-fetch`` (the
``peers`` extra) are built on the Python SDK 2.x and serve both eras: left to
itself our client probes ``server/discover`` and speaks 2026-07-28 with them;
pinned to a legacy revision it runs the ``initialize`` handshake instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest

from mobius_rpc.client import Client, StdioTarget
from mobius_rpc.core.errors import McpError
from mobius_rpc.core.revisions import Era
from tests.external.conftest import python_server, unavailable

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

MODERN = "2026-07-28"
DEADLINE = 40

# These servers need 1.5-3 s to import before they read their first line (more
# on a cold cache).  The client's default 5 s era probe is too close to that:
# see test_slow_starting_modern_server_survives_the_probe_timeout, which
# records what goes wrong when the probe times out.  Until then the tests give
# the probe room enough to never time out.
PROBE = 30.0


def target(module: str, *args: str, env: dict[str, str] | None = None) -> StdioTarget:
    command = python_server(module)
    return StdioTarget(command[0], (*command[1:], *args), env=env)


def texts(result: dict[str, Any]) -> list[str]:
    return [block["text"] for block in result["content"] if block.get("type") == "text"]


def assert_era(client: Client, revision: str | None, name: str) -> None:
    assert client.server_info["name"] == name
    if revision is None:
        assert client.protocol_version == MODERN and client.era is Era.MODERN
        # the era came from the DiscoverResult, not from a handshake
        discovered = client.session.initialize_result or {}
        assert MODERN in discovered["supportedVersions"]
    else:
        assert client.protocol_version == revision and client.era is Era.LEGACY


# ------------------------------------------------------------- mcp-server-time


@pytest.mark.parametrize("revision", [None, "2025-11-25", "2024-11-05"],
                         ids=["probe", "pinned-2025-11-25", "pinned-2024-11-05"])
async def test_time_server(revision: str | None) -> None:
    server = target("mcp_server_time", "--local-timezone", "UTC")
    with anyio.fail_after(DEADLINE):
        async with Client(server, revision=revision, probe_timeout=PROBE, timeout=20) as client:
            assert_era(client, revision, "mcp-time")
            tools = {tool["name"]: tool for tool in await client.list_tools()}
            assert set(tools) == {"get_current_time", "convert_time"}

            before = datetime.now(UTC)
            now = await client.call_tool("get_current_time", {"timezone": "UTC"})
            after = datetime.now(UTC)
            assert now["isError"] is False
            if revision is None:
                assert now["resultType"] == "complete"
                assert now["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcp-time"
            # Even at 2024-11-05 the server lists outputSchema and annotations and
            # answers with structuredContent, none of which that revision defines;
            # the client passes the extra fields through.
            stamp = now["structuredContent"]
            jsonschema.validate(stamp, tools["get_current_time"]["outputSchema"])
            assert stamp["timezone"] == "UTC"
            told = datetime.fromisoformat(stamp["datetime"])
            slack = timedelta(seconds=2)  # the server prints whole seconds
            assert before - slack <= told <= after + slack
            assert stamp["day_of_week"] == told.strftime("%A")
            assert json.loads(texts(now)[0]) == stamp

            converted = await client.call_tool("convert_time", {
                "source_timezone": "UTC", "time": "12:30", "target_timezone": "Asia/Tokyo"})
            answer = converted["structuredContent"]
            assert answer["source"]["datetime"].endswith("T12:30:00+00:00")
            assert answer["target"]["timezone"] == "Asia/Tokyo"
            assert answer["target"]["datetime"].endswith("T21:30:00+09:00")
            assert answer["time_difference"] == "+9.0h"

            bad = await client.call_tool("get_current_time", {"timezone": "Mars/Olympus"})
            assert bad["isError"] is True and "Mars/Olympus" in texts(bad)[0]
            # an unknown tool is a protocol error here, as the spec asks
            with pytest.raises(McpError) as unknown:
                await client.call_tool("get_martian_time", {})
            assert unknown.value.code == -32602 and "get_martian_time" in str(unknown.value)


async def test_slow_starting_modern_server_survives_the_probe_timeout() -> None:
    """Python needs well over 0.3 s to start the server, so the discover probe times
    out and the client sends initialize; the server, which took the probe as its
    first message, refuses it with -32022 offering 2026-07-28, and the client
    follows (this once failed to connect at all)."""
    server = target("mcp_server_time", "--local-timezone", "UTC")
    with anyio.fail_after(DEADLINE):
        async with Client(server, probe_timeout=0.3, timeout=20) as client:
            assert client.protocol_version == MODERN
            now = await client.call_tool("get_current_time", {"timezone": "UTC"})
            assert now["structuredContent"]["timezone"] == "UTC"


# -------------------------------------------------------------- mcp-server-git


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "HOME": str(repo.parent), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "Mobius Test", "GIT_AUTHOR_EMAIL": "test@mobius.invalid",
           "GIT_COMMITTER_NAME": "Mobius Test", "GIT_COMMITTER_EMAIL": "test@mobius.invalid"}
    done = subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false",
                           "-C", str(repo), *args],
                          capture_output=True, text=True, env=env, check=True, timeout=30)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit, one modified file and one untracked file."""
    if shutil.which("git") is None:
        unavailable("git is needed for mcp-server-git")
    path = (tmp_path / "repo").resolve()
    path.mkdir()
    git(path, "init", "-q")
    (path / "notes.txt").write_text("one\n")
    git(path, "add", "notes.txt")
    git(path, "commit", "-q", "-m", "Add the first note")
    (path / "notes.txt").write_text("one\ntwo\n")
    (path / "draft.txt").write_text("not tracked yet\n")
    return path


@pytest.mark.parametrize("revision", [None, "2025-06-18"], ids=["probe", "pinned-2025-06-18"])
async def test_git_server(repo: Path, revision: str | None) -> None:
    head = git(repo, "rev-parse", "HEAD")
    branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    server = target("mcp_server_git", "--repository", str(repo),
                    env={"GIT_COMMITTER_NAME": "Mobius Test",
                         "GIT_COMMITTER_EMAIL": "test@mobius.invalid",
                         "GIT_AUTHOR_NAME": "Mobius Test",
                         "GIT_AUTHOR_EMAIL": "test@mobius.invalid"})
    with anyio.fail_after(DEADLINE):
        async with Client(server, revision=revision, probe_timeout=PROBE, timeout=20) as client:
            assert_era(client, revision, "mcp-git")
            tools = {tool["name"] for tool in await client.list_tools()}
            assert {"git_status", "git_log", "git_diff_unstaged", "git_add",
                    "git_commit"} <= tools

            status = texts(await client.call_tool("git_status", {"repo_path": str(repo)}))[0]
            assert f"On branch {branch}" in status
            assert "modified:   notes.txt" in status
            assert "Untracked files" in status and "draft.txt" in status

            log = texts(await client.call_tool("git_log", {"repo_path": str(repo),
                                                           "max_count": 5}))[0]
            assert f"Commit: {head}" in log
            assert "Message: Add the first note" in log
            assert log.count("Commit: ") == 1

            diff = texts(await client.call_tool("git_diff_unstaged",
                                                {"repo_path": str(repo)}))[0]
            assert "+two" in diff and "--- a/notes.txt" in diff

            # a write through the server, checked with git itself
            added = await client.call_tool("git_add", {"repo_path": str(repo),
                                                       "files": ["notes.txt"]})
            assert added["isError"] is False
            committed = await client.call_tool("git_commit", {"repo_path": str(repo),
                                                              "message": "Add the second note"})
            assert committed["isError"] is False
            assert git(repo, "log", "-1", "--format=%s") == "Add the second note"
            assert git(repo, "rev-parse", "HEAD") in texts(committed)[0]
            log = texts(await client.call_tool("git_log", {"repo_path": str(repo)}))[0]
            assert log.count("Commit: ") == 2

            outside = await client.call_tool("git_status", {"repo_path": str(repo.parent)})
            assert outside["isError"] is True
            assert "outside the allowed repository" in texts(outside)[0]


# ------------------------------------------------------------ mcp-server-fetch

ARTICLE = """<!DOCTYPE html>
<html><head><title>Otter facts</title></head>
<body><nav><a href="/">home</a></nav>
<article>
<h1>Otters on the loopback</h1>
<p>A sea otter keeps a favourite stone in a pouch of skin under its forearm.</p>
<p>This page was served by the test itself, on <strong>127.0.0.1</strong>.</p>
</article></body></html>
"""

ROBOTS = "User-agent: *\nDisallow: /private/\n"


class _Site(BaseHTTPRequestHandler):
    requests: list[tuple[str, str]] = []
    pages = {
        "/robots.txt": ("text/plain", ROBOTS),
        "/otters.html": ("text/html; charset=utf-8", ARTICLE),
        "/private/otters.html": ("text/html; charset=utf-8", ARTICLE),
        "/data.json": ("application/json", '{"otters": 13}'),
    }

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self.requests.append((self.path, self.headers.get("User-Agent", "")))
        page = self.pages.get(self.path)
        if page is None:
            self.send_error(404)
            return
        body = page[1].encode()
        self.send_response(200)
        self.send_header("Content-Type", page[0])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def site() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A tiny web site on a random loopback port: (base URL, requests it got)."""
    handler = type("Site", (_Site,), {"requests": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def fetch_target(*args: str) -> StdioTarget:
    # PATH holds only this interpreter's directory: with node on PATH,
    # readabilipy would try to npm-install Readability.js into site-packages on
    # the first fetch.  Without it the server uses its pure-Python extractor.
    # No proxy may stand between the server and the loopback site.
    env = {"PATH": os.path.dirname(sys.executable), "NO_PROXY": "*", "no_proxy": "*"}
    return target("mcp_server_fetch", *args, env=env)


async def test_fetch_server(site: tuple[str, list[tuple[str, str]]]) -> None:
    base, requests = site
    # --allow-private-ips: by default the server refuses loopback (and every
    # other non-public) address before connecting, with an isError result.
    server = fetch_target("--allow-private-ips")
    with anyio.fail_after(DEADLINE):
        async with Client(server, probe_timeout=PROBE, timeout=30) as client:
            assert_era(client, None, "mcp-fetch")
            (tool,) = await client.list_tools()
            assert tool["name"] == "fetch" and tool["inputSchema"]["required"] == ["url"]

            page = await client.call_tool("fetch", {"url": f"{base}/otters.html"})
            assert page["isError"] is False
            text = texts(page)[0]
            assert text.startswith(f"Contents of {base}/otters.html:")
            assert "# Otters on the loopback" in text  # HTML became Markdown
            assert "favourite stone in a pouch of skin" in text
            assert "<p>" not in text

            raw = await client.call_tool("fetch", {"url": f"{base}/otters.html", "raw": True,
                                                   "max_length": 40})
            raw_text = texts(raw)[0]
            assert ARTICLE[:40] in raw_text and "start_index of 40" in raw_text

            data = await client.call_tool("fetch", {"url": f"{base}/data.json"})
            assert texts(data)[0].endswith('{"otters": 13}')

            # robots.txt is honoured for the tool (autonomous fetches)
            barred = await client.call_tool("fetch", {"url": f"{base}/private/otters.html"})
            assert barred["isError"] is True and "robots.txt" in texts(barred)[0]
            missing = await client.call_tool("fetch", {"url": f"{base}/nowhere"})
            assert missing["isError"] is True and "404" in texts(missing)[0]

            # ... but not for the prompt, which stands for a user's own request
            (prompt,) = await client.list_prompts()
            assert prompt["name"] == "fetch"
            asked = await client.get_prompt("fetch", {"url": f"{base}/private/otters.html"})
            assert "favourite stone" in asked["messages"][0]["content"]["text"]

    fetched = [path for path, _ in requests]
    assert "/robots.txt" in fetched and "/otters.html" in fetched
    assert fetched.count("/private/otters.html") == 1  # only the prompt's request
    agents = {agent for _, agent in requests}
    assert any("Autonomous" in agent for agent in agents)
    assert any("User-Specified" in agent for agent in agents)

