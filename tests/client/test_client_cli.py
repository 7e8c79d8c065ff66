"""``mobius client ...`` as a user runs it: a real subprocess against real servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MOBIUS = [sys.executable, "-m", "mobius_rpc"]
SERVER = f"{sys.executable} -m mobius_rpc serve --fixture demo --stdio"


def mobius(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MOBIUS, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_tools_table_and_json() -> None:
    table = mobius("client", "tools", "--stdio", SERVER)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "ARGUMENTS", "DESCRIPTION"]
    assert any(row.split()[:3] == ["add", "a*", "b*"] for row in rows)
    raw = mobius("client", "tools", "--stdio", SERVER, "--json")
    assert {"echo", "add"} <= {t["name"] for t in json.loads(raw.stdout)["tools"]}


def test_call_read_and_prompts() -> None:
    called = mobius("client", "call", "add", "a=2", "b=3.5", "--stdio", SERVER,
                    "--revision", "2025-06-18")
    assert called.returncode == 0 and json.loads(called.stdout) == {"result": 5.5}
    failed = mobius("client", "call", "add", "--args", '{"a": "x", "b": 1}', "--stdio", SERVER)
    assert failed.returncode == 1 and "tool error" in failed.stdout
    read = mobius("client", "read", "mobius://readme", "--stdio", SERVER)
    assert read.returncode == 0 and "Mobius" in read.stdout
    listed = mobius("client", "resources", "--stdio", SERVER)
    assert "mobius://readme" in listed.stdout and "notes://{name}" in listed.stdout
    prompt = mobius("client", "get-prompt", "review_code", "code=x = 1", "--stdio", SERVER)
    assert prompt.returncode == 0 and prompt.stdout.startswith("[user]") \
        and "x = 1" in prompt.stdout


def test_config_file_one_server_or_all(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    entry = {"command": sys.executable, "args": ["-m", "mobius_rpc", "serve",
                                                 "--fixture", "demo", "--stdio"]}
    config.write_text(json.dumps({"mcpServers": {"a": entry, "b": entry}}))
    one = mobius("client", "call", "echo", "text=hi", "--config", str(config), "--server", "b")
    assert one.returncode == 0 and one.stdout.strip() == "hi"
    every = mobius("client", "tools", "--config", str(config), "--json")
    names = {t["name"] for t in json.loads(every.stdout)["tools"]}
    assert {"a__echo", "b__echo"} <= names
    routed = mobius("client", "call", "a__echo", "text=routed", "--config", str(config))
    assert routed.stdout.strip() == "routed"
    missing = mobius("client", "tools", "--config", str(config), "--server", "zzz")
    assert missing.returncode == 2 and "no server 'zzz'" in missing.stderr


@pytest.mark.parametrize("args, message", [
    (["--stdio", "no-such-binary-anywhere"], "not on PATH"),
    (["--url", "http://127.0.0.1:9/mcp", "--timeout", "5"], "cannot connect"),
])
def test_connection_errors_are_one_clear_line(args: list[str], message: str) -> None:
    done = mobius("client", "tools", *args)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr
