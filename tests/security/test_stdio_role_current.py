"""A stdio session's role is the store's current one, not the one it started with.

A real ``mobius serve --stdio`` subprocess runs as the owner of its personal
organization; while it runs, the CLI (another process) demotes the user to viewer
and then removes the membership.  The session's next call obeys each change: a
call of a tool not marked read-only is refused once the user is a viewer (and the
refusal is on record), a read-only tool still answers, and after the removal
everything is refused.  On SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import time
from pathlib import Path

from mobius_rpc.security.epoch import DEFAULT_POLL
from mobius_rpc.security.middleware import UNAUTHENTICATED
from tests.security.test_stdio_security import (  # store: the fixture, SQLite or PostgreSQL
    _SEARCH,
    _cli,
    _records,
    _session,
    store,  # noqa: F401
)
from tests.storage.conftest import pg_cluster  # noqa: F401  (the real PostgreSQL fixture)

_REINDEX = {"name": "reindex", "arguments": {}}  # readOnlyHint False: no viewer's call
ORG = "personal:stdio-rita"


def test_a_demotion_and_a_removal_apply_to_the_sessions_next_call(tmp_path: Path,
                                                                   store: str  # noqa: F811
                                                                   ) -> None:
    url = store

    def change(*args: str) -> None:
        _cli(tmp_path, url, "org", *args)
        if url.startswith("postgresql"):
            # another process's change reaches a PostgreSQL session by notice, or at the
            # latest by the epoch's safety read after DEFAULT_POLL seconds (the documented
            # window, docs/security.md): wait the window out, so the next call is after it
            time.sleep(DEFAULT_POLL + 0.3)

    def demote() -> None:
        change("add-member", ORG, "stdio-rita", "--role", "viewer")

    def remove() -> None:
        change("remove-member", ORG, "stdio-rita")

    calls = [("tools/call", _REINDEX), demote, ("tools/call", _REINDEX),
             ("tools/call", _SEARCH), remove, ("tools/call", _SEARCH), ("tools/list", {})]
    answers, _ = _session(tmp_path, url, calls, "--user", "stdio-rita")
    assert "result" in answers[2], answers  # the owner may reindex
    assert answers[3]["error"]["message"] == "Unknown tool: reindex", answers  # a viewer not
    assert "result" in answers[4], answers  # but may still search (read-only)
    for rid in (5, 6):  # no longer a member: nothing at all
        assert answers[rid]["error"]["code"] == UNAUTHENTICATED, answers
        assert "is no longer a member of organization" in answers[rid]["error"]["message"]
    records = _records(tmp_path, url)
    user_id = next(r["user"] for r in records if r["method"] == "tools/call")
    uses = [(r["method"], r["target"], r["outcome"], r["user"], r["organization"])
            for r in records if not r["method"].startswith("admin/")]
    assert uses == [("tools/call", "reindex", "ok", user_id, ORG),
                    ("tools/call", "reindex", "denied", user_id, ORG),
                    ("tools/call", "search_code", "ok", user_id, ORG),
                    ("tools/call", "search_code", "denied", user_id, ORG),
                    ("tools/list", None, "denied", user_id, ORG)], uses
    assert [r["method"] for r in records if r["method"].startswith("admin/member")] == \
        ["admin/member.set", "admin/member.remove"], records
    assert _cli(tmp_path, url, "audit", "verify").startswith("ok: ")


def test_a_disabled_user_is_refused_from_the_next_call(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"

    def disable() -> None:
        _cli(tmp_path, url, "user", "disable", "stdio-sam")

    answers, _ = _session(tmp_path, url, [("tools/call", _SEARCH), disable,
                                          ("tools/call", _SEARCH)], "--user", "stdio-sam")
    assert "result" in answers[2], answers
    assert answers[3]["error"]["code"] == UNAUTHENTICATED, answers
    assert answers[3]["error"]["message"] == "user 'stdio-sam' is disabled"
