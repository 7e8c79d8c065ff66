"""Capability gates: may this method be used, given what each side declared?

Most gates are "the capability object has this key" (the tables in
``methods``).  A few depend on the params of the message as well, and they are
spelled out here so the rule lives in exactly one place:

* elicitation (2025-11-25): ``elicitation: {}`` means form mode only; URL mode
  needs ``elicitation.url``; form mode needs ``form`` or the empty object.
* sampling (2025-11-25): ``tools``/``toolChoice`` need ``sampling.tools``;
  ``includeContext`` other than ``"none"`` needs ``sampling.context``.
"""

from __future__ import annotations

from typing import Any

from .methods import MethodSpec

__all__ = ("has_capability", "gate_failure")


def has_capability(capabilities: dict[str, Any] | None, path: tuple[str, ...]) -> bool:
    """Whether ``capabilities`` declares the (possibly nested) capability at ``path``.

    A capability is declared when its key is present with an object (or, for
    the boolean flags such as ``listChanged``/``subscribe``, a true value).
    """
    node: Any = capabilities
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    if isinstance(node, bool):
        return node
    return node is not None


def gate_failure(spec: MethodSpec, params: dict[str, Any] | None,
                 own: dict[str, Any] | None, peer: dict[str, Any] | None,
                 own_role: str, revision: str) -> str | None:
    """Why ``spec`` may not be used here, or None when it may.

    ``own``/``peer`` are the capabilities of our side and of the peer; the gate
    says whose capability counts.
    """
    if spec.gate is None:
        return None
    owner, path = spec.gate
    caps = own if owner == own_role else peer
    if not has_capability(caps, path):
        return f"the {owner} did not declare the {'.'.join(path)} capability"
    if revision != "2025-11-25" or params is None:
        return None
    if spec.method == "elicitation/create":
        elicitation = (caps or {}).get("elicitation") or {}
        mode = params.get("mode", "form")
        if mode == "url" and not isinstance(elicitation.get("url"), dict):
            return "the client did not declare the elicitation.url capability"
        if mode == "form" and elicitation and not isinstance(elicitation.get("form"), dict):
            return "the client did not declare the elicitation.form capability"
    elif spec.method == "sampling/createMessage":
        sampling = (caps or {}).get("sampling") or {}
        if ("tools" in params or "toolChoice" in params) and not isinstance(
                sampling.get("tools"), dict):
            return "the client did not declare the sampling.tools capability"
        context = params.get("includeContext", "none")
        if context != "none" and not isinstance(sampling.get("context"), dict):
            return "the client did not declare the sampling.context capability"
    return None
