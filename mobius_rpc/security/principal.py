"""Who is calling: the authenticated identity every policy decision is about.

A :class:`Principal` is plain, immutable data: the user, the organization the
request acts in, the user's roles there, the scopes the credential grants,
and how the caller authenticated.  Transports carry it in
``TransportContext.principal``; handlers read it as ``ctx.transport.principal``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ("AuthMethod", "Role", "Principal", "ANONYMOUS", "roles_of")


class AuthMethod(StrEnum):
    """How a principal proved who it is."""

    #: a stdio server runs as the OS user who launched it (the local identity)
    LOCAL = "local"
    #: an API token Mobius issued (``mobius token create``)
    API_TOKEN = "api-token"
    #: an OAuth 2.1 bearer token (a JWT) from an external authorization server
    OAUTH = "oauth"
    #: authentication is switched off (``--no-auth``, local development only)
    NONE = "none"


class Role(StrEnum):
    """A member's role in an organization, from most to least powerful."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller acting in one organization."""

    user: str
    organization: str
    roles: frozenset[Role] = field(default_factory=frozenset)
    #: what the credential allows (OAuth scopes, or a token's scopes); empty: no limit
    scopes: frozenset[str] = field(default_factory=frozenset)
    method: AuthMethod = AuthMethod.NONE
    #: the credential's id (an API token's id, a JWT's ``jti``), for the audit log
    credential: str | None = None
    #: when the credential stops holding (epoch seconds: a JWT's ``exp`` plus the
    #: verifier's leeway, an API token's expiry); None: no expiry.  A connection that
    #: authenticated once and carries many requests (a WebSocket) is refused past it.
    #: Not part of equality: it says until when, not who.
    expires_at: float | None = field(default=None, compare=False)
    #: the identity provider's name for the caller (an OAuth token's subject) when
    #: ``user`` is this deployment's (:mod:`.oauth_members`); None: ``user`` is all
    subject: str | None = field(default=None, compare=False)
    #: the hash, made once: a principal is the policy's decision-cache key on every
    #: request, and one authenticated principal serves many requests
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # the fields that tell principals apart in practice (equal principals still
        # hash alike); the generated hash also hashed ``method``, an enum whose hash
        # is a Python call
        object.__setattr__(self, "_hash",
                           hash((self.user, self.organization, self.credential, self.roles)))

    def __hash__(self) -> int:
        return self._hash

    def has_role(self, *roles: Role) -> bool:
        return any(role in self.roles for role in roles)


def roles_of(role: str | None) -> frozenset[Role]:
    """The roles a membership's stored ``role`` grants: none for no membership, and
    none for a role this version does not know (deny by default)."""
    try:
        return frozenset((Role(role),)) if role is not None else frozenset()
    except ValueError:
        return frozenset()


#: the caller when authentication is off: no organization, no roles
ANONYMOUS = Principal("anonymous", "", method=AuthMethod.NONE)
