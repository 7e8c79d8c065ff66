"""Telling the person (or the CI log) where a run is.

A run has a few phases per revision (replay of exchanges, of the corpus, two
fuzz properties) and many steps inside each.  A CI log wants one line per
phase, written as it starts, so a slow or stuck run shows where it is; a
terminal also gets the current step, redrawn in place on one line.  Written
on the standard library: the checker must work from a plain install.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO, cast

__all__ = ("ProgressSink", "LineProgress", "as_sink")

_REDRAW_EVERY = 0.1


class ProgressSink(Protocol):
    """Receives a line when a phase starts and a short text per step inside it."""

    def phase(self, text: str) -> None: ...

    def step(self, text: str) -> None: ...


class _CallableSink:
    """A plain callable (the older ``progress=`` form) receives both."""

    def __init__(self, function: Callable[[str], None]) -> None:
        self.function = function

    def phase(self, text: str) -> None:
        self.function(text)

    def step(self, text: str) -> None:
        self.function(text)


def as_sink(progress: ProgressSink | Callable[[str], None] | None) -> ProgressSink | None:
    if progress is None:
        return None
    if callable(getattr(progress, "phase", None)) and callable(getattr(progress, "step", None)):
        return cast(ProgressSink, progress)
    return _CallableSink(cast(Callable[[str], None], progress))


class LineProgress:
    """Phase lines (``[  12.3s] 2025-06-18 corpus: 61 messages``) on ``stream``, and on
    a terminal the current step on a line of its own that the next write replaces."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = _is_terminal(self.stream) if live is None else live
        self.clock = clock
        self.started = clock()
        self._shown = False  # a step line is on screen
        self._drawn: float | None = None  # when it was drawn

    def phase(self, text: str) -> None:
        self._clear()
        self.stream.write(f"[{self.clock() - self.started:6.1f}s] {text}\n")
        self.stream.flush()

    def step(self, text: str) -> None:
        if not self.live:
            return
        now = self.clock()
        if self._drawn is not None and now - self._drawn < _REDRAW_EVERY:
            return  # a fuzz run has thousands of steps: redraw a few times a second
        self._drawn = now
        width = max(20, _columns(self.stream) - 1)
        self.stream.write("\r\x1b[K" + f"  {text}"[:width])
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self._shown = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 100
