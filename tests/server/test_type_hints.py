"""JSON Schema from type hints, argument binding and output serialization."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired, Optional, TypedDict

import pytest
from jsonschema import Draft202012Validator

from mobius_rpc.server.context import Context
from mobius_rpc.server.hints import ArgumentError, Param, analyze, object_schema_for_type


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(TypedDict):
    x: int
    y: int
    label: NotRequired[str]


@dataclass
class Box:
    name: str
    corners: list[Point]
    color: Color = Color.RED
    tags: list[str] = field(default_factory=list)


@dataclass
class Node:
    value: int
    children: list[Node] = field(default_factory=list)


def kitchen_sink(
    text: Annotated[str, Param(description="Some text", min_length=1, max_length=5)],
    count: Annotated[int, "How many"],
    ratio: float,
    flag: bool,
    mode: Literal["fast", "slow"],
    color: Color,
    maybe: Optional[int],  # noqa: UP045 - the old spelling must work too
    union: int | str,
    items: list[int],
    pair: tuple[int, str],
    mapping: dict[str, float],
    box: Box,
    ctx: Context,
    anything: Any = None,
    limit: int = 10,
) -> Box:
    """Do everything.

    Args:
        ratio: A ratio between things.
        limit: The most to return.
    """
    return box


def test_schema_from_every_supported_hint() -> None:
    sig = analyze(kitchen_sink, context_type=Context)
    schema = sig.input_schema
    Draft202012Validator.check_schema(schema)
    props = schema["properties"]
    assert sig.context_param == "ctx" and "ctx" not in props
    assert sig.description == "Do everything."
    assert props["text"] == {"type": "string", "description": "Some text", "minLength": 1,
                             "maxLength": 5}
    assert props["count"] == {"type": "integer", "description": "How many"}
    assert props["ratio"] == {"type": "number", "description": "A ratio between things."}
    assert props["flag"] == {"type": "boolean"}
    assert props["mode"] == {"enum": ["fast", "slow"], "type": "string"}
    assert props["color"]["enum"] == ["red", "blue"]
    assert props["maybe"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert props["union"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert props["items"] == {"type": "array", "items": {"type": "integer"}}
    assert props["pair"]["prefixItems"] == [{"type": "integer"}, {"type": "string"}]
    assert props["mapping"] == {"type": "object", "additionalProperties": {"type": "number"}}
    box = props["box"]
    assert box["required"] == ["name", "corners"]
    assert box["properties"]["color"]["default"] == "red"
    assert box["properties"]["corners"]["items"]["required"] == ["x", "y"]
    assert props["anything"] == {"default": None}
    assert props["limit"] == {"type": "integer", "default": 10,
                              "description": "The most to return."}
    assert schema["required"] == ["text", "count", "ratio", "flag", "mode", "color", "maybe",
                                  "union", "items", "pair", "mapping", "box"]
    assert sig.output_schema is not None and sig.output_schema["title"] == "Box"
    assert sig.wraps_output is False


def test_bind_converts_and_reports_the_failing_field() -> None:
    sig = analyze(kitchen_sink, context_type=Context)
    args = {"text": "hi", "count": 2, "ratio": 1, "flag": True, "mode": "fast",
            "color": "blue", "maybe": None, "union": "u", "items": [1, 2], "pair": [1, "a"],
            "mapping": {"a": 1.5}, "box": {"name": "b", "corners": [{"x": 1, "y": 2}],
                                           "color": "blue"}}
    kwargs = sig.bind(args)
    assert kwargs["color"] is Color.BLUE
    assert isinstance(kwargs["ratio"], float)
    assert kwargs["pair"] == (1, "a")
    assert kwargs["box"] == Box("b", [{"x": 1, "y": 2}], Color.BLUE)
    for bad, path in (({**args, "text": ""}, "text"), ({**args, "mode": "medium"}, "mode"),
                      ({**args, "box": {"name": "b", "corners": [{"x": "1", "y": 2}]}},
                       "box.corners.0.x")):
        with pytest.raises(ArgumentError) as info:
            sig.bind(bad)
        assert info.value.path == path
    with pytest.raises(ArgumentError) as info:
        sig.bind({k: v for k, v in args.items() if k != "count"})
    assert "count" in info.value.message


def test_recursive_dataclass_uses_defs_and_round_trips() -> None:
    def walk(tree: Node) -> Node:
        return tree

    sig = analyze(walk)
    Draft202012Validator.check_schema(sig.input_schema)
    assert sig.input_schema["properties"]["tree"] == {"$ref": "#/$defs/Node"}
    assert sig.input_schema["$defs"]["Node"]["properties"]["children"]["items"] == {
        "$ref": "#/$defs/Node"}
    tree = sig.bind({"tree": {"value": 1, "children": [{"value": 2}]}})["tree"]
    assert tree == Node(1, [Node(2)])
    with pytest.raises(ArgumentError):
        sig.bind({"tree": {"value": 1, "children": [{"value": "two"}]}})


def test_output_wrapping_and_serialization() -> None:
    def numbers() -> list[int]:
        return [1, 2]

    def nothing() -> None:
        return None

    def untyped():  # type: ignore[no-untyped-def]
        return 1

    def mapping() -> dict[str, Any]:
        return {}

    wrapped = analyze(numbers)
    assert wrapped.wraps_output is True
    assert wrapped.output_schema == {"type": "object", "required": ["result"], "properties": {
        "result": {"type": "array", "items": {"type": "integer"}}}}
    assert wrapped.serialize_output((1, 2)) == {"result": [1, 2]}
    for fn in (nothing, untyped, mapping):
        assert analyze(fn).output_schema is None
    box = analyze(kitchen_sink, context_type=Context)
    assert box.serialize_output(Box("b", [], Color.BLUE)) == {
        "name": "b", "corners": [], "color": "blue", "tags": []}


def test_unsupported_signatures_fail_at_registration() -> None:
    def star(*args: int) -> None: ...

    def weird(value: complex) -> None: ...

    with pytest.raises(TypeError, match="args"):
        analyze(star)
    with pytest.raises(TypeError, match="complex"):
        analyze(weird)


def test_object_schema_for_elicitation_forms() -> None:
    @dataclass
    class Form:
        name: str
        age: int = 0

    assert object_schema_for_type(Form) == {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "default": 0}}}
    with pytest.raises(TypeError):
        object_schema_for_type(int)
