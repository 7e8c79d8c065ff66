"""``mobius token|org|user|rule|audit|access`` as real processes on a real SQLite store."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sec.db'}"


def run(store: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mobius_rpc", *args, "--store", store],
                          capture_output=True, text=True, timeout=60)


def ok(store: str, *args: str) -> str:
    done = run(store, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_organization_its_members_rules_tokens_and_the_decision_explained(
        store: str) -> None:
    ok(store, "user", "create", "ada")
    ok(store, "user", "create", "vic")
    assert ok(store, "org", "create", "Acme", "--owner", "ada", "--id", "acme").strip() == "acme"
    ok(store, "org", "add-member", "acme", "vic", "--role", "viewer")
    members = json.loads(ok(store, "org", "members", "acme", "--json"))
    assert sorted(m["role"] for m in members) == ["owner", "viewer"]
    rule = ok(store, "rule", "add", "--org", "acme", "--effect", "deny", "--subject",
              "role:viewer", "--kind", "tools", "--pattern", "secret_*",
              "--description", "no secrets for viewers").strip()
    rules = json.loads(ok(store, "rule", "list", "--org", "acme", "--json"))
    assert rules[-1]["id"] == rule and rules[-1]["effect"] == "deny"
    explained = ok(store, "access", "explain", "--user", "vic", "--tool", "secret_plans")
    assert explained.splitlines()[1].startswith(f"denied: rule {rule} denies")
    allowed = ok(store, "access", "explain", "--user", "vic", "--tool", "lookup",
                 "--hint", "readOnlyHint=true")
    assert allowed.splitlines()[1].startswith("allowed: rule")
    refused = ok(store, "access", "explain", "--user", "vic", "--tool", "lookup")
    assert "denied" in refused.splitlines()[1]  # unannotated: may destroy, viewers may not
    token = ok(store, "token", "create", "--user", "vic", "--org", "acme", "--scope",
               "tools:call", "--expires", "30d").strip()
    assert token.startswith("mbx_") and len(token) == 47
    listed = ok(store, "token", "list", "--json")
    rows = json.loads(listed)
    assert token not in listed and rows[0]["id"] == token[4:16]
    assert rows[0]["scopes"] == ["tools:call"] and rows[0]["expires_at"] is not None
    ok(store, "token", "revoke", token[4:16])
    assert "revoked" in ok(store, "token", "list")
    ok(store, "user", "disable", "vic")
    assert "(disabled)" in ok(store, "user", "list")
    methods = [r["method"] for r in json.loads(ok(store, "audit", "search", "--json"))]
    assert methods == ["admin/user.create", "admin/user.create", "admin/org.create",
                       "admin/member.set", "admin/rule.add", "admin/token.create",
                       "admin/token.revoke", "admin/user.disable"]
    tail = list(csv.DictReader(io.StringIO(ok(store, "audit", "tail", "-n", "2", "--csv"))))
    assert [r["method"] for r in tail] == ["admin/token.revoke", "admin/user.disable"]
    assert "ok: 8 records checked" in ok(store, "audit", "verify")


def test_verify_catches_an_edited_row_and_exits_1(store: str, tmp_path: Path) -> None:
    ok(store, "user", "create", "ada")
    ok(store, "user", "create", "bob")
    head = ok(store, "audit", "verify").split("head ")[1].strip()
    conn = sqlite3.connect(tmp_path / "sec.db")
    with conn:
        conn.execute("UPDATE audit_records SET target = 'someone else' WHERE seq = 1")
    conn.close()
    done = run(store, "audit", "verify")
    assert done.returncode == 1
    assert "record 1 was edited (hash mismatch)" in done.stdout and "TAMPERED" in done.stdout
    conn = sqlite3.connect(tmp_path / "sec.db")
    with conn:
        conn.execute("DELETE FROM audit_records")
    conn.close()
    assert run(store, "audit", "verify").returncode == 0  # nothing left to contradict...
    cut = run(store, "audit", "verify", "--expect-head", head)
    assert cut.returncode == 1 and "missing at the end" in cut.stdout  # ...but the anchor


ERRORS = [
    (("token", "create", "--user", "ghost", "--org", "acme"), "no user 'ghost'"),
    (("token", "revoke", "nope"), "no active token 'nope'"),
    (("org", "add-member", "nowhere", "ada"), "no organization 'nowhere'"),
    (("rule", "add", "--org", "acme", "--effect", "allow", "--subject", "role:king",
      "--pattern", "*"), "unknown role 'king'"),
    (("token", "create", "--user", "ada", "--org", "acme", "--expires", "soon"), "--expires"),
    (("audit", "search", "--since", "yesterday"), "not a time"),
    (("audit", "tail", "--json", "--csv"), "choose one of --json and --csv"),
    (("user", "create", "ada"), "exists"),
]


def test_errors_are_one_line_with_exit_status_2(store: str) -> None:
    ok(store, "user", "create", "ada")
    ok(store, "org", "create", "Acme", "--owner", "ada", "--id", "acme")
    for args, message in ERRORS:
        done = run(store, *args)
        assert done.returncode == 2, done
        assert message in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_a_bad_store_url_is_a_one_line_error() -> None:
    done = run("bogus:x", "token", "list")
    assert done.returncode == 2 and "unknown store" in done.stderr
    assert "Traceback" not in done.stderr
