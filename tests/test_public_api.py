"""The curated public API and the command line."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import mobius_rpc
from mobius_rpc.cli import host_config, http_host_config


def test_every_public_name_is_exported_and_exists() -> None:
    assert len(set(mobius_rpc.__all__)) == len(mobius_rpc.__all__)
    for name in mobius_rpc.__all__:
        assert getattr(mobius_rpc, name) is not None, name
    public_classes = {name for name, value in vars(mobius_rpc).items()
                      if inspect.isclass(value) and not name.startswith("_")}
    assert public_classes <= set(mobius_rpc.__all__)


def test_print_config_for_each_host(tmp_path: Path) -> None:
    for host, key in (("claude", "mcpServers"), ("cursor", "mcpServers"), ("vscode", "servers")):
        out = subprocess.run([sys.executable, "-m", "mobius_rpc", "serve", "--print-config", host,
                              str(tmp_path)], capture_output=True, text=True, timeout=30,
                             check=True).stdout
        config = json.loads(out)
        entry = config[key]["mobius-context"]
        assert entry["args"][-3:] == ["serve", "--stdio", str(tmp_path.resolve())]
        assert entry == host_config(host, [str(tmp_path.resolve())])[key]["mobius-context"]
        demo = subprocess.run([sys.executable, "-m", "mobius_rpc", "serve", "--fixture", "demo",
                               "--print-config", host], capture_output=True, text=True,
                              timeout=30, check=True).stdout
        assert json.loads(demo)[key]["mobius-demo"]["args"][-2:] == ["serve", "--stdio"]
    assert json.loads(out)["servers"]["mobius-context"]["type"] == "stdio"


def test_serve_defaults_to_stdio_and_refuses_a_missing_directory(tmp_path: Path) -> None:
    hello = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "cli-test", "version": "1"}}}) + "\n"
    done = subprocess.run([sys.executable, "-m", "mobius_rpc", "serve", "--store", "memory:",
                           str(tmp_path)], input=hello, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["result"]["serverInfo"]["name"] == \
        "mobius-context"
    missing = subprocess.run([sys.executable, "-m", "mobius_rpc", "serve",
                              str(tmp_path / "nope")], capture_output=True, text=True,
                             timeout=30)
    assert missing.returncode == 2 and "not a directory" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_serve_http_announces_its_url_and_answers() -> None:
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "mobius_rpc", "serve",
                             "--fixture", "demo", "--http", "--port", "0", "--no-auth"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "Streamable HTTP" in line, line
        url = line.split()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
        reply = httpx.post(url, timeout=10, headers={
            "Accept": "application/json, text/event-stream"}, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "cli-test", "version": "1"}}})
        assert reply.status_code == 200 and reply.headers["mcp-session-id"]
    finally:
        proc.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert proc.wait(10) in (0, -15)
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
        proc.stderr.close()
        if proc.stdout is not None:
            proc.stdout.close()


def test_http_host_snippets_carry_the_token_header_when_authentication_is_on() -> None:
    url = "http://127.0.0.1:8765/mcp"
    for host in ("vscode", "cursor"):
        on = json.dumps(http_host_config(host, url, name="mobius-context", bearer=True))
        assert '"Authorization": "Bearer <token>"' in on and "mobius-context" in on
        assert "Authorization" not in json.dumps(http_host_config(host, url))
    bridge = http_host_config("claude", url, bearer=True)["mcpServers"]
    assert bridge["mobius-demo"]["args"][-2:] == [  # type: ignore[index]
        "--header", "Authorization: Bearer <token>"]
