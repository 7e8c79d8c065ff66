"""``mobius conformance``: our own server passes, a deliberately broken one is caught
fault by fault, and the command line writes JUnit and JSON reports."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from mobius_rpc.client.targets import StdioTarget
from mobius_rpc.conformance import check_server
from mobius_rpc.conformance.report import Report

BROKEN = Path(__file__).with_name("broken_server.py")
SERVE = [sys.executable, "-m", "mobius_rpc", "serve", "--fixture", "demo"]
ALL_REVISIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]
# 2,000 fuzzed messages per revision: 10,000 per run over the five revisions.
FUZZ_PER_REVISION = 2000


def summary(report: Report) -> str:
    lines = [f"{o.revision} {o.id}: {o.detail} {json.dumps(o.message)[:300]}"
             for o in report.failures]
    return "\n".join(lines + [f"stale: {s}" for s in report.stale_expectations])


def broken(fault: str) -> StdioTarget:
    return StdioTarget(sys.executable, (str(BROKEN), "--fault", fault))


@pytest.mark.slow
def test_mobius_over_stdio_passes_every_revision() -> None:
    report = check_server(StdioTarget(SERVE[0], tuple(SERVE[1:] + ["--stdio"])),
                          fuzz=FUZZ_PER_REVISION, seed=20261127, deadline=10)
    assert sorted(report.revisions) == ALL_REVISIONS
    assert report.ok, summary(report)
    assert report.fuzzed >= 10_000
    assert report.counts()["pass"] >= 100


@pytest.fixture
def http_server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([*SERVE, "--http", "--port", str(port), "--no-auth"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()


@pytest.mark.slow
def test_mobius_over_http_passes_every_revision(http_server: str) -> None:
    report = check_server(http_server, fuzz=FUZZ_PER_REVISION, seed=20261127, deadline=10)
    assert sorted(report.revisions) == ALL_REVISIONS  # /mcp takes 2024-11-05 too
    assert report.ok, summary(report)
    assert report.fuzzed >= 10_000


def test_a_correct_minimal_server_passes() -> None:
    report = check_server(broken("none"), fuzz=300, seed=1, deadline=3)
    assert report.revisions == ["2025-06-18"]
    assert report.ok, summary(report)


@pytest.mark.parametrize("fault, requirement", [
    ("wrong-error-code", "JSONRPC-METHOD-NOT-FOUND"),
    ("missing-result-field", "TOOLS-LIST-SHAPE"),
    ("hang", "FUZZ-NO-HANG"),
    ("crash", "FUZZ-NO-CRASH"),
    ("wrong-version", "LIFECYCLE-VERSION-NEGOTIATION"),
    ("answers-notifications", "JSONRPC-NOTIFICATION-NO-RESPONSE"),
])
def test_each_seeded_fault_is_caught(fault: str, requirement: str) -> None:
    report = check_server(broken(fault), fuzz=300, seed=1, deadline=2)
    assert not report.ok
    broken_rules = report.broken_requirements()
    assert requirement in broken_rules, (requirement, sorted(broken_rules))


def test_fuzz_failures_are_shrunk_to_a_small_message() -> None:
    report = check_server(broken("crash"), fuzz=300, seed=3, deadline=2, replay=False)
    crash = next(o for o in report.failures if "FUZZ-NO-CRASH" in o.requirements)
    assert crash.message["method"] == "tools/call"
    assert len(json.dumps(crash.message)) < 120  # shrunk: a name and little else


def test_command_line_reports(tmp_path: Path) -> None:
    junit, data = tmp_path / "junit.xml", tmp_path / "report.json"
    ok = subprocess.run([sys.executable, "-m", "mobius_rpc", "conformance", "--stdio",
                         f"{sys.executable} {BROKEN}", "--fuzz", "100", "--seed", "5",
                         "--report", str(junit), "--report", str(data)],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS" in ok.stdout
    suites = ET.parse(junit).getroot()
    assert suites.tag == "testsuites" and int(suites[0].get("tests", "0")) > 0
    assert json.loads(data.read_text())["ok"] is True
    bad = subprocess.run([sys.executable, "-m", "mobius_rpc", "conformance", "--stdio",
                          f"{sys.executable} {BROKEN} --fault wrong-error-code",
                          "--report", str(junit), "--deadline", "2"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "JSONRPC-METHOD-NOT-FOUND" in bad.stdout
    failures = ET.parse(junit).getroot().iter("failure")
    assert any("JSONRPC-METHOD-NOT-FOUND" in (f.text or "") for f in failures)


def test_expected_failures_and_stale_entries(tmp_path: Path) -> None:
    first = check_server(broken("wrong-error-code"), deadline=2)
    listed = sorted({o.id for o in first.failures})
    again = check_server(broken("wrong-error-code"), deadline=2,
                         expected_failures=listed)
    assert again.ok and again.counts()["xfail"] >= 1
    stale = check_server(broken("none"), deadline=2, expected_failures=listed[:1])
    assert not stale.ok and stale.stale_expectations == listed[:1]


def test_pytest_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        import sys
        def test_conforms(mcp_conformance):
            report = mcp_conformance({str(sys.executable) + ' ' + str(BROKEN)!r}, fuzz=50)
            assert report.revisions == ["2025-06-18"]
        def test_broken(mcp_conformance):
            mcp_conformance({str(sys.executable) + ' ' + str(BROKEN) + ' --fault crash'!r},
                            deadline=2)
    """)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*is not conformant*"])
