"""What ``mobius client`` remembers between commands: OAuth tokens in the store.

:func:`open_token_store` gives the :class:`~mobius_rpc.client.oauth.TokenStore`
on a storage URL (SQLite by default, PostgreSQL, or memory), its secrets sealed
with a key kept outside the database.  This layer sits above both the client
(which defines the interface) and storage (which holds the rows).
"""

from .open import open_token_store, token_store_for
from .sql_store import SqlTokenStore

__all__ = ("open_token_store", "token_store_for", "SqlTokenStore")
