"""benchmarks/store_ops.py runs end to end on every backend (tiny counts; no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import postgres_missing
from .pgcluster import PgCluster

ROOT = Path(__file__).resolve().parents[2]


def test_store_benchmark_reports_every_operation_on_every_backend(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    backends = ["memory", "sqlite"]
    extra: list[str] = []
    if postgres_missing() is None:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        backends.append("postgresql")
        extra = ["--postgres-url", cluster.url()]
    out = tmp_path / "ops.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "store_ops.py"), "--n", "5",
                           "--backends", ",".join(backends), "--json", str(out), *extra],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "events.append" in done.stdout and "p50/p99" in done.stdout
    rows = json.loads(out.read_text())
    ops = {row["op"] for row in rows}
    assert {"sessions.put", "events.append", "events.replay", "tasks.update_status",
            "channel.roundtrip"} <= ops and len(ops) == 12
    assert {(row["backend"], row["op"]) for row in rows} == {
        (backend, op) for backend in backends for op in ops}
    assert all(row["n"] == 5 and 0 < row["p50_us"] <= row["p99_us"] for row in rows)
