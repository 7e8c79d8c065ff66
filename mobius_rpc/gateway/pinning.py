"""Pinned tool definitions: what was approved is what is served.

An upstream can change a tool's description or schema after a user trusted
it (a "rug pull": the same name, new instructions for the model).  So the
gateway records, when an upstream's tools are approved, the canonical digest
(SHA-256 of sorted-key JSON) of each tool's full definition (name, title,
description, input and output schema, annotations) and of the whole set.
Afterwards a tool is served only while its digest matches its pin: a changed
or added tool is held back (neither listed nor callable) until an admin
approves it (``mobius gateway approve``); a removed or renamed one shows in
the diff.  Every change seen and every approval goes to the audit log.

Modes: ``tofu`` (trust on first use: an upstream never approved before has
its first tool set approved automatically, and audited as such), ``strict``
(nothing until approved), ``off``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..security.audit_chain import digest
from ..security.principal import AuthMethod, Principal
from .pinstore import PinStore, SetPin, ToolPin

__all__ = ("PINNED_FIELDS", "AuditSink", "ToolChange", "Pinning", "tool_digest", "set_digest")

log = logging.getLogger("mobius_rpc.gateway")

#: the parts of a tool definition a pin covers
PINNED_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
#: who approved a first tool set automatically
FIRST_USE = "trust-on-first-use"


class AuditSink(Protocol):
    """Where pin changes and approvals are recorded: an :class:`~..security.audit.AuditLog`,
    or something that opens one when first needed (``gateway_cli.StorePins``)."""

    async def append(self, **fields: Any) -> Any: ...


def tool_digest(definition: dict[str, Any]) -> str:
    """The canonical digest of a tool's definition (only :data:`PINNED_FIELDS`)."""
    return digest({k: definition[k] for k in PINNED_FIELDS if k in definition})


def set_digest(digests: dict[str, str]) -> str:
    """The digest of a whole tool set, from each tool's digest (order-free)."""
    return digest(sorted(digests.items()))


@dataclass(frozen=True, slots=True)
class ToolChange:
    """One difference between an upstream's tools now and what was approved."""

    upstream: str
    tool: str
    #: "added", "changed" or "removed"
    change: str
    approved: dict[str, Any] | None
    current: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"upstream": self.upstream, "tool": self.tool,
                               "change": self.change}
        if self.change == "changed" and self.approved is not None and self.current is not None:
            out["fields"] = sorted(k for k in PINNED_FIELDS
                                   if self.approved.get(k) != self.current.get(k))
        return out


class Pinning:
    """Decides which upstream tools are served, against a :class:`PinStore`."""

    def __init__(self, store: PinStore, *, mode: str = "tofu", audit: AuditSink | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if mode not in ("tofu", "strict", "off"):
            raise ValueError("pinning mode is 'tofu', 'strict' or 'off'")
        self.store = store
        self.mode = mode
        self.audit = audit
        self.clock = clock
        #: upstream -> set digest of the last change reported (audit once per change)
        self._reported: dict[str, str] = {}

    async def diff(self, upstream: str, tools: Sequence[dict[str, Any]]) -> list[ToolChange]:
        pins = await self.store.pins(upstream)
        return _diff(upstream, tools, pins)

    async def admit(self, upstream: str, tools: Sequence[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
        """The tools of ``upstream`` that may be served; holds back (and audits) the rest."""
        if self.mode == "off":
            return list(tools)
        pins = await self.store.pins(upstream)
        if not pins and self.mode == "tofu" and await self.store.tool_set(upstream) is None:
            await self.approve(upstream, tools, by=FIRST_USE)
            return list(tools)
        admitted = [t for t in tools if (pin := pins.get(t.get("name", ""))) is not None
                    and pin.digest == tool_digest(t)]
        changes = _diff(upstream, tools, pins)
        current = set_digest({t["name"]: tool_digest(t) for t in tools})
        if changes and self._reported.get(upstream) != current:
            self._reported[upstream] = current
            held = [c.as_dict() for c in changes if c.change != "removed"]
            log.warning("%s: %d tool change(s) held back until approved", upstream, len(held))
            await self._audit("gateway/tools.changed", "held", upstream,
                              {"changes": [c.as_dict() for c in changes], "toolSet": current})
        return admitted

    async def approve(self, upstream: str, tools: Sequence[dict[str, Any]], *,
                      names: Sequence[str] | None = None, by: str = "admin"
                      ) -> list[ToolChange]:
        """Pin the current definitions (of ``names`` only, if given); the changes approved."""
        pins = await self.store.pins(upstream)
        changes = [c for c in _diff(upstream, tools, pins)
                   if names is None or c.tool in names]
        if names is not None:
            unknown = sorted(set(names) - {c.tool for c in changes} - set(pins))
            if unknown:
                raise KeyError(f"no pending change for {', '.join(unknown)} on {upstream}")
        now = self.clock()
        new_pins = [ToolPin(upstream, c.tool, tool_digest(c.current), dict(c.current), now, by)
                    for c in changes if c.current is not None]
        removed = [c.tool for c in changes if c.change == "removed"]
        digests = {name: pin.digest for name, pin in pins.items() if name not in removed}
        digests.update({pin.tool: pin.digest for pin in new_pins})
        await self.store.approve(upstream, new_pins, removed,
                                 SetPin(upstream, set_digest(digests), now, by))
        self._reported.pop(upstream, None)
        await self._audit("gateway/tools.approve", "ok", upstream,
                          {"by": by, "changes": [c.as_dict() for c in changes],
                           "toolSet": set_digest(digests)},
                          by=None if by == FIRST_USE else by)
        return changes

    async def _audit(self, method: str, outcome: str, upstream: str,
                     detail: dict[str, Any], by: str | None = None) -> None:
        if self.audit is not None:
            # a person who approved is the record's user (``mobius audit search --user``)
            who = None if by is None else Principal(by, "", frozenset(), method=AuthMethod.LOCAL)
            await self.audit.append(method=method, outcome=outcome, target=upstream,
                                    principal=who, detail=detail)


def _diff(upstream: str, tools: Sequence[dict[str, Any]], pins: dict[str, ToolPin]
          ) -> list[ToolChange]:
    changes: list[ToolChange] = []
    seen: set[str] = set()
    for tool in tools:
        name = tool.get("name")
        if not isinstance(name, str):
            continue
        seen.add(name)
        pin = pins.get(name)
        if pin is None:
            changes.append(ToolChange(upstream, name, "added", None, tool))
        elif pin.digest != tool_digest(tool):
            changes.append(ToolChange(upstream, name, "changed", pin.definition, tool))
    for name, pin in sorted(pins.items()):
        if name not in seen:
            changes.append(ToolChange(upstream, name, "removed", pin.definition, None))
    return changes
