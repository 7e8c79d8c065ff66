"""The one error every failure of the client's authorization becomes.

It is an :class:`~mobius_rpc.core.errors.McpError`, so a refused discovery or
token request fails the MCP request that needed it with a message that says
what went wrong (and which URL), instead of a bare 401.  ``reason`` is a short
machine-readable word for tests and logs; the message is for people.
"""

from __future__ import annotations

from ...core.errors import INTERNAL_ERROR, McpError

__all__ = ("OAuthError",)


class OAuthError(McpError):
    """Authorization against a server's authorization server failed or was refused."""

    def __init__(self, message: str, reason: str = "oauth") -> None:
        super().__init__(INTERNAL_ERROR, f"authorization failed: {message}",
                         {"oauth": reason})
        self.reason = reason
