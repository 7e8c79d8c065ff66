"""Publishing the URIs in a forwarded result: every resource URI in content is
made public, nothing else changes, the upstream's result is never modified, and
a result with nothing to publish is passed on without being rebuilt."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mobius_rpc.gateway.router import Router

KEYS = st.sampled_from(["uri", "text", "blob", "type", "content", "contents", "resource",
                        "messages", "name", "other"])
LEAVES = st.one_of(st.none(), st.integers(), st.text(max_size=5),
                   st.sampled_from(["resource_link", "file:///a"]))
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=25)


def expected(router: Router, upstream: str, value: Any) -> Any:
    """What publishing means, written plainly (a fresh copy of everything)."""
    if isinstance(value, list):
        return [expected(router, upstream, v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key == "uri" and isinstance(item, str) and (
                "text" in value or "blob" in value or value.get("type") == "resource_link"):
            out[key] = router.public_uri(upstream, item)
        elif key in ("content", "contents", "resource", "messages"):
            out[key] = expected(router, upstream, item)
        else:
            out[key] = item
    return out


@given(VALUES)
def test_every_content_uri_is_published_and_the_input_is_left_alone(value: Any) -> None:
    router = Router()
    before = copy.deepcopy(value)
    assert router.publish_contents("up", value) == expected(router, "up", value)
    assert value == before


def test_a_text_result_comes_back_as_it_is_and_a_resource_one_is_rewritten() -> None:
    router = Router()
    text = {"content": [{"type": "text", "text": "hi"}], "isError": False}
    assert router.publish_contents("up", text) is text
    read = {"contents": [{"uri": "file:///a", "text": "x"}, {"uri": "file:///b", "blob": ""}]}
    published = router.publish_contents("up", read)
    assert [c["uri"] for c in published["contents"]] == [
        router.public_uri("up", "file:///a"), router.public_uri("up", "file:///b")]
    assert read["contents"][0]["uri"] == "file:///a"
