"""One long-lived connection per upstream server, kept healthy behind the gateway.

Opening a session per call is what makes naive gateways slow (seconds per
call for a server that starts in one); an :class:`Upstream` connects once and
every downstream call reuses that session.  Its supervisor task:

* connects, and reads the upstream's lists (tools, resources, templates,
  prompts) so that listing through the gateway never waits on an upstream;
* re-reads a list when the upstream says it changed (``list_changed``),
  coalescing a burst of notifications into one refresh;
* pings at an interval and restarts a connection that stops answering;
* reconnects after a crash with exponential backoff.

Calls go through a circuit breaker: after ``breaker_threshold`` consecutive
transport failures (closed connection, timeout, cannot connect) calls fail at
once for ``breaker_reset`` seconds, then one trial call decides.  A failing or
stuck upstream therefore costs its own callers at most one timeout, and the
other upstreams never wait for it: nothing here is shared between upstreams.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from ..client.background import spawn_background
from ..client.client import Client, ClientState
from ..client.session import CallHandlers
from ..client.targets import ConnectError, Target, target_from_config
from ..core.errors import (
    INTERNAL_ERROR,
    ConnectionClosedError,
    McpError,
    RequestTimeoutError,
)
from ..core.revisions import Era
from ..runtime.session import ForwardDone, ForwardProgress, ProgressCallback
from .options import UpstreamOptions, options_from_entry

__all__ = ("Upstream", "UpstreamOptions", "UpstreamDown", "LIST_KINDS", "options_from_entry")

log = logging.getLogger("mobius_rpc.gateway")

#: list kinds an upstream is asked for, with the method and the result key
LIST_KINDS: dict[str, tuple[str, str, str]] = {
    "tools": ("tools/list", "tools", "tools"),
    "resources": ("resources/list", "resources", "resources"),
    "templates": ("resources/templates/list", "resourceTemplates", "resources"),
    "prompts": ("prompts/list", "prompts", "prompts"),
}
#: a listen stream is reopened this often even if nothing ends it (seconds)
_LISTEN_TIMEOUT = 3600.0
#: JSON-RPC code of a call refused because its upstream is down (implementation-defined range)
UPSTREAM_UNAVAILABLE = -32010


class UpstreamDown(McpError):
    """The upstream cannot take calls now (down, restarting, or its breaker is open)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(UPSTREAM_UNAVAILABLE, f"upstream {name} is unavailable: {reason}",
                         {"upstream": name})


#: told (upstream, kinds whose lists changed) after a (re)fetch
ListsChanged = Callable[["Upstream", set[str]], Awaitable[None]]
#: told (upstream, method, params) of the notifications no call claimed
Notified = Callable[["Upstream", str, dict[str, Any]], Awaitable[None]]


class Upstream:
    """One upstream server: its connection, its lists, its health."""

    def __init__(self, name: str, target: Target | Mapping[str, Any], *,
                 options: UpstreamOptions | None = None,
                 on_lists: ListsChanged | None = None,
                 on_notification: Notified | None = None) -> None:
        if isinstance(target, Mapping):
            base = options or UpstreamOptions()
            options = options_from_entry(target, base)
            target = target_from_config(target)
        self.name = name
        self.target = target
        self.options = options or UpstreamOptions()
        self._on_lists = on_lists
        self._on_notification = on_notification
        self.client = Client(target, label=name, timeout=self.options.timeout,
                             revision=self.options.revision,
                             connect_timeout=self.options.connect_timeout,
                             sampling=self._unrelated, elicitation=self._unrelated,
                             roots=self._roots, on_notification=self._notified,
                             on_disconnect=self._lost, name="mobius-gateway")
        #: the upstream's lists as last fetched, by kind (see LIST_KINDS)
        self.lists: dict[str, list[dict[str, Any]]] = {kind: [] for kind in LIST_KINDS}
        self.failures = 0          # consecutive transport failures (breaker)
        self.restarts = 0
        self.open_until = 0.0      # breaker open until this monotonic time
        self._trial = False        # a half-open trial call is in flight
        self._attempts = 0         # consecutive failed connection attempts (backoff)
        self._next_attempt = 0.0
        self._stale: set[str] = set()
        self._wake = anyio.Event()
        self._first = anyio.Event()   # the first connection attempt finished
        self._closing = False
        self._connected_before = False
        self._done: anyio.Event | None = None
        self._watched: set[str] = set()
        self._unpublished = False
        self._listening = False
        self._listen_scope: anyio.CancelScope | None = None

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the supervisor task (idempotent); it connects in the background."""
        if self._done is None:
            self._done = anyio.Event()
            spawn_background(self._supervise)

    async def wait_first(self, timeout: float) -> bool:
        """Wait (at most ``timeout``) for the first connection attempt; whether it ended."""
        with anyio.move_on_after(timeout):
            await self._first.wait()
        return self._first.is_set()

    async def aclose(self) -> None:
        self._closing = True
        self._wake.set()
        await self.client.aclose()
        if self._done is not None:
            with anyio.CancelScope(shield=True):
                await self._done.wait()

    @property
    def ready(self) -> bool:
        return self.client.state is ClientState.READY

    def health(self) -> dict[str, Any]:
        now = time.monotonic()
        return {"name": self.name, "state": self.client.state.value,
                "protocolVersion": self.client.protocol_version,
                "lastError": self.client.last_error, "failures": self.failures,
                "restarts": self.restarts,
                "breaker": "open" if self.open_until > now else "closed",
                "retryIn": max(0.0, self._next_attempt - now) if not self.ready else None}

    # ------------------------------------------------------------- supervisor

    async def _supervise(self) -> None:
        assert self._done is not None
        try:
            while not self._closing:
                if not self.ready and time.monotonic() >= self._next_attempt:
                    await self._connect()
                    self._first.set()
                if self.ready and self._stale:
                    kinds, self._stale = self._stale, set()
                    await self._refresh(kinds)
                delay = self.options.health_interval or None
                if not self.ready:
                    delay = max(0.0, self._next_attempt - time.monotonic())
                self._wake = anyio.Event()
                if (self._stale and self.ready) or self._closing:
                    continue
                timed_out = True
                with anyio.move_on_after(delay):
                    await self._wake.wait()
                    timed_out = False
                if timed_out and self.ready and self.options.health_interval:
                    await self._check_health()
        except Exception:  # the supervisor must not die silently
            log.exception("%s: supervisor failed", self.name)
        finally:
            self._first.set()
            self._done.set()

    async def _connect(self) -> None:
        try:
            if self.client.state is ClientState.IDLE:
                await self.client.connect()
            else:
                await self.client.reconnect()
        except (ConnectError, McpError, OSError) as exc:
            self._attempts += 1
            delay = min(self.options.backoff_max,
                        self.options.backoff_initial * 2.0 ** (self._attempts - 1))
            self._next_attempt = time.monotonic() + delay
            log.warning("%s: cannot connect (attempt %d, next in %.1fs): %s", self.name,
                        self._attempts, delay, exc)
            return
        if self._connected_before:
            self.restarts += 1
        self._connected_before = True
        self._attempts = 0
        self._stale = set()  # everything is read afresh just below
        log.info("%s: connected (%s)", self.name, self.client.protocol_version)
        await self._refresh(set(LIST_KINDS))
        self._ensure_listening()

    def _ensure_listening(self) -> None:
        if self.client.era is Era.MODERN and not self._listening:
            self._listening = True
            spawn_background(self._listen)

    # --------------------------------------------- 2026-07-28: the listen stream

    def watch_resources(self, uris: set[str]) -> None:
        """The resource URIs to hear updates of (a modern upstream's listen stream
        is reopened with them; a legacy one is subscribed per URI by the gateway)."""
        if uris != self._watched:
            self._watched = set(uris)
            if self._listen_scope is not None:
                self._listen_scope.cancel()

    async def _listen(self) -> None:
        """Keep one ``subscriptions/listen`` open on a modern upstream: there, list
        changes and resource updates arrive only on such a stream."""
        try:
            await self._listen_while_connected()
        finally:
            self._listening = False

    async def _listen_while_connected(self) -> None:
        client = self.client
        while not self._closing and client.ready and client.era is Era.MODERN:
            caps = client.server_capabilities
            wanted: dict[str, Any] = {}
            for flag, kind in (("toolsListChanged", "tools"), ("promptsListChanged", "prompts"),
                               ("resourcesListChanged", "resources")):
                if (caps.get(kind) or {}).get("listChanged"):
                    wanted[flag] = True
            if self._watched and (caps.get("resources") or {}).get("subscribe"):
                wanted["resourceSubscriptions"] = sorted(self._watched)
            if not wanted:
                return
            with anyio.CancelScope() as scope:
                self._listen_scope = scope
                try:
                    await client.request("subscriptions/listen", {"notifications": wanted},
                                         timeout=_LISTEN_TIMEOUT)
                except (McpError, OSError) as exc:
                    log.debug("%s: listen stream ended: %s", self.name, exc)
                    await anyio.sleep(self.options.backoff_initial)
            self._listen_scope = None

    async def _check_health(self) -> None:
        # 2026-07-28 has no ping: a discovery request is the cheapest round trip there
        method = "server/discover" if self.client.era is Era.MODERN else "ping"
        try:
            await self.client.request(method, timeout=min(self.options.timeout, 10.0))
            if self._unpublished:
                await self._refresh(set(LIST_KINDS))
            return
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            log.warning("%s: health check failed (%s); restarting it", self.name, exc)
            self._next_attempt = 0.0
            try:
                await self.client.reconnect()
            except (ConnectError, McpError, OSError):
                self._attempts += 1
                self._next_attempt = time.monotonic() + self.options.backoff_initial
                return
            self.restarts += 1
            await self._refresh(set(LIST_KINDS))
            self._ensure_listening()

    async def _refresh(self, kinds: set[str]) -> None:
        """Re-read the lists of ``kinds`` the upstream offers; tell the gateway."""
        caps = self.client.server_capabilities
        changed: set[str] = set()
        before = dict(self.lists)
        for kind in kinds:
            method, key, capability = LIST_KINDS[kind]
            items: list[dict[str, Any]] = []
            if capability in caps:
                try:
                    items = await self._all_pages(method, key)
                except McpError as exc:
                    log.warning("%s: %s failed: %s", self.name, method, exc)
                    continue
            if items != self.lists[kind]:
                self.lists[kind] = items
                changed.add(kind)
        if changed and self._on_lists is not None:
            try:
                await self._on_lists(self, changed)
            except Exception:  # e.g. the pin store is down: this upstream's tools stay held
                log.exception("%s: cannot publish its changed lists", self.name)
                self.lists.update({kind: before[kind] for kind in changed})
                self._unpublished = True  # the next health check tries again
            else:
                self._unpublished = False

    async def _all_pages(self, method: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(1000):
            page = await self.client.request(method, {"cursor": cursor} if cursor else None)
            found = page.get(key)
            items.extend(i for i in (found if isinstance(found, list) else [])
                         if isinstance(i, dict))
            cursor = page.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                return items
        raise McpError(INTERNAL_ERROR, f"{method}: too many pages")

    # --------------------------------------------------------- client callbacks

    def _lost(self, client: Client) -> None:
        if not self._closing:
            self._next_attempt = time.monotonic() + self.options.backoff_initial
            self._wake.set()

    async def _unrelated(self, params: dict[str, Any]) -> dict[str, Any]:
        raise McpError(INTERNAL_ERROR, "no call of this gateway is waiting for that answer")

    async def _roots(self) -> list[dict[str, Any]]:
        return [dict(root) for root in self.options.roots]

    async def _notified(self, method: str, params: dict[str, Any]) -> None:
        kind = {"notifications/tools/list_changed": "tools",
                "notifications/prompts/list_changed": "prompts"}.get(method)
        if kind is not None:
            self._stale.add(kind)
            self._wake.set()
        elif method == "notifications/resources/list_changed":
            self._stale.update(("resources", "templates"))
            self._wake.set()
        elif self._on_notification is not None:
            await self._on_notification(self, method, params)

    # ----------------------------------------------------------------- calls

    async def request(self, method: str, params: dict[str, Any] | None = None, *,
                      handlers: CallHandlers | None = None,
                      on_progress: ProgressCallback | None = None,
                      timeout: float | None = None,
                      first: dict[str, Any] | None = None) -> dict[str, Any]:
        """Forward one request on the long-lived session, through the breaker.

        ``timeout`` replaces the per-call timeout (``math.inf``: none, for a
        caller that times the call itself, as parking does); ``first`` is a
        2026-07-28 first round's ``InputRequiredResult`` already received (by
        :meth:`forward`), which the request goes on from."""
        if self.failures >= self.options.breaker_threshold:
            if self.open_until > time.monotonic() or self._trial:
                raise UpstreamDown(self.name, f"circuit open after {self.failures} failures")
            self._trial = True  # half open: this call decides
        try:
            if not self.ready:  # restarting: fail at once (not a failure of a call)
                raise UpstreamDown(self.name, self.client.last_error or "not connected yet")
        except UpstreamDown:
            self._trial = False
            raise
        try:
            result = await self.client.request(method, params, handlers=handlers,
                                               on_progress=on_progress, timeout=timeout,
                                               first=first)
        except (ConnectionClosedError, ConnectError) as exc:
            self._failed()
            raise UpstreamDown(self.name, str(exc)) from exc
        except RequestTimeoutError:
            self._failed()
            raise
        else:
            self.failures, self.open_until = 0, 0.0
            return result
        finally:
            self._trial = False

    def forward(self, method: str, params: dict[str, Any] | None, *, done: ForwardDone,
                handlers: CallHandlers | None = None,
                on_progress: ForwardProgress | None = None) -> Callable[[str], None] | None:
        """Forward one request with no task waiting for it (the gateway's lane):
        its outcome goes to ``done(result, error)``, with the breaker counting and
        the errors of :meth:`request`; returns what cancels it (with a reason).

        None when this path cannot take it now (not connected, the breaker not
        fully closed, not on asyncio): the caller uses :meth:`request`, which
        knows what to do then.  A 2026-07-28 upstream's ``InputRequiredResult``
        reaches ``done`` as it is.
        """
        if self.failures or not self.ready or self._closing:
            return None
        name = self.name

        def finished(result: dict[str, Any] | None, error: McpError | None) -> None:
            if error is None:
                self.failures, self.open_until = 0, 0.0
            elif isinstance(error, ConnectionClosedError):
                self._failed()
                last = self.client.last_error
                error = UpstreamDown(name, f"connection to {name} closed during {method}"
                                     + (f": {last}" if last else ""))
            elif isinstance(error, RequestTimeoutError):
                self._failed()
            done(result, error)
        try:
            session = self.client.session
            request_id = session.forward(method, params, timeout=self.client.timeout,
                                         done=finished, handlers=handlers,
                                         on_progress=on_progress)
        except (McpError, RuntimeError):
            return None  # refused here (closing, not allowed): request() reports it
        return lambda reason: session.end_forward(request_id, reason)

    def _failed(self) -> None:
        self.failures += 1
        if self.failures >= self.options.breaker_threshold:
            self.open_until = time.monotonic() + self.options.breaker_reset
            log.warning("%s: circuit open for %.0fs after %d failures", self.name,
                        self.options.breaker_reset, self.failures)
