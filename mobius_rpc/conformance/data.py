"""The checker's data: requirements, recorded exchanges and message corpora.

They live in the repository's ``conformance/`` directory (packaged into the
wheel as ``mobius_rpc/_conformance``), so a new check is a new data entry.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..core.revisions import LEGACY_REVISIONS, MODERN_REVISIONS

__all__ = ("Requirement", "Exchange", "CorpusEntry", "data_dir", "requirements", "exchanges",
           "corpus", "revisions_of")


def data_dir() -> Path:
    """Where the data is: the packaged copy, else the repository checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "_conformance", here.parents[1] / "conformance"):
        if (candidate / "requirements.toml").is_file():
            return candidate
    raise FileNotFoundError("the conformance data (requirements.toml) is not installed")


def revisions_of(spec: Any) -> tuple[str, ...]:
    """``"all"``, ``"legacy"``, ``"modern"`` or an explicit list, as revisions."""
    if spec in (None, "all"):
        return LEGACY_REVISIONS + MODERN_REVISIONS
    if spec == "legacy":
        return LEGACY_REVISIONS
    if spec == "modern":
        return MODERN_REVISIONS
    return tuple(spec)


@dataclass(frozen=True)
class Requirement:
    id: str
    level: str
    revisions: tuple[str, ...]
    section: str
    summary: str
    untested_reason: str | None = None


@dataclass(frozen=True)
class Exchange:
    id: str
    requirements: tuple[str, ...]
    era: str
    steps: tuple[dict[str, Any], ...]
    revisions: tuple[str, ...] | None = None
    handshake: bool = True
    needs: tuple[str, ...] = ()
    transport: str = "any"

    def applies_to(self, revision: str) -> bool:
        era_ok = (revision in MODERN_REVISIONS) == (self.era == "modern")
        return era_ok and (self.revisions is None or revision in self.revisions)


@dataclass(frozen=True)
class CorpusEntry:
    name: str
    revision: str
    valid: bool
    message: Any
    expect: dict[str, Any] = field(default_factory=dict)


@cache
def requirements() -> dict[str, Requirement]:
    raw = tomllib.loads((data_dir() / "requirements.toml").read_text())
    return {key: Requirement(key, value.get("level", "MUST"),
                             revisions_of(value.get("revisions")), value.get("section", ""),
                             value.get("summary", ""), value.get("untested_reason"))
            for key, value in raw.items()}


@cache
def exchanges() -> tuple[Exchange, ...]:
    found: list[Exchange] = []
    for path in sorted((data_dir() / "exchanges").glob("*.json")):
        for entry in json.loads(path.read_text()):
            found.append(Exchange(
                entry["id"], tuple(entry.get("requirements", ())), entry.get("era", "legacy"),
                tuple(entry["steps"]),
                tuple(entry["revisions"]) if entry.get("revisions") else None,
                bool(entry.get("handshake", True)), tuple(entry.get("needs", ())),
                entry.get("transport", "any")))
    return tuple(found)


@cache
def corpus(revision: str) -> tuple[CorpusEntry, ...]:
    entries: list[CorpusEntry] = []
    for kind in ("valid", "invalid"):
        path = data_dir() / "corpus" / kind / f"{revision}.json"
        if path.is_file():
            for item in json.loads(path.read_text()):
                entries.append(CorpusEntry(item["name"], revision, kind == "valid",
                                           item["message"], item.get("expect") or {}))
    return tuple(entries)
