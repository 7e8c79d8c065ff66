"""How long a run may take, and what its waiting cost.

A checker in CI must end in bounded time whatever the server does.  Three
limits keep it there: the per-message deadline, a total time budget for the
run (every wait is cut to what is left of it), and a bound on shrinking.
:class:`Stats` counts the waits, so a test can show that a server which drops
messages does not make the checker wait out the deadline again and again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .progress import ProgressSink

__all__ = ("Budget", "OutOfTime", "Run", "Stats")


class OutOfTime(Exception):
    """The run's time budget is spent: stop, and report what was checked so far."""


@dataclass
class Stats:
    """What the run's waiting cost (reported in the JSON report)."""

    #: waits that ran out their whole deadline with no answer
    full_deadline_waits: int = 0
    #: messages given up early: a ping sent after them was answered, they were not
    unanswered_after_ping: int = 0
    #: pings sent to tell a silent server from a dead one
    probes: int = 0
    #: fuzz examples run while shrinking a failure, and shrinks cut short by the bound
    shrink_steps: int = 0
    shrinks_cut: int = 0


@dataclass
class Budget:
    """A total time budget (``seconds`` None: unlimited), read on the monotonic clock."""

    seconds: float | None = None
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        if self.seconds is None:
            return float("inf")
        return self.seconds - (time.monotonic() - self.started)

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def cap(self, wait: float) -> float:
        """``wait`` cut to what is left of the budget (never negative)."""
        return max(0.0, min(wait, self.remaining()))


@dataclass
class Run:
    """What every part of one run shares: the per-message deadline, the budget, the
    counters, and where progress goes."""

    deadline: float = 10.0
    budget: Budget = field(default_factory=Budget)
    stats: Stats = field(default_factory=Stats)
    progress: ProgressSink | None = None
    #: phases not begun yet ("2025-06-18 corpus"): what an incomplete report did not check
    plan: list[str] = field(default_factory=list)
    #: the phase under way
    current: str = ""

    def phase(self, text: str) -> None:
        if self.progress is not None:
            self.progress.phase(text)

    def begin(self, name: str, detail: str = "") -> None:
        """Phase ``name`` starts: it leaves the plan, and its line is shown."""
        if name in self.plan:
            self.plan.remove(name)
        self.current = name
        self.phase(f"{name}: {detail}" if detail else name)

    def step(self, text: str) -> None:
        if self.progress is not None:
            self.progress.step(text)

    def check_time(self, where: str) -> None:
        """Raise :class:`OutOfTime` (noting ``where``) once the budget is spent."""
        if self.budget.expired:
            raise OutOfTime(f"the time budget ran out during {where}")
