"""RFC 6570 URI templates: expansion (levels 1-4) and reverse matching.

Resource templates (``notes://{name}``, ``file:///{+path}``,
``search://q{?term,limit}``) are RFC 6570 templates.  Expansion follows the
RFC's operator table (section 3.2); matching turns a template into a regular
expression that accepts exactly what the template can expand to for simple
values, and returns the percent-decoded values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

__all__ = ("UriTemplate", "is_template")

_EXPRESSION = re.compile(r"\{([^{}]*)\}")
_VARNAME = re.compile(r"^(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})(?:\.?(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2}))*$")
_UNRESERVED = "-._~"
_RESERVED = ":/?#[]@!$&'()*+,;="


@dataclass(frozen=True, slots=True)
class _Operator:
    first: str      # prefix before the first value
    sep: str        # separator between values
    named: bool     # name=value pairs
    if_empty: str   # what follows a name when the value is empty
    allow_reserved: bool


_OPERATORS = {
    "": _Operator("", ",", False, "", False),
    "+": _Operator("", ",", False, "", True),
    "#": _Operator("#", ",", False, "", True),
    ".": _Operator(".", ".", False, "", False),
    "/": _Operator("/", "/", False, "", False),
    ";": _Operator(";", ";", True, "", False),
    "?": _Operator("?", "&", True, "=", False),
    "&": _Operator("&", "&", True, "=", False),
}


@dataclass(frozen=True, slots=True)
class _VarSpec:
    name: str
    explode: bool
    prefix: int | None


@dataclass(frozen=True, slots=True)
class _Expression:
    operator: _Operator
    op_char: str
    variables: tuple[_VarSpec, ...]


def is_template(text: str) -> bool:
    """Whether ``text`` contains at least one ``{...}`` expression."""
    return _EXPRESSION.search(text) is not None


def _encode(value: str, allow_reserved: bool) -> str:
    if allow_reserved:
        # Keep reserved characters and existing pct-encoded triplets.
        parts = re.split(r"(%[0-9A-Fa-f]{2})", value)
        return "".join(p if re.fullmatch(r"%[0-9A-Fa-f]{2}", p)
                       else quote(p, safe=_UNRESERVED + _RESERVED) for p in parts)
    return quote(value, safe=_UNRESERVED)


def _parse_expression(body: str, template: str) -> _Expression:
    op_char = body[:1] if body[:1] in _OPERATORS and body[:1] != "" else ""
    if body[:1] in "=,!@|":
        raise ValueError(f"reserved operator {body[:1]!r} in {template!r}")
    specs: list[_VarSpec] = []
    for raw in body[len(op_char):].split(","):
        explode = raw.endswith("*")
        name = raw[:-1] if explode else raw
        prefix: int | None = None
        if ":" in name:
            name, _, length = name.partition(":")
            if not length.isdigit() or not 0 < int(length) < 10000:
                raise ValueError(f"bad prefix length in {template!r}")
            prefix = int(length)
        if not _VARNAME.match(name) or (explode and prefix is not None):
            raise ValueError(f"bad variable {raw!r} in {template!r}")
        specs.append(_VarSpec(name, explode, prefix))
    return _Expression(_OPERATORS[op_char], op_char, tuple(specs))


class UriTemplate:
    """A parsed template; immutable and reusable."""

    def __init__(self, template: str) -> None:
        self.template = template
        self._parts: list[str | _Expression] = []
        position = 0
        for match in _EXPRESSION.finditer(template):
            literal = template[position:match.start()]
            if "{" in literal or "}" in literal:
                raise ValueError(f"unbalanced braces in {template!r}")
            if literal:
                self._parts.append(literal)
            self._parts.append(_parse_expression(match.group(1), template))
            position = match.end()
        tail = template[position:]
        if "{" in tail or "}" in tail:
            raise ValueError(f"unbalanced braces in {template!r}")
        if tail:
            self._parts.append(tail)
        self.variables: tuple[str, ...] = tuple(
            spec.name for part in self._parts if isinstance(part, _Expression)
            for spec in part.variables)
        self._regex: re.Pattern[str] | None = None

    is_template = staticmethod(is_template)

    def __repr__(self) -> str:
        return f"UriTemplate({self.template!r})"

    # -------------------------------------------------------------- expansion

    def expand(self, values: Mapping[str, Any]) -> str:
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(_encode(part, True))
            else:
                out.append(self._expand_expression(part, values))
        return "".join(out)

    @staticmethod
    def _expand_expression(expr: _Expression, values: Mapping[str, Any]) -> str:
        op = expr.operator
        pieces: list[str] = []
        for spec in expr.variables:
            value = values.get(spec.name)
            if value is None or (isinstance(value, (list, tuple, dict)) and not value):
                continue
            def enc(v: Any) -> str:
                return _encode(str(v), op.allow_reserved)

            if isinstance(value, (list, tuple)):
                items = [enc(v) for v in value]
                if spec.explode:
                    if op.named:
                        pieces.extend(f"{spec.name}={v}" if v else f"{spec.name}{op.if_empty}"
                                      for v in items)
                    else:
                        pieces.extend(items)
                    continue
                joined = ",".join(items)
            elif isinstance(value, dict):
                pairs = [(enc(k), enc(v)) for k, v in value.items()]
                if spec.explode:
                    pieces.extend(f"{k}={v}" for k, v in pairs)
                    continue
                joined = ",".join(f"{k},{v}" for k, v in pairs)
            else:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                if spec.prefix is not None:
                    text = text[:spec.prefix]
                joined = enc(text)
            if op.named:
                pieces.append(f"{spec.name}={joined}" if joined else f"{spec.name}{op.if_empty}")
            else:
                pieces.append(joined)
        return op.first + op.sep.join(pieces) if pieces else ""

    # --------------------------------------------------------------- matching

    def _compile(self) -> re.Pattern[str]:
        if self._regex is not None:
            return self._regex
        pattern: list[str] = []
        for index, part in enumerate(self._parts):
            if isinstance(part, str):
                pattern.append(re.escape(part))
                continue
            op = part.operator
            if part.op_char in ("?", "&"):
                char = "[^&#]"
            elif part.op_char == ";":
                char = "[^;/?#]"
            elif part.op_char in ("+", "#"):
                char = "."  # reserved expansion keeps reserved characters literally
            else:
                char = "[^/?#&,.;]" if part.op_char == "." else "[^/?#&,]"
            # Simple and reserved values must be non-empty so that "notes://"
            # does not match "notes://{name}" with an empty name.
            # Lazy quantifiers let a later optional expression ({.format}, {?q})
            # take its part instead of being swallowed by an earlier variable.
            quant = "+?" if part.op_char in ("", "+") else "*?"
            groups = []
            for n, spec in enumerate(part.variables):
                name = f"v{index}_{n}"
                if spec.explode and not op.named:
                    value = f"(?P<{name}>{char}{quant}(?:{re.escape(op.sep)}{char}{quant})*)"
                else:
                    value = f"(?P<{name}>{char}{quant})"
                groups.append(f"{re.escape(spec.name)}={value}" if op.named else value)
            sep = re.escape(op.sep)
            body = groups[0] + "".join(f"(?:{sep}{g})?" for g in groups[1:])
            if part.op_char in ("", "+") and len(groups) == 1:
                pattern.append(body)  # a lone simple variable is required
            else:
                pattern.append(f"(?:{re.escape(op.first)}{body})?")
        self._regex = re.compile("".join(pattern) + r"\Z")
        return self._regex

    def match(self, uri: str) -> dict[str, str | list[str]] | None:
        """The variable values that expand to ``uri``, or None if it does not fit."""
        found = self._compile().match(uri)
        if found is None:
            return None
        result: dict[str, str | list[str]] = {}
        for index, part in enumerate(self._parts):
            if isinstance(part, str):
                continue
            for n, spec in enumerate(part.variables):
                raw = found.group(f"v{index}_{n}")
                if raw is None:
                    continue
                if spec.explode and not part.operator.named:
                    result[spec.name] = [unquote(v) for v in raw.split(part.operator.sep)]
                else:
                    result[spec.name] = unquote(raw)
        return result
