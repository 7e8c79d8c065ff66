"""The client side: :class:`Client` (one server), :class:`ClientManager` (many)."""

from .client import Client, ClientState, ConnectError
from .manager import ClientManager, ServerHealth, load_server_config
from .session import CallHandlers, ClientSession
from .targets import HttpTarget, StdioTarget, target_from_config, target_from_url

__all__ = ("CallHandlers", "Client", "ClientManager", "ClientSession", "ClientState",
           "ConnectError", "HttpTarget", "ServerHealth", "StdioTarget", "load_server_config",
           "target_from_config", "target_from_url")
