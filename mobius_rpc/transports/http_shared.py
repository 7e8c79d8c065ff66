"""Legacy Streamable HTTP sessions that several replicas serve through one store.

Behind a round-robin load balancer every request of a legacy session may reach
a different process.  :class:`SharedSessions` makes that work by keeping what
the session is in a :class:`~mobius_rpc.storage.base.Store` and only a working
copy in each process:

* the session is a ``SessionRecord`` (revision, client info and capabilities,
  log level, subscriptions, expiry), written before ``initialize`` is
  answered; a replica that gets a request for a session it does not hold
  rebuilds the runtime from the record (``stream.restored``) and serves it;
* every SSE event (a POST's stream, the standalone GET stream) is appended to
  the store before it is written to the client, so what a client saw survives
  the replica that sent it and any replica resumes it from ``Last-Event-ID``;
* the store's channel (PostgreSQL ``LISTEN/NOTIFY``; an outbox polled on
  SQLite) carries what one replica must tell another: "stream X has new
  events" (a GET held elsewhere wakes up), an answer to a server-to-client
  request (sampling, elicitation, roots) for the replica waiting for it (our
  request ids are ``<replica>~<n>``, so the answer names it),
  ``notifications/cancelled`` (every replica holding the session passes it
  on), state changes and ends of sessions.  Channel delivery is at most once,
  so followers also poll the store every ``poll_interval`` seconds.

Expiry and retention are the store's: each request pushes the record's
``expires_at`` back (in the background, at most every tenth of the TTL), and
a background sweep removes expired sessions, their streams and old events;
neither ever runs in a request's path.  A working copy idle here for the TTL
is dropped from this process only.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import anyio
import orjson
from anyio.abc import TaskGroup, TaskStatus

from ..core.jsonrpc import Classified, IncomingError, IncomingNotification, IncomingResponse
from ..core.types import RequestId
from ..storage.base import Store, Subscription
from ..storage.errors import StoreError, StreamFinished
from ..storage.records import SessionRecord
from .http_session import HttpMessageStream
from .http_shared_streams import GET_STREAM, SharedStreams

__all__ = ("SharedSessions", "Hosted", "CHANNEL", "GET_STREAM")

log = logging.getLogger("mobius_rpc.http")

#: the channel every replica listens on (payloads are small JSON objects)
CHANNEL = "mobius.http"


@dataclass(eq=False)
class Hosted:
    """This replica's working copy of a shared session."""

    stream: HttpMessageStream
    scope: anyio.CancelScope
    record: SessionRecord
    touched: float  # when this replica last pushed the record's expiry back
    active: float  # the last request this replica served for it
    streams_opened: int = 0
    get_open: bool = False
    get_position: int = 0  # the last standalone event a GET here delivered


class SharedSessions(SharedStreams):
    """Hosts legacy sessions whose records and events are in ``store``.

    ``replica`` names this process in request ids and channel messages (random
    by default; two replicas must never share one).  ``session_ttl`` is how long
    a session lives after its last request, ``sweep_interval`` how often expired
    state is removed, ``poll_interval`` how long a follower waits for a wake-up
    before looking at the store again.
    """

    def __init__(self, store: Store, *, replica: str | None = None,
                 session_ttl: float = 1800.0, sweep_interval: float = 60.0,
                 poll_interval: float = 1.0) -> None:
        if not session_ttl > 0 or not sweep_interval > 0 or not poll_interval > 0:
            raise ValueError("session_ttl, sweep_interval and poll_interval must be positive")
        self.store = store
        self.replica = replica or secrets.token_hex(4)
        if "~" in self.replica or "." in self.replica:
            raise ValueError("a replica name must not contain '~' or '.'")
        self.id_prefix = f"{self.replica}~"
        self.session_ttl = session_ttl
        self.sweep_interval = sweep_interval
        self.poll_interval = poll_interval
        self.hosted: dict[str, Hosted] = {}
        self._loading: dict[str, anyio.Lock] = {}
        self._wakeups: dict[tuple[str, str], anyio.Event] = {}
        self._updated_hooks: list[Any] = []
        self._cancel_hooks: list[Any] = []
        self._tg: TaskGroup | None = None
        #: called with (session id) to end this replica's copy; set by the transport
        self.end_local: Any = None

    # ------------------------------------------------------------ lifecycle

    async def start(self, tg: TaskGroup) -> None:
        """Listen on the channel and sweep, in ``tg`` (the transport's lifespan)."""
        self._tg = tg
        await tg.start(self._listen)
        tg.start_soon(self._sweep_loop)

    async def _listen(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                      ) -> None:
        subscription: Subscription
        async with self.store.channel.subscribe(CHANNEL) as subscription:
            task_status.started()
            async for message in subscription:
                try:
                    await self._on_message(orjson.loads(message.payload))
                except Exception:  # one bad message must not stop the listener
                    log.exception("a replica message could not be handled")

    async def _sweep_loop(self) -> None:
        while True:
            await anyio.sleep(self.sweep_interval)
            try:
                report = await self.store.sweep()
            except StoreError as error:
                log.warning("sweeping the session store failed: %s", error)
                continue
            for session_id in report.sessions:
                log.info("session %s expired", session_id)
                await self._publish({"k": "end", "s": session_id})
            cutoff = time.time() - self.session_ttl
            for session_id, hosted in list(self.hosted.items()):
                if hosted.active < cutoff:
                    await self._end_here(session_id)

    # ------------------------------------------------------------ sessions

    def new_record(self, session_id: str, initialize: Mapping[str, Any] | None) -> SessionRecord:
        """The record of a session being initialized (client info and capabilities
        from the ``initialize`` params; the revision is set once it is answered)."""
        now = time.time()
        params = initialize or {}
        info = params.get("clientInfo")
        caps = params.get("capabilities")
        return SessionRecord(session_id, now, now, now + self.session_ttl, None,
                             info if isinstance(info, dict) else None,
                             caps if isinstance(caps, dict) else None)

    async def initialized(self, hosted: Hosted, version: str) -> None:
        """``initialize`` was answered at ``version``: write the record before the answer."""
        hosted.record = replace(hosted.record, protocol_version=version)
        await self.store.sessions.put(hosted.record)

    async def load(self, session_id: str) -> SessionRecord | None:
        """The session's record, or None when it is unknown, deleted or expired."""
        record = await self.store.sessions.get(session_id)
        if record is None or record.protocol_version is None \
                or record.expires_at < time.time():
            return None
        return record

    def lock(self, session_id: str) -> anyio.Lock:
        """Serializes taking up one session here (two requests may race to do it)."""
        lock = self._loading.get(session_id)
        if lock is None:
            lock = self._loading[session_id] = anyio.Lock()
        return lock

    def unlock(self, session_id: str, lock: anyio.Lock) -> None:
        """Forget the lock once nobody holds or waits for it (ids that were never
        sessions must not pile up here)."""
        if not lock.locked() and not lock.statistics().tasks_waiting \
                and self._loading.get(session_id) is lock:
            del self._loading[session_id]

    def seen(self, hosted: Hosted) -> None:
        """A request for the session arrived: push its expiry back, in the background."""
        now = time.time()
        hosted.active = now
        if now - hosted.touched > self.session_ttl / 10 and self._tg is not None:
            hosted.touched = now
            self._tg.start_soon(self._touch, hosted.record.session_id, now)

    async def _touch(self, session_id: str, now: float) -> None:
        try:
            known = await self.store.sessions.touch(session_id, now, now + self.session_ttl)
        except StoreError as error:
            log.warning("could not extend session %s: %s", session_id, error)
            return
        if not known:  # deleted elsewhere, and the news did not reach us
            await self._end_here(session_id)

    async def delete(self, session_id: str) -> bool:
        """End the session everywhere; False when the store did not know it."""
        known = await self.store.sessions.delete(session_id)
        await self.store.events.delete_session(session_id)
        await self._publish({"k": "end", "s": session_id})
        return known

    async def _end_here(self, session_id: str) -> None:
        self._loading.pop(session_id, None)
        for key in [key for key in self._wakeups if key[0] == session_id]:
            self._wake(*key)
        if self.end_local is not None:
            await self.end_local(session_id)

    # ------------------------------------------------------- SessionRelay

    async def set_log_level(self, session_id: str, level: str) -> None:
        if await self.store.sessions.set_log_level(session_id, level):
            await self._publish({"k": "state", "s": session_id})

    async def set_subscribed(self, session_id: str, uri: str, subscribed: bool) -> None:
        change = self.store.sessions.subscribe if subscribed else self.store.sessions.unsubscribe
        if await change(session_id, uri):
            await self._publish({"k": "state", "s": session_id})

    async def resource_updated(self, uri: str, notification: bytes) -> None:
        for session_id in await self.store.sessions.subscribers(uri):
            try:
                await self.append(session_id, GET_STREAM, notification)
            except StreamFinished:
                pass
        await self._publish({"k": "updated", "uri": uri})

    def on_resource_updated(self, hook: Any) -> None:
        self._updated_hooks.append(hook)

    async def task_cancelled(self, task_id: str) -> None:
        await self._publish({"k": "task-cancel", "t": task_id})

    def on_task_cancelled(self, hook: Any) -> None:
        self._cancel_hooks.append(hook)

    # ------------------------------------------------------------ routing

    def split(self, session_id: str, decoded: Classified) -> tuple[list[Any], list[Any]]:
        """(messages to hand to this replica's runtime, answers owed to other replicas).

        An answer whose id carries another replica's prefix goes to that replica;
        ``notifications/cancelled`` stays here and is also told to the others.
        """
        here: list[Any] = []
        elsewhere: list[Any] = []
        for item in decoded.items:
            if isinstance(item, IncomingResponse | IncomingError):
                owner = _owner(item.id)
                if owner is not None and owner != self.replica:
                    elsewhere.append(item.raw)
                    continue
            elif type(item) is IncomingNotification and item.method == "notifications/cancelled":
                elsewhere.append(item.raw)
            here.append(item.raw)
        return here, elsewhere

    async def forward(self, session_id: str, messages: list[Any]) -> None:
        """Send answers to the replicas waiting for them, cancellations to all."""
        for message in messages:
            owner = _owner(message.get("id")) if "method" not in message else None
            await self._publish({"k": "deliver", "s": session_id, "to": owner,
                                 "m": message})

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("k")
        session_id = message.get("s")
        if kind == "ev":
            self._wake(str(session_id), str(message.get("st")))
            return
        if kind == "task-cancel":
            for hook in self._cancel_hooks:
                hook(str(message.get("t")))
            return
        if kind == "updated":
            for hook in self._updated_hooks:
                hook(str(message.get("uri")))
            return
        if message.get("r") == self.replica or not isinstance(session_id, str):
            return  # our own (already done here), or malformed
        hosted = self.hosted.get(session_id)
        if kind == "end":
            if hosted is not None:
                await self._end_here(session_id)
        elif kind == "deliver" and hosted is not None:
            target = message.get("to")
            if target is None or target == self.replica:
                await hosted.stream.deliver(orjson.dumps(message.get("m")))
        elif kind == "state" and hosted is not None:
            record = await self.store.sessions.get(session_id)
            refresh = getattr(hosted.stream, "on_state", None)
            if record is not None:
                hosted.record = replace(record, protocol_version=hosted.record.protocol_version)
                if refresh is not None:
                    refresh(record)

    async def _publish(self, message: dict[str, Any]) -> None:
        message["r"] = self.replica
        try:
            await self.store.channel.publish(CHANNEL, orjson.dumps(message))
        except StoreError as error:
            log.warning("could not tell the other replicas: %s", error)


def _owner(request_id: RequestId | None) -> str | None:
    """The replica a request id of ours names (``<replica>~<n>``), else None."""
    if isinstance(request_id, str):
        owner, sep, _ = request_id.partition("~")
        if sep and owner:
            return owner
    return None
