"""benchmarks/gateway.py runs end to end (tiny counts; no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gateway_benchmark_reports_both_paths(tmp_path: Path) -> None:
    out = tmp_path / "gateway.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gateway.py"), "--n", "20",
                           "--rounds", "1", "--in-flight", "4", "--transports", "stdio,http",
                           "--floor", "--general", "--json", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "through the gateway vs direct" in done.stdout
    rows = {row["transport"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {"stdio", "http"}
    for row in rows.values():
        assert row["direct_p50_us"] > 0 and row["gateway_p50_us"] > 0
        assert row["latency_ratio"] > 0 and row["throughput_ratio"] > 0
    # --floor: the byte relays' rows (threads, asyncio), over stdio only
    for path in ("relay", "relay_asyncio"):
        assert rows["stdio"][f"{path}_p50_us"] > 0
        assert rows["stdio"][f"{path}_throughput_ratio"] > 0
        assert f"{path}_p50_us" not in rows["http"]
    assert "byte relay, threads" in done.stdout and "byte relay, asyncio" in done.stdout
    # --general: the gateway with its lane off, on both transports
    for row in rows.values():
        assert row["general_p50_us"] > 0 and row["general_throughput_ratio"] > 0
    assert "gateway, lane off" in done.stdout
    # like for like by default: the gateway speaks the direct path's revision upstream
    assert rows["stdio"]["upstream_revision"] == rows["stdio"]["revision"] == "2025-11-25"
