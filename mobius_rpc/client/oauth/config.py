"""The ``oauth`` part of a server entry in a client configuration file.

::

    {"url": "https://mcp.example.com/mcp", "oauth": true}
    {"url": "https://mcp.example.com/mcp", "auth": "oauth"}
    {"url": "https://mcp.example.com/mcp",
     "oauth": {"grant": "client_credentials", "client_id": "svc",
               "client_secret_env": "SVC_SECRET", "scope": "mcp:tools"}}

A secret is best named by the environment variable that holds it
(``client_secret_env``), so that the file itself carries none; a private key
for ``private_key_jwt`` is named by its file (``private_key_file``).  Every
unknown field is an error: a misspelt ``client_secret`` must not silently
turn a confidential client into a public one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .flow import Authorize, OAuth
from .grants import load_signing_key

__all__ = ("oauth_from_config",)

_FIELDS = {"grant", "client_id", "client_secret", "client_secret_env", "auth_method",
           "private_key_file", "signing_algorithm", "client_metadata_url", "client_name",
           "redirect_uri", "scope"}
_GRANTS = ("authorization_code", "client_credentials")


def oauth_from_config(entry: Mapping[str, Any], *, authorize: Authorize | None = None,
                      environ: Mapping[str, str] = os.environ) -> OAuth | None:
    """The :class:`OAuth` a server entry asks for (None: the entry uses no OAuth)."""
    value = entry.get("oauth")
    if value is None and entry.get("auth") == "oauth":
        value = True
    if value is None or value is False:
        return None
    if value is True:
        return OAuth(authorize=authorize)
    if not isinstance(value, Mapping):
        raise ValueError("'oauth' must be true or an object")
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        raise ValueError(f"'oauth' has unknown fields: {', '.join(unknown)}")
    for name in _FIELDS - {"private_key_file"}:
        if name in value and not isinstance(value[name], str):
            raise ValueError(f"'oauth.{name}' must be a string")
    grant = value.get("grant", "authorization_code")
    if grant not in _GRANTS:
        raise ValueError(f"'oauth.grant' must be one of {', '.join(_GRANTS)}")
    secret = value.get("client_secret")
    if "client_secret_env" in value:
        secret = environ.get(value["client_secret_env"])
        if not secret:
            raise ValueError(f"the environment variable {value['client_secret_env']} "
                             f"(oauth.client_secret_env) is not set")
    oauth = OAuth(authorize=authorize, grant=grant, client_id=value.get("client_id"),
                  client_secret=secret, auth_method=value.get("auth_method"),
                  client_metadata_url=value.get("client_metadata_url"),
                  scope=value.get("scope"))
    if "client_name" in value:
        oauth.client_name = value["client_name"]
    if "redirect_uri" in value:
        oauth.redirect_uri = value["redirect_uri"]
    if "private_key_file" in value:
        path = value["private_key_file"]
        if not isinstance(path, str):
            raise ValueError("'oauth.private_key_file' must be a path")
        try:
            pem = Path(path).expanduser().read_text()
        except OSError as exc:
            raise ValueError(f"cannot read oauth.private_key_file {path}: {exc}") from exc
        oauth.signing_key = load_signing_key(pem, value.get("signing_algorithm"))
    if grant == "client_credentials" and not oauth.client_id:
        raise ValueError("'oauth.grant' client_credentials needs 'client_id'")
    return oauth
