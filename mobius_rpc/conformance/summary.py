"""The report as text: a count table per revision and kind, then each broken requirement
with the checks that show it and their minimal messages, then the verdict.

Plain text on the standard library (the checker works from a plain install); colour
only on a terminal, and never when ``NO_COLOR`` is set.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import TYPE_CHECKING, TextIO

from .data import requirements

if TYPE_CHECKING:
    from .report import Report

__all__ = ("render_text",)

_COLUMNS = ("revision", "kind", "pass", "fail", "xfail", "skip")
_RED, _GREEN, _YELLOW, _BOLD, _RESET = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[1m", "\x1b[0m"


def _use_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _cross(stream: TextIO) -> str:
    """A cross mark, or an ASCII stand-in where the stream cannot encode it."""
    try:
        "✗".encode(getattr(stream, "encoding", None) or "ascii")
    except (LookupError, UnicodeEncodeError):
        return "x"
    return "✗"


def render_text(report: Report, stream: TextIO, *, color: bool | None = None) -> None:
    paint = _use_color(stream) if color is None else color

    def tint(text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if paint else text

    out: list[str] = [f"MCP conformance of {report.target}"]
    rows: dict[tuple[str, str], Counter[str]] = {}
    for outcome in report.outcomes:
        rows.setdefault((outcome.revision, outcome.kind), Counter())[outcome.status] += 1
    cells = [list(_COLUMNS)] + [
        [revision, kind, *(str(counts[s]) for s in ("pass", "fail", "xfail", "skip"))]
        for (revision, kind), counts in rows.items()]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    for number, row in enumerate(cells):
        text = "  ".join(cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
                         for i, cell in enumerate(row))
        if number == 0:
            text = tint(text, _BOLD)
        elif row[3] != "0":
            text = tint(text, _RED)
        out.append(text)
    cross = _cross(stream)
    known = requirements()
    for requirement, outcomes in report.broken_requirements().items():
        rule = known.get(requirement)
        title = requirement + (f" ({rule.level}, {rule.section})" if rule else "")
        out.append(tint(f"{cross} {title}", _RED + _BOLD))
        for outcome in outcomes[:5]:
            out.append(f"    {outcome.revision} {outcome.id}: {outcome.detail}")
            if outcome.message is not None:
                out.append("      minimal message: "
                           + json.dumps(outcome.message, default=str)[:300])
        if len(outcomes) > 5:
            out.append(f"    ... and {len(outcomes) - 5} more")
    for entry in report.stale_expectations:
        out.append(tint(f"stale expected failure (it passed): {entry}", _YELLOW))
    if report.incomplete:
        out.append(tint(f"INCOMPLETE: {report.incomplete}", _YELLOW + _BOLD))
    counts = report.counts()
    verdict = tint("PASS", _GREEN + _BOLD) if report.ok else tint(
        "FAIL" if report.failures or report.stale_expectations else "INCOMPLETE",
        _RED + _BOLD)
    out.append(f"{verdict}: {counts['pass']} passed, {counts['fail']} failed, "
               f"{counts['xfail']} expected failures, {counts['skip']} skipped; "
               f"{report.fuzzed} fuzzed messages in {report.seconds:.1f}s")
    stream.write("\n".join(out) + "\n")
    stream.flush()
