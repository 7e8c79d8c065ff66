"""The catalog: server.json validation naming the field, the bundled entries, search."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobius_rpc.marketplace import SCHEMA_URL, ServerJsonError, load_bundled, validate_server
from mobius_rpc.marketplace.catalog import Catalog, SearchQuery, entries_from_document
from mobius_rpc.marketplace.inputs import MissingConfiguration, input_specs, resolve

BUNDLED = load_bundled()
GOOD: dict[str, Any] = {
    "$schema": SCHEMA_URL, "name": "io.example/demo", "description": "A demo server",
    "version": "1.2.3",
    "packages": [{"registryType": "npm", "identifier": "demo", "version": "1.2.3",
                  "transport": {"type": "stdio"},
                  "environmentVariables": [{"name": "TOKEN", "isSecret": True,
                                            "isRequired": True}]}]}


def test_bundled_catalog_has_twenty_real_extensions_in_the_current_format() -> None:
    assert len(BUNDLED) >= 20
    assert len({e.name for e in BUNDLED}) == len(BUNDLED)
    for entry in BUNDLED:
        assert entry.server["$schema"] == SCHEMA_URL
        assert entry.category != "uncategorized" and entry.tags
        (package,) = entry.packages
        assert package["registryType"] in ("npm", "pypi")
        assert package["version"] == entry.version  # exact, and the one we verified
    assert {e.registries[0] for e in BUNDLED} == {"npm", "pypi"}


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("description"), "description"),
    (lambda d: d.update(description="x" * 101), "description"),
    (lambda d: d.update(name="no-slash"), "name"),
    (lambda d: d.update(version="^1.2"), "version"),
    (lambda d: d["packages"][0].pop("transport"), "packages[0].transport"),
    (lambda d: d["packages"][0].update(version="latest"), "packages[0].version"),
    (lambda d: d["packages"][0].update(version=">=1"), "packages[0].version"),
    (lambda d: d["packages"][0].update(fileSha256="abc"), "packages[0].fileSha256"),
    (lambda d: d["packages"][0]["transport"].update(type="carrier-pigeon"),
     "packages[0].transport.type"),
    (lambda d: d["packages"][0]["environmentVariables"][0].pop("name"),
     "packages[0].environmentVariables[0].name"),
    (lambda d: d["packages"][0].update(registryType="mcpb"), "packages[0].fileSha256"),
])
def test_a_malformed_server_json_is_refused_naming_the_field(mutate: Any, field: str) -> None:
    doc = copy.deepcopy(GOOD)
    validate_server(copy.deepcopy(doc))
    mutate(doc)
    with pytest.raises(ServerJsonError) as caught:
        validate_server(doc)
    assert caught.value.field == field, str(caught.value)
    assert str(caught.value).startswith(field + ":")


def test_one_bad_entry_in_a_file_refuses_the_file_and_says_which(tmp_path: Path) -> None:
    bad = copy.deepcopy(GOOD)
    bad["packages"][0].pop("identifier")
    with pytest.raises(ServerJsonError) as caught:
        entries_from_document({"servers": [GOOD, {"server": bad}]}, "file")
    assert caught.value.field == "servers[1].packages[0].identifier"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["name", "description", "version", "packages", "title",
                                        "remotes", "repository"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=5),
                                 st.lists(st.integers(), max_size=2))))
def test_arbitrary_documents_are_accepted_or_refused_never_crash(doc: dict[str, Any]) -> None:
    try:
        validate_server(doc)
    except ServerJsonError as exc:
        assert exc.field  # always names where


def test_search_over_name_title_description_and_tags() -> None:
    catalog = Catalog(BUNDLED)
    names = lambda q: [e.name for e in catalog.search(q).items]  # noqa: E731
    assert "io.github.modelcontextprotocol/mcp-server-git" in names(SearchQuery(text="git"))
    assert set(names(SearchQuery(text="knowledge graph"))) == {
        "io.github.itseasy21/mcp-knowledge-graph", "io.github.modelcontextprotocol/server-memory"}
    assert names(SearchQuery(text="spreadsheet")) and all(
        "excel" in n for n in names(SearchQuery(text="spreadsheet")))
    assert names(SearchQuery(text="no-such-word-anywhere")) == []
    assert set(names(SearchQuery(category="databases", limit=100))) == {
        e.name for e in BUNDLED if e.category == "databases"}
    assert all(e.registries == ("pypi",) for e in catalog.search(
        SearchQuery(registry="pypi", limit=100)).items)
    assert names(SearchQuery(needs_secrets=True)) == ["io.github.runekaagaard/mcp-alchemy"]
    assert len(names(SearchQuery(transport="stdio", limit=100))) == len(BUNDLED)
    assert names(SearchQuery(transport="sse")) == []


def test_sort_by_installs_and_rating_and_paginate() -> None:
    catalog = Catalog(BUNDLED)
    a, b = BUNDLED[3].name, BUNDLED[7].name
    top = catalog.search(SearchQuery(sort="installs", limit=2), installs={a: 2, b: 5})
    assert [e.name for e in top.items] == [b, a]
    rated = catalog.search(SearchQuery(sort="rating", limit=2),
                           ratings={a: (4.5, 2), b: (3.0, 9)})
    assert [e.name for e in rated.items] == [a, b]
    seen, cursor = [], None
    while True:
        page = catalog.search(SearchQuery(sort="name", limit=5, cursor=cursor))
        assert page.total == len(BUNDLED)
        seen += [e.name for e in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(e.name for e in BUNDLED)
    for bad in (SearchQuery(sort="price"), SearchQuery(cursor="abc"), SearchQuery(limit=0),
                SearchQuery(cursor="-5")):
        with pytest.raises(ValueError):
            catalog.search(bad)


def test_inputs_resolve_to_an_argument_list_and_environment() -> None:
    everything = {e.name: e for e in BUNDLED}
    alchemy = everything["io.github.runekaagaard/mcp-alchemy"].packages[0]
    with pytest.raises(MissingConfiguration) as caught:
        resolve(alchemy, {})
    assert caught.value.missing == ["DB_URL"]
    assert resolve(alchemy, {"DB_URL": "sqlite:///a b.db"}).env == {"DB_URL": "sqlite:///a b.db"}
    sqlite = everything["io.github.modelcontextprotocol/mcp-server-sqlite"].packages[0]
    assert [s.key for s in input_specs(sqlite)] == ["db"]
    assert resolve(sqlite, {}).args == ["--db-path", "data.db"]
    # a value with spaces and shell syntax stays one argument
    assert resolve(sqlite, {"db": "x; rm -rf y.db"}).args == ["--db-path", "x; rm -rf y.db"]
    with pytest.raises(ValueError, match="relative"):
        resolve(sqlite, {"db": "/etc/passwd"})
    with pytest.raises(ValueError, match="relative"):
        resolve(sqlite, {"db": "../../x.db"})
    with pytest.raises(ValueError, match="unknown configuration: nope"):
        resolve(sqlite, {"nope": "1"})
    duck = everything["io.github.motherduckdb/mcp-server-motherduck"].packages[0]
    assert resolve(duck, {}).args == ["--db-path", ":memory:", "--read-write"]


def test_the_schema_file_is_our_own_json_schema() -> None:
    root = Path(__file__).resolve().parents[2] / "schemas"
    schema = json.loads((root / "registry-server-2025-12-11.schema.json").read_text())
    assert schema["$id"].startswith("mobius-rpc:")
