"""Limits on what one caller can take: time, rate, concurrency, output size.

* Timeout: each ``tools/call`` runs in a cancel scope that is cancelled at its
  deadline (a default, overridden per tool), by one shared timer on asyncio
  (:class:`_Watchdog`), by the scope's own deadline elsewhere; the handler is
  cancelled where it awaits, and again at every await after if it swallows
  the cancellation.  A handler that blocks the event loop without awaiting
  cannot be cancelled by anything in process: keep such work in a thread or a
  process.  The scope is most of what a limit costs per call (3.5 of 4 us here);
  it stays because every cheaper construct weighed breaks something: a timer
  cancelling the task is edge-triggered and pierces a handler's shielded
  scopes, and entering the scope only once the handler first suspends would
  nest it inside any scope or task group the handler has open by then.
* Rate: token buckets per principal (every checked request) and per tool
  (every caller of that tool), kept in the store so replicas sharing a
  database share them.
* Concurrency: at most ``max_concurrent`` requests in flight per principal,
  counted in this process; one more is refused at once, not queued.
* Output: a ``tools/call`` result larger than ``max_output_bytes`` as JSON
  is replaced by an error (the bytes never reach the wire).

Each refusal is an :class:`LimitExceeded`, a JSON-RPC error with its own code
outside the range the protocol reserves (-32768..-32000) and ``data`` that
says which limit; the security middleware records each one in the audit log.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import orjson

from ..core.errors import McpError
from ..transports.base import cancel_scope_type
from .principal import Principal
from .store import SecurityStore

__all__ = ("Rate", "Limits", "Limiter", "LimitExceeded", "TIMEOUT", "RATE_LIMITED",
           "TOO_MANY_CONCURRENT", "OUTPUT_TOO_LARGE")

T = TypeVar("T")

#: JSON-RPC codes of limit refusals (HTTP's 408, 429, 413 in spirit)
TIMEOUT = -31008
RATE_LIMITED = -31029
TOO_MANY_CONCURRENT = -31030
OUTPUT_TOO_LARGE = -31013


@dataclass(frozen=True, slots=True)
class Rate:
    """A token bucket: bursts of up to ``capacity``, refilled at ``per_second``."""

    capacity: float
    per_second: float

    @classmethod
    def per_minute(cls, n: float, burst: float | None = None) -> Rate:
        return cls(burst if burst is not None else n, n / 60.0)

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.per_second <= 0:
            raise ValueError("a rate needs capacity >= 1 and per_second > 0")


@dataclass(frozen=True, slots=True)
class Limits:
    """What a :class:`Limiter` enforces; None switches a limit off."""

    #: seconds a tool may run unless ``timeouts`` says otherwise
    default_timeout: float | None = 60.0
    #: per tool name: its timeout (None: no timeout for that tool)
    timeouts: Mapping[str, float | None] = field(default_factory=dict)
    #: every checked request of one principal
    principal_rate: Rate | None = None
    #: per tool name, all callers together
    tool_rates: Mapping[str, Rate] = field(default_factory=dict)
    #: tools without an entry in ``tool_rates``
    default_tool_rate: Rate | None = None
    #: requests in flight per principal
    max_concurrent: int | None = None
    #: size of a tool result as JSON
    max_output_bytes: int | None = 8 * 1024 * 1024


class LimitExceeded(McpError):
    """A limit refused the request; ``limit`` says which."""

    def __init__(self, code: int, limit: str, message: str, **data: Any) -> None:
        super().__init__(code, message, {"limit": limit, **data})
        self.limit = limit


def principal_key(principal: Principal) -> str:
    return f"{principal.organization}/{principal.user}"


class Limiter:
    """Enforces one :class:`Limits` for a server."""

    def __init__(self, limits: Limits, store: SecurityStore, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.limits = limits  # sets has_rates and admits_at_once too
        self.store = store
        self._clock = clock
        self._in_flight: dict[str, int] = {}
        self._scope_type: type[anyio.CancelScope] | None = None
        self._asyncio = False
        #: the tool-timeout watchdog of each event loop serving through this limiter
        self._watchdogs: dict[asyncio.AbstractEventLoop, _Watchdog] = {}
        #: the last loop asked for and its watchdog (one tuple: read at once)
        self._last: tuple[asyncio.AbstractEventLoop, _Watchdog] | None = None

    @property
    def limits(self) -> Limits:
        return self._limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        self._limits = limits
        #: whether any rate applies (without, :meth:`check_rates` need not be awaited)
        self.has_rates = limits.principal_rate is not None or bool(limits.tool_rates) \
            or limits.default_tool_rate is not None
        #: neither rates nor a concurrency cap: a request needs no admission (the
        #: common case, told by one attribute on every checked request)
        self.admits_at_once = not self.has_rates and limits.max_concurrent is None

    def timeout_for(self, tool: str) -> float | None:
        timeouts = self._limits.timeouts
        return timeouts[tool] if tool in timeouts else self._limits.default_timeout

    async def check_rates(self, principal: Principal, tool: str | None = None) -> None:
        """Take a token from the principal's bucket (and the tool's, for a call)."""
        now = self._clock()
        rate = self._limits.principal_rate
        if rate is not None:
            result = await self.store.consume_bucket(
                f"principal:{principal_key(principal)}", rate.capacity, rate.per_second, 1.0,
                now)
            if not result.allowed:
                raise LimitExceeded(RATE_LIMITED, "principal-rate",
                                    f"Rate limit exceeded; retry after "
                                    f"{result.retry_after:.3g}s",
                                    retryAfter=round(result.retry_after, 3))
        if tool is None:
            return
        rate = self._limits.tool_rates.get(tool, self._limits.default_tool_rate)
        if rate is not None:
            result = await self.store.consume_bucket(f"tool:{tool}", rate.capacity,
                                                     rate.per_second, 1.0, now)
            if not result.allowed:
                raise LimitExceeded(RATE_LIMITED, "tool-rate",
                                    f"Rate limit exceeded for tool {tool}; retry after "
                                    f"{result.retry_after:.3g}s",
                                    retryAfter=round(result.retry_after, 3))

    def enter(self, principal: Principal, *, checked: bool = True) -> str | None:
        """Take one of the principal's concurrent slots; give it back with
        :meth:`leave` and what this returned (None: no cap, nothing to give back).
        ``checked=False`` takes it even over the cap: the run of a tool call made a
        task, which its call was admitted for, still counts against later calls."""
        cap = self._limits.max_concurrent
        if cap is None:
            return None
        key = principal_key(principal)
        if checked and self._in_flight.get(key, 0) >= cap:
            raise LimitExceeded(TOO_MANY_CONCURRENT, "concurrency",
                                f"Too many concurrent requests (at most {cap})", max=cap)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return key

    def leave(self, key: str | None) -> None:
        if key is None:
            return
        left = self._in_flight[key] - 1
        if left:
            self._in_flight[key] = left
        else:
            del self._in_flight[key]

    async def run_tool(self, tool: str, call: Callable[..., Awaitable[dict[str, Any]]],
                       *args: Any) -> dict[str, Any]:
        """``call(*args)`` under the tool's timeout, then the output-size check: the
        whole of a call whose handler is out of sight (a handler that takes the
        method over, a middleware in between)."""
        timeout = self.timeout_for(tool)
        if timeout is None:
            result = await call(*args)
        else:
            result = await self._timed(tool, timeout, call(*args))
        self.check_output(tool, result)
        return result

    async def run_handler(self, tool: str, handler: Awaitable[T]) -> T:
        """A tool handler's awaitable under the tool's timeout (what a tool call
        awaits through ``Context.limit_handler``).  The limit then acts only where
        it can: a synchronous handler runs to its end before this could be asked,
        and costs no cancel scope."""
        timeout = self.timeout_for(tool)
        if timeout is None:
            return await handler
        return await self._timed(tool, timeout, handler)

    async def _timed(self, tool: str, timeout: float, work: Awaitable[T]) -> T:
        if self._scope_type is None:
            self._scope_type = cancel_scope_type()
            self._asyncio = _is_asyncio(self._scope_type)
        watchdog = self._watchdog_here() if self._asyncio else None
        if watchdog is None:  # another backend: what anyio.fail_after does
            scope = self._scope_type(deadline=anyio.current_time() + timeout)
            with scope:
                result = await work
        else:
            # a plain scope (no timer of its own) that the shared watchdog cancels
            # at the deadline: cancelling a scope is level-triggered, a handler
            # that swallows one cancellation is cancelled again
            scope = self._scope_type()
            with scope:
                watchdog.watch(scope, timeout)
                try:
                    result = await work
                finally:
                    watchdog.forget(scope, timeout)
        if scope.cancelled_caught:  # only our deadline cancels this scope
            raise LimitExceeded(TIMEOUT, "timeout", f"Tool {tool} timed out after {timeout:g}s",
                                timeout=timeout)
        return result

    def _watchdog_here(self) -> _Watchdog:
        """The running loop's watchdog (made on its first timed call)."""
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        watchdog = self._watchdogs.get(loop)
        if watchdog is None:
            for old in [old for old in self._watchdogs if old.is_closed()]:
                del self._watchdogs[old]  # a finished loop's calls are gone with it
            watchdog = self._watchdogs[loop] = _Watchdog(loop)
        self._last = (loop, watchdog)
        return watchdog

    def check_output(self, tool: str, result: dict[str, Any]) -> None:
        cap = self._limits.max_output_bytes
        if cap is None:
            return
        size = len(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS, default=str))
        if size > cap:
            raise LimitExceeded(OUTPUT_TOO_LARGE, "output",
                                f"Tool {tool} returned {size} bytes, more than the "
                                f"{cap} allowed", size=size, max=cap)


def _is_asyncio(scope_type: type[anyio.CancelScope]) -> bool:
    return scope_type.__module__.endswith("._asyncio")


class _Watchdog:
    """Cancels one event loop's tool calls at their deadlines with one timer for all.

    A deadline on each scope would cost a timer per call (made, pushed on the
    loop's heap, cancelled, popped: ~17 calls of security's per-call work).
    Calls with the same timeout end in the order they started, so per timeout
    an insertion-ordered dict holds the running scopes earliest first, and a
    single timer is set for the earliest deadline of all; when it fires it
    cancels every scope past its deadline and sets itself for the next.  It
    fires about once a timeout when nothing times out (its call has ended by
    then, the next one is later).  Used on its loop's thread only.
    """

    __slots__ = ("_loop", "_running", "_timer", "_timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: per timeout: the running scopes and their deadlines, in start order
        self._running: dict[float, dict[anyio.CancelScope, float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def watch(self, scope: anyio.CancelScope, timeout: float) -> None:
        if timeout <= 0:
            scope.cancel()
            return
        deadline = self._loop.time() + timeout
        running = self._running.get(timeout)
        if running is None:
            running = self._running[timeout] = {}
        running[scope] = deadline
        if deadline < self._timer_at:
            self._arm(deadline)

    def forget(self, scope: anyio.CancelScope, timeout: float) -> None:
        running = self._running.get(timeout)
        if running is not None:
            running.pop(scope, None)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = self._loop.call_at(at, self._fire), at

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = self._loop.time()
        earliest = math.inf
        for running in self._running.values():
            while running:
                scope, deadline = next(iter(running.items()))
                if deadline > now:
                    earliest = min(earliest, deadline)
                    break
                del running[scope]
                scope.cancel()
        if earliest < math.inf:
            self._arm(earliest)
