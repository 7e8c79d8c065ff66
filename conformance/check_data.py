"""Check the conformance data: requirements, exchanges and corpus (see README.md).

Run from anywhere: `.venv/bin/python conformance/check_data.py`.  The official
schemas come from $MCP_SPEC_DIR or ../shared/mcp-spec next to the repository.
Exit status 1 and a list of problems when anything is off.
"""

import json
import os
import re
import sys
import tomllib
from pathlib import Path

from jsonschema.validators import validator_for

HERE = Path(__file__).resolve().parent
SPEC = Path(os.environ.get("MCP_SPEC_DIR") or HERE.parent.parent / "shared" / "mcp-spec")
LEGACY = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]
MODERN = ["2026-07-28"]
ERA = {"legacy": LEGACY, "modern": MODERN}
EXCHANGE_KEYS = {
    "id",
    "requirements",
    "era",
    "revisions",
    "handshake",
    "needs",
    "transport",
    "steps",
}
STEP_KEYS = {"send", "raw", "http", "expect"}
EXPECT_KEYS = {
    "result",
    "error",
    "response",
    "equals",
    "present",
    "absent",
    "status",
    "result_or_error",
}
SEND_PLACEHOLDERS = {"$id", "$revision", "$tool", "$prompt", "$resource", "$unknown"}
VALUE_PLACEHOLDERS = {"$revision", "$any_supported"}
problems: list[str] = []
bad = lambda where, what: problems.append(f"{where}: {what}")  # noqa: E731


class Schema:
    def __init__(self, rev: str):
        self.root = json.loads((SPEC / rev / "schema.json").read_text())
        self.key = "$defs" if "$defs" in self.root else "definitions"
        self.defs, self.cls, self.cache = self.root[self.key], validator_for(self.root), {}

    def valid(self, name: str, instance) -> bool:
        if name not in self.cache:
            self.cache[name] = self.cls({"$ref": f"#/{self.key}/{name}", self.key: self.defs})
        return self.cache[name].is_valid(instance)

    def client_def(self, method: str, request: bool) -> str | None:
        union = self.defs["ClientRequest" if request else "ClientNotification"]
        for ref in union.get("anyOf", [{"$ref": "/ClientNotification"}]):
            name = ref["$ref"].rsplit("/", 1)[1]
            if self.defs[name]["properties"]["method"].get("const") == method:
                return name
        return None

    def message_ok(self, msg) -> tuple[bool, bool]:
        """(schema-valid, method known) for one client message or a batch."""
        if isinstance(msg, list):
            parts = [self.message_ok(m) for m in msg]
            return (
                "JSONRPCBatchRequest" in self.defs
                and self.valid("JSONRPCBatchRequest", msg)
                and all(p[0] for p in parts),
                all(p[1] for p in parts),
            )
        if not isinstance(msg, dict) or not isinstance(msg.get("method"), str):
            return False, True
        name = self.client_def(msg["method"], "id" in msg)
        envelope = "JSONRPCRequest" if "id" in msg else "JSONRPCNotification"
        return name is not None and self.valid(envelope, msg) and self.valid(
            name, msg
        ), name is not None


SCHEMAS = {rev: Schema(rev) for rev in LEGACY + MODERN}


def walk(value):
    """Every scalar inside a JSON value."""
    items = (
        value.values()
        if isinstance(value, dict)
        else value
        if isinstance(value, list)
        else None
    )
    if items is None:
        yield value
    for v in items or ():
        yield from walk(v)


def revisions(req: dict) -> list[str]:
    r = req.get("revisions")
    return {"all": LEGACY + MODERN, **ERA}.get(r, r) if isinstance(r, str) else r


def check_expect(where: str, exp, revs: list[str]) -> None:
    if not isinstance(exp, dict) or set(exp) - EXPECT_KEYS:
        return bad(where, f"expectations are an object with known keys: {exp}")
    roe = exp.get("result_or_error")
    if roe is not None and (
        set(roe) - {"result", "error", "equals"} or not {"result", "error"} <= set(roe)
    ):
        bad(where, "result_or_error needs result+error (and optional equals)")
    for d in [exp.get("result"), (roe or {}).get("result")]:
        for rev in revs if d and d != "$method" else []:
            if d not in SCHEMAS[rev].defs:
                bad(where, f"{d} is not a definition of {rev}")
    for codes in [exp.get("error"), (roe or {}).get("error")]:
        if codes is not None and not (codes and all(isinstance(c, int) for c in codes)):
            bad(where, "error must be a non-empty list of integer codes")
    for v in walk([exp.get("equals"), (roe or {}).get("equals")]):
        if isinstance(v, str) and v.startswith("$") and v not in VALUE_PLACEHOLDERS:
            bad(where, f"unknown value placeholder {v}")
    if "response" in exp and exp["response"] is not False:
        bad(where, "response may only be false")


def main() -> int:
    reqs = tomllib.loads((HERE / "requirements.toml").read_text())
    for rid, r in reqs.items():
        ok = (
            re.fullmatch(r"[A-Z][A-Z0-9-]+", rid)
            and r.get("level") in {"MUST", "SHOULD", "MAY"}
            and (
                r.get("revisions") in ("all", "legacy", "modern")
                or isinstance(r.get("revisions"), list)
                and set(r["revisions"]) <= set(SCHEMAS)
            )
            and r.get("section")
            and r.get("summary")
            and set(r)
            <= {"level", "revisions", "section", "summary", "untested_reason", "checked_by"}
        )
        if not ok:
            bad(f"requirements.toml [{rid}]", "malformed entry")
    covered, ids = set(), set()
    for path in sorted((HERE / "exchanges").glob("*.json")):
        for ex in json.loads(path.read_text()):
            where = f"{path.name}:{ex.get('id')}"
            if (
                ex.get("id") in ids
                or set(ex) - EXCHANGE_KEYS
                or not {"id", "requirements", "era", "steps"} <= set(ex)
            ):
                bad(where, f"duplicate id or wrong keys {sorted(set(ex) ^ EXCHANGE_KEYS)}")
            ids.add(ex.get("id"))
            revs = ex.get("revisions") or ERA.get(ex.get("era"), [])
            if ex.get("era") not in ERA or not set(revs) <= set(ERA[ex["era"]]):
                bad(where, "era/revisions mismatch")
            if ex.get("transport", "any") not in {"any", "stdio", "http"}:
                bad(where, "unknown transport")
            for rid in ex.get("requirements") or [None]:
                covered.add(rid) if rid in reqs else bad(where, f"unknown requirement {rid}")
                if rid in reqs and not set(revs) & set(revisions(reqs[rid])):
                    bad(where, f"runs on no revision of {rid}")
            for n, st in enumerate(ex.get("steps") or [None]):
                sw = f"{where} step {n}"
                if (
                    not isinstance(st, dict)
                    or set(st) - STEP_KEYS
                    or not ({"send", "raw", "http"} & set(st))
                ):
                    bad(sw, "a step needs send, raw or http and nothing unknown")
                    continue
                if "raw" in st and (
                    len({"send", "http"} & set(st)) or not isinstance(st["raw"], str)
                ):
                    bad(sw, "raw is a string and excludes send/http")
                if "http" in st:
                    method = st["http"].get("method")
                    if (
                        ex.get("transport") != "http"
                        or method not in {"GET", "POST", "DELETE"}
                        or (method == "POST") != ("send" in st)
                        or set(st["http"]) - {"method", "headers"}
                    ):
                        bad(
                            sw,
                            "http steps: transport http; POST carries send, GET/DELETE do not",
                        )
                for v in walk([st.get("send"), st.get("http")]):
                    if isinstance(v, str) and v.startswith("$") and v not in SEND_PLACEHOLDERS:
                        bad(sw, f"unknown placeholder {v}")
                if "status" in st.get("expect", {}) and ex.get("transport") != "http":
                    bad(sw, "status expectations need transport http")
                check_expect(sw, st.get("expect", {}), revs)
    for rid, r in reqs.items():
        if r.get("checked_by"):  # checked by the engine itself (fuzzing, corpora)
            covered.add(rid)
        if (rid in covered) == bool(r.get("untested_reason")):
            bad(
                f"requirements.toml [{rid}]",
                "must be covered by an exchange xor carry untested_reason",
            )
    counts = {}
    for kind in ("valid", "invalid"):
        for path in sorted((HERE / "corpus" / kind).glob("*.json")):
            rev, items = path.stem, json.loads(path.read_text())
            if rev not in SCHEMAS:
                bad(str(path), "file name is not a revision")
                continue
            counts[f"{kind}/{rev}"] = len(items)
            if len({i.get("name") for i in items}) != len(items):
                bad(str(path), "duplicate names")
            for item in items:
                where = f"corpus/{kind}/{rev}:{item.get('name')}"
                if set(item) != {"name", "message", "expect"}:
                    bad(where, "entries have exactly name, message, expect")
                    continue
                check_expect(where, item["expect"], [rev])
                schema_ok, known = SCHEMAS[rev].message_ok(item["message"])
                if kind == "valid" and not (schema_ok and known):
                    bad(where, "does not validate against the official schema")
                if kind == "invalid" and schema_ok:
                    bad(
                        where, "validates against the official schema (and its method is known)"
                    )
    for p in problems:
        print("FAIL", p)
    print(
        f"{len(reqs)} requirements ({len(covered)} covered), {len(ids)} exchanges, corpus {counts}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
