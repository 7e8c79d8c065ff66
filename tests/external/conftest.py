"""Fixtures for the external-server tests: real MCP servers we did not write.

The npm servers are pinned in ``tests/external/node/package.json`` (lock file
committed) and installed with ``npm ci`` on first use; they are launched as
``node <the package's bin script>``.  The PyPI servers come with the ``peers``
extra and are launched as ``python -m <module>`` with this interpreter.

A missing tool (node, npm, git) or package skips the test on a developer's
machine, but fails it when ``CI`` is set: CI must really run them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"


def unavailable(reason: str) -> NoReturn:
    """Skip locally; fail in CI, where every external server must be present."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def _pinned_packages() -> dict[str, str]:
    manifest = json.loads((NODE_DIR / "package.json").read_text())
    return dict(manifest["dependencies"])


def _installed_version(package: str) -> str | None:
    manifest = NODE_DIR / "node_modules" / package / "package.json"
    if not manifest.is_file():
        return None
    return str(json.loads(manifest.read_text()).get("version"))


def _bin_script(package: str) -> Path:
    """The script a package's ``bin`` entry points at (what ``npx`` would run)."""
    root = NODE_DIR / "node_modules" / package
    entry = json.loads((root / "package.json").read_text()).get("bin")
    if isinstance(entry, dict):
        entry = next(iter(entry.values()))
    if not isinstance(entry, str):
        raise RuntimeError(f"{package} declares no bin script")
    return (root / entry).resolve()


@pytest.fixture(scope="session")
def npm_servers() -> dict[str, Path]:
    """Package name -> path of its server script, after ``npm ci`` when needed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable("node and npm are needed for the npm MCP servers")
    pinned = _pinned_packages()
    if any(_installed_version(name) != version for name, version in pinned.items()):
        try:
            done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                                  cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            unavailable("npm ci for the external MCP servers took more than 300 s")
        if done.returncode != 0:
            unavailable(f"npm ci for the external MCP servers failed: {done.stderr[-800:]}")
    wrong = {name: _installed_version(name) for name, version in pinned.items()
             if _installed_version(name) != version}
    if wrong:
        unavailable(f"npm ci left other versions than the pinned ones: {wrong}")
    return {name: _bin_script(name) for name in pinned}


def python_server(module: str) -> list[str]:
    """The command line of a PyPI server run by this interpreter (``peers`` extra)."""
    if importlib.util.find_spec(module) is None:
        unavailable(f"{module} is not installed (pip install -e '.[peers]')")
    return [sys.executable, "-m", module]
