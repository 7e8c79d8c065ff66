"""The benchmark harness runs end to end (tiny counts; no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_stdio_benchmark_runs_and_reports_every_server(tmp_path: Path) -> None:
    out = tmp_path / "numbers.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "stdio.py"), "--n", "40", "--starts", "1",
         "--in-flight", "8", "--servers", "bare,mobius,mobius-modern", "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=True)
    assert "p50/bare" in done.stdout
    rows = {row["server"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {"bare", "mobius", "mobius-modern"}
    assert all(row["p50_us"] > 0 and row["pipelined_rps"] > 0 for row in rows.values())
