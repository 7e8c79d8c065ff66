"""benchmarks/http_stores.py runs end to end (tiny counts; no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def test_the_stores_benchmark_reports_every_server(tmp_path: Path, pg_cluster: Any) -> None:
    out = tmp_path / "stores.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "http_stores.py"), "--duration", "1",
         "--rounds", "1", "--sessions", "2", "--generator", "python",
         "--stores", "none,memory,sqlite,postgresql", "--postgres-url",
         pg_cluster.create_database("bench_smoke"), "--json", str(out)],
        capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "pg/memory" in done.stdout
    points = json.loads(out.read_text())
    assert {(p["server"], p["sessions"]) for p in points} == {
        (name, 2) for name in ("bare", "none", "memory", "sqlite", "postgresql")}
    assert all(p["rps"] > 0 for p in points)
