"""Running the checker: detection, replay and fuzzing against one server."""


from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from anyio.from_thread import start_blocking_portal

from ..client.targets import HttpTarget, StdioTarget, Target, target_from_url
from .report import Outcome, Report

__all__ = ("check_server", "resolve_target")


def resolve_target(target: Target | str) -> Target:
    """A target from a URL, a shell command line, or a target object."""
    if isinstance(target, (StdioTarget, HttpTarget)):
        return target
    if target.startswith(("http://", "https://", "ws://", "wss://")):
        return target_from_url(target)
    return StdioTarget.parse(target)


def check_server(target: Target | str, *, revisions: Iterable[str] | None = None,
                 fuzz: int = 0, seed: int | None = None, deadline: float = 10.0,
                 expected_failures: Iterable[str] = (), replay: bool = True,
                 progress: Callable[[str], None] | None = None) -> Report:
    """Run the checker against one server and return its :class:`Report`.

    ``revisions`` limits the run (default: every revision the server accepts);
    ``fuzz`` is the number of fuzzed messages per revision; ``seed`` makes the
    fuzzing repeatable (a random one is chosen and reported otherwise).
    """
    from .fuzz import fuzz_revision
    from .replay import detect_revisions, replay_revision

    resolved = resolve_target(target)
    report = Report(resolved.describe())
    run_seed = seed if seed is not None else random.randrange(2**31)
    with start_blocking_portal() as portal:
        served: list[str] = portal.call(detect_revisions, resolved, report, deadline)
        wanted = list(revisions) if revisions else served
        for revision in wanted:
            if revision not in served:
                report.add(Outcome("detect/requested-revision", "probe", revision, "fail",
                                   ["LIFECYCLE-VERSION-NEGOTIATION"],
                                   "the server does not accept this revision"))
        report.revisions = [r for r in wanted if r in served]
        if not served:
            report.add(Outcome("detect/any-revision", "probe", "-", "fail",
                               ["LIFECYCLE-VERSION-NEGOTIATION"],
                               "the server accepted no protocol revision"))
        for revision in report.revisions:
            if replay:
                portal.call(_replay, replay_revision, resolved, revision, report, deadline,
                            progress)
            if fuzz > 0:
                report.fuzzed += fuzz_revision(portal, resolved, revision, fuzz, run_seed,
                                               report, deadline=deadline, progress=progress)
    report.apply_expected_failures(expected_failures)
    return report


async def _replay(replay_revision: Any, target: Target, revision: str, report: Report,
                  deadline: float, progress: Callable[[str], None] | None) -> None:
    try:
        await replay_revision(target, revision, report, deadline=deadline, progress=progress)
    except Exception as exc:  # noqa: BLE001 - a server that breaks the harness is a finding
        report.add(Outcome("replay/harness", "exchange", revision, "fail",
                           ["FUZZ-NO-CRASH"], f"replay stopped: {type(exc).__name__}: {exc}"))

