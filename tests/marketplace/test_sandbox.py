"""The sandbox, tested with real processes: what an extension can see, reach and use.

Each test runs a small Python program (the system's ``/usr/bin/python3``) through
the same launch entry an installed extension gets, started the way the client's
``ProcessTransport`` starts it: with the host's environment plus the entry's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mobius_rpc.marketplace import Limits, SandboxConfig, probe, wrap
from mobius_rpc.marketplace.sandbox import sandbox_uid

from .conftest import needs_bwrap

PYTHON = "/usr/bin/python3"
pytestmark = pytest.mark.skipif(not os.path.exists(PYTHON), reason="no /usr/bin/python3")


def run(entry: dict[str, Any], host_env: dict[str, str] | None = None) -> dict[str, Any]:
    env = {**os.environ, **(host_env or {}), **entry["env"]}  # as ProcessTransport does
    done = subprocess.run([entry["command"], *entry["args"]], env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def program(code: str, *args: str) -> list[str]:
    return [PYTHON, "-c", "import json, os, sys, socket, resource\n" + code, *args]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "ext" / "work"
    path.mkdir(parents=True)
    os.chown(path, sandbox_uid("t/ext"), sandbox_uid("t/ext"))
    return path


def test_no_host_environment_only_declared_variables(workdir: Path) -> None:
    entry = wrap(probe(), program("print(json.dumps(dict(os.environ)))"), workdir=workdir,
                 env={"API_TOKEN": "declared-value"}, uid=sandbox_uid("t/ext"))
    seen = run(entry, host_env={"HOST_ONLY_SECRET": "must-not-leak"})
    assert seen["API_TOKEN"] == "declared-value"
    assert "HOST_ONLY_SECRET" not in seen and "must-not-leak" not in json.dumps(seen)
    assert set(seen) - {"PWD"} == {"API_TOKEN", "HOME", "PATH", "TMPDIR", "LANG"}
    assert seen["HOME"] == str(workdir)
    # the value travels in the environment, never on the command line
    assert "declared-value" not in json.dumps(entry["args"])


def test_arguments_are_never_read_by_a_shell(workdir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = f"$(touch {marker}); `touch {marker}` | touch {marker}"
    entry = wrap(probe(), program("print(json.dumps(sys.argv[1:]))", hostile, "a b"),
                 workdir=workdir, uid=sandbox_uid("t/ext"))
    assert run(entry) == [hostile, "a b"]
    assert not marker.exists()


@needs_bwrap()
def test_files_outside_the_allowed_directories_cannot_be_read(workdir: Path,
                                                              tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("host data")
    os.chmod(outside, 0o644)
    other = tmp_path / "other-ext" / "work"
    other.mkdir(parents=True)
    (other / "secrets.json").write_text('{"TOKEN": "other extension secret"}')
    code = """
out = {}
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            out[path] = f.read()
    except OSError as exc:
        out[path] = type(exc).__name__
with open("mine.txt", "w") as f:
    f.write("ok")
out["own"] = open("mine.txt").read()
out["uid"] = os.getuid()
out["root"] = sorted(os.listdir("/"))
print(json.dumps(out))
"""
    entry = wrap(probe(), program(code, str(outside), str(other / "secrets.json"),
                                  "/root/.bashrc", "/etc/shadow"),
                 workdir=workdir, uid=sandbox_uid("t/ext"))
    seen = run(entry)
    assert seen[str(outside)] == "FileNotFoundError"
    assert seen[str(other / "secrets.json")] == "FileNotFoundError"
    assert seen["/root/.bashrc"] == "FileNotFoundError"
    assert seen["/etc/shadow"] == "FileNotFoundError"
    assert seen["own"] == "ok" and (workdir / "mine.txt").read_text() == "ok"
    assert "home" not in seen["root"] and "work" not in seen["root"]
    if os.geteuid() == 0:
        assert seen["uid"] == sandbox_uid("t/ext")


CONNECT = """
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
    print(json.dumps("connected"))
except OSError as exc:
    print(json.dumps(type(exc).__name__))
"""


@pytest.mark.parametrize("config", ["probe", "unshare-only"])
def test_no_network_unless_declared(workdir: Path, config: str) -> None:
    sandbox = probe() if config == "probe" else SandboxConfig(
        unshare=probe().unshare, setpriv=None, drop_uid=False)
    if not (sandbox.bwrap or sandbox.unshare):
        pytest.skip("neither bwrap nor unshare here: the network is not cut (documented)")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        port = str(listener.getsockname()[1])
        cut = wrap(sandbox, program(CONNECT, port), workdir=workdir,
                   uid=sandbox_uid("t/ext"))
        assert run(cut) in ("ConnectionRefusedError", "OSError", "TimeoutError")
        allowed = wrap(sandbox, program(CONNECT, port), workdir=workdir, network=True,
                       uid=sandbox_uid("t/ext"))
        assert run(allowed) == "connected"


LIMITS = """
out = {name: resource.getrlimit(getattr(resource, "RLIMIT_" + name))[0]
       for name in ("AS", "CPU", "NOFILE", "NPROC", "FSIZE")}
try:
    block = bytearray(400 << 20)
    out["alloc"] = "allocated"
except MemoryError:
    out["alloc"] = "MemoryError"
files = []
try:
    for _ in range(100):
        files.append(open(os.devnull))
    out["files"] = "opened"
except OSError as exc:
    out["files"] = type(exc).__name__
print(json.dumps(out))
"""


def test_resource_limits_are_enforced(workdir: Path) -> None:
    limits = Limits(memory_mb=256, cpu_seconds=30, open_files=32, processes=64, file_mb=8)
    seen = run(wrap(probe(), program(LIMITS), workdir=workdir, uid=sandbox_uid("t/ext"),
                    limits=limits))
    assert seen["AS"] == 256 << 20 and seen["CPU"] == 30 and seen["NOFILE"] == 32
    assert seen["NPROC"] == 64 and seen["FSIZE"] == 8 << 20
    assert seen["alloc"] == "MemoryError" and seen["files"] == "OSError"
    roomy = run(wrap(probe(), program(LIMITS), workdir=workdir, uid=sandbox_uid("t/ext")))
    assert roomy["alloc"] == "allocated" and roomy["files"] == "opened"


@needs_bwrap()
@pytest.mark.skipif(os.geteuid() != 0, reason="a per-installation uid needs root")
def test_the_process_limit_counts_the_extensions_own_uid(workdir: Path) -> None:
    code = """
import subprocess
procs, error = [], None
try:
    for _ in range(12):
        procs.append(subprocess.Popen(["/usr/bin/sleep", "5"]))
except OSError as exc:
    error = type(exc).__name__
for p in procs:
    p.kill()
print(json.dumps({"started": len(procs), "error": error}))
"""
    seen = run(wrap(probe(), program(code), workdir=workdir, uid=sandbox_uid("t/ext"),
                    limits=Limits(processes=6)))
    assert seen["error"] == "BlockingIOError" and seen["started"] < 6


def test_the_command_must_be_absolute(workdir: Path) -> None:
    with pytest.raises(ValueError, match="absolute"):
        wrap(probe(), ["python3", "-c", "pass"], workdir=workdir)


def test_enforced_says_what_this_machine_does() -> None:
    assert "network and file system NOT restricted" in " ".join(
        SandboxConfig().enforced)
    full = SandboxConfig(bwrap="/usr/bin/bwrap", setpriv="/usr/bin/setpriv", drop_uid=True)
    assert any("dedicated unprivileged uid" in line for line in full.enforced)
    assert sys.executable  # the launcher runs on the host's interpreter
