"""``mobius conformance`` against a server we did not write: @modelcontextprotocol/server-
everything.  What it finds there is listed, with the requirement each finding breaks, in
conformance/expected/server-everything.toml; the run must match that list exactly (a
deviation that disappears makes the entry stale and fails the test)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from mobius_rpc.client.targets import StdioTarget
from mobius_rpc.conformance import check_server

EXPECTED = Path(__file__).resolve().parents[2] / "conformance" / "expected" / \
    "server-everything.toml"


@pytest.mark.slow
def test_checker_finds_the_listed_deviations_in_server_everything(
        npm_servers: dict[str, Path]) -> None:
    node = shutil.which("node")
    assert node is not None
    expected = tomllib.loads(EXPECTED.read_text())["expected_failures"]
    report = check_server(
        StdioTarget(node, (str(npm_servers["@modelcontextprotocol/server-everything"]),
                           "stdio")),
        revisions=["2025-03-26", "2025-11-25"], fuzz=300, seed=11, deadline=2,
        expected_failures=expected)
    unexpected = [f"{o.revision} {o.id}: {o.detail}" for o in report.failures]
    assert not unexpected, "\n".join(unexpected)
    assert not report.stale_expectations, report.stale_expectations
    assert report.counts()["xfail"] >= len(expected)  # each listed deviation was seen
    assert report.counts()["pass"] >= 100
