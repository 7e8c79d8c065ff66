"""Wrapping an installed extension's command in the sandbox (see :mod:`.launch`).

:func:`wrap` turns the extension's own command into an ``mcpServers``-shaped
entry ``{"command", "args", "env", "cwd"}`` whose command is the launcher:
whoever starts it (the gateway, a health check, a host's config) gets the
sandbox without knowing about it, and a host that adds its own environment
to the child's (``ProcessTransport`` does) adds nothing the extension sees,
because the launcher keeps only the variables the policy names.

What is enforced depends on the machine; :func:`probe` finds out once and
:attr:`SandboxConfig.enforced` says it plainly:

=================  =====================================================
always             clean environment, own working directory, rlimits
                   (AS, CPU, NOFILE, NPROC, FSIZE), no shell
``bwrap`` found    only system dirs, the runtime, the package (read-only)
                   and the working directory (read-write) are visible;
                   new PID/IPC/UTS namespaces; network namespace without
                   interfaces unless the entry declares the network;
                   as root, a dedicated unprivileged uid, no capabilities
``unshare`` only   no network when not declared (needs root or user
                   namespaces); the file system is NOT restricted
neither            network and file system are NOT restricted
=================  =====================================================
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ("SandboxConfig", "Limits", "probe", "wrap", "LAUNCHER", "sandbox_uid")

#: the launcher script; run by path so it needs no installed package
LAUNCHER = str(Path(__file__).resolve().with_name("launch.py"))
#: dedicated uids for sandboxed extensions (when running as root): one per installation
UID_BASE, UID_SPAN = 620_000, 50_000
_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of one extension process tree."""

    memory_mb: int = 4096       # RLIMIT_AS: Node reserves a lot of address space up front
    cpu_seconds: int = 3600     # RLIMIT_CPU, per process
    open_files: int = 1024      # RLIMIT_NOFILE
    processes: int = 256        # RLIMIT_NPROC (threads count too)
    file_mb: int = 1024         # RLIMIT_FSIZE

    def rlimits(self) -> dict[str, int]:
        return {"AS": self.memory_mb << 20, "CPU": self.cpu_seconds,
                "NOFILE": self.open_files, "NPROC": self.processes,
                "FSIZE": self.file_mb << 20}


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """What this machine offers and how it is used (from :func:`probe`, or set by tests)."""

    bwrap: str | None = None
    unshare: str | None = None
    setpriv: str | None = None
    #: switch to a per-installation uid (only possible, and only done, as root)
    drop_uid: bool = field(default_factory=lambda: os.geteuid() == 0)
    limits: Limits = field(default_factory=Limits)
    python: str = sys.executable

    @property
    def enforced(self) -> list[str]:
        done = ["clean environment", "own working directory",
                "rlimits (address space, CPU, open files, processes, file size)",
                "no shell"]
        if self.bwrap:
            done += ["file system: only system, runtime, package (read-only) and working "
                     "directory (read-write)", "PID/IPC/UTS namespaces",
                     "network cut unless declared"]
            if self.drop_uid and self.setpriv:
                done.append("dedicated unprivileged uid, no capabilities, no_new_privs")
        elif self.unshare:
            done.append("network cut unless declared (file system NOT restricted)")
        else:
            done.append("network and file system NOT restricted (no bwrap, no unshare)")
        return done


def probe() -> SandboxConfig:
    """The sandbox this machine can give (``MOBIUS_SANDBOX=none`` turns namespaces off)."""
    if os.environ.get("MOBIUS_SANDBOX") == "none":
        return SandboxConfig()
    return SandboxConfig(bwrap=shutil.which("bwrap"), unshare=shutil.which("unshare"),
                         setpriv=shutil.which("setpriv"))


def sandbox_uid(key: str) -> int:
    """A stable uid for one installation, so extensions cannot read each other's files."""
    return UID_BASE + zlib.crc32(key.encode()) % UID_SPAN


def wrap(config: SandboxConfig, command: Sequence[str], *, workdir: Path,
         readonly: Sequence[str] = (), env: Mapping[str, str] | None = None,
         network: bool = False, uid: int | None = None,
         limits: Limits | None = None) -> dict[str, Any]:
    """The launch entry for ``command`` (absolute executable first) in the sandbox.

    ``env`` is what the extension sees besides HOME/PATH/TMPDIR/LANG; its values
    travel in the entry's ``env`` (never on a command line)."""
    if not command or not os.path.isabs(command[0]):
        raise ValueError("the sandboxed command must start with an absolute path")
    values = dict(env or {})
    policy = {
        "env": sorted(values),
        "setenv": {"HOME": str(workdir), "PATH": _PATH, "TMPDIR": "/tmp",
                   "LANG": "C.UTF-8"},
        "cwd": str(workdir),
        "rlimits": (limits or config.limits).rlimits(),
        "network": network,
        "bwrap": config.bwrap,
        "unshare": config.unshare,
        "setpriv": config.setpriv,
        "uid": uid if (config.drop_uid and uid is not None) else None,
        "ro": sorted(set(readonly)),
        "rw": [str(workdir)],
    }
    return {"command": config.python,
            "args": ["-I", "-S", LAUNCHER, json.dumps(policy, sort_keys=True), "--",
                     *command],
            "env": values, "cwd": str(workdir)}
