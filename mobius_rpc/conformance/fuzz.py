"""Fuzzing a server with Hypothesis: schema-valid requests and requests with one defect.

Hypothesis drives generation and shrinking from ordinary (synchronous) code;
the connection lives in an event loop behind a blocking portal, so each
example is one real message to the real server.  A failure is shrunk to the
smallest message that still shows it, which is what the report prints.

Rules, per message: the server answers within the deadline, stays alive and
usable (checked every ``LIVENESS_EVERY`` messages and after each error), and
its answer is a well-formed response; a valid request gets a result that is
valid for its method, or an error that is not an envelope error; a broken one
gets an error of the class its defect calls for.

Shrinking is bounded (``MAX_SHRINK_STEPS`` examples, ``SHRINK_SECONDS``, and
``MAX_SHRINK_HANGS`` full-deadline waits): past that, the smallest failing
message found so far is reported.  Against a server that hangs, every shrink
step could cost a whole deadline, and a CI run must end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from anyio.from_thread import BlockingPortal
from hypothesis import HealthCheck, Phase, given, reject, seed, settings
from hypothesis import strategies as st

from ..client.targets import Target
from ..core.methods import methods_for
from ..core.schema import schema_for
from .budget import OutOfTime, Run
from .checks import response_problems
from .driver import Driver, Hang, ServerGone, Unanswered
from .replay import connected
from .report import Outcome, Report
from .strategies import Mutation, fuzzable_methods, invalid_request_strategy, request_strategy

__all__ = ("fuzz_revision",)

LIVENESS_EVERY = 250
MAX_SHRINK_STEPS = 64
SHRINK_SECONDS = 10.0
MAX_SHRINK_HANGS = 2
_ENVELOPE_ERRORS = frozenset({-32700, -32600})


class _Stop(BaseException):
    """Ends a Hypothesis run from inside the test: Hypothesis lets an exception that is
    not an ``Exception`` through at once, without treating it as a failure to shrink."""


class _Finding(AssertionError):
    def __init__(self, requirement: str, text: str) -> None:
        super().__init__(text)
        self.requirement = requirement


@dataclass
class _Failure:
    requirement: str
    detail: str
    message: Any


class _Connection:
    """The portal-side connection, reopened whenever the server died or hung."""

    def __init__(self, portal: BlockingPortal, target: Target, revision: str,
                 run: Run) -> None:
        self.portal = portal
        self.target = target
        self.revision = revision
        self.run = run
        self._cm: Any = None
        self.driver: Driver | None = None
        self.sent = 0

    def open(self) -> Driver:
        if self.driver is None or not self.driver.alive:
            self.close()
            self._cm = self.portal.wrap_async_context_manager(
                connected(self.target, self.revision, run=self.run))
            try:
                self.driver = self._cm.__enter__()
            except OutOfTime:
                self._cm = None
                raise _Stop from None
        assert self.driver is not None
        return self.driver

    def close(self) -> None:
        if self._cm is not None:
            try:
                self._cm.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - a broken server may fail its own shutdown
                pass
        self._cm = self.driver = None

    def send(self, message: dict[str, Any], answer_ids: tuple[Any, ...], *,
             expect_error: bool = False) -> dict[str, Any]:
        driver = self.open()
        self.sent += 1
        try:
            answer = self.portal.call(lambda: driver.exchange(
                message, answer_ids=answer_ids, expect_error=expect_error))
        except OutOfTime:
            raise _Stop from None
        except Unanswered as exc:  # alive and reading: the connection stays usable
            raise _Finding("FUZZ-NO-HANG", f"no answer: {exc}") from None
        except Hang as exc:
            if not exc.server_alive:
                self.close()
            raise _Finding("FUZZ-NO-HANG", f"no answer: {exc}") from None
        except ServerGone as exc:
            self.close()
            raise _Finding("FUZZ-NO-CRASH", f"the server died: {exc}") from None
        assert answer.response is not None
        return dict(answer.response)

    def check_alive(self) -> None:
        driver = self.open()
        method = "server/discover" if driver.modern else "ping"
        try:
            answer = self.portal.call(lambda: driver.request(method))
        except OutOfTime:
            raise _Stop from None
        except (Hang, ServerGone) as exc:
            self.close()
            raise _Finding("FUZZ-STAYS-USABLE", f"unusable afterwards: {exc}") from None
        if "result" not in (answer.response or {}):
            raise _Finding("FUZZ-STAYS-USABLE",
                           f"{method} fails afterwards: {answer.response}")


def _prepare(connection: _Connection, message: dict[str, Any]) -> dict[str, Any]:
    driver = connection.open()
    prepared = {**message}
    if "id" in prepared and isinstance(prepared["id"], int) \
            and not isinstance(prepared["id"], bool):
        prepared["id"] = driver.next_id()
    return driver.with_meta(prepared)


def _check_valid(connection: _Connection, message: dict[str, Any]) -> None:
    message = _prepare(connection, message)
    spec_ok = schema_for(connection.revision).is_valid(
        _message_def(connection.revision, message["method"]), message)
    if not spec_ok:
        reject()  # the generated params do not fit once _meta is added
    response = connection.send(message, (message["id"],))
    problems = response_problems(response, message["id"], message["method"],
                                 connection.revision)
    if problems:
        raise _Finding("FUZZ-VALID-RESULT", "; ".join(problems))
    error = response.get("error")
    if isinstance(error, dict) and error.get("code") in _ENVELOPE_ERRORS:
        raise _Finding("FUZZ-VALID-RESULT",
                       f"a valid request was refused as malformed: {error}")
    if isinstance(error, dict) or connection.sent % LIVENESS_EVERY == 0:
        connection.check_alive()


def _check_invalid(connection: _Connection, case: tuple[Mutation, dict[str, Any]]) -> None:
    mutation, message = case
    message = _prepare(connection, message)
    sent_id = message.get("id")
    response = connection.send(message, (sent_id, None), expect_error=True)
    problems = response_problems(response, sent_id if isinstance(sent_id, (str, int))
                                 else None, None, connection.revision)
    if problems:
        raise _Finding("JSONRPC-RESPONSE-SHAPE", "; ".join(problems))
    error = response.get("error")
    if not isinstance(error, dict):
        raise _Finding("FUZZ-INVALID-ERROR-CLASS",
                       f"{mutation.name}: answered with a result instead of an error "
                       f"{sorted(mutation.expected)}")
    if error.get("code") not in mutation.expected:
        raise _Finding("FUZZ-INVALID-ERROR-CLASS",
                       f"{mutation.name}: error {error.get('code')}, expected one of "
                       f"{sorted(mutation.expected)}")
    connection.check_alive()


def _message_def(revision: str, method: str) -> str:
    return methods_for(revision)[method].message_def


@contextmanager
def _connection(portal: BlockingPortal, target: Target, revision: str,
                run: Run) -> Iterator[_Connection]:
    connection = _Connection(portal, target, revision, run)
    try:
        yield connection
    finally:
        connection.close()


@dataclass
class _Result:
    failure: _Failure | None
    seconds: float
    out_of_time: bool = False  # the budget ended the property
    shrink_cut: bool = False  # the shrink bound ended shrinking


def _run_property(strategy: st.SearchStrategy[Any], check: Callable[[Any], None],
                  examples: int, run_seed: int, run: Run) -> _Result:
    found: list[_Failure] = []
    shrink = {"steps": 0, "started": 0.0, "hangs": 0}
    stopped: list[str] = []

    def bounded(case: Any) -> None:
        if run.budget.expired:
            stopped.append("budget")
            raise _Stop
        if found:  # a failure was found: every call from here on is a shrink step
            run.stats.shrink_steps += 1
            shrink["steps"] += 1
            if shrink["steps"] > MAX_SHRINK_STEPS \
                    or time.monotonic() - shrink["started"] > SHRINK_SECONDS \
                    or run.stats.full_deadline_waits - shrink["hangs"] >= MAX_SHRINK_HANGS:
                stopped.append("shrink")
                raise _Stop
        try:
            check(case)
        except _Stop:
            stopped.append("budget")
            raise
        except _Finding as finding:
            shown = case[1] if isinstance(case, tuple) else case
            if not found:
                shrink["started"] = time.monotonic()
                shrink["hangs"] = run.stats.full_deadline_waits
            found.append(_Failure(finding.requirement, str(finding), shown))
            raise

    @seed(run_seed)
    @settings(max_examples=examples, database=None, deadline=None, derandomize=False,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck),
              report_multiple_bugs=False, print_blob=False)
    @given(strategy)
    def prop(case: Any) -> None:
        bounded(case)

    started = time.monotonic()
    try:
        prop()
    except _Finding:
        pass
    except _Stop:
        if stopped and stopped[-1] == "shrink":
            run.stats.shrinks_cut += 1
    seconds = time.monotonic() - started
    out_of_time = bool(stopped) and stopped[-1] == "budget"
    return _Result(found[-1] if found else None, seconds, out_of_time,
                   bool(stopped) and stopped[-1] == "shrink")


def fuzz_revision(portal: BlockingPortal, target: Target, revision: str, count: int,
                  run_seed: int, report: Report, run: Run) -> int:
    """Send about ``count`` fuzzed messages at ``revision``, counted in ``report.fuzzed``;
    returns how many went out.  Raises ``OutOfTime`` when the budget ended it (the
    outcomes so far are in ``report``)."""
    sent = 0
    with _connection(portal, target, revision, run) as connection:
        try:
            capabilities = (connection.open().server_result or {}).get("capabilities") or {}
        except _Stop:
            raise OutOfTime(f"the time budget ran out during {revision} fuzzing") from None
        valid = st.sampled_from(fuzzable_methods(revision)).flatmap(
            lambda m: request_strategy(revision, m))
        invalid = invalid_request_strategy(revision, fuzzable_methods(revision, capabilities))
        per_property = max(1, count // 2)
        for name, strategy, check, requirement in (
                ("fuzz/valid-requests", valid, lambda m: _check_valid(connection, m),
                 "FUZZ-VALID-RESULT"),
                ("fuzz/invalid-requests", invalid, lambda c: _check_invalid(connection, c),
                 "FUZZ-INVALID-ERROR-CLASS")):
            run.check_time(f"{revision} {name}")
            run.begin(f"{revision} {name}", f"{per_property} messages "
                      f"({len(report.failures)} failed so far)")
            before = connection.sent

            def step(case: Any, check: Callable[[Any], None] = check,
                     name: str = name, before: int = before) -> None:
                run.step(f"{revision} {name} {connection.sent - before}/{per_property}")
                check(case)

            result = _run_property(strategy, step, per_property, run_seed, run)
            messages = connection.sent - before
            sent += messages
            report.fuzzed += messages
            cut = " (shrinking stopped at its bound)" if result.shrink_cut else ""
            if result.failure is not None:
                report.add(Outcome(name, "fuzz", revision, "fail", [result.failure.requirement],
                                   f"{result.failure.detail} (seed {run_seed}){cut}",
                                   message=result.failure.message, seconds=result.seconds))
            elif result.out_of_time:
                report.add(Outcome(name, "fuzz", revision, "pass" if messages else "skip",
                                   [requirement, "FUZZ-NO-CRASH", "FUZZ-NO-HANG"],
                                   f"only {messages} of {per_property} messages: the time "
                                   f"budget ran out (seed {run_seed})",
                                   seconds=result.seconds))
            else:
                report.add(Outcome(name, "fuzz", revision, "pass",
                                   [requirement, "FUZZ-NO-CRASH", "FUZZ-NO-HANG"],
                                   f"{messages} messages, seed {run_seed}",
                                   seconds=result.seconds))
            if result.out_of_time:
                raise OutOfTime(f"the time budget ran out during {revision} {name}")
    return sent
