"""Results of a conformance run: outcomes, expected failures, JUnit XML, JSON, a table.

Every outcome names the requirement ids it bears on, so a failure points at
the rule (and the specification section) the server breaks.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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

    def add(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        return outcome

    def apply_expected_failures(self, expected: Iterable[str]) -> None:
        """Mark listed failures ``xfail``; a listed entry that did not fail is stale.

        An entry is an outcome id (``tools/list-shape``), a revision-qualified id
        (``2025-06-18:tools/list-shape``) or a requirement id.
        """
        wanted = set(expected)
        used: set[str] = set()
        for outcome in self.outcomes:
            if outcome.status != "fail":
                continue
            hits = wanted & {outcome.id, outcome.key, *outcome.requirements}
            if hits:
                outcome.status = "xfail"
                used |= hits
        self.stale_expectations = sorted(wanted - used)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.stale_expectations

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
                "fuzzed": self.fuzzed, "counts": dict(self.counts()),
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

    def render(self, console: Any = None) -> None:
        """A summary table per revision and the failures with their requirements (rich)."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console(stderr=False)
        table = Table(title=f"MCP conformance of {self.target}")
        for column in ("revision", "kind", "pass", "fail", "xfail", "skip"):
            table.add_column(column, justify="right" if column not in ("revision", "kind")
                             else "left")
        rows: dict[tuple[str, str], Counter[str]] = {}
        for outcome in self.outcomes:
            rows.setdefault((outcome.revision, outcome.kind), Counter())[outcome.status] += 1
        for (revision, kind), counts in rows.items():
            fails = counts["fail"]
            table.add_row(revision, kind, str(counts["pass"]),
                          f"[bold red]{fails}[/]" if fails else "0",
                          str(counts["xfail"]), str(counts["skip"]))
        console.print(table)
        for requirement, outcomes in self.broken_requirements().items():
            rule = requirements().get(requirement)
            title = f"{requirement}" + (f" ({rule.level}, {rule.section})" if rule else "")
            console.print(f"[bold red]✗ {title}[/]")
            for outcome in outcomes[:5]:
                console.print(f"    {outcome.revision} {outcome.id}: {outcome.detail}",
                              markup=False)
                if outcome.message is not None:
                    console.print("      minimal message: "
                                  + json.dumps(outcome.message, default=str)[:300],
                                  markup=False)
        for entry in self.stale_expectations:
            console.print(f"[yellow]stale expected failure (it passed): {entry}[/]")
        verdict = "[bold green]PASS[/]" if self.ok else "[bold red]FAIL[/]"
        counts = self.counts()
        console.print(f"{verdict}: {counts['pass']} passed, {counts['fail']} failed, "
                      f"{counts['xfail']} expected failures, {counts['skip']} skipped; "
                      f"{self.fuzzed} fuzzed messages")
