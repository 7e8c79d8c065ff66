"""Running the checker: detection, replay and fuzzing against one server, in a time budget."""


from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from anyio.from_thread import start_blocking_portal

from ..client.targets import HttpTarget, StdioTarget, Target, target_from_url
from .budget import Budget, OutOfTime, Run
from .progress import ProgressSink, as_sink
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
                 max_time: float | None = None,
                 progress: ProgressSink | Callable[[str], None] | None = None) -> Report:
    """Run the checker against one server and return its :class:`Report`.

    ``revisions`` limits the run (default: every revision the server accepts);
    ``fuzz`` is the number of fuzzed messages per revision; ``seed`` makes the
    fuzzing repeatable (a random one is chosen and reported otherwise);
    ``deadline`` is what one message may take.  ``max_time`` (seconds, default
    unlimited) bounds the whole run: when it runs out the run stops, and the report
    holds what was checked, says what was not, and is not ``ok``.  ``progress``
    receives a line per phase and a text per step (a :class:`ProgressSink`, or a
    callable that gets both).
    """
    resolved = resolve_target(target)
    report = Report(resolved.describe())
    run = Run(deadline=deadline, budget=Budget(max_time), stats=report.stats,
              progress=as_sink(progress))
    run_seed = seed if seed is not None else random.randrange(2**31)
    try:
        _run(resolved, report, run, revisions, fuzz, run_seed, replay)
    except OutOfTime:
        report.incomplete = f"the time budget of {max_time:g}s ran out during {run.current}"
        report.not_checked = list(run.plan)
        run.phase(f"stopped: {report.incomplete}")
    report.seconds = run.budget.elapsed()
    report.apply_expected_failures(expected_failures)
    return report


def _run(target: Target, report: Report, run: Run, revisions: Iterable[str] | None,
         fuzz: int, run_seed: int, replay: bool) -> None:
    """The run itself; ``run.plan`` lists the phases still to come."""
    from .fuzz import fuzz_revision
    from .replay import detect_revisions, replay_revision

    run.plan.append("revision detection")
    with start_blocking_portal() as portal:
        run.begin("revision detection")
        served: list[str] = portal.call(detect_revisions, target, report, run)
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
        run.phase(f"revisions: {', '.join(report.revisions) or 'none'}")
        for revision in report.revisions:
            if replay:
                run.plan += [f"{revision} replay", f"{revision} corpus"]
            if fuzz > 0:
                run.plan += [f"{revision} fuzz/valid-requests",
                             f"{revision} fuzz/invalid-requests"]
        for revision in report.revisions:
            if replay:
                portal.call(_replay, replay_revision, target, revision, report, run)
            if fuzz > 0:
                fuzz_revision(portal, target, revision, fuzz, run_seed, report, run)


async def _replay(replay_revision: Any, target: Target, revision: str, report: Report,
                  run: Run) -> None:
    try:
        await replay_revision(target, revision, report, run)
    except OutOfTime:
        raise
    except Exception as exc:  # noqa: BLE001 - a server that breaks the harness is a finding
        report.add(Outcome("replay/harness", "exchange", revision, "fail",
                           ["FUZZ-NO-CRASH"], f"replay stopped: {type(exc).__name__}: {exc}"))
