"""The client end of stdio: spawn a server process and frame its pipes.

Shutdown follows the stdio transport's rule (all revisions): close the
child's stdin, wait for it to exit, then SIGTERM, then SIGKILL, so no server
process outlives the client.  stderr is drained continuously (a child that
logs a lot must never block on a full pipe) and its tail is kept for error
messages.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import deque
from collections.abc import Collection, Mapping, Sequence

import anyio
import anyio.abc

from ..core.limits import Limits
from ..core.types import ProcessIdentity, TransportContext, TransportKind
from ..framing.ndjson import LineSplitter, OversizedLine, frame
from .base import OversizedMessage, TransportCapabilities

__all__ = ("ProcessTransport", "child_environment", "SAFE_INHERITED_ENV")

#: bytes buffered for the child's stdin past which ``send`` waits for the pipe
_DRAIN_ABOVE = 1 << 16

#: what a server launched from a configuration file inherits of our environment: enough to
#: find programs, a home directory and the locale, and nothing that may hold a secret (API
#: keys, tokens, cloud credentials live in variables a server must be given explicitly)
SAFE_INHERITED_ENV = ("HOME", "LOGNAME", "USER", "PATH", "SHELL", "TERM", "LANG", "LC_ALL",
                      "LC_CTYPE", "TZ", "TMPDIR", "SYSTEMROOT", "APPDATA", "LOCALAPPDATA",
                      "USERPROFILE", "PATHEXT", "COMSPEC", "TEMP", "TMP")


def child_environment(parent: Mapping[str, str], env: Mapping[str, str] | None,
                      inherit: Collection[str] | None) -> dict[str, str] | None:
    """The environment of a child: the inherited part of ``parent``, then ``env``.

    None (the parent's environment unchanged) when everything is inherited and
    nothing is added.
    """
    if inherit is None:
        return {**parent, **env} if env is not None else None
    return {**{name: parent[name] for name in inherit if name in parent}, **(env or {})}


class ProcessTransport:
    """A :class:`MessageStream` over a child process's stdin/stdout."""

    #: the child closing its stdout leaves its stdin open: the runtime answers
    #: the requests already received (see ``Limits.end_of_input_grace``)
    capabilities = TransportCapabilities(answers_after_end_of_input=True)

    def __init__(self, command: Sequence[str], *, env: Mapping[str, str] | None = None,
                 cwd: str | None = None, limits: Limits | None = None,
                 exit_timeout: float = 2.0, inherit_env: Collection[str] | None = None) -> None:
        self.command = list(command)
        self.env = env
        #: the names of this process's environment variables the child also gets
        #: (None: all of them); ``env`` comes on top
        self.inherit_env = inherit_env
        self.cwd = cwd
        self.exit_timeout = exit_timeout
        self.stderr_tail: deque[str] = deque(maxlen=50)
        self._limit = (limits or Limits()).max_message_bytes
        self._splitter = LineSplitter(self._limit)
        #: messages come from the child; its pid is known once it started
        self.transport_context = TransportContext(TransportKind.PROCESS)
        self._lines: list[bytes | OversizedLine] = []
        self._process: anyio.abc.Process | None = None
        self._stderr_scope: anyio.CancelScope | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has been reaped."""
        return self._process.returncode if self._process is not None else None

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Spawn the child; a command that cannot run raises ``OSError`` at once."""
        env = child_environment(os.environ, self.env, self.inherit_env)
        self._process = await anyio.open_process(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, cwd=self.cwd, start_new_session=True)
        self.transport_context = TransportContext(
            TransportKind.PROCESS, process=ProcessIdentity(self._process.pid, None, None))
        tg.start_soon(self._drain_stderr)

    async def _drain_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        with anyio.CancelScope() as scope:
            self._stderr_scope = scope
            pending = b""
            try:
                async for chunk in self._process.stderr:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    self.stderr_tail.extend(line.decode("utf-8", "replace") for line in lines)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    async def receive(self) -> bytes:
        assert self._process is not None and self._process.stdout is not None
        while not self._lines:
            try:
                chunk = await self._process.stdout.receive(1 << 16)
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                raise anyio.EndOfStream from None
            self._lines.extend(self._splitter.feed(chunk))
        line = self._lines.pop(0)
        if isinstance(line, OversizedLine):
            raise OversizedMessage(self._limit)
        return line

    async def send(self, message: bytes) -> None:
        assert self._process is not None and self._process.stdin is not None
        writer = getattr(self._process.stdin, "_stream", None)
        if isinstance(writer, asyncio.StreamWriter) and not writer.is_closing():
            # asyncio: hand the line to the pipe's transport and wait only when its
            # buffer is over the high-water mark.  anyio's send also yields to the loop
            # (a shielded checkpoint) after every write: a loop turn per message that a
            # gateway forwarding calls over a pipe pays twice per call.
            try:
                writer.write(frame(message))
                transport = writer.transport
                if transport.get_write_buffer_size() > _DRAIN_ABOVE:
                    await writer.drain()
                return
            except (BrokenPipeError, ConnectionResetError, RuntimeError):
                raise anyio.BrokenResourceError from None
        try:
            await self._process.stdin.send(frame(message))
        except (anyio.ClosedResourceError, BrokenPipeError, ConnectionResetError):
            raise anyio.BrokenResourceError from None

    def send_nowait(self, message: bytes) -> bool:
        """Write ``message`` to the child now, from synchronous code, if that needs no
        waiting (asyncio, its stdin open and not over the drain mark); False, with
        nothing written, otherwise: use :meth:`send`."""
        process = self._process
        writer = getattr(process.stdin, "_stream", None) if process is not None else None
        if not isinstance(writer, asyncio.StreamWriter) or writer.is_closing():
            return False
        transport = writer.transport
        if transport.get_write_buffer_size() > _DRAIN_ABOVE:
            return False
        try:
            writer.write(frame(message))
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            return False  # send reports it
        return True

    async def aclose(self) -> None:
        """Close stdin, wait, then SIGTERM, then SIGKILL; always reaps the child."""
        process = self._process
        if process is None or self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            if process.stdin is not None:
                try:
                    await process.stdin.aclose()
                except (anyio.BrokenResourceError, OSError):
                    pass
            for signal_step in (None, process.terminate, process.kill):
                if signal_step is not None and process.returncode is None:
                    try:
                        signal_step()
                    except ProcessLookupError:
                        pass
                with anyio.move_on_after(self.exit_timeout):
                    await process.wait()
                if process.returncode is not None:
                    break
            if self._stderr_scope is not None:
                self._stderr_scope.cancel()
            await process.aclose()
