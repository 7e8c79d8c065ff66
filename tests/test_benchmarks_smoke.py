"""The benchmark harness runs end to end (tiny counts; no timing is asserted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


def run_http_benchmark(tmp_path: Path, *args: str, env: dict[str, str] | None = None
                       ) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Run benchmarks/streamable_http.py for 1 s per point; its output and its JSON points."""
    out = tmp_path / "http.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "streamable_http.py"), "--duration", "1",
         "--warmup", "0", "--rounds", "2", "--json", str(out), *args],
        capture_output=True, text=True, timeout=120, check=True, env=env)
    return done, json.loads(out.read_text())


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_streamable_http_benchmark_with_wrk(tmp_path: Path) -> None:
    done, points = run_http_benchmark(tmp_path, "--generator", "wrk", "--sessions", "1,2",
                                      "--eras", "modern,legacy")
    assert "load from wrk" in done.stdout and "mobius req/s" in done.stdout
    assert {(p["era"], p["server"], p["sessions"]) for p in points} == {
        (era, server, m) for era in ("modern", "legacy") for server in ("bare", "mobius")
        for m in (1, 2)}
    assert all(isinstance(p["rps"], float) and p["rps"] > 0 for p in points)
    assert all(len(p["round_ratios"]) == 2 and min(p["round_ratios"]) > 0 for p in points)
    assert "ratio per round" in done.stdout


def test_streamable_http_benchmark_falls_back_without_wrk(tmp_path: Path) -> None:
    no_wrk = tmp_path / "empty-path"
    no_wrk.mkdir()
    done, points = run_http_benchmark(tmp_path, "--sessions", "1",
                                      env={**os.environ, "PATH": str(no_wrk)})
    assert "wrk is not on PATH" in done.stderr and "Python httpx" in done.stdout
    assert {(p["server"], p["sessions"]) for p in points} == {("bare", 1), ("mobius", 1)}


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_http_instructions_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "instr.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "http_instructions.py"), "--requests", "3",
         "--base", "2", "--eras", "modern,legacy", "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=True)
    assert "bare/mobius" in done.stdout
    rows = json.loads(out.read_text())
    assert {(row["era"], row["server"]) for row in rows} == {
        (era, server) for era in ("modern", "legacy") for server in ("bare", "mobius")}
    # Every request runs Python code in the server: far more than a few thousand instructions.
    assert all(row["instructions_per_request"] > 10_000 for row in rows)


def test_session_memory_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "session_memory.py"), "--posts", "20",
         "--warmup", "5", "--to", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=True)
    assert "legacy session" in done.stdout and "stateless" in done.stdout
    rows = json.loads(out.read_text())
    assert [row["era"] for row in rows] == ["legacy session", "stateless"]
    assert all(row["posts"] == 20 and row["posts_per_s"] > 0 for row in rows)


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_stdio_instructions_benchmark_counts_both_eras_of_the_given_checkout(
        tmp_path: Path) -> None:
    out = tmp_path / "stdio-instr.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "stdio_instructions.py"), "--requests", "3",
         "--base", "2", "--python", sys.executable, "--keep", str(tmp_path / "profiles"),
         "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=True)
    assert "bare/server" in done.stdout
    # The header names the package the servers ran: this checkout's, not another one.
    assert f"mobius_rpc from {ROOT / 'mobius_rpc'})" in done.stdout
    rows = {row["server"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {"bare", "mobius", "mobius-modern"}
    assert all(set(row["totals"]) == {"2", "5"} for row in rows.values())
    # A Mobius request runs the whole engine in Python: far more than a few thousand
    # instructions; the bare loop still runs some.
    assert rows["mobius"]["instructions_per_request"] > 10_000
    assert rows["mobius-modern"]["instructions_per_request"] > 10_000
    assert rows["bare"]["instructions_per_request"] > 0
    assert len(list((tmp_path / "profiles").glob("callgrind.*"))) == 6


def test_stdio_instructions_benchmark_refuses_a_python_without_mobius(tmp_path: Path) -> None:
    # An interpreter that cannot import mobius_rpc would measure nothing: one line, no traceback.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "empty")],
                   check=True, timeout=120)
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "stdio_instructions.py"),
         "--python", str(tmp_path / "empty" / "bin" / "python")],
        capture_output=True, text=True, timeout=120)
    if shutil.which("valgrind") is None:
        assert done.returncode != 0 and "valgrind is not on PATH" in done.stderr
        return
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "FAILED" in done.stderr and "cannot import mobius_rpc" in done.stderr


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_security_benchmark_runs_and_checks_the_audit_log(tmp_path: Path) -> None:
    out = tmp_path / "security.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "security.py"), "--duration", "1",
         "--rounds", "1", "--warmup", "0", "--sessions", "2", "--backends", "sqlite",
         "--json", str(out)], capture_output=True, text=True, timeout=120, check=True)
    assert "chain verifies" in done.stdout and "loss" in done.stdout
    (row,) = json.loads(out.read_text())
    assert row["backend"] == "sqlite" and row["sessions"] == 2
    assert row["off_rps"] > 0 and row["secured_rps"] > 0
    assert row["database_cpu_us"] is None  # SQLite: the servers count it themselves


def test_audit_writer_benchmark_stores_and_reports_every_step(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "audit_writer.py"), "--seconds", "0.5",
         "--rounds", "1", "--records", "600", "--batch", "100", "--rate", "1000",
         "--backends", "sqlite"], capture_output=True, text=True, timeout=120, check=True)
    header, row = done.stdout.splitlines()[-2:]
    assert header.split() == ["backend", "child", "db", "floor", "decode", "body", "chain",
                              "store", "steps", "rest"]
    name, *numbers = row.split()
    assert name == "sqlite" and len(numbers) == 9
    child, database, floor, decode, body, chain, store, steps, rest = map(float, numbers)
    assert database == 0  # SQLite's work is the child's
    assert child > 0 and floor > 0 and min(decode, body, chain, store) > 0
    assert abs(steps - (decode + body + chain + store)) < 0.05
    assert abs(rest - (child - floor - steps)) < 0.1  # child is printed to 0.1
