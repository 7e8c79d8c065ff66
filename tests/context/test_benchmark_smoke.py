"""benchmarks/context.py runs end to end on a small tree (tiny counts; no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_context_benchmark_runs_and_reports_every_operation(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    for n in range(25):
        (project / f"module{n}.py").write_text(f"def function_{n}(x):\n    return x + {n}\n")
    before = {p.name: p.read_text() for p in project.iterdir()}
    out = tmp_path / "numbers.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "context.py"), "--n", "3",
                           "--project", str(project), "--json", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    numbers = json.loads(out.read_text())
    assert numbers["indexed_files"] == 25 and numbers["cold_s"] > 0
    assert set(numbers["latency"]) >= {"search_code", "definition", "references", "analyze",
                                       "summary", "read", "resource file", "prompt code_review"}
    assert "ripgrep" in numbers
    # the edited files were put back as they were
    assert {p.name: p.read_text() for p in project.iterdir()} == before
