"""OAuth callers as members of this deployment's organizations.

An accepted JWT says who the caller is at the authorization server (``sub``)
and, by a claim, the organization it acts in; it says nothing of the roles the
policy's rules are written for.  Those live in the store, as for API tokens:
the subject is matched to the Mobius user named ``oauth:SUBJECT`` (``mobius user
create oauth:SUBJECT``), and the roles are that user's membership in the
organization (``mobius org add-member ORG oauth:SUBJECT --role member``).

The prefix keeps the identity provider's names apart from this deployment's
own: a subject that happens to equal the name of a local user (the OS user a
first start made owner) or a user id never acts as that user, and an identity
provider that lets clients pick their ids cannot name its way into a membership.

* a matched user acts under their own id (rules and audit records name them as
  they name the same person's API tokens), with the membership's role, or no
  role when they are no member of that organization;
* a subject no user is named for acts as ``oauth:SUBJECT`` with no role: only
  rules naming ``user:oauth:SUBJECT`` (or everyone) can allow it anything;
* a disabled user is refused (None), as their API tokens are.

The mapped principal keeps the subject (``Principal.subject``), so that a
connection that authenticated once (a WebSocket) is mapped again on each
request (:meth:`OAuthMembership.recheck`).

Every token's bytes were checked by the verifier before; this only reads the
store, and remembers each answer while the store's security epoch stands still
(a membership, user or role change anywhere moves it) and at most ``ttl``
seconds, so a steady caller costs no read per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from .epoch import EpochWatch
from .principal import Principal, Role, roles_of
from .store import SecurityStore

__all__ = ("OAuthMembership", "SUBJECT_PREFIX")

#: what an OAuth subject's user name starts with
SUBJECT_PREFIX = "oauth:"


@dataclass(frozen=True, slots=True)
class _Known:
    user: str | None  # None: disabled
    roles: frozenset[Role]
    epoch: int
    until: float


class OAuthMembership:
    """Maps OAuth principals to users and roles of ``store`` (see the module docstring)."""

    def __init__(self, store: SecurityStore, epoch: EpochWatch, *, ttl: float = 60.0,
                 cache_size: int = 4096, clock: Callable[[], float] = time.time,
                 prefix: str = SUBJECT_PREFIX) -> None:
        self.store = store
        self.prefix = prefix
        self.epoch = epoch
        self.ttl = ttl
        self.cache_size = cache_size
        self._clock = clock
        self._known: dict[tuple[str, str], _Known] = {}

    async def __call__(self, principal: Principal) -> Principal | None:
        """The verifier's ``principal`` (its user is the token's subject) as this
        deployment's; None for a disabled user."""
        epoch = self.epoch.now()
        if epoch is None:
            epoch = await self.epoch.current()
        key = (principal.user, principal.organization)
        now = self._clock()
        known = self._known.get(key)
        if known is None or known.epoch != epoch or now >= known.until:
            known = await self._look_up(principal, epoch, now)
            if len(self._known) >= self.cache_size:
                self._known.clear()
            if self.cache_size > 0:
                self._known[key] = known
        if known.user is None:
            return None
        return replace(principal, user=known.user, roles=known.roles, subject=principal.user)

    async def recheck(self, principal: Principal) -> Principal | None:
        """A principal this mapped before, as it stands now (a WebSocket's, on each
        request: a membership removed or a user disabled since its handshake applies
        to its next request, as for API tokens)."""
        if principal.subject is None:
            return principal
        return await self(replace(principal, user=principal.subject, roles=frozenset(),
                                  subject=None))

    async def _look_up(self, principal: Principal, epoch: int, now: float) -> _Known:
        until = now + self.ttl
        name = self.prefix + principal.user
        user = await self.store.get_user_by_name(name)
        if user is None:
            return _Known(name, frozenset(), epoch, until)
        if user.disabled:
            return _Known(None, frozenset(), epoch, until)
        membership = await self.store.get_membership(principal.organization, user.id) \
            if principal.organization else None
        return _Known(user.id, roles_of(membership.role if membership else None), epoch,
                      until)
