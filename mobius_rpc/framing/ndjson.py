"""Newline-delimited JSON framing (the stdio transport), sans-I/O.

stdio carries one JSON-RPC message per line, UTF-8, no embedded newlines
(all revisions, "Transports / stdio").  :class:`LineSplitter` turns arbitrary
byte chunks into complete lines and enforces the message size limit while a
line is still arriving, so a peer cannot make us buffer an endless line: once
a line passes the limit its bytes are discarded up to the next newline and
one :class:`OversizedLine` marker is returned in its place.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ("LineSplitter", "OversizedLine", "frame")


@dataclass(frozen=True, slots=True)
class OversizedLine:
    """A line longer than the limit was dropped; ``size`` is how much we saw of it."""

    size: int


class LineSplitter:
    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._discarding = 0  # >0 while skipping the rest of an oversized line

    def feed(self, chunk: bytes) -> list[bytes | OversizedLine]:
        """Add received bytes; return every line completed by them (without newline).

        Blank lines are skipped; a trailing ``\\r`` is removed so CRLF peers work.
        """
        out: list[bytes | OversizedLine] = []
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                break
            piece = chunk[start:newline]
            start = newline + 1
            if self._discarding:
                out.append(OversizedLine(self._discarding + len(piece)))
                self._discarding = 0
                continue
            if self._buffer:
                self._buffer += piece
                line = bytes(self._buffer)
                self._buffer.clear()
            else:
                line = piece
            if len(line) > self.max_line_bytes:
                out.append(OversizedLine(len(line)))
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if line.strip():
                out.append(line)
        rest = chunk[start:]
        if rest:
            if self._discarding:
                self._discarding += len(rest)
            else:
                self._buffer += rest
                if len(self._buffer) > self.max_line_bytes:
                    self._discarding = len(self._buffer)
                    self._buffer.clear()
        return out

    def pending_bytes(self) -> int:
        """Bytes of an unfinished line currently buffered."""
        return len(self._buffer)


def frame(message: bytes) -> bytes:
    """One serialized message as one stdio line."""
    return message + b"\n"
