"""JSON Schema from Python type hints, argument binding, output serialization.

A tool, prompt or resource handler is an ordinary function; its signature is
the contract.  :func:`analyze` reads the type hints once, at registration:

* the parameters become an object schema (``inputSchema``): ``str``, ``int``,
  ``float``, ``bool``, ``None``, ``Optional``/unions, ``Literal``, ``Enum``,
  lists/tuples/sets, ``dict[str, X]``, ``TypedDict``, dataclasses (recursive
  ones through ``$defs``), ``Annotated[X, "description"]`` or
  ``Annotated[X, Param(...)]``, defaults, and Google-style ``Args:``
  descriptions from the docstring;
* a dataclass or TypedDict return type becomes the ``outputSchema``; other
  typed returns (``int``, ``list[str]`` ...) are wrapped as ``{"result": ...}``
  because structured content must be an object;
* :meth:`Signature.bind` validates arguments (compiled jsonschema-rs) and
  converts them to the declared Python types; errors name the field.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs

__all__ = ("Param", "ArgumentError", "Signature", "analyze", "object_schema_for_type",
           "to_jsonable")

_NoneType = type(None)


@dataclass(frozen=True, slots=True)
class Param:
    """Schema details for a parameter: ``Annotated[int, Param(minimum=0)]``."""

    description: str | None = None
    title: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    examples: list[Any] | None = None
    #: 2026-07-28 Streamable HTTP: mirror this argument into ``Mcp-Param-<header>``
    header: str | None = None

    def apply(self, schema: dict[str, Any]) -> dict[str, Any]:
        for key, value in (("description", self.description), ("title", self.title),
                           ("minimum", self.minimum), ("maximum", self.maximum),
                           ("minLength", self.min_length), ("maxLength", self.max_length),
                           ("pattern", self.pattern), ("examples", self.examples),
                           ("x-mcp-header", self.header)):
            if value is not None:
                schema[key] = value
        return schema


class ArgumentError(Exception):
    """Arguments that do not fit the signature; ``path`` is dotted ('' = root)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__total__")


class _SchemaBuilder:
    """Turns types into schemas, collecting recursive definitions in ``defs``."""

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}
        self._building: set[str] = set()
        self._recursive: set[str] = set()

    def schema(self, tp: Any) -> dict[str, Any]:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        out: dict[str, Any]
        if origin in (typing.NotRequired, typing.Required):
            return self.schema(args[0])  # TypedDict key markers; __required_keys__ decides
        if origin is typing.Annotated:
            out = self.schema(args[0])
            for extra in args[1:]:
                if isinstance(extra, Param):
                    extra.apply(out)
                elif isinstance(extra, str):
                    out["description"] = extra
            return out
        if tp is Any or tp is inspect.Parameter.empty or tp is object:
            return {}
        if tp is None or tp is _NoneType:
            return {"type": "null"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if origin is typing.Literal:
            values = list(args)
            out = {"enum": values}
            kinds = {_json_type(v) for v in values}
            if len(kinds) == 1 and None not in kinds:
                out["type"] = kinds.pop()
            return out
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            values = [member.value for member in tp]
            out = {"enum": values, "title": tp.__name__}
            kinds = {_json_type(v) for v in values}
            if len(kinds) == 1 and None not in kinds:
                out["type"] = kinds.pop()
            return out
        if origin in (typing.Union, types.UnionType):
            arms = [a for a in args if a is not _NoneType]
            schemas = [self.schema(a) for a in arms]
            if len(arms) < len(args):
                schemas.append({"type": "null"})
            return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
        if origin in (list, set, frozenset, Sequence, typing.Sequence) or tp in (list, set):
            item = self.schema(args[0]) if args else {}
            out = {"type": "array", "items": item}
            if origin in (set, frozenset):
                out["uniqueItems"] = True
            return out
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": self.schema(args[0])}
            return {"type": "array", "prefixItems": [self.schema(a) for a in args],
                    "minItems": len(args), "maxItems": len(args)}
        if origin in (dict, Mapping, typing.Mapping) or tp is dict:
            value = self.schema(args[1]) if len(args) == 2 else {}
            return {"type": "object", "additionalProperties": value}
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self._named(tp, self._dataclass)
        if _is_typeddict(tp):
            return self._named(tp, self._typeddict)
        raise TypeError(f"cannot derive a JSON Schema from type {tp!r}")

    def _named(self, tp: type, build: Callable[[type], dict[str, Any]]) -> dict[str, Any]:
        name = tp.__name__
        if name in self._building:
            self._recursive.add(name)
            return {"$ref": f"#/$defs/{name}"}
        self._building.add(name)
        try:
            out = build(tp)
        finally:
            self._building.discard(name)
        if name in self._recursive:
            self.defs[name] = out
            return {"$ref": f"#/$defs/{name}"}
        return out

    def _dataclass(self, tp: type) -> dict[str, Any]:
        hints = typing.get_type_hints(tp, include_extras=True)
        props: dict[str, Any] = {}
        required: list[str] = []
        for f in dataclasses.fields(tp):
            prop = self.schema(hints[f.name])
            if f.default is not dataclasses.MISSING:
                prop["default"] = to_jsonable(f.default)
            elif f.default_factory is dataclasses.MISSING:
                required.append(f.name)
            props[f.name] = prop
        return _object(props, required, tp.__name__)

    def _typeddict(self, tp: type) -> dict[str, Any]:
        hints = typing.get_type_hints(tp, include_extras=True)
        # Decide from the resolved hints: with postponed annotations, Python 3.11's
        # TypedDict cannot see NotRequired[...] and reports every key as required.
        total = getattr(tp, "__total__", True)
        required = []
        for name, hint in hints.items():
            marker = typing.get_origin(hint)
            if marker is typing.Required or (total and marker is not typing.NotRequired):
                required.append(name)
        props = {name: self.schema(hint) for name, hint in hints.items()}
        return _object(props, required, tp.__name__)


def _object(props: dict[str, Any], required: list[str], title: str | None = None
            ) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    if title:
        out["title"] = title
    return out


def _json_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


_PLAIN = frozenset({str, int, float, bool, type(None)})


def to_jsonable(value: Any) -> Any:
    """Dataclasses, Enums, tuples and sets -> plain JSON-compatible values."""
    if type(value) in _PLAIN:
        return value  # most tool results: no need for the checks below
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    return value


def _converts(tp: Any) -> bool:
    """Whether :func:`_convert` may change a value of type ``tp`` (False: the JSON
    value already is the Python one, and binding can skip the type inspection)."""
    if tp is str or tp is int or tp is bool or tp is Any:
        return False
    origin = typing.get_origin(tp)
    if origin in (typing.Annotated, typing.NotRequired, typing.Required):
        return _converts(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return any(arm is not _NoneType and _converts(arm) for arm in typing.get_args(tp))
    return True


def _convert(tp: Any, value: Any) -> Any:
    """A validated JSON value -> the declared Python type (best effort, never lossy)."""
    if tp is str or tp is int or tp is bool or tp is Any:
        return value  # what the JSON value already is: skip the type inspection below
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Annotated, typing.NotRequired, typing.Required):
        return _convert(args[0], value)
    if value is None:
        return None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type) and isinstance(value, dict):
        hints = typing.get_type_hints(tp, include_extras=True)
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        return tp(**{k: _convert(hints[k], v) for k, v in value.items() if k in names})
    if _is_typeddict(tp) and isinstance(value, dict):
        hints = typing.get_type_hints(tp, include_extras=True)
        return {k: _convert(hints[k], v) if k in hints else v for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            if arm is _NoneType:
                continue
            try:
                converted = _convert(arm, value)
            except (TypeError, ValueError):
                continue
            if converted is not value or not (dataclasses.is_dataclass(arm) or _is_typeddict(arm)):
                return converted
        return value
    if origin in (list, Sequence, typing.Sequence) and isinstance(value, list):
        return [_convert(args[0], v) for v in value] if args else value
    if origin in (set, frozenset) and isinstance(value, list):
        return origin(_convert(args[0], v) for v in value) if args else origin(value)
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=False))
    if origin in (dict, Mapping, typing.Mapping) and isinstance(value, dict) and len(args) == 2:
        return {k: _convert(args[1], v) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^\s+(\*{0,2}\w+)(?:\s*\([^)]*\))?:\s*(.+)$")


def _docstring_parts(fn: Callable[..., Any]) -> tuple[str | None, dict[str, str]]:
    doc = inspect.getdoc(fn)
    if not doc:
        return None, {}
    lines = doc.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _ARGS_HEADER.match(line):
            break
        summary.append(line.strip())
    params: dict[str, str] = {}
    in_args = False
    for line in lines:
        if _ARGS_HEADER.match(line):
            in_args = True
            continue
        if in_args:
            if line and not line[0].isspace():
                break
            found = _ARG_LINE.match(line)
            if found:
                params[found.group(1)] = found.group(2).strip()
    return (" ".join(summary) or None), params


@dataclass(frozen=True)
class Signature:
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    wraps_output: bool
    context_param: str | None
    description: str | None
    _hints: dict[str, Any] = field(repr=False, default_factory=dict)
    _validator: Any = field(repr=False, default=None)
    #: the declared type of each parameter whose value binding converts
    _converting: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        converting = {name: hint for name, hint in self._hints.items() if _converts(hint)}
        object.__setattr__(self, "_converting", converting)

    def bind(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validated, converted keyword arguments; raises :class:`ArgumentError`."""
        args = dict(arguments or {})
        if self._validator is not None and not self._validator.is_valid(args):
            error = next(iter(self._validator.iter_errors(args)))
            path = ".".join(str(p) for p in error.instance_path)
            raise ArgumentError(path, error.message)
        properties = self.input_schema.get("properties", {})
        converting = self._converting
        return {name: _convert(converting[name], value) if name in converting else value
                for name, value in args.items() if name in properties}

    def serialize_output(self, value: Any) -> Any:
        data = to_jsonable(value)
        return {"result": data} if self.wraps_output else data


def analyze(fn: Callable[..., Any], *, context_type: type | None = None,
            input_schema: dict[str, Any] | None = None) -> Signature:
    """Read ``fn``'s signature once; raises ``TypeError`` for what cannot be described.

    An explicit ``input_schema`` is published and enforced verbatim instead of
    the derived one (the parameters still receive the arguments by name).
    """
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except NameError as exc:
        raise TypeError(f"cannot resolve the type hints of {fn.__qualname__}: {exc}") from None
    summary, arg_docs = _docstring_parts(fn)
    builder = _SchemaBuilder()
    props: dict[str, Any] = {}
    required: list[str] = []
    context_param: str | None = None
    for name, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{fn.__qualname__}: *args/**kwargs cannot become a schema")
        hint = hints.get(name, Any)
        bare = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
        if context_type is not None and isinstance(bare, type) and issubclass(bare,
                                                                              context_type):
            context_param = name
            continue
        prop = builder.schema(hint)
        if name in arg_docs and "description" not in prop:
            prop["description"] = arg_docs[name]
        if param.default is param.empty:
            required.append(name)
        else:
            prop["default"] = to_jsonable(param.default)
        props[name] = prop
    if input_schema is None:
        input_schema = _object(props, required)
        if builder.defs:
            input_schema["$defs"] = builder.defs
    elif input_schema.get("type") != "object":
        raise TypeError("an explicit input schema must describe an object")
    output_schema, wraps = _output_schema(hints.get("return", inspect.Parameter.empty))
    validator = jsonschema_rs.validator_for(input_schema)
    return Signature(input_schema, output_schema, wraps, context_param, summary,
                     {k: v for k, v in hints.items() if k != "return"}, validator)


def _output_schema(tp: Any) -> tuple[dict[str, Any] | None, bool]:
    if tp is inspect.Parameter.empty or tp is Any or tp is None or tp is _NoneType:
        return None, False
    origin = typing.get_origin(tp)
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
        origin = typing.get_origin(tp)
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        return None, False  # an untyped mapping says nothing about its shape
    if origin in (list, Sequence, typing.Sequence) and typing.get_args(tp) and (
            typing.get_origin(typing.get_args(tp)[0]) in (dict, Mapping, typing.Mapping)
            or typing.get_args(tp)[0] in (dict, Any)):
        return None, False  # a list of untyped objects: content blocks, usually
    if origin in (typing.Union, types.UnionType) or inspect.isawaitable(tp):
        return None, False
    builder = _SchemaBuilder()
    try:
        schema = builder.schema(tp)
    except TypeError:
        return None, False
    if builder.defs:
        schema = {**schema, "$defs": builder.defs}
    if schema.get("type") == "object" and "$ref" not in schema:
        return schema, False
    wrapped = _object({"result": schema}, ["result"])
    if "$defs" in schema:
        wrapped["$defs"] = schema.pop("$defs")
    return wrapped, True


def object_schema_for_type(tp: type) -> dict[str, Any]:
    """The flat object schema of a dataclass or TypedDict (used for elicitation forms)."""
    builder = _SchemaBuilder()
    schema = builder.schema(tp)
    if schema.get("type") != "object":
        raise TypeError(f"{tp!r} does not describe an object")
    schema.pop("title", None)
    return schema
