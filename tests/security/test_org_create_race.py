"""Several processes creating the same organizations at once, on one SQLite file and
on a real PostgreSQL: each organization ends with one owner and one set of rules,
exactly one creator wins, and a loser, looking the moment it lost (while the
winner could still be writing, were creation not one transaction), already finds
the owner and every default rule.  The audit log has one record per organization.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from mobius_rpc.security.audit import AuditLog
from mobius_rpc.security.open import open_security_store
from mobius_rpc.security.policy import DEFAULT_RULES
from mobius_rpc.security.store import AuditQuery, User
from tests.storage.conftest import FAST_SQLITE, make_target, pg_cluster  # noqa: F401

WORKERS = 4
ORGS = 12
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_creators_make_each_organization_once_and_whole(
        tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    target = make_target(backend, tmp_path, request)
    options = {"schema": target.schema, "sqlite": FAST_SQLITE}

    async def setup() -> None:
        async with open_security_store(target.url, **options) as (_, security):
            await security.create_user(User("u-race", "racer", 0.0))
    anyio.run(setup)

    go = tmp_path / "go"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tests.security.org_race_worker", target.url, target.schema,
         "u-race", str(ORGS), str(go)], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for _ in range(WORKERS)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr
        go.touch()
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in outputs]
    seen = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    assert len(seen) == WORKERS * ORGS
    for i in range(ORGS):
        views = [v for v in seen if v["org"] == f"race-{i}"]
        assert sum(v["won"] for v in views) == 1, views
        # every creator, winner or loser, saw the organization whole at once
        assert all((v["exists"], v["owners"], v["rules"]) == (True, 1, len(DEFAULT_RULES))
                   for v in views), views

    async def check() -> None:
        async with open_security_store(target.url, **options) as (_, security):
            orgs = sorted(o.id for o in await security.list_organizations())
            assert orgs == sorted(f"race-{i}" for i in range(ORGS))
            for org_id in orgs:
                members = await security.list_memberships(org_id=org_id)
                assert [(m.user_id, m.role) for m in members] == [("u-race", "owner")]
                assert len(await security.list_rules(org_id)) == len(DEFAULT_RULES)
            made = await security.list_audit(AuditQuery(method="admin/org.create"))
            assert sorted(r.target or "" for r in made) == orgs
            assert (await AuditLog(security).verify()).ok
    anyio.run(check)
