"""The stdio transport: newline-delimited messages on a pair of pipes.

Only framing lives here.  On the asyncio backend the pipes are read and
written through the event loop (no thread hop per message, which would cost
more than the whole protocol work); when a side is a regular file, or on
another backend, reads and writes go through a worker thread instead.

stdout carries protocol messages and nothing else: the CLI routes logging to
stderr before it creates this transport.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import stat
import sys
from typing import Any, BinaryIO

import anyio
import anyio.to_thread

from ..core.limits import Limits
from ..core.types import ProcessIdentity, TransportContext, TransportKind
from ..framing.ndjson import LineSplitter, OversizedLine, frame
from .base import OversizedMessage, TransportCapabilities

__all__ = ("StdioTransport", "own_identity")

_CHUNK = 1 << 16


def _is_pipe_like(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


class StdioTransport:
    """Messages from ``stdin`` lines, to ``stdout`` lines (default: the process's own)."""

    #: stdin's end leaves stdout open: the runtime answers the requests already
    #: received (see ``Limits.end_of_input_grace``)
    capabilities = TransportCapabilities(answers_after_end_of_input=True)

    def __init__(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
                 *, limits: Limits | None = None, principal: Any = None) -> None:
        """``principal``: the local identity every message acts as (opaque here)."""
        self._stdin = stdin if stdin is not None else sys.stdin.buffer
        self._stdout = stdout if stdout is not None else sys.stdout.buffer
        self._limit = (limits or Limits()).max_message_bytes
        self._splitter = LineSplitter(self._limit)
        #: every message on stdio comes from whoever launched this process, as this OS user
        self.transport_context = TransportContext(TransportKind.STDIO, process=own_identity(),
                                                  principal=principal)
        self._lines: list[bytes | OversizedLine] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._write_protocol: _DrainProtocol | None = None
        self._started = False
        self._eof = False
        self._write_lock = anyio.Lock()

    async def _start(self) -> None:
        self._started = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not the asyncio backend: use the thread path
            return
        if _is_pipe_like(self._stdin.fileno()):
            reader = asyncio.StreamReader(limit=_CHUNK * 4)
            read_transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader),
                os.fdopen(os.dup(self._stdin.fileno()), "rb", 0))
            # asyncio reads a pipe 256 KiB at a time: every read allocates a buffer that size
            # (an mmap and munmap, ~40 us, for a message of a few hundred bytes) before
            # trimming it.  A message rarely exceeds 64 KiB and a longer one just takes more
            # reads, so reads are capped at the splitter's chunk size.
            if hasattr(read_transport, "max_size"):
                read_transport.max_size = _CHUNK
            self._reader = reader
        if _is_pipe_like(self._stdout.fileno()):
            self._stdout.flush()
            protocol = _DrainProtocol()
            transport, _ = await loop.connect_write_pipe(
                lambda: protocol, os.fdopen(os.dup(self._stdout.fileno()), "wb", 0))
            self._writer = transport
            self._write_protocol = protocol

    async def receive(self) -> bytes:
        if not self._started:
            await self._start()
        while not self._lines:
            if self._eof:
                raise anyio.EndOfStream
            if self._reader is not None:
                chunk = await self._reader.read(_CHUNK)
            else:
                chunk = await anyio.to_thread.run_sync(self._read_blocking, abandon_on_cancel=True)
            if not chunk:
                self._eof = True
                # A last line without a trailing newline still counts.
                self._lines.extend(self._splitter.feed(b"\n"))
                continue
            self._lines.extend(self._splitter.feed(chunk))
        line = self._lines.pop(0)
        if isinstance(line, OversizedLine):
            raise OversizedMessage(self._limit)
        return line

    def _read_blocking(self) -> bytes:
        read1 = getattr(self._stdin, "read1", None)
        return read1(_CHUNK) if read1 is not None else self._stdin.read(_CHUNK)

    async def send(self, message: bytes) -> None:
        if not self._started:
            await self._start()
        data = frame(message)
        if self._writer is not None:
            if self._writer.is_closing():
                raise anyio.BrokenResourceError
            self._writer.write(data)
            assert self._write_protocol is not None
            await self._write_protocol.drain()
            return
        async with self._write_lock:
            await anyio.to_thread.run_sync(self._write_blocking, data)

    def send_nowait(self, message: bytes) -> bool:
        """Write ``message`` now, from synchronous code, if that needs no waiting: the
        pipe is open through the loop and its buffer is not over the mark at which
        :meth:`send` would wait.  False (nothing written) otherwise: use :meth:`send`."""
        writer = self._writer
        if writer is None or writer.is_closing() or writer.get_write_buffer_size() > _CHUNK:
            return False
        writer.write(frame(message))
        return True

    def _write_blocking(self, data: bytes) -> None:
        try:
            self._stdout.write(data)
            self._stdout.flush()
        except (BrokenPipeError, ValueError, OSError):
            raise anyio.BrokenResourceError from None

    async def aclose(self) -> None:
        self._eof = True
        if self._writer is not None:
            self._writer.close()


def own_identity() -> ProcessIdentity:
    """This process's OS identity (the user a host launched us as)."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:
        user: str | None = getpass.getuser()
    except Exception:  # no login name in the environment nor in the user database
        user = None
    return ProcessIdentity(os.getpid(), uid, user)


class _DrainProtocol(asyncio.Protocol):
    """Write-side flow control for a pipe: wait while the OS buffer is full."""

    def __init__(self) -> None:
        self._paused = False
        self._waiters: list[asyncio.Future[None]] = []
        self._lost = False

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.resume_writing()

    async def drain(self) -> None:
        if self._lost:
            raise anyio.BrokenResourceError
        if not self._paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter
        if self._lost:
            raise anyio.BrokenResourceError
