"""Detecting what a server speaks, and replaying exchanges and corpora against it."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import orjson
from anyio.abc import TaskGroup

from ..client.targets import Target
from ..core.revisions import LEGACY_REVISIONS, MODERN_REVISIONS
from ..framing.http import SESSION_HEADER, VERSION_HEADER
from .budget import OutOfTime, Run
from .checks import expectation_problems, response_problems
from .data import CorpusEntry, Exchange, corpus, exchanges
from .driver import CLIENT_CAPABILITIES, CLIENT_INFO, Driver, Hang, ServerGone, Unanswered
from .report import Outcome, Report

__all__ = ("connected", "detect_revisions", "replay_revision")


def new_driver(target: Target, revision: str, run: Run) -> Driver:
    return Driver(target, revision, deadline=run.deadline, budget=run.budget,
                  stats=run.stats)


@asynccontextmanager
async def task_group() -> AsyncIterator[TaskGroup]:
    """A task group that lets one exception through as itself: a ``Hang`` or
    ``OutOfTime`` raised in its body must reach the ``except`` that handles it, not
    arrive wrapped in an ``ExceptionGroup``."""
    try:
        async with anyio.create_task_group() as tg:
            yield tg
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


@asynccontextmanager
async def connected(target: Target, revision: str, *, run: Run,
                    handshake: bool = True) -> AsyncIterator[Driver]:
    """A driver on a fresh connection (a new process for stdio), closed on exit."""
    driver = new_driver(target, revision, run)
    async with task_group() as tg:
        try:
            await driver.open(tg)
            if handshake:
                await driver.handshake()
            yield driver
        finally:
            await driver.aclose()
            tg.cancel_scope.cancel()


async def detect_revisions(target: Target, report: Report, run: Run) -> list[str]:
    """Every revision the server accepts: ``server/discover`` for the modern one, an
    initialize per legacy revision (the server must answer with that same version)."""
    found: list[str] = []
    for revision in MODERN_REVISIONS:
        run.check_time("revision detection")
        run.step(f"detect {revision}")
        try:
            async with connected(target, revision, run=run) as driver:
                offered = (driver.server_result or {}).get("supportedVersions") or []
                if revision in offered:
                    found.append(revision)
        except OutOfTime:
            raise
        except (ServerGone, Hang, OSError, Exception) as exc:  # noqa: BLE001 - any refusal
            report.add(Outcome("detect/modern", "probe", revision, "skip",
                               detail=f"not served: {exc}"[:300]))
    for revision in LEGACY_REVISIONS:
        run.check_time("revision detection")
        run.step(f"detect {revision}")
        try:
            async with connected(target, revision, run=run, handshake=False) as driver:
                answer = await driver.request("initialize", {
                    "protocolVersion": revision, "capabilities": CLIENT_CAPABILITIES,
                    "clientInfo": CLIENT_INFO})
                result = (answer.response or {}).get("result") or {}
                version = result.get("protocolVersion")
                if version == revision:
                    found.append(revision)
                elif "result" in (answer.response or {}) and version not in (
                        LEGACY_REVISIONS + MODERN_REVISIONS):
                    report.add(Outcome("detect/negotiated-version", "probe", revision, "fail",
                                       ["LIFECYCLE-VERSION-NEGOTIATION"],
                                       f"initialize at {revision} was answered with "
                                       f"protocolVersion {version!r}, which is no revision"))
        except OutOfTime:
            raise
        except (ServerGone, Hang, OSError, Exception) as exc:  # noqa: BLE001
            report.add(Outcome("detect/legacy", "probe", revision, "skip",
                               detail=f"initialize failed: {exc}"[:300]))
    return found


def _fill(value: Any, names: dict[str, Any], driver: Driver) -> Any:
    if isinstance(value, str):
        if value == "$id":
            return driver.next_id()
        if value in names:
            return names[value]
        return value
    if isinstance(value, list):
        return [_fill(v, names, driver) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names, driver) for k, v in value.items()}
    return value


async def _names(driver: Driver, capabilities: dict[str, Any]) -> dict[str, Any]:
    """What ``$tool``, ``$prompt`` and ``$resource`` stand for on this server."""
    names: dict[str, Any] = {"$revision": driver.revision,
                             "$unknown": "mobius-conformance-no-such-name-7f3a"}
    for capability, method, key, field, placeholder in (
            ("tools", "tools/list", "tools", "name", "$tool"),
            ("prompts", "prompts/list", "prompts", "name", "$prompt"),
            ("resources", "resources/list", "resources", "uri", "$resource")):
        if capability not in capabilities:
            continue
        try:
            answer = await driver.request(method, {})
        except (Hang, ServerGone):
            continue
        items = ((answer.response or {}).get("result") or {}).get(key) or []
        if items and isinstance(items[0], dict) and field in items[0]:
            names[placeholder] = items[0][field]
    return names


def _declared(capabilities: dict[str, Any], need: str) -> bool:
    """Whether a (dotted) capability is declared: ``tools``, ``resources.subscribe``."""
    node: Any = capabilities
    for part in need.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return node is not False and node is not None


def _skip_reason(exchange: Exchange, driver: Driver, capabilities: dict[str, Any],
                 names: dict[str, Any]) -> str | None:
    missing = [need for need in exchange.needs if not _declared(capabilities, need)]
    if missing:
        return f"the server does not declare {', '.join(missing)}"
    if exchange.transport == "http" and driver.url is None:
        return "an HTTP-only exchange"
    if exchange.transport == "stdio" and driver.url is not None:
        return "a stdio-only exchange"
    text = repr(exchange.steps)
    for placeholder in ("$tool", "$prompt", "$resource"):
        if placeholder in text and placeholder not in names:
            return f"the server lists no {placeholder[1:]}"
    return None


async def _http_step(driver: Driver, step: dict[str, Any], names: dict[str, Any]) -> list[str]:
    """A step sent as a raw HTTP request, to check statuses and header rules."""
    spec = _fill(copy.deepcopy(step.get("http") or {}), names, driver)
    expect = step.get("expect") or {}
    message = driver.with_meta(_fill(copy.deepcopy(step["send"]), names, driver)) \
        if "send" in step else None
    stream = driver.http
    headers = httpx.Headers({"Accept": "application/json, text/event-stream",
                             "Content-Type": "application/json"})
    if stream is not None and message is not None:
        headers.update(stream.headers_for(message))  # what our client would send
    elif stream is not None and stream.session_id and not driver.modern:
        headers[SESSION_HEADER] = stream.session_id
        headers[VERSION_HEADER] = driver.revision
    headers.update(spec.get("headers") or {})
    timeout = driver.budget.cap(driver.deadline)
    if timeout <= 0:
        raise OutOfTime("the time budget ran out")
    async with httpx.AsyncClient(timeout=timeout) as client:
        response = await client.request(
            spec.get("method", "POST"), str(driver.url), headers=headers,
            content=orjson.dumps(message) if message is not None else None)
    problems = []
    wanted = expect.get("status")
    if wanted is not None and response.status_code not in (
            wanted if isinstance(wanted, list) else [wanted]):
        problems.append(f"HTTP status {response.status_code}, expected {wanted}")
    rest = {k: v for k, v in expect.items() if k != "status"}
    if message is not None and rest:
        answer = _answer_in(response, message.get("id"))
        method = message.get("method")
        problems += expectation_problems(rest, answer, method, driver.revision)
    return problems


def _answer_in(response: httpx.Response, request_id: Any) -> dict[str, Any] | None:
    """The JSON-RPC answer in an HTTP response body (JSON, or among SSE events)."""
    kind = response.headers.get("content-type", "")
    texts = [response.text] if kind.startswith("application/json") else [
        line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
    for text in texts:
        try:
            decoded = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        if isinstance(decoded, dict) and "method" not in decoded and (
                decoded.get("id") in (request_id, None)):
            return decoded
    return None


async def _run_steps(driver: Driver, exchange: Exchange, names: dict[str, Any]) -> list[str]:
    for index, step in enumerate(exchange.steps):
        where = f"step {index + 1}"
        expect = step.get("expect") or {}
        if "http" in step or ("status" in expect and driver.url is not None):
            problems = await _http_step(driver, step, names)
        else:
            raw = step.get("raw")
            message = None if raw is not None else driver.with_meta(
                _fill(copy.deepcopy(step["send"]), names, driver))
            method = message.get("method") if isinstance(message, dict) else None
            sent_id = message.get("id") if isinstance(message, dict) else None
            silent = expect.get("response") is False
            answer = await driver.exchange(
                message, raw=raw.encode() if raw is not None else None,
                answer_ids=None if isinstance(message, list) else (sent_id, None),
                wait=0.5 if silent else None, required=not silent,
                expect_error="error" in expect)
            problems = expectation_problems(expect, answer.response, method, driver.revision)
            for item in answer.response if isinstance(answer.response, list) else (
                    [answer.response] if answer.response is not None else []):
                problems += response_problems(
                    item, sent_id if isinstance(sent_id, (str, int)) else None,
                    None if "error" in expect else method, driver.revision)
        if problems:
            return [f"{where}: {problem}" for problem in problems]
    return []


def _no_answer(exc: Hang | ServerGone) -> tuple[str, bool]:
    """The problem text for a missing answer, and whether the connection is spent."""
    if isinstance(exc, Unanswered):
        return f"no answer: {exc}", False
    if isinstance(exc, Hang):
        return f"the server hung: {exc}", not exc.server_alive
    return f"the server died: {exc}", True


async def replay_revision(target: Target, revision: str, report: Report, run: Run) -> None:
    """Every applicable exchange and corpus message at ``revision``.  Raises
    ``OutOfTime`` when the budget runs out (what was checked is in ``report``)."""
    applicable = [e for e in exchanges() if e.applies_to(revision)]
    entries = corpus(revision)

    async def fresh() -> tuple[Driver, dict[str, Any], dict[str, Any]]:
        driver = new_driver(target, revision, run)
        await driver.open(tg)
        result = await driver.handshake()
        capabilities = result.get("capabilities") or {}
        return driver, capabilities, await _names(driver, capabilities)

    async with task_group() as tg:
        shared, capabilities, names = await fresh()
        try:
            run.begin(f"{revision} replay", f"{len(applicable)} exchanges "
                      f"({len(report.failures)} failed so far)")
            for exchange in applicable:
                run.check_time(f"{revision} replay")
                run.step(f"{revision} {exchange.id}")
                started = time.monotonic()
                reason = _skip_reason(exchange, shared, capabilities, names)
                if reason:
                    report.add(Outcome(exchange.id, "exchange", revision, "skip",
                                       list(exchange.requirements), reason))
                    continue
                spent = False
                try:
                    if exchange.handshake:
                        problems = await _run_steps(shared, exchange, names)
                    else:
                        async with connected(target, revision, run=run,
                                             handshake=False) as own:
                            problems = await _run_steps(own, exchange, names)
                except (Hang, ServerGone) as exc:
                    problem, spent = _no_answer(exc)
                    problems = [problem]
                report.add(Outcome(exchange.id, "exchange", revision,
                                   "fail" if problems else "pass", list(exchange.requirements),
                                   "; ".join(problems), seconds=time.monotonic() - started))
                if not shared.alive or spent and exchange.handshake:
                    await shared.aclose()
                    shared, capabilities, names = await fresh()
            run.begin(f"{revision} corpus", f"{len(entries)} messages "
                      f"({len(report.failures)} failed so far)")
            for entry in entries:
                run.check_time(f"{revision} corpus")
                run.step(f"{revision} corpus {entry.name}")
                if isinstance(entry.message, dict) and \
                        entry.message.get("method") == "initialize":
                    # a second initialize on a live session is unspecified: use a new one
                    async with connected(target, revision, run=run, handshake=False) as own:
                        outcome, spent = await _replay_entry(own, entry)
                    spent = False
                else:
                    outcome, spent = await _replay_entry(shared, entry)
                report.add(outcome)
                if not shared.alive or spent:
                    await shared.aclose()
                    shared, capabilities, names = await fresh()
        finally:
            await shared.aclose()
            tg.cancel_scope.cancel()


async def _replay_entry(driver: Driver, entry: CorpusEntry) -> tuple[Outcome, bool]:
    message = copy.deepcopy(entry.message)
    if isinstance(message, dict) and isinstance(message.get("id"), (str, int)) \
            and not isinstance(message["id"], bool):
        message["id"] = driver.next_id()  # ids of the wrong type stay as they are
    method = message.get("method") if isinstance(message, dict) else None
    sent_id = message.get("id") if isinstance(message, dict) else None
    kind = "valid" if entry.valid else "invalid"
    requirement = "CORPUS-VALID-ACCEPTED" if entry.valid else "CORPUS-INVALID-REJECTED"
    started = time.monotonic()
    spent = False
    try:
        stays_open = method == "subscriptions/listen"  # answered only when cancelled
        answer = await driver.exchange(message, answer_ids=(sent_id, None),
                                       wait=0.5 if stays_open else None,
                                       required=not stays_open, expect_error=not entry.valid)
        response = answer.response
        problems = expectation_problems(entry.expect, response, method, driver.revision) \
            if entry.expect else []
        for item in response if isinstance(response, list) else (
                [response] if response is not None else []):
            problems += response_problems(item, sent_id if isinstance(sent_id, (str, int))
                                          else None, method, driver.revision)
    except (Hang, ServerGone) as exc:
        problem, spent = _no_answer(exc)
        problems = [problem]
    return Outcome(f"corpus/{kind}/{entry.name}", "corpus", entry.revision,
                   "fail" if problems else "pass", [requirement], "; ".join(problems),
                   message=entry.message if problems else None,
                   seconds=time.monotonic() - started), spent
