"""One of several processes creating the same organizations at once (a test helper).

``python -m tests.security.org_race_worker URL SCHEMA OWNER COUNT GO_FILE``: opens the
store, prints ``ready``, waits for ``GO_FILE`` to exist (so every worker starts
together), then tries to create organizations ``race-0`` .. ``race-COUNT-1`` in that
order with :func:`mobius_rpc.security.admin.create_organization` (audited).  Right
after each attempt, won or lost, it looks at what the store holds of that
organization and prints one JSON line: ``{"org", "won", "exists", "owners",
"rules"}``.  A loser looks while the winner may still be writing: only an atomic
creation guarantees that it then finds the owner and every rule.
"""

from __future__ import annotations

import json
import os
import sys
import time

import anyio

from mobius_rpc.security.admin import create_organization
from mobius_rpc.security.audit import AuditLog
from mobius_rpc.security.open import open_security_store
from mobius_rpc.security.store import DuplicateError
from mobius_rpc.storage import SqliteOptions


async def main(url: str, schema: str, owner: str, count: int, go: str) -> None:
    options = {"schema": schema, "sqlite": SqliteOptions(poll_interval=0.02)}
    async with open_security_store(url, **options) as (_, security):
        log = AuditLog(security)
        print("ready", flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                raise SystemExit("never told to start")
            time.sleep(0.001)
        for i in range(count):
            org_id = f"race-{i}"
            try:
                await create_organization(security, f"race {i}", owner_user_id=owner,
                                          org_id=org_id, audit=log)
                won = True
            except DuplicateError:
                won = False
            exists = await security.get_organization(org_id) is not None
            owners = len(await security.list_memberships(org_id=org_id))
            rules = len(await security.list_rules(org_id))
            print(json.dumps({"org": org_id, "won": won, "exists": exists, "owners": owners,
                              "rules": rules}), flush=True)


if __name__ == "__main__":
    url, schema, owner, count, go = sys.argv[1:6]
    anyio.run(main, url, schema, owner, int(count), go)
