"""``mobius conformance`` from a plain install (``pip install mobius-rpc``, no extras).

The checker runs in a subprocess in which every module that neither the standard
library nor a base dependency (pyproject's ``dependencies``, and what they depend on)
provides cannot be imported: what a plain install lacks.  A run that fuzzes, replays and
prints its report must not need any of it.  And when a piece is missing after all (an
install made with ``--no-deps``), the command says in one line what to install.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
BROKEN = Path(__file__).with_name("broken_server.py")

# Runs the command line with an import hook that refuses every top-level module in
# MOBIUS_BLOCKED_MODULES: those that installed distributions other than the base ones
# provide (the standard library belongs to no distribution and stays importable).
BLOCKING_MAIN = r"""
import importlib.abc, json, os, runpy, sys
blocked = set(json.loads(os.environ["MOBIUS_BLOCKED_MODULES"]))
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in blocked:
            raise ModuleNotFoundError(f"No module named {top!r} (blocked)", name=top)
        return None
sys.meta_path.insert(0, Refuse())
sys.argv = ["mobius", *sys.argv[1:]]
runpy.run_module("mobius_rpc", run_name="__main__")
"""


def base_distributions() -> set[str]:
    """The base dependencies of pyproject.toml and, transitively, theirs (no extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    environment = {**default_environment(), "extra": ""}
    todo = list(project["dependencies"])
    found: set[str] = set()
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found.add(name)
        todo += importlib.metadata.distribution(name).requires or []
    return found


def blocked_modules(*also: str) -> set[str]:
    """Top-level modules of every installed distribution that is not a base one."""
    wanted = base_distributions() | {"mobius-rpc"}
    blocked = {module for module, dists in
               importlib.metadata.packages_distributions().items()
               if not any(canonicalize_name(d) in wanted for d in dists)}
    return (blocked | set(also)) - set(sys.stdlib_module_names)


def run_blocked(args: list[str], blocked: set[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MOBIUS_BLOCKED_MODULES": json.dumps(sorted(blocked))}
    return subprocess.run([sys.executable, "-c", BLOCKING_MAIN, *args], capture_output=True,
                          text=True, timeout=300, env=env)


def test_hypothesis_is_a_base_dependency_and_rich_is_not_needed() -> None:
    names = base_distributions()
    assert "hypothesis" in names
    assert "rich" not in names


def test_the_checker_runs_on_base_dependencies_only() -> None:
    blocked = blocked_modules()
    assert "pytest" in blocked  # installed here, absent from a plain install
    if importlib.util.find_spec("rich") is not None:
        assert "rich" in blocked
    done = run_blocked(["conformance", "--stdio", f"{sys.executable} {BROKEN}",
                        "--fuzz", "40", "--seed", "3"], blocked)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "PASS" in done.stdout and "2025-06-18" in done.stdout


def test_a_missing_piece_is_named_in_one_line() -> None:
    done = run_blocked(["conformance", "--stdio", f"{sys.executable} {BROKEN}",
                        "--fuzz", "10"], blocked_modules("hypothesis"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(r"mobius conformance: the Python package 'hypothesis' is missing; "
                        r"install it \(pip install hypothesis\).*", lines[0]), lines[0]


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    for args, wanted in (
            (["--stdio", f"{sys.executable} {BROKEN}", "--expected-failures",
              str(tmp_path / "absent.toml")], "cannot read --expected-failures"),
            (["--stdio", f"{sys.executable} {BROKEN}", "--report",
              str(tmp_path / "no" / "such" / "dir.xml")], "no such directory"),
            (["--stdio", "", "--fuzz", "1"], "bad target"),
            (["--stdio", "x", "--max-time", "-1"], "--max-time")):
        done = subprocess.run([sys.executable, "-m", "mobius_rpc", "conformance", *args],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and wanted in done.stderr, \
            done.stderr
