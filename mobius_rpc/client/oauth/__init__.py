"""OAuth 2.1 for the client: tokens for MCP servers that require authorization.

Give an :class:`OAuth` to an HTTP target (``HttpTarget(url, oauth=OAuth(...))``)
and the Streamable HTTP and HTTP+SSE transports answer the server's 401 by
discovering its authorization server and getting a token, refresh it, step
up their scope on a 403 ``insufficient_scope``, and never show the token to
another origin.  The user's part of a login is the ``authorize`` callback;
:class:`LoopbackRedirect` is one that listens on 127.0.0.1 for the browser.
"""

from .assertions import id_jag_exchange, static_assertion
from .auth import BearerAuth
from .errors import OAuthError
from .flow import OAuth, ServerAuthorization
from .grants import SigningKey, load_signing_key
from .loopback import LoopbackRedirect
from .store import ClientRegistration, MemoryTokenStore, TokenSet, TokenStore

__all__ = ("OAuth", "OAuthError", "BearerAuth", "ServerAuthorization", "SigningKey",
           "load_signing_key", "LoopbackRedirect", "ClientRegistration", "MemoryTokenStore",
           "TokenSet", "TokenStore", "id_jag_exchange", "static_assertion")
