"""Installing for real: per organization, configured, sandboxed, audited, all or nothing.

These use the two smallest bundled extensions (``mcp-hello-world`` from npm,
``mcp-server-calculator`` from PyPI) and variants of them; each install is a real
``npm install`` / ``pip install`` (downloads cached, see conftest).
"""

from __future__ import annotations

import copy
import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mobius_rpc.marketplace import (
    CatalogEntry,
    Forbidden,
    HashMismatch,
    InputError,
    InstallError,
    Marketplace,
    MissingConfiguration,
)
from mobius_rpc.marketplace.health import list_tools
from mobius_rpc.security.principal import AuthMethod, Principal, Role
from mobius_rpc.security.store import AuditQuery

from .conftest import CACHE, needs_node

pytestmark = [pytest.mark.anyio, needs_node()]
HELLO = "dev.mobius-rpc.curated/mcp-hello-world"
CALC = "io.github.githejie/mcp-server-calculator"


def variant(market: Marketplace, base: str, name: str, **package: Any) -> str:
    """A catalog entry like ``base`` under another name, with package fields changed."""
    server = copy.deepcopy(market.entry(base).server)
    server["name"] = name
    server["packages"][0].update(package)
    market.catalog.add([CatalogEntry(server, "test")])
    return name


def leftovers(home: Path) -> list[Path]:
    root = home / "market"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def admin(org: str, role: Role = Role.ADMIN) -> Principal:
    return Principal(f"{org}-{role.value}", org, frozenset({role}), method=AuthMethod.API_TOKEN)


async def methods(market: Marketplace) -> list[tuple[str, str]]:
    assert market.audit is not None
    return [(r.method, r.outcome) for r in await market.audit.search(AuditQuery())]


async def test_install_run_disable_enable_uninstall(market: Marketplace, home: Path) -> None:
    inst = await market.install("acme", HELLO, actor=admin("acme"))
    assert inst.version == "1.1.2" and inst.enabled and Path(inst.path).is_dir()
    assert (await market.store.install_counts())[HELLO] == 1
    entries = await market.launch_entries("acme")
    assert list(entries) == [HELLO] and await market.launch_entries("globex") == {}
    tools = await list_tools(entries[HELLO])
    assert {t["name"] for t in tools} >= {"echo"}
    health = await market.check_health("acme", HELLO)
    assert health["status"] == "ok" and health["tools"] == len(tools)
    assert (await market.get("acme", HELLO)).health["tools"] == len(tools)
    await market.set_enabled("acme", HELLO, False)
    assert await market.launch_entries("acme") == {}
    await market.set_enabled("acme", HELLO, True)
    assert list(await market.launch_entries("acme")) == [HELLO]
    await market.uninstall("acme", HELLO)
    assert not Path(inst.path).exists() and leftovers(home) == []
    assert await market.installations("acme") == []
    assert (await market.store.install_counts())[HELLO] == 1  # cumulative
    assert await methods(market) == [
        ("market/install", "ok"), ("market/health", "ok"), ("market/disable", "ok"),
        ("market/enable", "ok"), ("market/uninstall", "ok")]


async def test_missing_configuration_is_refused_with_the_list(market: Marketplace,
                                                              home: Path) -> None:
    name = variant(market, HELLO, "io.example/needs-config", environmentVariables=[
        {"name": "API_KEY", "isRequired": True, "isSecret": True},
        {"name": "REGION", "isRequired": True},
        {"name": "OPTIONAL"}])
    with pytest.raises(MissingConfiguration) as caught:
        await market.install("acme", name, config={"OPTIONAL": "x"})
    assert caught.value.missing == ["API_KEY", "REGION"]
    with pytest.raises(InputError, match="unknown configuration: TYPO"):
        await market.install("acme", name, config={"API_KEY": "k", "REGION": "r", "TYPO": "1"})
    assert leftovers(home) == [] and await market.installations("acme") == []
    assert await methods(market) == [("market/install", "error")] * 2


async def test_a_failing_install_leaves_nothing_behind(market: Marketplace, home: Path) -> None:
    name = variant(market, HELLO, "io.example/no-such-version", version="99.99.99")
    with pytest.raises(InstallError, match="npm install mcp-hello-world@99.99.99 failed"):
        await market.install("acme", name)
    bad_pypi = variant(market, CALC, "io.example/no-such-wheel", version="99.0.0")
    with pytest.raises(InstallError, match="pip install"):
        await market.install("acme", bad_pypi)
    assert leftovers(home) == [] and list((home / "market").rglob("*pkg*")) == []
    assert await market.installations("acme") == []
    assert await market.store.install_counts() == {}
    assert await methods(market) == [("market/install", "error")] * 2


async def test_file_sha256_is_verified(market: Marketplace, home: Path, tmp_path: Path) -> None:
    wrong = variant(market, HELLO, "io.example/wrong-hash", fileSha256="0" * 64)
    with pytest.raises(HashMismatch, match="refused"):
        await market.install("acme", wrong)
    assert leftovers(home) == []
    npm = shutil.which("npm")
    assert npm is not None
    subprocess.run([npm, "pack", "mcp-hello-world@1.1.2", "--pack-destination", str(tmp_path),
                    "--silent", "--cache", str(CACHE / "npm")], check=True, timeout=300,
                   capture_output=True)
    (tarball,) = tmp_path.glob("*.tgz")
    right = variant(market, HELLO, "io.example/right-hash",
                    fileSha256=hashlib.sha256(tarball.read_bytes()).hexdigest())
    inst = await market.install("acme", right)
    assert {t["name"] for t in await list_tools(market.launch_entry(inst))} >= {"echo"}


async def test_organizations_see_only_their_own_extensions(market: Marketplace) -> None:
    name = variant(market, HELLO, "io.example/hello-with-key", environmentVariables=[
        {"name": "API_KEY", "isRequired": True, "isSecret": True}])
    await market.install("acme", name, config={"API_KEY": "acme-secret"}, actor=admin("acme"))
    await market.install("globex", CALC, actor=admin("globex", Role.OWNER))
    with pytest.raises(Forbidden):
        await market.install("globex", HELLO, actor=admin("acme"))
    with pytest.raises(Forbidden):
        await market.install("acme", CALC, actor=admin("acme", Role.MEMBER))
    with pytest.raises(Forbidden):
        await market.installations("globex", actor=admin("acme", Role.MEMBER))
    acme, globex = await market.launch_entries("acme"), await market.launch_entries("globex")
    assert list(acme) == [name] and list(globex) == [CALC]
    acme_tools = {t["name"] for t in await list_tools(acme[name])}
    globex_tools = {t["name"] for t in await list_tools(globex[CALC])}
    assert acme_tools and globex_tools and not acme_tools & globex_tools
    # the secret is sealed in the store and reaches only its own extension's environment
    stored = await market.get("acme", name)
    assert "acme-secret" not in repr(stored) and stored.secrets["API_KEY"].startswith("v1.")
    assert acme[name]["env"] == {"API_KEY": "acme-secret"}
    assert "acme-secret" not in repr(globex) and "acme-secret" not in repr(acme[name]["args"])
    updated = await market.configure("acme", name, {"API_KEY": "rotated"})
    assert market.launch_entry(updated)["env"] == {"API_KEY": "rotated"}
    with pytest.raises(MissingConfiguration):
        await market.configure("acme", name, {"API_KEY": ""})
    assert (await methods(market)).count(("market/install", "error")) == 2


async def test_upgrade_switches_only_when_the_new_version_installed(market: Marketplace,
                                                                    home: Path) -> None:
    old = copy.deepcopy(market.entry(CALC).server)
    old["version"] = old["packages"][0]["version"] = "0.2.0"
    market.catalog.add([CatalogEntry(old, "test")])
    market.catalog.add([market.entry(CALC, "0.2.1")])  # 0.2.1 stays the newest
    first = await market.install("acme", CALC, version="0.2.0")
    assert first.version == "0.2.0"
    broken = copy.deepcopy(old)
    broken["version"] = broken["packages"][0]["version"] = "99.0.0"
    market.catalog.add([CatalogEntry(broken, "test")])
    with pytest.raises(InstallError):
        await market.upgrade("acme", CALC, version="99.0.0")
    assert (await market.get("acme", CALC)).version == "0.2.0" and Path(first.path).is_dir()
    upgraded = await market.upgrade("acme", CALC, version="0.2.1")
    assert upgraded.version == "0.2.1" and not Path(first.path).exists()
    assert await list_tools(market.launch_entry(upgraded))
    assert len([p for p in (home / "market" / "acme").iterdir()]) == 1
