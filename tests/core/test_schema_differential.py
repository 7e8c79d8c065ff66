"""Our definitions against the official MCP schemas, the oracle.

For every revision and every definition both describe (requests, notifications,
results, envelopes, capabilities, content blocks, ...), instances are drawn
from our compiled definition and from the official one, then half of them are
mutated: a field dropped, retyped, given a wrong constant or enum value, or an
unknown field added, anywhere in the tree.  Our jsonschema-rs validators and
python-jsonschema on the official file (Draft 7 or 2020-12, as its ``$schema``
says) must classify every instance the same way.  The hand-built fixtures of
``test_schema_definitions`` are run through the oracle too.

The official files are read at test time from ``../shared/mcp-spec`` (or
``$MCP_SPEC_DIR``) and never copied into the project; without them these
tests skip.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobius_rpc.core.schema import schema_for
from mobius_rpc.core.schemagen import REVISIONS, compile_revision
from tests.core.test_schema_definitions import FIXTURES

SPEC = Path(os.environ.get("MCP_SPEC_DIR")
            or Path(__file__).resolve().parents[3] / "shared" / "mcp-spec")

pytestmark = pytest.mark.skipif(not SPEC.is_dir(),
                                reason=f"official MCP schemas not found at {SPEC}")

#: Official definitions we deliberately do not define, with the reason.  Empty:
#: every official definition of every revision has a counterpart.
INTENDED_ABSENT: dict[str, str] = {}

#: Our definitions with no official counterpart: shared shapes named once.
HELPERS: dict[str, str] = {
    "Priority": "0..1 number used by Annotations and ModelPreferences",
    "RequestMeta": "the request _meta object (progressToken) before 2026-07-28",
    "Envelope": "jsonrpc: '2.0', shared by every 2025-11-25+ message",
    "RequestEnvelope": "jsonrpc + id of 2025-11-25+ requests and result responses",
    "EnumOption": "{const, title} option of the titled enum schemas",
    "SamplingContent": "content of a 2025-11-25+ sampling message (block or list of blocks)",
    "ToolSchema": "Tool.inputSchema / outputSchema shape of 2025-11-25",
    "TaskIdParams": "params of tasks/get, tasks/result, tasks/cancel",
}

#: Instances where our validators and the oracle may disagree, with the reason.
#: Empty: no intended difference in classification.
INTENDED_DIFFERENCES: dict[tuple[str, str], str] = {}


@cache
def official(revision: str) -> tuple[dict[str, Any], str]:
    document = json.loads((SPEC / revision / "schema.json").read_text())
    return document, ("$defs" if "$defs" in document else "definitions")


@cache
def ours_document(revision: str) -> dict[str, Any]:
    return compile_revision(revision)


@cache
def oracle(revision: str, name: str) -> Any:
    document, key = official(revision)
    cls = jsonschema.validators.validator_for(document)
    return cls({**document, "$ref": f"#/{key}/{name}"})


def shared_names(revision: str) -> list[str]:
    document, key = official(revision)
    return sorted(set(document[key]) & schema_for(revision).names())


CASES = ([(rev, name) for rev in REVISIONS for name in shared_names(rev)]
         if SPEC.is_dir() else [])


# ----------------------------------------------------------------- instance strategies

SCALARS = (st.none() | st.booleans() | st.integers(-1000, 1000)
           | st.floats(-1e6, 1e6, allow_nan=False) | st.text(max_size=8))
WRONG_VALUES = [None, True, 0, -1, 1.5, "", "x", [], {}, [1], {"k": "v"}]


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def instances(document: dict[str, Any], schema: dict[str, Any], depth: int = 0
              ) -> st.SearchStrategy[Any]:
    """Values that ``schema`` (inside ``document``) is meant to accept.

    Covers the JSON Schema subset MCP uses, for both our compiled definitions
    and the official files.  A strategy, not a proof: the oracle decides.
    Built lazily, so recursive definitions (``JSONValue``) stay finite: past a
    depth, lists are empty and objects get only their required fields.
    """
    key = (id(document), _sort_key(schema), min(depth, 7))
    strategy = _STRATEGIES.get(key)
    if strategy is None:
        strategy = _STRATEGIES[key] = st.deferred(lambda: _instances(document, schema, depth))
    return strategy


#: Strategies are costly to build and validate; the documents are long-lived
#: (cached below), so one strategy per (document, subschema, depth) is reused.
_STRATEGIES: dict[tuple[int, str, int], st.SearchStrategy[Any]] = {}


def _instances(document: dict[str, Any], schema: dict[str, Any], depth: int
               ) -> st.SearchStrategy[Any]:
    schema = resolve(document, schema)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([instances(document, s, depth) for s in schema["anyOf"]])
    if "allOf" in schema:
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for part in schema["allOf"]:
            part = resolve(document, part)
            merged["properties"].update(part.get("properties", {}))
            merged["required"] += part.get("required", [])
        return instances(document, merged, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([instances(document, {**schema, "type": k}, depth) for k in kind])
    low, high = schema.get("minimum"), schema.get("maximum")
    if kind == "string":
        return st.text(max_size=12)
    if kind == "integer":
        return st.integers(-10**6 if low is None else int(low),
                           10**6 if high is None else int(high))
    if kind == "number":
        return (st.floats(-1e6 if low is None else low, 1e6 if high is None else high,
                          allow_nan=False)
                | st.integers(-1000 if low is None else int(low),
                              1000 if high is None else int(high)))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        size = 0 if depth > 4 else min(3, schema.get("maxItems", 3))
        return st.lists(instances(document, schema.get("items", {}), depth + 1), max_size=size)
    if kind == "object" or "properties" in schema:
        return objects(document, schema, depth)
    return SCALARS


def objects(document: dict[str, Any], schema: dict[str, Any], depth: int
            ) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = [k for k in schema.get("required", []) if k in properties]
    optional = [k for k in properties if k not in required]
    extra = schema.get("additionalProperties")
    extra_values = instances(document, extra, depth + 1) if isinstance(extra, dict) else SCALARS

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out = {k: draw(instances(document, properties[k], depth + 1)) for k in required}
        for key in optional:
            if depth < 5 and draw(st.booleans()):
                out[key] = draw(instances(document, properties[key], depth + 1))
        if depth < 5 and draw(st.integers(0, 3)) == 0:
            out["x_" + draw(st.text("abcxyz_", min_size=1, max_size=5))] = draw(extra_values)
        return out

    return build()


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, prefix + (index,))
    return found


def replace(value: Any, path: tuple[Any, ...], change: Any) -> Any:
    """A copy of ``value`` with ``change(node)`` applied at ``path``."""
    if not path:
        return change(value)
    out: Any = dict(value) if isinstance(value, dict) else list(value)
    out[path[0]] = replace(value[path[0]], path[1:], change)
    return out


def _drop(node: Any) -> Any:
    if isinstance(node, dict) and node:
        out = dict(node)
        del out[next(iter(out))]
        return out
    if isinstance(node, list) and node:
        return node[1:]
    return None


@st.composite
def mutations(draw: st.DrawFn, valid: Any) -> Any:
    """``valid`` with one change at one node: drop a member, retype, wrong constant, extra field."""
    path = draw(st.sampled_from(paths(valid)))
    action = draw(st.sampled_from(["drop", "retype", "constant", "extra"]))
    if action == "drop":
        return replace(valid, path, _drop)
    if action == "constant":
        wrong = draw(st.sampled_from(["", "bogus", "2.0 ", "user", "tools/call", "text", "1.0"]))
        return replace(valid, path, lambda _: wrong)
    if action == "extra":
        return replace(valid, path,
                       lambda n: {**n, "zz_unknown": [1]} if isinstance(n, dict) else n)
    wrong_value = draw(st.sampled_from(WRONG_VALUES))
    return replace(valid, path, lambda _: wrong_value)


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("revision", REVISIONS)
def test_every_official_definition_has_ours(revision: str) -> None:
    document, key = official(revision)
    ours = schema_for(revision).names()
    missing = set(document[key]) - ours - set(INTENDED_ABSENT)
    assert not missing, f"{revision}: no definition for {sorted(missing)}"
    unexplained = ours - set(document[key]) - set(HELPERS)
    assert not unexplained, f"{revision}: definitions the spec does not have: {sorted(unexplained)}"


def _agree(revision: str, name: str, instance: Any) -> None:
    if (revision, name) in INTENDED_DIFFERENCES:
        return
    expected = oracle(revision, name).is_valid(instance)
    got = schema_for(revision).is_valid(name, instance)
    assert got == expected, (
        f"{revision} {name}: official says {'valid' if expected else 'invalid'}, ours "
        f"{'valid' if got else 'invalid'}: {json.dumps(instance)[:500]}")


@pytest.mark.parametrize(("revision", "name"), CASES, ids=[f"{r}-{n}" for r, n in CASES])
@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(data=st.data())
def test_same_classification_as_the_official_schema(revision: str, name: str,
                                                    data: st.DataObject) -> None:
    document, key = official(revision)
    ours = ours_document(revision)
    for source in ("ours", "official"):
        if source == "ours":
            valid = data.draw(instances(ours, {"$ref": f"#/$defs/{name}"}), label="from ours")
        else:
            valid = data.draw(instances(document, {"$ref": f"#/{key}/{name}"}),
                              label="from official")
        _agree(revision, name, valid)
        _agree(revision, name, data.draw(mutations(valid), label="mutated"))


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f"{f[0]}-{f[1]}-{f[3]}")
def test_fixtures_agree_with_the_official_schema(fixture: tuple[str, str, Any, str]) -> None:
    revision, name, instance, _label = fixture
    _agree(revision, name, instance)


EXAMPLES = SPEC / "2026-07-28" / "examples"


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="no official 2026-07-28 examples")
def test_official_examples_validate_under_ours() -> None:
    schema = schema_for("2026-07-28")
    checked = 0
    for folder in sorted(EXAMPLES.iterdir()):
        for example in sorted(folder.glob("*.json")):
            instance = json.loads(example.read_text())
            assert folder.name in schema.names(), f"no definition {folder.name}"
            schema.check(folder.name, instance)
            checked += 1
    assert checked >= 100


# ----------------------------------------------------------- structural equivalence

def _sort_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def canonical(node: Any, defs: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """``node`` with references inlined and presentation differences erased.

    Erased: descriptions, ``format`` (an annotation; we do not carry it),
    ``additionalProperties`` of ``{}``/``true``, empty ``properties``, a ``type``
    beside ``const``/``enum``, and the order of ``required``, ``type`` lists,
    ``enum`` and ``anyOf``/``allOf`` members.
    """
    if isinstance(node, list):
        return [canonical(v, defs, seen) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = node["$ref"].rsplit("/", 1)[-1]
        if target in seen:  # recursive definition (JSONValue): keep the name
            return {"$ref": target}
        return canonical(defs[target], defs, seen + (target,))
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("description", "$comment", "format") and isinstance(value, str):
            continue
        if key == "additionalProperties" and value in ({}, True):
            continue
        if key == "properties":
            if value:
                out[key] = {k: canonical(v, defs, seen) for k, v in sorted(value.items())}
        elif key in ("required", "enum"):
            out[key] = sorted(value, key=_sort_key)
        elif key == "type" and isinstance(value, list):
            out[key] = sorted(value)
        elif key in ("anyOf", "allOf"):
            out[key] = sorted((canonical(v, defs, seen) for v in value), key=_sort_key)
        else:
            out[key] = canonical(value, defs, seen)
    if ("const" in out or "enum" in out) and isinstance(out.get("type"), str):
        del out["type"]
    return out


def structural_differences(revision: str, ours: dict[str, Any]) -> list[str]:
    document, key = official(revision)
    theirs = document[key]
    return [name for name in sorted(set(theirs) & set(ours))
            if canonical(theirs[name], theirs, (name,)) != canonical(ours[name], ours, (name,))]


@pytest.mark.parametrize("revision", REVISIONS)
def test_structurally_equal_to_the_official_schema(revision: str) -> None:
    assert structural_differences(revision, compile_revision(revision)["$defs"]) == []


def test_structural_comparison_notices_a_change() -> None:
    """The comparison above can fail: weaken one definition and it must be reported."""
    defs = compile_revision("2025-06-18")["$defs"]
    assert structural_differences("2025-06-18", defs) == []
    defs["CallToolRequest"]["properties"]["params"]["required"] = []
    defs["Role"]["enum"].append("system")
    differences = structural_differences("2025-06-18", defs)
    # the weakened definitions and everything that references them, nothing else
    assert {"CallToolRequest", "ClientRequest", "Role", "PromptMessage"} <= set(differences)
    assert "Implementation" not in differences and "PingRequest" not in differences
