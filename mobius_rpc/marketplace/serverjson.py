"""Reading a registry ``server.json`` (revision 2025-12-11): validate, then describe.

Validation uses our own JSON Schema (``schemas/registry-server-2025-12-11.schema.json``)
plus the rules a schema cannot say well (a version must be exact: no ranges, no
``latest``).  A refusal names the field, as a path like ``packages[0].transport``,
because the most common publishing mistake is one field deep inside a package and
"invalid document" helps nobody find it.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jsonschema

__all__ = ("SCHEMA_URL", "SCHEMA_REVISION", "ServerJsonError", "validate_server",
           "field_path", "is_exact_version")

SCHEMA_REVISION = "2025-12-11"
#: the ``$schema`` every entry we emit carries
SCHEMA_URL = f"https://static.modelcontextprotocol.io/schemas/{SCHEMA_REVISION}/server.schema.json"
_FILE = f"registry-server-{SCHEMA_REVISION}.schema.json"
#: ranges and wildcards a registry refuses as a version (``^1.2``, ``~1``, ``>=1``, ``1.x``, ``*``)
_RANGE = re.compile(r"[\^~<>=*| ]|(^|\.)[xX](\.|$)")


class ServerJsonError(ValueError):
    """A server.json was refused; ``field`` is the path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


def _schemas_dir() -> Path | Traversable:
    """The source checkout (editable installs) first, then the copy in the wheel."""
    source = Path(__file__).resolve().parents[2] / "schemas"
    if source.is_dir():
        return source
    return resources.files("mobius_rpc") / "_schemas"


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads((_schemas_dir() / _FILE).read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def field_path(parts: Any) -> str:
    """``["packages", 0, "transport"]`` -> ``packages[0].transport``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _deepest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The most specific cause of a combinator failure (``allOf``/``if``/``anyOf``)."""
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    return error


def is_exact_version(version: str) -> bool:
    return version != "latest" and not _RANGE.search(version)


def validate_server(doc: Any) -> dict[str, Any]:
    """``doc`` if it is a valid server.json, else :class:`ServerJsonError` naming the field."""
    if not isinstance(doc, dict):
        raise ServerJsonError("", "a server.json must be a JSON object")
    errors = sorted(_validator().iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)),
                                                                 e.validator != "required"))
    if errors:
        error = _deepest(errors[0])
        path = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [name for name in error.validator_value if name not in error.instance]
            raise ServerJsonError(field_path([*path, missing[0]]), "required field is missing")
        raise ServerJsonError(field_path(path) or "(document)", error.message)
    if not is_exact_version(doc["version"]):
        raise ServerJsonError("version", f"must be one exact version, not {doc['version']!r}")
    for i, package in enumerate(doc.get("packages", [])):
        version = package.get("version")
        if version is not None and not is_exact_version(version):
            raise ServerJsonError(field_path(["packages", i, "version"]),
                                  f"must be one exact version, not {version!r}")
    schema_url = doc.get("$schema")
    if schema_url is not None and "/schemas/" not in schema_url:
        raise ServerJsonError("$schema", f"not a registry schema URL: {schema_url!r}")
    return doc
