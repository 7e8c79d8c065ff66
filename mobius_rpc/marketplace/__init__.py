"""The marketplace: a server.json catalog, per-organization installs, the sandbox.

See docs/marketplace.md.  :class:`~.service.Marketplace` is the entry point;
:meth:`~.service.Marketplace.launch_entries` is what the gateway launches.
"""

from .backend import market_store
from .catalog import Catalog, CatalogEntry, Page, SearchQuery, load_bundled
from .inputs import InputError, MissingConfiguration
from .installer import HashMismatch, Installer, InstallError
from .sandbox import Limits, SandboxConfig, probe, wrap
from .secrets import SecretBox, SecretError, load_key
from .serverjson import SCHEMA_URL, ServerJsonError, validate_server
from .service import Conflict, Forbidden, MarketError, Marketplace, NotFound
from .store import Installation, MarketStore, MemoryMarketStore, Rating

__all__ = ("Catalog", "CatalogEntry", "Page", "SearchQuery", "load_bundled", "InputError",
           "MissingConfiguration", "HashMismatch", "InstallError", "Installer", "Limits",
           "SandboxConfig", "probe", "wrap", "SecretBox", "SecretError", "load_key",
           "SCHEMA_URL", "ServerJsonError", "validate_server", "Conflict", "Forbidden",
           "Marketplace", "MarketError", "NotFound", "Installation", "MarketStore",
           "MemoryMarketStore", "Rating", "market_store")
