"""``mobius conformance``: check any MCP server against the specification.

Three layers of evidence, each outcome tied to requirement ids:

1. revision detection (``server/discover``, one ``initialize`` per legacy revision);
2. replay of recorded exchanges and message corpora (``conformance/`` data);
3. Hypothesis fuzzing over message shapes generated from our schemas.

Use it from Python (or pytest) in a few lines::

    from mobius_rpc.conformance import check_server
    report = check_server("python -m my_server", fuzz=2000)
    assert report.ok, report.failures
"""

from __future__ import annotations

from typing import Any

__all__ = ("check_server", "resolve_target", "Report", "Outcome")


def __getattr__(name: str) -> Any:
    # Imported on first use: ``mobius serve`` loads this package's CLI module
    # and must not pay for the client, Hypothesis and the portal at start-up.
    if name in ("check_server", "resolve_target"):
        from . import runner
        return getattr(runner, name)
    if name in ("Report", "Outcome"):
        from . import report
        return getattr(report, name)
    raise AttributeError(name)
