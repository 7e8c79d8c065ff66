"""``mobius serve --stdio`` under the policy and the audit log, on a real subprocess.

The server runs as the local identity (here ``--user``, so the tests do not
depend on the OS user), made in the store on first start; what it is asked is
then read back with the same store's ``mobius audit``/``mobius user`` commands.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.storage.conftest import pg_cluster  # noqa: F401  (the real PostgreSQL fixture)

_INIT = {"protocolVersion": "2025-06-18", "capabilities": {},
         "clientInfo": {"name": "stdio-security-test", "version": "1"}}
_SEARCH = {"name": "search_code", "arguments": {"query": "hello_stdio"}}


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "MOBIUS_HOME": str(tmp_path / "home")}
    env.pop("MOBIUS_STORE", None)
    return env


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir(exist_ok=True)
    (root / "a.py").write_text("def hello_stdio():\n    return 1\n")
    return root


def _cli(tmp_path: Path, url: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "mobius_rpc", *args, "--store", url],
                          capture_output=True, text=True, timeout=60, env=_env(tmp_path))
    assert done.returncode == 0, done.stderr
    return done.stdout


Step = tuple[str, dict[str, Any]] | Callable[[], object]


def _session(tmp_path: Path, url: str, calls: Sequence[Step],
             *extra: str, end: str = "eof") -> tuple[dict[int, dict[str, Any]], str]:
    """Initialize, send ``calls`` one at a time (ids 2, 3, ...; a callable is run in
    its turn instead, e.g. a CLI command changing the store), then end the process by
    closing stdin (``eof``) or by SIGTERM with stdin still open; the answers by id and
    stderr."""
    with subprocess.Popen(
            [sys.executable, "-m", "mobius_rpc", "serve", "--stdio", "--store", url, *extra,
             str(_project(tmp_path))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_env(tmp_path)) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stderr is not None
        answers: dict[int, dict[str, Any]] = {}

        def ask(rid: int, method: str, params: dict[str, Any]) -> None:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method,
                                         "params": params}) + "\n")
            proc.stdin.flush()
            while rid not in answers:
                line = proc.stdout.readline()
                assert line, "the server ended early"
                message = json.loads(line)
                if "id" in message and ("result" in message or "error" in message):
                    answers[message["id"]] = message

        try:
            ask(1, "initialize", _INIT)
            proc.stdin.write('{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
            rid = 1
            for call in calls:
                if callable(call):  # something done elsewhere while the session runs
                    call()
                    continue
                rid += 1
                ask(rid, *call)
            if end == "eof":
                proc.stdin.close()
            else:
                proc.send_signal(signal.SIGTERM)
            proc.stdout.read()  # to its end: the server has exited (or closed stdout)
            err = proc.stderr.read()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    return answers, err


def _records(tmp_path: Path, url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(_cli(tmp_path, url, "audit", "tail", "-n", "1000",
                                                "--json"))
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store: a SQLite file, or a new database on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    import uuid

    import psycopg
    cluster = request.getfixturevalue("pg_cluster")
    name = f"stdio_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url: str = cluster.url(name)
    return url


def test_stdio_calls_are_audited_once_and_the_identity_is_made_once(tmp_path: Path,
                                                                     store: str) -> None:
    url = store
    calls = [("tools/call", _SEARCH), ("resources/read", {"uri": "context://projects"}),
             ("tools/call", _SEARCH)]
    answers, _ = _session(tmp_path, url, calls, "--user", "stdio-alice")
    assert all("result" in answers[i] for i in (2, 4)), answers
    # a second start, ended by SIGTERM: the writer still writes what it holds
    answers, _ = _session(tmp_path, url, [("tools/call", _SEARCH)], "--user", "stdio-alice",
                          end="sigterm")
    assert "result" in answers[2], answers
    users = json.loads(_cli(tmp_path, url, "user", "list", "--json"))
    alice = [u for u in users if u["name"] == "stdio-alice"]
    assert len(alice) == 1, users
    orgs = json.loads(_cli(tmp_path, url, "org", "list", "--json"))
    assert [o["id"] for o in orgs if o["id"] == "personal:stdio-alice"] == \
        ["personal:stdio-alice"], orgs
    records = _records(tmp_path, url)
    uses = [r for r in records if not r["method"].startswith("admin/")]
    assert [(r["method"], r["request_id"]) for r in uses] == [
        ("tools/call", "2"), ("resources/read", "3"), ("tools/call", "4"), ("tools/call", "2")]
    assert {(r["user"], r["organization"], r["auth_method"], r["outcome"]) for r in uses} == \
        {(alice[0]["id"], "personal:stdio-alice", "local", "ok")}
    assert len({r["session"] for r in uses}) == 2  # two sessions, told apart
    made = [r["method"] for r in records if r["method"].startswith("admin/")]
    assert made == ["admin/user.create", "admin/org.create"]  # the first start only
    assert _cli(tmp_path, url, "audit", "verify").startswith("ok: ")


def test_a_rule_denying_the_local_user_a_tool_refuses_it_over_stdio(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    _session(tmp_path, url, [], "--user", "stdio-bob")  # makes bob and his organization
    _cli(tmp_path, url, "rule", "add", "--org", "personal:stdio-bob", "--effect", "deny",
         "--subject", "user:stdio-bob", "--kind", "tools", "--pattern", "search_code")
    answers, _ = _session(tmp_path, url, [("tools/call", _SEARCH),
                                          ("tools/call", {"name": "no_such_tool",
                                                          "arguments": {}})],
                          "--user", "stdio-bob")
    refused, missing = answers[2]["error"], answers[3]["error"]
    assert refused["code"] == missing["code"] == -32602, answers
    assert refused["message"] == "Unknown tool: search_code"  # as if it did not exist
    calls = [(r["target"], r["outcome"], r["detail"].get("rule") is not None)
             for r in _records(tmp_path, url) if r["method"] == "tools/call"]
    # the refusal names the rule that decided; the missing tool is the server's error
    assert calls == [("search_code", "denied", True), ("no_such_tool", "error", False)]
    assert _cli(tmp_path, url, "audit", "verify").startswith("ok: ")


def test_no_audit_keeps_no_records_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    answers, err = _session(tmp_path, url, [("tools/call", _SEARCH)], "--user", "stdio-carol",
                            "--no-audit")
    assert "result" in answers[2], answers
    assert "WARNING: the audit log is OFF (--no-audit)" in err
    assert _records(tmp_path, url) == []


@pytest.mark.parametrize("args, message", [
    (["--org", "nobody-has-this"], "no organization 'nobody-has-this' in the store"),
    (["--user", " "], "--user needs a name"),
])
def test_stdio_identity_errors_are_one_line(tmp_path: Path, args: list[str],
                                            message: str) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    done = subprocess.run([sys.executable, "-m", "mobius_rpc", "serve", "--stdio", "--store",
                           url, *args, str(_project(tmp_path))], capture_output=True,
                          text=True, timeout=60, env=_env(tmp_path), stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mobius serve: {message}"), lines


def test_a_member_of_another_organization_acts_there_with_its_role(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    _cli(tmp_path, url, "user", "create", "stdio-dave")
    _cli(tmp_path, url, "user", "create", "stdio-erin")
    _cli(tmp_path, url, "org", "create", "acme-stdio", "--owner", "stdio-dave")
    _cli(tmp_path, url, "org", "add-member", "acme-stdio", "stdio-erin", "--role", "viewer")
    answers, _ = _session(tmp_path, url, [("tools/call", _SEARCH)], "--user", "stdio-erin",
                          "--org", "acme-stdio")
    assert "result" in answers[2], answers  # viewers may call what is not destructive
    uses = [r for r in _records(tmp_path, url) if r["method"] == "tools/call"]
    org_id = json.loads(_cli(tmp_path, url, "org", "list", "--json"))
    acme = [o["id"] for o in org_id if o["name"] == "acme-stdio"]
    assert [r["organization"] for r in uses] == acme
    users = [u["name"] for u in json.loads(_cli(tmp_path, url, "user", "list", "--json"))]
    assert sorted(users) == ["stdio-dave", "stdio-erin"]  # no personal user made
    done = subprocess.run([sys.executable, "-m", "mobius_rpc", "serve", "--stdio", "--store",
                           url, "--user", "stdio-frank", "--org", "acme-stdio",
                           str(_project(tmp_path))], capture_output=True, text=True,
                          timeout=60, env=_env(tmp_path), stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "is not a member of organization" in done.stderr


def test_a_rule_added_while_the_session_runs_applies_to_its_next_call(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"

    def deny() -> None:
        _cli(tmp_path, url, "rule", "add", "--org", "personal:stdio-gina", "--effect", "deny",
             "--subject", "user:stdio-gina", "--kind", "tools", "--pattern", "search_code")

    answers, _ = _session(tmp_path, url, [("tools/call", _SEARCH), ("tools/call", _SEARCH),
                                          deny, ("tools/call", _SEARCH)],
                          "--user", "stdio-gina")
    assert "result" in answers[2] and "result" in answers[3], answers
    assert answers[4]["error"]["message"] == "Unknown tool: search_code", answers


def test_two_first_starts_at_once_make_one_user_and_one_organization(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    url = f"sqlite:///{tmp_path / 'store.db'}"
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(_session, tmp_path, url, [("tools/call", _SEARCH)], "--user",
                            "stdio-hal") for _ in range(2)]
        answers = [run.result()[0] for run in runs]
    assert all("result" in a[2] for a in answers), answers
    users = [u for u in json.loads(_cli(tmp_path, url, "user", "list", "--json"))
             if u["name"] == "stdio-hal"]
    assert len(users) == 1, users
    orgs = json.loads(_cli(tmp_path, url, "org", "list", "--json"))
    assert [o["id"] for o in orgs] == ["personal:stdio-hal"], orgs
    members = json.loads(_cli(tmp_path, url, "org", "members", "personal:stdio-hal", "--json"))
    assert len(members) == 1, members
    calls = [r for r in _records(tmp_path, url) if r["method"] == "tools/call"]
    assert len(calls) == 2 and {r["user"] for r in calls} == {users[0]["id"]}
    assert _cli(tmp_path, url, "audit", "verify").startswith("ok: ")


def test_the_identity_survives_losing_the_race_to_another_first_start() -> None:
    """Deterministically, what the concurrent starts above may hit: another server makes
    the user and the personal organization between this one's check and its insert."""
    import anyio

    from mobius_rpc.security.admin import create_organization
    from mobius_rpc.security.local import local_identity
    from mobius_rpc.security.store import MemorySecurityStore, Organization, User

    class Racing(MemorySecurityStore):
        async def get_user_by_name(self, name: str) -> User | None:
            found = await super().get_user_by_name(name)
            if found is None and not self.users_made:
                self.users_made = True  # the other server's insert lands now
                await super().create_user(User("other1", name, 0.0))
                return None
            return found

        async def get_organization(self, org_id: str) -> Organization | None:
            found = await super().get_organization(org_id)
            if found is None and not self.orgs_made:
                self.orgs_made = True
                await create_organization(self, "theirs", owner_user_id="other1",
                                          org_id=org_id)
                return None
            return found

    async def run() -> None:
        store = Racing()
        store.users_made = store.orgs_made = False  # type: ignore[attr-defined]
        principal = await local_identity(store, user_name="stdio-ivy")
        assert (principal.user, principal.organization) == ("other1", "personal:stdio-ivy")
        assert [u.id for u in await store.list_users()] == ["other1"]
        assert len(await store.list_memberships(org_id="personal:stdio-ivy")) == 1

    anyio.run(run)
