"""What the instruction-count harnesses share: running a server under callgrind
and reading back how many instructions it ran.

Wall-clock numbers on a shared 2-core host drift by a third between runs;
callgrind's count of the instructions a process executed does not, so two
commits can be compared to a fraction of a percent.  Each harness runs a
server twice, serving a base number of requests and then more, and divides
the difference of the totals by the difference of the requests: start-up,
imports and shutdown cancel out, one request's cost is left.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import TypeVar

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")

Key = TypeVar("Key", bound=Hashable)


class MeasurementError(RuntimeError):
    """A run that cannot be counted: the server failed, answered wrongly or
    callgrind reported no total."""


def require_valgrind(script: str) -> None:
    """Stop with a one-line message when valgrind is not installed."""
    if shutil.which("valgrind") is None:
        raise SystemExit(f"{script}: valgrind is not on PATH "
                         "(Debian/Ubuntu: apt-get install valgrind)")


def callgrind_command(out: Path, command: list[str]) -> list[str]:
    """``command`` run under callgrind, its profile written to ``out`` (kept for
    ``callgrind_annotate`` when the harness is given a directory to keep)."""
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command]


def collected(valgrind_stderr: str, what: str) -> int:
    """The total instruction count callgrind prints when the process ends."""
    found = _COLLECTED.findall(valgrind_stderr)
    if not found:
        raise MeasurementError(f"no instruction total from callgrind for {what}:\n"
                               f"{valgrind_stderr[-800:]}")
    return int(found[-1])


def per_request(totals: Mapping[tuple[Key, int], int], keys: list[Key], base: int,
                requests: int) -> dict[Key, float]:
    """Instructions of one request for each key, from its totals at ``base`` and
    ``base + requests`` requests."""
    return {key: (totals[(key, base + requests)] - totals[(key, base)]) / requests
            for key in keys}
