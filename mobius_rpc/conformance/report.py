"""Results of a conformance run: outcomes, expected failures, JUnit XML, JSON, a table.

Every outcome names the requirement ids it bears on, so a failure points at
the rule (and the specification section) the server breaks.
"""

from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .budget import Stats
from .data import requirements

__all__ = ("Outcome", "Report")


@dataclass
class Outcome:
    """One check: an exchange, a corpus message, a fuzz property or a probe."""

    id: str
    kind: str  # "probe" | "exchange" | "corpus" | "fuzz"
    revision: str
    status: str  # "pass" | "fail" | "skip" | "xfail"
    requirements: list[str] = field(default_factory=list)
    detail: str = ""
    message: Any = None  # the (minimal) message that showed a failure
    seconds: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.revision}:{self.id}"


@dataclass
class Report:
    target: str
    outcomes: list[Outcome] = field(default_factory=list)
    revisions: list[str] = field(default_factory=list)
    fuzzed: int = 0
    stale_expectations: list[str] = field(default_factory=list)
    #: why the run stopped before checking everything (the time budget ran out), if it did
    incomplete: str | None = None
    #: phases the run did not reach ("2025-11-25 fuzz/invalid-requests")
    not_checked: list[str] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    seconds: float = 0.0

    def add(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        return outcome

    def apply_expected_failures(self, expected: Iterable[str]) -> None:
        """Mark listed failures ``xfail``; a listed entry that did not fail is stale.

        An entry is an outcome id (``tools/list-shape``), a revision-qualified id
        (``2025-06-18:tools/list-shape``) or a requirement id.  In an incomplete run
        an entry is stale only if a check it names ran (and passed): one the run never
        reached says nothing.
        """
        wanted = set(expected)
        used: set[str] = set()
        ran: set[str] = set()
        for outcome in self.outcomes:
            names = {outcome.id, outcome.key, *outcome.requirements}
            if outcome.status != "skip":
                ran |= names
            if outcome.status != "fail":
                continue
            hits = wanted & names
            if hits:
                outcome.status = "xfail"
                used |= hits
        stale = wanted - used
        if self.incomplete:
            stale &= ran
        self.stale_expectations = sorted(stale)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "fail"]

    @property
    def ok(self) -> bool:
        """Everything was checked and nothing failed unexpectedly."""
        return not self.failures and not self.stale_expectations and not self.incomplete

    def counts(self) -> Counter[str]:
        return Counter(o.status for o in self.outcomes)

    def broken_requirements(self) -> dict[str, list[Outcome]]:
        found: dict[str, list[Outcome]] = {}
        for outcome in self.failures:
            for requirement in outcome.requirements or ["(unclassified)"]:
                found.setdefault(requirement, []).append(outcome)
        return found

    # ------------------------------------------------------------- outputs

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "revisions": self.revisions, "ok": self.ok,
                "complete": self.incomplete is None, "incomplete": self.incomplete,
                "notChecked": self.not_checked, "seconds": round(self.seconds, 3),
                "fuzzed": self.fuzzed, "counts": dict(self.counts()),
                "stats": asdict(self.stats),
                "staleExpectedFailures": self.stale_expectations,
                "outcomes": [asdict(o) for o in self.outcomes]}

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2, default=str))

    def write_junit(self, path: str | Path) -> None:
        """One ``testsuite`` per revision and kind, one ``testcase`` per outcome."""
        root = ET.Element("testsuites", name=f"mcp conformance: {self.target}")
        groups: dict[tuple[str, str], list[Outcome]] = {}
        for outcome in self.outcomes:
            groups.setdefault((outcome.revision, outcome.kind), []).append(outcome)
        for (revision, kind), outcomes in groups.items():
            suite = ET.SubElement(root, "testsuite", name=f"{revision}.{kind}",
                                  tests=str(len(outcomes)),
                                  failures=str(sum(o.status == "fail" for o in outcomes)),
                                  skipped=str(sum(o.status in ("skip", "xfail")
                                                  for o in outcomes)))
            for outcome in outcomes:
                case = ET.SubElement(suite, "testcase", classname=f"{revision}.{kind}",
                                     name=outcome.id, time=f"{outcome.seconds:.3f}")
                text = self._explain(outcome)
                if outcome.status == "fail":
                    ET.SubElement(case, "failure", message=outcome.detail[:500]).text = text
                elif outcome.status in ("skip", "xfail"):
                    ET.SubElement(case, "skipped", message=f"{outcome.status}: "
                                                           f"{outcome.detail[:300]}")
        for entry in self.stale_expectations:
            suite = ET.SubElement(root, "testsuite", name="expected-failures", tests="1",
                                  failures="1")
            case = ET.SubElement(suite, "testcase", name=entry)
            ET.SubElement(case, "failure", message="listed as an expected failure but passed")
        if self.incomplete:  # a CI dashboard must not show a cut-short run as green
            suite = ET.SubElement(root, "testsuite", name="run", tests="1", failures="1")
            case = ET.SubElement(suite, "testcase", name="complete")
            ET.SubElement(case, "failure", message=self.incomplete[:500]).text = \
                "\n".join(["not checked:", *self.not_checked])
        ET.indent(root)
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)

    def _explain(self, outcome: Outcome) -> str:
        lines = [outcome.detail]
        known = requirements()
        for rid in outcome.requirements:
            rule = known.get(rid)
            if rule is not None:
                lines.append(f"{rid} ({rule.level}, {rule.section}): {rule.summary}")
        if outcome.message is not None:
            lines.append("message: " + json.dumps(outcome.message, default=str)[:2000])
        return "\n".join(lines)

    def render(self, stream: TextIO | None = None, *, color: bool | None = None) -> None:
        """The summary table, the broken requirements and the verdict, as text."""
        _render_text(self, stream if stream is not None else sys.stdout, color=color)


# ------------------------------------------------------------ the text summary

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


def _render_text(report: Report, stream: TextIO, *, color: bool | None = None) -> None:
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
