"""Resource limits applied to every incoming message, with documented defaults.

The limits protect the process from a hostile or broken peer: a 2 GB line, a
JSON document nested a million levels deep, or a batch of a million entries
must cost an error reply, not the server.

Defaults (all configurable per connection):

* ``max_message_bytes`` = 4 MiB per message (one stdio line, one HTTP body).
* ``max_depth`` = 64 levels of JSON arrays/objects.  MCP messages need about
  ten; tool arguments rarely exceed twenty.
* ``max_batch`` = 64 entries in a 2025-03-26 batch.
* ``request_timeout`` = 60 s for requests *we* send (sampling, elicitation,
  roots); the peer gets ``notifications/cancelled`` when it expires.
* ``end_of_input_grace`` = 10 s: when the peer closes its side of a stream
  whose other direction still works (stdio: stdin ends, stdout is open), the
  requests already received get this long to finish and be answered; what
  still runs then is cancelled and answered with an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ("Limits", "nesting_depth_exceeds")


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = 4 * 1024 * 1024
    max_depth: int = 64
    max_batch: int = 64
    request_timeout: float = 60.0
    end_of_input_grace: float = 10.0


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_EMPTY_PAIR = re.compile(rb"\{\}|\[\]")


def nesting_depth_exceeds(raw: bytes, max_depth: int) -> bool:
    """Whether the JSON text nests arrays/objects deeper than ``max_depth``.

    Runs on the raw bytes *before* parsing so a deep document never reaches the
    parser's recursion.  A count of opening brackets is an upper bound on the
    depth, so ordinary messages cost two ``bytes.count`` calls.  Otherwise the
    strings are cut out and everything but brackets deleted (both in C), and
    innermost empty pairs are peeled off once per level: after ``max_depth``
    rounds anything left is deeper than allowed.
    """
    if raw.count(b"{") + raw.count(b"[") <= max_depth:
        return False
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    for _ in range(max_depth):
        if not brackets:
            return False
        brackets, removed = _EMPTY_PAIR.subn(b"", brackets)
        if not removed:
            return False  # unbalanced: let the parser report it
    return bool(brackets)
