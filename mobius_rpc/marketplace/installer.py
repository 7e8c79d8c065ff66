"""Putting a package on disk: npm into its own prefix, PyPI into its own venv.

Each installation gets a directory of its own; nothing is shared with other
installations or with the host's global packages, so uninstalling is removing
the directory.  The version is always the exact one of the catalog entry.
When the entry carries ``fileSha256`` the package file is downloaded first
(``npm pack`` / ``pip download``), its SHA-256 compared, and only that file is
installed: a mismatch is refused before anything runs.

The package managers run with a small environment of their own (PATH, HOME in
the installation's directory, a download cache), no stdin and a time limit, as
lists of arguments without a shell.  Their output is kept only to explain a
failure (its last lines).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

__all__ = ("InstallError", "HashMismatch", "InstalledPackage", "Installer", "SUPPORTED")

SUPPORTED = ("npm", "pypi")
#: Node's JS heap cap, and the address space it needs beside it (see ``_npm``)
NODE_HEAP_MB, NODE_ADDRESS_SPACE_MB = 2048, 16384
_TAIL = 15
_PASSED = ("PIP_", "NPM_CONFIG_", "NODE_EXTRA_CA_CERTS", "SSL_CERT_", "REQUESTS_CA_BUNDLE",
           "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")
_REQUIREMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!-]+$")


class InstallError(RuntimeError):
    """A package could not be installed (the message ends with the tool's last lines)."""


class HashMismatch(InstallError):
    """The downloaded package file is not the one the catalog entry names."""


@dataclass(frozen=True, slots=True)
class InstalledPackage:
    #: the server's command: an absolute executable first
    command: list[str]
    #: directories the process must be able to read (the package, the runtime)
    readonly: list[str]
    #: an address-space limit the runtime needs instead of the default (None: default)
    address_space_mb: int | None = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extra_requirements(package: Mapping[str, Any]) -> list[str]:
    """``uvx --with REQ`` runtime arguments, pinned exactly (``name==version``)."""
    extras = []
    for item in package.get("runtimeArguments", []):
        if item.get("type") == "named" and item.get("name") == "--with" and "value" in item:
            requirement = str(item["value"])
            if not _REQUIREMENT.match(requirement):
                raise InstallError(f"runtime requirement {requirement!r} is not pinned "
                                   "exactly (name==version)")
            extras.append(requirement)
    return extras


class Installer:
    """Runs npm and pip for the marketplace."""

    def __init__(self, *, cache: Path | None = None, timeout: float = 600.0,
                 python: str = sys.executable, npm: str | None = None,
                 node: str | None = None) -> None:
        self.cache = cache
        self.timeout = timeout
        self.python = python
        self.npm = npm or shutil.which("npm")
        self.node = node or shutil.which("node")
        #: whether ``python`` has pip (23.1+ can install into another interpreter's venv)
        self.host_pip = python == sys.executable and _has_pip()

    async def _run(self, argv: Sequence[str], home: Path, what: str) -> str:
        # the host's own HOME: npm's and pip's user configuration (mirrors, nodedir for
        # native builds) lives there; downloads go to our cache, files to ``dest``
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "HOME": os.environ.get("HOME", str(home)),
               "LANG": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
               "PIP_NO_INPUT": "1", "npm_config_update_notifier": "false"}
        # how this host reaches the registries (mirrors, proxies, extra CA certificates)
        env.update({k: v for k, v in os.environ.items() if k.upper().startswith(_PASSED)})
        try:
            with anyio.fail_after(self.timeout):
                done = await anyio.run_process(list(argv), env=env, check=False,
                                               stdin=subprocess.DEVNULL,
                                               stderr=subprocess.STDOUT)
        except TimeoutError:
            raise InstallError(f"{what}: no result within {self.timeout:.0f} s") from None
        except OSError as exc:
            raise InstallError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None
        output = done.stdout.decode("utf-8", "replace")
        if done.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-_TAIL:])
            raise InstallError(f"{what} failed (exit {done.returncode}):\n{tail}")
        return output

    async def install(self, package: Mapping[str, Any], dest: Path) -> InstalledPackage:
        """Install ``package`` (a server.json package) under ``dest`` (created, empty)."""
        kind = package.get("registryType")
        if kind == "npm":
            return await self._npm(package, dest)
        if kind == "pypi":
            return await self._pypi(package, dest)
        raise InstallError(f"packages from {kind!r} cannot be installed here "
                           f"(supported: {', '.join(SUPPORTED)})")

    def _verify(self, path: Path, package: Mapping[str, Any]) -> None:
        expected = package.get("fileSha256")
        if expected and _sha256(path) != expected:
            raise HashMismatch(f"{path.name}: SHA-256 is {_sha256(path)}, the catalog "
                               f"entry says {expected}: refused")

    async def _npm(self, package: Mapping[str, Any], dest: Path) -> InstalledPackage:
        if not self.npm or not self.node:
            raise InstallError("npm packages need node and npm on PATH")
        ident, version = str(package["identifier"]), str(package["version"])
        prefix, home = dest / "pkg", dest / "home"
        prefix.mkdir(parents=True)
        home.mkdir()
        cache = ["--cache", str(self.cache / "npm")] if self.cache else []
        spec = f"{ident}@{version}"
        if package.get("fileSha256"):
            drop = dest / "download"
            drop.mkdir()
            await self._run([self.npm, "pack", spec, "--pack-destination", str(drop),
                             "--silent", *cache], home, f"npm pack {spec}")
            files = sorted(drop.glob("*.tgz"))
            if len(files) != 1:
                raise InstallError(f"npm pack {spec} produced {len(files)} files")
            self._verify(files[0], package)
            spec = str(files[0])
        await self._run([self.npm, "install", "--prefix", str(prefix), "--no-audit",
                         "--no-fund", "--no-save", "--omit=dev", "--prefer-offline", *cache,
                         spec], home,
                        f"npm install {ident}@{version}")
        shutil.rmtree(dest / "download", ignore_errors=True)
        root = prefix / "node_modules" / ident
        try:
            meta = json.loads((root / "package.json").read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise InstallError(f"{ident}: no readable package.json after install: {exc}") from None
        if meta.get("version") != version:
            raise InstallError(f"{ident}: npm installed {meta.get('version')}, not {version}")
        bins = meta.get("bin")
        short = ident.rsplit("/", 1)[-1]
        if isinstance(bins, str):
            target = bins
        elif isinstance(bins, dict) and bins:
            target = str(bins.get(short) or next(iter(bins.values())))
        else:
            raise InstallError(f"{ident}: the package declares no executable ('bin')")
        script = (root / target).resolve()
        if not script.is_relative_to(prefix.resolve()) or not script.is_file():
            raise InstallError(f"{ident}: its 'bin' {target!r} is not a file in the package")
        node = os.path.realpath(self.node)
        # V8 reserves ~10 GiB of address space per WebAssembly instance (guard regions),
        # so the address-space limit cannot bound Node's memory: its heap flag does
        return InstalledPackage([node, f"--max-old-space-size={NODE_HEAP_MB}", str(script)],
                                [str(prefix), *_outside_usr(Path(node).parent.parent)],
                                address_space_mb=NODE_ADDRESS_SPACE_MB)

    async def _pypi(self, package: Mapping[str, Any], dest: Path) -> InstalledPackage:
        ident, version = str(package["identifier"]), str(package["version"])
        venv, home = dest / "pkg", dest / "home"
        home.mkdir(parents=True)
        python = str(venv / "bin" / "python")
        if self.host_pip:
            # the host's pip installs into the venv (pip --python): no pip copied into
            # every venv, which is most of a small install's time
            await self._run([self.python, "-m", "venv", "--without-pip", str(venv)], home,
                            "python -m venv")
            pip_cmd = [self.python, "-m", "pip", "--python", python]
        else:
            await self._run([self.python, "-m", "venv", str(venv)], home, "python -m venv")
            pip_cmd = [python, "-m", "pip"]
        pip = [*pip_cmd, "install", "--no-input", "-q"]
        if self.cache:
            pip += ["--cache-dir", str(self.cache / "pip")]
        requirement = f"{ident}=={version}"
        if package.get("fileSha256"):
            drop = dest / "download"
            drop.mkdir()
            fetch = [*pip_cmd, "download", "--no-deps",
                     "-q", "-d", str(drop), requirement]
            if self.cache:
                fetch += ["--cache-dir", str(self.cache / "pip")]
            await self._run(fetch, home, f"pip download {requirement}")
            files = sorted(drop.iterdir())
            if len(files) != 1:
                raise InstallError(f"pip download {requirement} produced {len(files)} files")
            self._verify(files[0], package)
            requirement = str(files[0])
        await self._run([*pip, requirement, *_extra_requirements(package)], home,
                        f"pip install {ident}=={version}")
        shutil.rmtree(dest / "download", ignore_errors=True)
        script = venv / "bin" / ident
        if not script.is_file():
            names = await self._run(
                [str(venv / "bin" / "python"), "-c",
                 "import importlib.metadata as m, sys; print('\\n'.join(e.name for e in "
                 "m.distribution(sys.argv[1]).entry_points if e.group == 'console_scripts'))",
                 ident], home, f"{ident} entry points")
            found = [n for n in names.split() if (venv / "bin" / n).is_file()]
            if not found:
                raise InstallError(f"{ident}: the package installs no console script")
            script = venv / "bin" / found[0]
        return InstalledPackage([str(script)], [str(venv), *_python_home(venv)])


def _has_pip() -> bool:
    import importlib.util
    try:
        from pip import __version__ as version
    except ImportError:
        return False
    major, minor = (int(x) for x in version.split(".")[:2])
    return importlib.util.find_spec("pip") is not None and (major, minor) >= (23, 1)


def _outside_usr(prefix: Path) -> list[str]:
    """A runtime's prefix, unless the system directories the sandbox shows cover it."""
    return [] if str(prefix).startswith("/usr") else [str(prefix)]


def _python_home(venv: Path) -> list[str]:
    """The base interpreter's prefix a venv runs on (its ``home``'s parent)."""
    try:
        for line in (venv / "pyvenv.cfg").read_text("utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return _outside_usr(Path(os.path.realpath(value.strip())).parent)
    except OSError:
        pass
    return []
