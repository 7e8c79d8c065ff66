"""``mobius serve --http --oauth-issuer URL ...``: OAuth 2.1 access tokens next to API tokens.

The server becomes an OAuth resource server (the MCP authorization spec): it
serves its protected resource metadata (RFC 9728), answers 401 with the
challenge that leads a client to the authorization server, and accepts the
JWTs that server signs for this server's canonical URL (RFC 8707 audience),
with the required scopes, within their validity window.  Mobius API tokens keep
working beside them.  Each accepted token's subject is matched to the Mobius
user named ``oauth:SUBJECT``, whose membership in the token's organization gives
the roles the rules are written for (:mod:`.security.oauth_members`).

The options are checked before anything starts: a bad one is a one-line error.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from .security.oauth import OAuthConfig, OAuthVerifier

__all__ = ("add_oauth_arguments", "oauth_verifier_of")


def add_oauth_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--oauth-issuer", metavar="URL",
                       help="--http: also accept OAuth access tokens (JWTs) this authorization "
                            "server issues for this server; a token's subject acts as the "
                            "Mobius user named oauth:SUBJECT (see docs/security.md)")
    serve.add_argument("--oauth-resource", metavar="URL",
                       help="--oauth-issuer: this server's canonical URL, the audience its "
                            "tokens must name (default: http://HOST:PORT/mcp; needed behind a "
                            "proxy or with --port 0)")
    serve.add_argument("--oauth-jwks", metavar="URL",
                       help="--oauth-issuer: where the issuer's signing keys are (default: "
                            "the jwks_uri of its metadata)")
    serve.add_argument("--oauth-scope", action="append", default=[], metavar="SCOPE",
                       help="--oauth-issuer: a scope every token must carry (repeatable)")
    serve.add_argument("--oauth-org-claim", default="org", metavar="CLAIM",
                       help="--oauth-issuer: the claim naming the organization a token acts "
                            "in (default: org)")
    serve.add_argument("--oauth-org", default="", metavar="ORG",
                       help="--oauth-issuer: the organization id of tokens without that "
                            "claim (default: none, and such tokens may do nothing)")


def oauth_verifier_of(args: argparse.Namespace) -> OAuthVerifier | None:
    """The verifier the options ask for; None without ``--oauth-issuer``.

    Raises ValueError with a one-line message for options that do not fit.
    """
    named = [flag for flag, value in (("--oauth-resource", args.oauth_resource),
                                      ("--oauth-jwks", args.oauth_jwks),
                                      ("--oauth-scope", args.oauth_scope),
                                      ("--oauth-org", args.oauth_org)) if value]
    if args.oauth_org_claim != "org":
        named.append("--oauth-org-claim")
    if args.oauth_issuer is None:
        if named:
            raise ValueError(f"{named[0]} goes with --oauth-issuer")
        return None
    if not args.http:
        raise ValueError("--oauth-issuer goes with --http (stdio runs as the local identity)")
    if args.no_auth or args.fixture == "conformance":
        raise ValueError("--oauth-issuer needs authentication on (not with --no-auth or "
                         "--fixture conformance)")
    issuer = args.oauth_issuer.strip()
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(f"--oauth-issuer must be an http(s) URL, not {issuer!r}")
    resource = args.oauth_resource
    if resource is None:
        if args.port == 0:
            raise ValueError("--oauth-resource is needed with --port 0 (the audience of the "
                             "tokens is this server's URL, known before it starts)")
        host = f"[{args.host}]" if ":" in args.host else args.host
        resource = f"http://{host}:{args.port}/mcp"
    for scope in args.oauth_scope:
        if not scope or any(c.isspace() or c in '"\\' for c in scope):
            raise ValueError(f"--oauth-scope {scope!r} is not a scope token")
    if not args.oauth_org_claim.strip():
        raise ValueError("--oauth-org-claim needs a claim name")
    config = OAuthConfig(issuer=issuer, resource=resource, jwks_url=args.oauth_jwks,
                         required_scopes=frozenset(args.oauth_scope),
                         scopes_supported=tuple(dict.fromkeys(args.oauth_scope)),
                         organization_claim=args.oauth_org_claim.strip(),
                         default_organization=args.oauth_org.strip())
    return OAuthVerifier(config)
