"""RFC 6570 URI templates: expansion at every level, and reverse matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobius_rpc.server.uritemplate import UriTemplate, is_template

VALUES = {"var": "value", "hello": "Hello World!", "path": "/foo/bar", "empty": "",
          "list": ["red", "green", "blue"], "keys": {"semi": ";", "dot": ".", "comma": ","},
          "x": "1024", "y": "768", "who": "fred", "half": "50%"}

EXPANSIONS = [
    ("{var}", "value"), ("{hello}", "Hello%20World%21"), ("{half}", "50%25"),
    ("{+hello}", "Hello%20World!"), ("{+path}/here", "/foo/bar/here"), ("{+half}", "50%25"),
    ("{#hello}", "#Hello%20World!"), ("{#path,x}/here", "#/foo/bar,1024/here"),
    ("X{.var}", "X.value"), ("X{.x,y}", "X.1024.768"), ("{/var,x}/here", "/value/1024/here"),
    ("{;x,y}", ";x=1024;y=768"), ("{;x,y,empty}", ";x=1024;y=768;empty"),
    ("{?x,y,empty}", "?x=1024&y=768&empty="), ("?fixed=yes{&x}", "?fixed=yes&x=1024"),
    ("{var:3}", "val"), ("{list}", "red,green,blue"), ("{list*}", "red,green,blue"),
    ("{keys}", "semi,%3B,dot,.,comma,%2C"), ("{keys*}", "semi=%3B,dot=.,comma=%2C"),
    ("{/list*}", "/red/green/blue"), ("{?list*}", "?list=red&list=green&list=blue"),
    ("{?keys*}", "?semi=%3B&dot=.&comma=%2C"), ("{+keys}", "semi,;,dot,.,comma,,"),
    ("{undefined}", ""), ("{?undefined,x}", "?x=1024"), ("plain", "plain"),
]


@pytest.mark.parametrize("template, expected", EXPANSIONS)
def test_expansion(template: str, expected: str) -> None:
    assert UriTemplate(template).expand(VALUES) == expected


@pytest.mark.parametrize("bad", ["{", "}", "{var", "a}b{c}", "{=x}", "{x:0}", "{x:abc}",
                                 "{x*:3}", "{a b}"])
def test_malformed_templates_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        UriTemplate(bad)


@pytest.mark.parametrize("template, uri, expected", [
    ("notes://{name}", "notes://welcome", {"name": "welcome"}),
    ("notes://{name}", "notes://", None),
    ("notes://{name}", "notes://a/b", None),
    ("notes://{name}", "other://welcome", None),
    ("file:///{+path}", "file:///a/b/c.txt", {"path": "a/b/c.txt"}),
    ("test://template/{id}/data", "test://template/123/data", {"id": "123"}),
    ("search://q{?term,limit}", "search://q?term=x%20y&limit=5", {"term": "x y", "limit": "5"}),
    ("search://q{?term,limit}", "search://q", {}),
    ("r://{/parts*}", "r:///a/b", {"parts": ["a", "b"]}),
    ("users/{id}{.format}", "users/7.json", {"id": "7", "format": "json"}),
])
def test_matching(template: str, uri: str, expected: dict[str, object] | None) -> None:
    assert UriTemplate(template).match(uri) == expected


def test_variables_and_detection() -> None:
    assert UriTemplate("a{/b,c}{?d}").variables == ("b", "c", "d")
    assert is_template("x://{y}") and not is_template("x://y")


segment = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1,
                  max_size=12)


@given(segment)
def test_simple_variable_round_trips(value: str) -> None:
    template = UriTemplate("notes://{name}/raw")
    assert template.match(template.expand({"name": value})) == {"name": value}


@given(st.lists(segment, min_size=1, max_size=4))
def test_reserved_path_round_trips(parts: list[str]) -> None:
    template = UriTemplate("file:///{+path}")
    path = "/".join(p.replace("%", "") or "x" for p in parts)
    assert template.match(template.expand({"path": path})) == {"path": path}


@given(segment, segment)
def test_query_round_trips(term: str, page: str) -> None:
    template = UriTemplate("search://q{?term,page}")
    assert template.match(template.expand({"term": term, "page": page})) == {
        "term": term, "page": page}


@given(st.lists(segment, min_size=1, max_size=4))
def test_exploded_path_round_trips(parts: list[str]) -> None:
    template = UriTemplate("tree://{/parts*}")
    assert template.match(template.expand({"parts": parts})) == {"parts": parts}
