"""Requests a :class:`~.session.Session`'s handler takes over synchronously.

A handler that offers ``take_request`` (the gateway's lane) may claim a
request as the receive loop digests it, and answer it later from a callback
with :meth:`Taken.answer_taken`, with no task to serve it: what relaying a
call costs is then its messages alone.  Such a request must still end the
way a served one does: cancelled by ``notifications/cancelled`` or at the
end of the session, counted while unanswered (the end of input waits for
it), and reported unanswered to a stream that waits for every answer.  That
bookkeeping is this module; the usual serving is in ``incoming``.
"""

from __future__ import annotations

import logging
from typing import Any

from ..core.errors import INTERNAL_ERROR, ConnectionClosedError, McpError
from ..core.events import RequestReceived
from ..core.types import RequestId
from .parts import SessionParts

__all__ = ("Taken",)

log = logging.getLogger("mobius_rpc.runtime")


class Taken(SessionParts):
    """The part of a :class:`~.session.Session` that keeps requests taken over."""

    def _took(self, event: RequestReceived) -> bool:
        """Whether the handler took ``event`` over synchronously (``take_request``)."""
        taker = self._taker
        if taker is None:
            return False
        cancel = taker(self, event)
        if cancel is None:
            return False
        self._taken[event.id] = cancel
        self._taken_events[event.id] = event
        return True

    def answer_taken(self, event: RequestReceived, result: dict[str, Any] | None = None,
                     error: McpError | None = None) -> None:
        """Answer a request the handler took over (``take_request``), and send it.

        Ignored when it was cancelled meanwhile (its cancel callback was called), or
        when its id now names another request (the peer may reuse an answered id)."""
        request_id = event.id
        if self._taken_events.get(request_id) is not event:
            return
        del self._taken_events[request_id]
        self._taken.pop(request_id, None)
        method = event.method
        connection = self.connection
        try:
            if error is not None or result is None:
                answered = connection.respond_error(
                    request_id, error or McpError(INTERNAL_ERROR, "no result"))
            else:
                answered = connection.respond(request_id, result)
        except ConnectionClosedError:
            answered = False
        except Exception:
            # as in _answer: a bad answer costs this request, never the session
            log.exception("could not answer request %r", request_id)
            try:
                answered = connection.respond_error(request_id, McpError(
                    INTERNAL_ERROR, f"Internal error while answering {method}"))
            except Exception:
                answered = False
        self._sent_taken(request_id, answered)

    def serve_taken(self, event: RequestReceived) -> bool:
        """Serve a request the handler took over after all, the usual way: in a
        task of its own, through ``handle_request`` (a forwarded call that turned
        out to need what only that path does); False when it is no longer ours
        to serve (cancelled, the session ended)."""
        if self._taken_events.get(event.id) is not event:
            return False
        del self._taken_events[event.id]
        self._taken.pop(event.id, None)
        try:
            self._start_serving(event)
        except ConnectionClosedError:
            self._scopes.pop(event.id, None)
            return False
        return True

    def _cancel_taken(self, request_id: RequestId, error: McpError | None) -> None:
        """A taken request is cancelled: by the peer (``error`` None: no answer), or
        at the end of input's grace period (the peer gets ``error``)."""
        cancel = self._taken.pop(request_id, None)
        if cancel is None:
            return
        self._taken_events.pop(request_id, None)
        try:
            cancel()
        except Exception:
            log.exception("cancelling a taken request failed")
        try:
            # the connection forgets the request (and drops the reply if cancelled)
            answered = self.connection.respond_error(
                request_id, error or McpError(INTERNAL_ERROR, "cancelled"))
        except Exception:
            answered = False
        self._sent_taken(request_id, answered)

    def _sent_taken(self, request_id: RequestId, answered: bool) -> None:
        """A taken request is done with: its answer (if any) goes out, and a stream
        that waits for each answer stops waiting for one that will not come."""
        if not answered and self._reporting is not None:
            self._reporting.unanswered(request_id)
        self.flush_now()
        self._maybe_idle()
