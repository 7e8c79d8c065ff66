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
from .checks import response_problems
from .driver import Driver, Hang, ServerGone
from .replay import connected
from .report import Outcome, Report
from .strategies import Mutation, fuzzable_methods, invalid_request_strategy, request_strategy

__all__ = ("fuzz_revision",)

LIVENESS_EVERY = 250
_ENVELOPE_ERRORS = frozenset({-32700, -32600})


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
                 deadline: float) -> None:
        self.portal = portal
        self.target = target
        self.revision = revision
        self.deadline = deadline
        self._cm: Any = None
        self.driver: Driver | None = None
        self.sent = 0

    def open(self) -> Driver:
        if self.driver is None or not self.driver.alive:
            self.close()
            self._cm = self.portal.wrap_async_context_manager(
                connected(self.target, self.revision, deadline=self.deadline))
            self.driver = self._cm.__enter__()
        assert self.driver is not None
        return self.driver

    def close(self) -> None:
        if self._cm is not None:
            try:
                self._cm.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - a broken server may fail its own shutdown
                pass
        self._cm = self.driver = None

    def send(self, message: dict[str, Any], answer_ids: tuple[Any, ...]) -> dict[str, Any]:
        driver = self.open()
        self.sent += 1
        try:
            answer = self.portal.call(lambda: driver.exchange(message, answer_ids=answer_ids))
        except Hang as exc:
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
    response = connection.send(message, (sent_id, None))
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
                deadline: float) -> Iterator[_Connection]:
    connection = _Connection(portal, target, revision, deadline)
    try:
        yield connection
    finally:
        connection.close()


def _run_property(name: str, strategy: st.SearchStrategy[Any], check: Callable[[Any], None],
                  examples: int, run_seed: int) -> tuple[_Failure | None, float]:
    last: list[_Failure] = []

    @seed(run_seed)
    @settings(max_examples=examples, database=None, deadline=None, derandomize=False,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck),
              report_multiple_bugs=False, print_blob=False)
    @given(strategy)
    def prop(case: Any) -> None:
        try:
            check(case)
        except _Finding as finding:
            shown = case[1] if isinstance(case, tuple) else case
            last.append(_Failure(finding.requirement, str(finding), shown))
            raise

    started = time.monotonic()
    try:
        prop()
    except _Finding:
        return last[-1], time.monotonic() - started
    return None, time.monotonic() - started


def fuzz_revision(portal: BlockingPortal, target: Target, revision: str, count: int,
                  run_seed: int, report: Report, *, deadline: float,
                  progress: Callable[[str], None] | None = None) -> int:
    """Send about ``count`` fuzzed messages at ``revision``; returns how many went out."""
    sent = 0
    with _connection(portal, target, revision, deadline) as connection:
        capabilities = (connection.open().server_result or {}).get("capabilities") or {}
        valid = st.sampled_from(fuzzable_methods(revision)).flatmap(
            lambda m: request_strategy(revision, m))
        invalid = invalid_request_strategy(revision, fuzzable_methods(revision, capabilities))
        for name, strategy, check, requirement in (
                ("fuzz/valid-requests", valid, lambda m: _check_valid(connection, m),
                 "FUZZ-VALID-RESULT"),
                ("fuzz/invalid-requests", invalid, lambda c: _check_invalid(connection, c),
                 "FUZZ-INVALID-ERROR-CLASS")):
            if progress:
                progress(f"{revision} {name}")
            before = connection.sent
            failure, seconds = _run_property(name, strategy, check, max(1, count // 2),
                                             run_seed)
            sent += connection.sent - before
            if failure is None:
                report.add(Outcome(name, "fuzz", revision, "pass",
                                   [requirement, "FUZZ-NO-CRASH", "FUZZ-NO-HANG"],
                                   f"{connection.sent - before} messages, seed {run_seed}",
                                   seconds=seconds))
            else:
                report.add(Outcome(name, "fuzz", revision, "fail", [failure.requirement],
                                   f"{failure.detail} (seed {run_seed})",
                                   message=failure.message, seconds=seconds))
    return sent
