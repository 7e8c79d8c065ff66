"""The marketplace: the catalog, per-organization installations, ratings, health.

:class:`Marketplace` is what the CLI, the HTTP admin API and the gateway use.
Its rules:

* **who may do what.**  ``actor=None`` is a trusted local caller (the CLI on
  the host).  A principal may install, configure, enable, disable, upgrade and
  uninstall only in its own organization and only as an owner or admin;
  any member may read its organization's installations; rating needs a user.
* **all or nothing.**  An install checks the configuration before it touches
  the disk (every missing required input is listed), installs into a fresh
  directory, and only then writes the record; any failure removes the
  directory and the record, so nothing is left behind.  An upgrade installs
  the new version beside the old one and switches only when it succeeded.
* **secrets.**  Values of inputs marked ``isSecret`` are sealed by
  :class:`~.secrets.SecretBox` before they reach the store and opened only to
  build a launch entry.  The audit log records which keys changed, never values.
* **the gateway seam.**  :meth:`Marketplace.launch_entries` gives an
  organization's enabled installations as ``mcpServers`` entries already
  wrapped in the sandbox.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from ..security.audit import AuditLog
from ..security.principal import Principal, Role
from .catalog import Catalog, CatalogEntry, Page, SearchQuery, entries_from_document, load_bundled
from .inputs import InputError, input_specs, resolve
from .installer import SUPPORTED, Installer
from .registry import SyncResult, fetch_registry
from .sandbox import SandboxConfig, probe, sandbox_uid, wrap
from .secrets import SecretBox
from .store import CatalogRow, DuplicateInstallation, Installation, MarketStore, Rating

__all__ = ("Marketplace", "MarketError", "NotFound", "Forbidden", "Conflict")


class MarketError(Exception):
    """A marketplace operation was refused (the message says why)."""


class NotFound(MarketError):
    pass


class Forbidden(MarketError, PermissionError):
    pass


class Conflict(MarketError):
    pass


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]


class Marketplace:
    def __init__(self, store: MarketStore, *, home: Path, box: SecretBox,
                 audit: AuditLog | None = None, sandbox: SandboxConfig | None = None,
                 installer: Installer | None = None, catalog: Catalog | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.home = home
        self.box = box
        self.audit = audit
        self.sandbox = sandbox or probe()
        self.installer = installer or Installer()
        self.catalog = catalog if catalog is not None else Catalog(load_bundled())
        self.clock = clock

    # ------------------------------------------------------------------ catalog

    async def load_stored(self) -> int:
        """Add the entries imported earlier (kept in the store) to the catalog."""
        rows = await self.store.list_catalog()
        return self.catalog.add(CatalogEntry(r.server, r.source, r.official) for r in rows)

    async def add_entries(self, entries: list[CatalogEntry], *,
                          actor: Principal | None = None, source: str = "") -> int:
        """Keep imported entries (the whole batch was validated before this)."""
        if actor is not None and not actor.has_role(Role.OWNER, Role.ADMIN):
            raise Forbidden(f"{actor.user} may not change the catalog")
        now = self.clock()
        await self.store.put_catalog([CatalogRow(e.name, e.version, e.source, e.server,
                                                 e.official, now) for e in entries])
        count = self.catalog.add(entries)
        await self._audit("market/catalog.import", "ok", actor, source or "file",
                          {"entries": count})
        return count

    async def import_file(self, path: Path, *, actor: Principal | None = None) -> int:
        """Import a server.json, a list of them or a registry page; one bad entry refuses all."""
        try:
            doc = orjson.loads(path.read_bytes())
        except OSError as exc:
            raise MarketError(f"{path}: {exc.strerror}") from None
        except orjson.JSONDecodeError as exc:
            raise MarketError(f"{path}: not JSON ({exc})") from None
        return await self.add_entries(entries_from_document(doc, f"file:{path.name}"),
                                      actor=actor, source=str(path))

    async def import_registry(self, url: str, *, full: bool = False,
                              actor: Principal | None = None,
                              transport: Any = None) -> SyncResult:
        """Sync from a registry; incremental (``updated_since``) after the first time."""
        if actor is not None and not actor.has_role(Role.OWNER, Role.ADMIN):
            raise Forbidden(f"{actor.user} may not change the catalog")
        since = None if full else await self.store.get_sync(url)
        result = await fetch_registry(url, updated_since=since, transport=transport)
        await self.add_entries(result.entries, actor=actor, source=url)
        if result.newest:
            await self.store.set_sync(url, result.newest, self.clock())
        return result

    async def search(self, query: SearchQuery) -> Page:
        return self.catalog.search(query, installs=await self.store.install_counts(),
                                   ratings=await self.store.rating_summary())

    def entry(self, name: str, version: str | None = None) -> CatalogEntry:
        found = self.catalog.get(name, version)
        if found is None:
            raise NotFound(f"no extension {name!r}" + (f" version {version}" if version else ""))
        return found

    async def show(self, name: str) -> dict[str, Any]:
        entry = self.entry(name)
        average, count = (await self.store.rating_summary()).get(name, (0.0, 0))
        package = _installable(entry)
        return {**entry.summary(), "server": entry.server,
                "versions": [e.version for e in self.catalog.versions(name)],
                "installs": (await self.store.install_counts()).get(name, 0),
                "rating": {"average": average, "count": count},
                "inputs": [s.public() for s in input_specs(package)] if package else [],
                "installable": package is not None}

    # ------------------------------------------------------------------ checks

    def _check_admin(self, actor: Principal | None, org_id: str) -> None:
        if actor is not None and not (actor.organization == org_id
                                      and actor.has_role(Role.OWNER, Role.ADMIN)):
            raise Forbidden(f"{actor.user} may not manage extensions of organization {org_id}")

    def _check_member(self, actor: Principal | None, org_id: str) -> None:
        if actor is not None and actor.organization != org_id:
            raise Forbidden(f"{actor.user} is not acting in organization {org_id}")

    async def _audit(self, method: str, outcome: str, actor: Principal | None, target: str,
                     detail: dict[str, Any], error: str | None = None) -> None:
        if self.audit is not None:
            await self.audit.append(method=method, outcome=outcome, principal=actor,
                                    target=target, detail=detail, error=error)

    async def get(self, org_id: str, name: str, *,
                  actor: Principal | None = None) -> Installation:
        self._check_member(actor, org_id)
        found = await self.store.get_installation(org_id, name)
        if found is None:
            raise NotFound(f"{name!r} is not installed in organization {org_id!r}")
        return found

    async def installations(self, org_id: str, *,
                            actor: Principal | None = None) -> list[Installation]:
        self._check_member(actor, org_id)
        return await self.store.list_installations(org_id)

    # ------------------------------------------------------------------ install

    def _split(self, org_id: str, entry: CatalogEntry, package: Mapping[str, Any],
               values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """Check ``values`` (raises InputError/MissingConfiguration); (plain, sealed)."""
        resolve(package, values)
        secret = {s.key for s in input_specs(package) if s.secret}
        plain = {k: v for k, v in values.items() if k not in secret}
        sealed = {k: self.box.seal(org_id, entry.name, k, v)
                  for k, v in values.items() if k in secret and v}
        return plain, sealed

    async def install(self, org_id: str, name: str, *, version: str | None = None,
                      config: Mapping[str, str] | None = None,
                      actor: Principal | None = None) -> Installation:
        """Install ``name`` for ``org_id`` (see the module docstring for the rules)."""
        detail: dict[str, Any] = {"org": org_id, "version": version,
                                  "keys": sorted(config or {})}
        try:
            self._check_admin(actor, org_id)
            entry = self.entry(name, version)
            detail["version"] = entry.version
            package = _installable(entry)
            if package is None:
                raise MarketError(f"{name} has no package this machine can install "
                                  f"(supported: {', '.join(SUPPORTED)} over stdio)")
            plain, sealed = self._split(org_id, entry, package, config or {})
            if await self.store.get_installation(org_id, name) is not None:
                raise Conflict(f"{name} is installed in organization {org_id} already")
            inst = await self._put_on_disk(org_id, entry, package, plain, sealed, actor)
        except (MarketError, InputError, OSError, RuntimeError) as exc:
            await self._audit("market/install", "error", actor, name, detail, str(exc)[:500])
            raise
        await self.store.count_install(name)
        await self._audit("market/install", "ok", actor, name, detail)
        return inst

    async def _put_on_disk(self, org_id: str, entry: CatalogEntry, package: Mapping[str, Any],
                           plain: dict[str, str], sealed: dict[str, str],
                           actor: Principal | None, created_at: float | None = None,
                           enabled: bool = True, store_new: bool = True) -> Installation:
        """Install into a fresh directory and (when ``store_new``) add the record;
        on any failure nothing of either remains."""
        root = self.home / "market" / _slug(org_id) / f"{_slug(entry.name)}-{uuid.uuid4().hex[:8]}"
        added = False
        try:
            root.mkdir(parents=True, mode=0o755)
            installed = await self.installer.install(package, root)
            work = root / "work"
            work.mkdir()
            uid = sandbox_uid(f"{org_id}/{entry.name}")
            if self.sandbox.drop_uid:
                os.chown(work, uid, uid)
            now = self.clock()
            inst = Installation(
                org_id=org_id, name=entry.name, version=entry.version,
                registry_type=str(package["registryType"]),
                identifier=str(package["identifier"]), enabled=enabled, config=plain,
                secrets=sealed, path=str(root),
                launch={"command": installed.command, "readonly": installed.readonly,
                        "network": entry.network, "uid": uid,
                        "address_space_mb": installed.address_space_mb},
                created_at=created_at or now, updated_at=now,
                installed_by=actor.user if actor else None)
            if store_new:
                try:
                    await self.store.add_installation(inst)
                except DuplicateInstallation as exc:
                    raise Conflict(str(exc)) from None
                added = True
            return inst
        except BaseException:
            if added:
                await self.store.delete_installation(org_id, entry.name)
            shutil.rmtree(root, ignore_errors=True)
            raise

    async def configure(self, org_id: str, name: str, config: Mapping[str, str], *,
                        replace_all: bool = False,
                        actor: Principal | None = None) -> Installation:
        """Change configuration values (merged into the current ones unless ``replace_all``;
        an empty value removes a key)."""
        self._check_admin(actor, org_id)
        inst = await self.get(org_id, name)
        entry, package = self._package_of(inst)
        current = {} if replace_all else self._values(inst)
        merged = {k: v for k, v in {**current, **config}.items() if v != ""}
        try:
            plain, sealed = self._split(org_id, entry, package, merged)
        except InputError as exc:
            await self._audit("market/configure", "error", actor, name,
                              {"org": org_id, "keys": sorted(config)}, str(exc))
            raise
        updated = replace(inst, config=plain, secrets=sealed, updated_at=self.clock())
        await self.store.update_installation(updated)
        await self._audit("market/configure", "ok", actor, name,
                          {"org": org_id, "keys": sorted(config)})
        return updated

    async def set_enabled(self, org_id: str, name: str, enabled: bool, *,
                          actor: Principal | None = None) -> Installation:
        self._check_admin(actor, org_id)
        inst = replace(await self.get(org_id, name), enabled=enabled, updated_at=self.clock())
        await self.store.update_installation(inst)
        await self._audit("market/enable" if enabled else "market/disable", "ok", actor, name,
                          {"org": org_id})
        return inst

    async def upgrade(self, org_id: str, name: str, *, version: str | None = None,
                      actor: Principal | None = None) -> Installation:
        """Move to ``version`` (default: the catalog's newest); the old one stays on any failure."""
        self._check_admin(actor, org_id)
        inst = await self.get(org_id, name)
        detail: dict[str, Any] = {"org": org_id, "from": inst.version}
        try:
            entry = self.entry(name, version)
            detail["to"] = entry.version
            package = _installable(entry)
            if package is None:
                raise MarketError(f"{name} {entry.version} has no installable package")
            values = self._values(inst)
            plain, sealed = self._split(org_id, entry, package, values)
            new = await self._put_on_disk(org_id, entry, package, plain, sealed, actor,
                                          created_at=inst.created_at, enabled=inst.enabled,
                                          store_new=False)
        except (MarketError, InputError, OSError, RuntimeError) as exc:
            await self._audit("market/upgrade", "error", actor, name, detail, str(exc)[:500])
            raise
        await self.store.update_installation(replace(new, installed_by=inst.installed_by))
        shutil.rmtree(inst.path, ignore_errors=True)
        await self._audit("market/upgrade", "ok", actor, name, detail)
        return new

    async def uninstall(self, org_id: str, name: str, *,
                        actor: Principal | None = None) -> None:
        """Remove the record, then the files (the package, its data and its working dir)."""
        self._check_admin(actor, org_id)
        inst = await self.get(org_id, name)
        await self.store.delete_installation(org_id, name)
        shutil.rmtree(inst.path, ignore_errors=True)
        await self._audit("market/uninstall", "ok", actor, name,
                          {"org": org_id, "version": inst.version})

    # ------------------------------------------------------------------ launching

    def _package_of(self, inst: Installation) -> tuple[CatalogEntry, Mapping[str, Any]]:
        entry = self.entry(inst.name, inst.version)
        package = _installable(entry)
        if package is None:  # pragma: no cover (it was installable when installed)
            raise MarketError(f"{inst.name} {inst.version} is no longer installable")
        return entry, package

    def _values(self, inst: Installation) -> dict[str, str]:
        opened = {k: self.box.open(inst.org_id, inst.name, k, v) for k, v in inst.secrets.items()}
        return {**inst.config, **opened}

    def launch_entry(self, inst: Installation) -> dict[str, Any]:
        """The sandboxed ``{"command", "args", "env", "cwd"}`` of one installation."""
        _, package = self._package_of(inst)
        resolved = resolve(package, self._values(inst))
        launch = inst.launch
        limits = self.sandbox.limits
        if launch.get("address_space_mb"):
            limits = replace(limits, memory_mb=max(limits.memory_mb,
                                                   int(launch["address_space_mb"])))
        return wrap(self.sandbox, [*launch["command"], *resolved.args],
                    workdir=Path(inst.path) / "work", readonly=launch["readonly"],
                    env=resolved.env, network=bool(launch["network"]), uid=launch["uid"],
                    limits=limits)

    async def launch_entries(self, org_id: str) -> dict[str, dict[str, Any]]:
        """The organization's enabled installations, as sandboxed ``mcpServers`` entries
        keyed by extension name (the gateway launches these)."""
        return {inst.name: self.launch_entry(inst)
                for inst in await self.store.list_installations(org_id) if inst.enabled}

    async def check_health(self, org_id: str, name: str, *, timeout: float = 60.0,
                           actor: Principal | None = None) -> dict[str, Any]:
        """Start the installation sandboxed, list its tools, store and return the result."""
        from .health import probe_entry
        self._check_member(actor, org_id)
        inst = await self.get(org_id, name)
        health = await probe_entry(self.launch_entry(inst), timeout=timeout)
        health["checkedAt"] = self.clock()
        await self.store.update_installation(replace(inst, health=health))
        await self._audit("market/health", "ok" if health["status"] == "ok" else "error",
                          actor, name, {"org": org_id, "tools": health.get("tools")})
        return health

    # ------------------------------------------------------------------ ratings

    async def rate(self, name: str, stars: int, review: str = "", *, user: str,
                   actor: Principal | None = None) -> Rating:
        """Rate ``name`` 1-5 as ``user`` (a principal rates as itself); editing replaces."""
        self.entry(name)
        if actor is not None:
            user = actor.user
        if not isinstance(stars, int) or isinstance(stars, bool) or not 1 <= stars <= 5:
            raise MarketError("stars must be an integer from 1 to 5")
        if len(review) > 4000:
            raise MarketError("a review is at most 4000 characters")
        now = self.clock()
        stored = await self.store.put_rating(Rating(name, user, stars, review, now, now))
        await self._audit("market/rate", "ok", actor, name, {"stars": stars})
        return stored

    async def ratings(self, name: str) -> dict[str, Any]:
        self.entry(name)
        average, count = (await self.store.rating_summary()).get(name, (0.0, 0))
        return {"average": average, "count": count,
                "reviews": [{"user": r.user_id, "stars": r.stars, "review": r.review,
                             "updatedAt": r.updated_at}
                            for r in await self.store.list_ratings(name)]}


def _installable(entry: CatalogEntry) -> dict[str, Any] | None:
    """The first package this machine can install and run over stdio."""
    for package in entry.packages:
        if package.get("registryType") in SUPPORTED and \
                package.get("transport", {}).get("type") == "stdio":
            return package
    return None
