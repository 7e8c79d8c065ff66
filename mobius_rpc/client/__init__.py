"""The client side: :class:`Client` (one server), :class:`ClientManager` (many)."""

from .client import Client, ConnectError
from .session import ClientSession
from .targets import HttpTarget, StdioTarget, target_from_config, target_from_url

__all__ = ("Client", "ClientSession", "ConnectError", "HttpTarget", "StdioTarget",
           "target_from_config", "target_from_url")
