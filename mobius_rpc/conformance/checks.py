"""Judging one answer: the generic JSON-RPC and schema rules, and an exchange step's
expectations.  Each function returns the problems it found (empty: fine)."""

from __future__ import annotations

from typing import Any

from ..core.methods import methods_for
from ..core.revisions import LEGACY_REVISIONS, MODERN_REVISIONS
from ..core.schema import SchemaError, schema_for

__all__ = ("response_problems", "expectation_problems", "lookup_path")

_KNOWN = set(LEGACY_REVISIONS + MODERN_REVISIONS)


def response_problems(response: Any, sent_id: Any, method: str | None,
                      revision: str) -> list[str]:
    """What is wrong with a response envelope, and with its result's schema."""
    if not isinstance(response, dict):
        return [f"the answer is not a JSON object: {response!r}"[:200]]
    problems: list[str] = []
    if response.get("jsonrpc") != "2.0":
        problems.append(f"jsonrpc is {response.get('jsonrpc')!r}, not '2.0'")
    if ("result" in response) == ("error" in response):
        problems.append("a response carries exactly one of result and error")
    if "id" not in response:
        problems.append("the response has no id")
    elif sent_id is not None and response["id"] is not None and response["id"] != sent_id:
        problems.append(f"the response id {response['id']!r} is not the request's {sent_id!r}")
    if "error" in response:
        error = response["error"]
        if not isinstance(error, dict) or not isinstance(error.get("code"), int) \
                or isinstance(error.get("code"), bool) \
                or not isinstance(error.get("message"), str):
            problems.append(f"the error object is malformed: {error!r}"[:200])
    elif method is not None and "result" in response:
        problems += result_problems(response["result"], method, revision)
    return problems


def result_problems(result: Any, method: str, revision: str,
                    definition: str | None = None) -> list[str]:
    spec = methods_for(revision).get(method)
    name = definition or (spec.result_def if spec else None)
    if name is None:
        return []
    if revision in MODERN_REVISIONS and isinstance(result, dict) \
            and result.get("resultType") == "input_required":
        name = "InputRequiredResult"
    try:
        schema_for(revision).check(name, result)
    except SchemaError as exc:
        return [f"the {method} result is not a valid {name} of {revision}: "
                f"{exc.path or '<result>'}: {exc.message}"]
    return []


def lookup_path(value: Any, path: str) -> tuple[bool, Any]:
    """(found, value) at a dotted path; list items by index (``result.tools.0.name``)."""
    current = value
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return False, None
    return True, current


def expectation_problems(expect: dict[str, Any], response: Any,
                         method: str | None, revision: str) -> list[str]:
    """What an answer fails of a step's ``expect`` (see conformance/README.md)."""
    problems: list[str] = []
    if expect.get("response") is False:
        if response is not None:
            problems.append(f"a notification was answered: {response!r}"[:200])
        return problems
    if response is None:
        return ["no answer"] if expect else []
    if "result_or_error" in expect:
        either = expect["result_or_error"]
        result_issues = _result_expectation(either.get("result"), response, method, revision)
        error_issues = _error_expectation(either.get("error"), response)
        if result_issues and error_issues:
            problems.append(f"neither a valid result nor an expected error: "
                            f"{result_issues[0]}; {error_issues[0]}")
        elif not result_issues and either.get("equals"):
            problems += expectation_problems({"equals": either["equals"]}, response, method,
                                             revision)
    if "result" in expect:
        problems += _result_expectation(expect["result"], response, method, revision)
    if "error" in expect:
        problems += _error_expectation(expect["error"], response)
    for path, wanted in (expect.get("equals") or {}).items():
        found, value = lookup_path(response, path)
        if wanted == "$any_supported":
            if value not in _KNOWN:
                problems.append(f"{path} is {value!r}, not a known protocol revision")
        elif wanted == "$revision":
            if value != revision:
                problems.append(f"{path} is {value!r}, expected {revision!r}")
        elif not found or value != wanted:
            problems.append(f"{path} is {value!r}, expected {wanted!r}")
    for path in expect.get("present") or []:
        if not lookup_path(response, path)[0]:
            problems.append(f"{path} is missing")
    for path in expect.get("absent") or []:
        if lookup_path(response, path)[0]:
            problems.append(f"{path} should be absent")
    return problems


def _refused_by_http(error: dict[str, Any]) -> bool:
    """An HTTP 4xx without a JSON-RPC body (our HTTP client reports it with its status)."""
    data = error.get("data")
    status = data.get("httpStatus") if isinstance(data, dict) else None
    return isinstance(status, int) and 400 <= status < 500 and \
        str(error.get("message", "")).startswith("HTTP ")


def _result_expectation(definition: str | None, response: dict[str, Any],
                        method: str | None, revision: str) -> list[str]:
    if definition is None:
        return ["no result expected"]
    if "result" not in response:
        return [f"expected a result, got error {response.get('error')!r}"[:200]]
    if definition == "$method":
        return result_problems(response["result"], method or "", revision)
    return result_problems(response["result"], method or "", revision, definition)


def _error_expectation(codes: list[int] | None, response: dict[str, Any]) -> list[str]:
    if codes is None:
        return ["no error expected"]
    error = response.get("error")
    if not isinstance(error, dict):
        return [f"expected an error {codes}, got a result"]
    if _refused_by_http(error):
        return []  # rejected with a 4xx before any JSON-RPC: a refusal all the same
    if error.get("code") not in codes:
        return [f"error code {error.get('code')!r}, expected one of {codes}"]
    return []
