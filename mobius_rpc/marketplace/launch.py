"""The sandbox launcher: run as a script (``python -I -S launch.py POLICY -- CMD ...``).

It is the first process of every installed extension and uses the standard
library only (no ``mobius_rpc`` import, ``-S`` skips site-packages), so it
starts fast and cannot be influenced by the extension's own packages.  In
order, it

1. builds the environment from nothing: only the variables the policy names
   (their values come from its own environment, where the launching side put
   them, so secrets never appear on a command line) plus HOME, PATH, TMPDIR
   and LANG chosen by the policy;
2. sets the resource limits (address space, CPU seconds, open files,
   processes, file size), inherited by everything it starts;
3. execs bubblewrap when the policy names it: a new mount namespace showing
   only the system directories, the runtime, the package (read-only) and the
   working directory (read-write); new PID, IPC and UTS namespaces; no
   network namespace shared unless the policy allows the network; as root,
   ``setpriv`` inside drops to the policy's unprivileged uid with no
   capabilities and ``no_new_privs``;
4. without bubblewrap, changes to the working directory and, when the network
   is not allowed and ``unshare`` is there, execs it with a new network
   namespace; otherwise runs the command as is (the policy's ``enforced``
   list, computed by :mod:`.sandbox`, says exactly which of these applied).

Every command line is a list handed to ``execve``: no shell anywhere.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any

_LIMITS = {"AS": resource.RLIMIT_AS, "CPU": resource.RLIMIT_CPU,
           "NOFILE": resource.RLIMIT_NOFILE, "NPROC": resource.RLIMIT_NPROC,
           "FSIZE": resource.RLIMIT_FSIZE}
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
_ETC = ("/etc/ssl", "/etc/ca-certificates", "/etc/resolv.conf", "/etc/hosts",
        "/etc/host.conf", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/passwd", "/etc/group",
        "/etc/localtime", "/etc/timezone", "/etc/ld.so.cache", "/etc/ld.so.conf",
        "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/mime.types", "/etc/os-release")


def _environment(policy: dict[str, Any]) -> dict[str, str]:
    names = policy.get("env") or []
    env = {name: os.environ[name] for name in names if name in os.environ}
    fixed = policy.get("setenv") or {}
    env.update({str(k): str(v) for k, v in fixed.items()})
    return env


def _set_limits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        which = _LIMITS[name]
        _, hard = resource.getrlimit(which)
        wanted = int(value)
        if hard != resource.RLIM_INFINITY and wanted > hard:
            wanted = hard  # never above what we were given
        resource.setrlimit(which, (wanted, wanted))


def _bwrap_argv(policy: dict[str, Any], command: list[str]) -> list[str]:
    cwd = str(policy["cwd"])
    root = os.geteuid() == 0
    argv = [str(policy["bwrap"]), "--die-with-parent", "--new-session"]
    if root:
        # as root no user namespace: setpriv below drops to a real unprivileged uid,
        # so the process limit counts that uid's processes
        argv += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        if not policy.get("network"):
            argv.append("--unshare-net")
    else:
        argv.append("--unshare-all")
        if policy.get("network"):
            argv.append("--share-net")
    mounted: set[str] = set()  # made or mounted: nothing to create there
    sealed: set[str] = set()   # read-only mounts: nothing can be created inside

    def bind(flag: str, path: str) -> None:
        # bwrap would create missing parents mode 0700, unreadable after the uid drop
        parts = path.strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/" + "/".join(parts[:depth])
            if parent in mounted or any(parent.startswith(m + "/") for m in sealed):
                continue
            argv.extend(["--perms", "0755", "--dir", parent])
            mounted.add(parent)
        argv.extend([flag, path, path])
        mounted.add(path)
        if flag != "--bind":
            sealed.add(path)

    for path in _SYSTEM:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            bind("--ro-bind", path)
    for path in _ETC:
        if os.path.exists(path):
            bind("--ro-bind-try", path)
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    mounted |= {"/proc", "/dev", "/tmp"}
    sealed |= {"/proc", "/dev"}
    for path in policy.get("ro") or []:
        bind("--ro-bind", str(path))
    for path in policy.get("rw") or []:
        bind("--bind", str(path))
    argv += ["--chdir", cwd]
    uid = policy.get("uid")
    if root and isinstance(uid, int) and policy.get("setpriv"):
        argv += ["--", str(policy["setpriv"]), f"--reuid={uid}", f"--regid={uid}",
                 "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                 "--no-new-privs"]
    else:
        argv += ["--cap-drop", "ALL"]
    return [*argv, "--", *command]


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: launch.py POLICY-JSON -- COMMAND [ARG ...]\n")
        return 2
    policy = json.loads(argv[0])
    command = argv[2:]
    env = _environment(policy)
    _set_limits(policy.get("rlimits") or {})
    if policy.get("bwrap"):
        final = _bwrap_argv(policy, command)
    else:
        os.chdir(str(policy["cwd"]))
        final = command
        if not policy.get("network") and policy.get("unshare"):
            flags = ["--net"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--net"]
            final = [str(policy["unshare"]), *flags, "--", *command]
    try:
        os.execve(final[0], final, env)
    except OSError as exc:
        sys.stderr.write(f"mobius sandbox: cannot start {final[0]}: {exc.strerror}\n")
        return 127
    return 0  # pragma: no cover (execve does not return)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
