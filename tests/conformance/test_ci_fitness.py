"""The checker in CI against servers that misbehave: it gives up early on a message the
server read and ignored (counted, not timed), still waits for a slow but correct tool,
bounds its shrinking, stops at its time budget with an incomplete report, and says which
phase it is in, one line per phase, on stderr."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from hypothesis import strategies as st

from mobius_rpc.client.targets import StdioTarget
from mobius_rpc.conformance import check_server

BROKEN = Path(__file__).with_name("broken_server.py")
# (the checker's own modules are imported inside the tests that use them, so that each
# test fails on its own where they are missing)


def broken(fault: str) -> StdioTarget:
    return StdioTarget(sys.executable, (str(BROKEN), "--fault", fault))


def test_a_server_that_drops_messages_costs_no_full_deadline_wait(tmp_path: Path) -> None:
    # Each dropped message would cost the whole 30 s deadline (the old behaviour: 13 min
    # against server-everything); a ping after it shows the server alive instead.
    report = check_server(broken("drops-malformed"), fuzz=60, seed=1, deadline=30,
                          max_time=600)
    assert report.incomplete is None
    broken_rules = report.broken_requirements()
    for rule in ("JSONRPC-PARSE-ERROR", "JSONRPC-INVALID-REQUEST", "JSONRPC-ID-TYPE",
                 "JSONRPC-METHOD-NOT-FOUND", "FUZZ-NO-HANG"):
        assert rule in broken_rules, (rule, sorted(broken_rules))
    dropped = [o for o in report.failures if "no answer" in o.detail]
    assert len(dropped) >= 15
    assert report.stats.full_deadline_waits == 0
    assert report.stats.unanswered_after_ping >= len(dropped)
    report.write_json(tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["complete"] is True and data["stats"]["full_deadline_waits"] == 0


def test_a_slow_but_correct_tool_is_waited_for() -> None:
    # tools/call answers after 1 s while pings are answered at once: a ping answered
    # first must not turn a legitimately slow request into a failure.
    report = check_server(broken("slow-tools"), fuzz=40, seed=1, deadline=10)
    slow = [o for o in report.outcomes if o.id == "tools/call-listed"]
    assert slow and slow[0].status == "pass", slow
    assert report.ok, [(o.id, o.detail) for o in report.failures]
    assert report.stats.probes >= 1  # the slow call was pinged after, and still waited for
    assert report.stats.unanswered_after_ping == 0


def test_shrinking_a_hang_is_bounded() -> None:
    # tools/call never answered: a request that may do real work keeps its whole
    # deadline, so every shrink step that still hangs costs one; the bound stops it.
    from mobius_rpc.conformance.fuzz import MAX_SHRINK_HANGS

    report = check_server(broken("hang"), fuzz=200, seed=1, deadline=1, replay=False)
    hang = [o for o in report.failures if "FUZZ-NO-HANG" in o.requirements]
    assert hang and hang[0].message["method"] == "tools/call"
    # the first hang, then at most the bound while shrinking (per fuzz property)
    assert report.stats.full_deadline_waits <= 2 * (1 + MAX_SHRINK_HANGS)


def test_the_shrink_bound_stops_a_shrink_that_would_hang_on() -> None:
    # A property whose failing examples each "hang" (count a full-deadline wait):
    # unbounded, Hypothesis shrinks this one through about 55 of them.
    from mobius_rpc.conformance.budget import Run
    from mobius_rpc.conformance.fuzz import MAX_SHRINK_HANGS, _Finding, _run_property

    run = Run(deadline=1.0)
    hangs: list[list[int]] = []

    def check(case: list[int]) -> None:
        if sum(case) >= 10**6:
            run.stats.full_deadline_waits += 1
            hangs.append(case)
            raise _Finding("FUZZ-NO-HANG", "no answer")

    result = _run_property(st.lists(st.integers(0, 10**9), min_size=3, max_size=10), check,
                           examples=50, run_seed=1, run=run)
    assert result.failure is not None and result.shrink_cut
    assert len(hangs) == 1 + MAX_SHRINK_HANGS
    assert run.stats.shrinks_cut == 1
    assert result.failure.message == hangs[-1]  # the smallest failing example so far


def test_the_time_budget_ends_the_run_with_an_incomplete_report() -> None:
    # The listed tool call hangs for the whole 60 s deadline; a 3 s budget ends the run.
    report = check_server(broken("hang"), fuzz=100, seed=1, deadline=60, max_time=3,
                          expected_failures=["fuzz/invalid-requests", "lifecycle/ping"])
    assert report.incomplete is not None and "time budget of 3s ran out" in report.incomplete
    assert not report.ok
    for phase in ("2025-06-18 corpus", "2025-06-18 fuzz/valid-requests",
                  "2025-06-18 fuzz/invalid-requests"):
        assert phase in report.not_checked, report.not_checked
    assert report.counts()["pass"] >= 1  # what was checked before is reported
    # an expected failure the run never reached is not stale; one it passed is
    assert report.stale_expectations == ["lifecycle/ping"]
    assert report.to_json()["complete"] is False
    text = io.StringIO()
    report.render(text, color=False)
    assert "INCOMPLETE: the time budget of 3s ran out" in text.getvalue()


def test_command_line_budget_and_progress_lines(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    done = subprocess.run([sys.executable, "-m", "mobius_rpc", "conformance", "--stdio",
                           f"{sys.executable} {BROKEN} --fault hang", "--fuzz", "50",
                           "--deadline", "60", "--max-time", "3", "--report", str(junit)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "INCOMPLETE" in done.stdout and "Traceback" not in done.stderr
    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    assert cases["complete"].find("failure") is not None

    ok = subprocess.run([sys.executable, "-m", "mobius_rpc", "conformance", "--stdio",
                         f"{sys.executable} {BROKEN}", "--fuzz", "40", "--seed", "2"],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = ok.stderr.splitlines()
    for phase in ("revision detection", "2025-06-18 replay: ", "2025-06-18 corpus: ",
                  "2025-06-18 fuzz/valid-requests: ", "2025-06-18 fuzz/invalid-requests: "):
        assert any(re.fullmatch(rf"\[ *\d+\.\ds\] {re.escape(phase)}.*", line)
                   for line in lines), (phase, lines)
    assert "\r" not in ok.stderr and "\x1b" not in ok.stderr  # not a terminal: plain lines
    assert "\x1b" not in ok.stdout and "PASS" in ok.stdout


def test_progress_on_a_terminal_redraws_the_step_line() -> None:
    from mobius_rpc.conformance.progress import LineProgress

    stream = io.StringIO()
    clock = iter([0.0, 0.0, 0.01, 1.5])
    progress = LineProgress(stream, live=True, clock=lambda: next(clock))
    progress.step("2025-06-18 lifecycle/initialize")
    progress.step("2025-06-18 lifecycle/ping")  # too soon after the last: not drawn
    progress.phase("2025-06-18 corpus: 56 messages")
    progress.close()
    assert stream.getvalue() == ("\r\x1b[K  2025-06-18 lifecycle/initialize"
                                 "\r\x1b[K[   1.5s] 2025-06-18 corpus: 56 messages\n")
    quiet = io.StringIO()
    plain = LineProgress(quiet, live=False, clock=lambda: 0.0)
    plain.step("not shown off a terminal")
    plain.phase("shown")
    assert quiet.getvalue() == "[   0.0s] shown\n"


def test_patience_waits_longest_for_requests_that_may_do_work() -> None:
    from mobius_rpc.conformance.patience import CHEAP_GRACE, ON_RECEIPT_GRACE, patience

    def request(method: str, **extra: object) -> dict[str, object]:
        return {"jsonrpc": "2.0", "id": 1, "method": method, "params": {}, **extra}

    revision = "2025-06-18"
    for message in ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, request("ping", id=True),
                    request("ping", params="x"), {"jsonrpc": "2.0", "id": 1, "method": 7},
                    request("fuzz/unknown"), "not an object", []):
        assert patience(message, revision) == ON_RECEIPT_GRACE, message
    assert patience(request("tools/call"), revision, expect_error=True) == ON_RECEIPT_GRACE
    assert patience(request("tools/list"), revision) == CHEAP_GRACE
    for method in ("tools/call", "resources/read", "prompts/get", "completion/complete"):
        assert patience(request(method), revision) is None, method
    assert patience([request("ping"), request("tools/list")], revision) == CHEAP_GRACE
    assert patience([request("ping"), request("tools/call")], revision) is None
