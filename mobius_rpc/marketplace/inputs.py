"""A package's inputs (arguments, environment variables) and an organization's values.

Every input an organization may set has a *key*: an environment variable's
name, a named argument's flag (``--db-path``), a positional argument's
``valueHint``, or, for an input whose fixed ``value`` is a template like
``{db}``, each variable's name.  :func:`input_specs` lists them (what ``show``
prints and what the API validates against); :func:`resolve` checks values
against them and builds the argument list and the environment.

Values are checked, not trusted: choices, numbers and booleans by format, and a
``filepath`` must stay inside the extension's working directory (relative, no
``..``), which is all the sandbox lets it see anyway.  Arguments are a list,
never a command line: a value with spaces or quotes is one argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ("InputSpec", "InputError", "MissingConfiguration", "Resolved", "input_specs",
           "resolve")

_VAR = re.compile(r"\{([A-Za-z0-9_.-]+)\}")
MAX_VALUE = 4096


class InputError(ValueError):
    """A configured value is not acceptable for its input."""


class MissingConfiguration(InputError):
    """Required inputs have no value; ``missing`` lists their keys."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__("missing required configuration: " + ", ".join(missing))
        self.missing = missing


@dataclass(frozen=True, slots=True)
class InputSpec:
    key: str
    where: str              # "env" | "argument" | "variable"
    required: bool
    secret: bool
    default: str | None
    description: str
    format: str
    choices: tuple[str, ...]

    def public(self) -> dict[str, Any]:
        return {"key": self.key, "where": self.where, "required": self.required,
                "secret": self.secret, "default": self.default,
                "description": self.description, "format": self.format,
                "choices": list(self.choices)}


def _spec(key: str, where: str, item: Mapping[str, Any]) -> InputSpec:
    return InputSpec(key, where, item.get("isRequired") is True, item.get("isSecret") is True,
                     item.get("default"), str(item.get("description", "")),
                     str(item.get("format", "string")), tuple(item.get("choices", ())))


def _configurable(item: Mapping[str, Any]) -> bool:
    """A named argument with no value, hint, format or default is a bare flag."""
    if "value" in item:
        return False
    return item.get("type") != "named" or any(
        k in item for k in ("valueHint", "format", "default", "isRequired", "choices"))


def _key(item: Mapping[str, Any]) -> str:
    return str(item.get("name") or item.get("valueHint") or "value")


def input_specs(package: Mapping[str, Any]) -> list[InputSpec]:
    """Everything an organization may (or must) configure for ``package``."""
    specs: list[InputSpec] = []
    for where, key in (("argument", "packageArguments"), ("env", "environmentVariables")):
        for item in package.get(key, []):
            if "value" in item:
                for name, var in item.get("variables", {}).items():
                    specs.append(_spec(name, "variable", var))
            elif _configurable(item):
                specs.append(_spec(_key(item), where, item))
    return specs


def _check(spec: InputSpec, value: str) -> str:
    if len(value) > MAX_VALUE or "\x00" in value:
        raise InputError(f"{spec.key}: value too long or contains NUL")
    if spec.choices and value not in spec.choices:
        raise InputError(f"{spec.key}: must be one of {', '.join(spec.choices)}")
    if spec.format == "number":
        try:
            float(value)
        except ValueError:
            raise InputError(f"{spec.key}: must be a number") from None
    elif spec.format == "boolean" and value not in ("true", "false"):
        raise InputError(f"{spec.key}: must be true or false")
    elif spec.format == "filepath" and (value.startswith("/") or ".." in value.split("/")):
        raise InputError(f"{spec.key}: a path relative to the working directory, "
                         "without '..'")
    return value


@dataclass(frozen=True, slots=True)
class Resolved:
    args: list[str]
    env: dict[str, str]


def resolve(package: Mapping[str, Any], values: Mapping[str, str]) -> Resolved:
    """The argument list and environment for ``values``; :class:`MissingConfiguration`
    lists every required key without a value, :class:`InputError` a bad or unknown one."""
    specs = {s.key: s for s in input_specs(package)}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise InputError("unknown configuration: " + ", ".join(unknown))
    missing = [k for k, s in specs.items() if s.required and s.default is None
               and not values.get(k)]
    if missing:
        raise MissingConfiguration(missing)

    def value_of(key: str) -> str | None:
        spec = specs[key]
        given = values.get(key)
        return _check(spec, given) if given else spec.default

    def fixed(item: Mapping[str, Any]) -> str | None:
        text = str(item["value"])
        for name in _VAR.findall(text):
            if name in specs:
                got = value_of(name)
                if got is None:
                    return None
                text = text.replace("{" + name + "}", got)
        return text

    args: list[str] = []
    for item in package.get("packageArguments", []):
        value = fixed(item) if "value" in item else (
            value_of(_key(item)) if _configurable(item) else "")
        if value is None:
            continue
        if item.get("type") == "named":
            args += [str(item["name"])] + ([value] if value else [])
        else:
            args.append(value)
    env: dict[str, str] = {}
    for item in package.get("environmentVariables", []):
        value = fixed(item) if "value" in item else value_of(_key(item))
        if value is not None:
            env[str(item["name"])] = value
    return Resolved(args, env)
