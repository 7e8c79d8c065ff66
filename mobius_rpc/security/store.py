"""What security keeps: plain records and the async store protocol that holds them.

Every record is immutable plain data shaped like the row of a SQL table it
will become (ids are ``str``, timestamps ``float`` epoch seconds, JSON
columns ``dict`` or tuples of strings), so the storage layer can implement
:class:`SecurityStore` on SQLite and PostgreSQL without this package knowing
SQL.  :class:`MemorySecurityStore` is the reference implementation: tests,
embedding, and single-process servers that need nothing durable.

Operations that must be atomic in a database are single methods here:
``create_organization_with_owner`` writes a new organization, its owner's
membership and its first rules together or not at all (so no reader, and no
crash, ever leaves an organization without its owner or its rules), adding
or removing a rule bumps its organization's ``rules_version`` (so policy
caches see the change), ``append_audit`` adds a batch of records in one
transaction and refuses it unless its first ``seq`` is the next one (so
concurrent writers, even on several replicas, can never fork the hash
chain; a primary key on ``seq`` does it in SQL), ``retain_audit`` deletes and
moves the checkpoint together, and ``consume_bucket`` reads, refills and takes
from a rate bucket in one step (a ``SELECT ... FOR UPDATE`` or a single
``UPDATE`` in SQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

__all__ = (
    "Organization", "User", "Membership", "ApiToken", "ResolvedToken", "Rule", "AuditRecord",
    "AuditCheckpoint", "AuditQuery", "RateBucket", "BucketResult", "StoreError",
    "DuplicateError", "AuditConflict", "SecurityStore", "MemorySecurityStore", "refill",
    "check_new_organization",
)


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    created_at: float
    #: bumped by every rule change: the key of compiled-policy caches
    rules_version: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    created_at: float
    disabled: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Membership:
    """A user's role in one organization (one row per pair)."""

    org_id: str
    user_id: str
    role: str
    created_at: float


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An issued API token: never the token itself, only its SHA-256."""

    #: the public lookup prefix taken from the token (unique)
    id: str
    user_id: str
    org_id: str
    hash: str
    created_at: float
    scopes: tuple[str, ...] = ()
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class ResolvedToken:
    """A token with what deciding on it needs, read together (one query in SQL):
    whether its user is active, the role in its organization (None: not a member)
    and that organization's ``rules_version`` (None: no such organization)."""

    token: ApiToken
    user_active: bool
    role: str | None
    rules_version: int | None


@dataclass(frozen=True, slots=True)
class Rule:
    """One access rule of an organization (see :mod:`.policy` for the meaning)."""

    id: str
    org_id: str
    effect: str          # "allow" | "deny"
    subject_type: str    # "role" | "user" | "any"
    subject: str         # a role name, a user id, or "*"
    kind: str            # "tools" | "resources" | ... | "*"
    pattern: str         # a glob over names (tools, prompts) or URIs (resources)
    actions: tuple[str, ...]  # ("*",) for every action
    created_at: float
    #: conditions on the target's annotations, e.g. {"readOnlyHint": True}
    when: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    #: evaluation and display order within the organization; the store assigns it
    position: int = 0


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry of the append-only, hash-chained audit log."""

    seq: int
    time: float
    method: str
    outcome: str
    user: str | None = None
    organization: str | None = None
    auth_method: str | None = None
    credential: str | None = None
    session: str | None = None
    request_id: str | None = None
    target: str | None = None
    arguments_digest: str | None = None
    error: str | None = None
    error_code: int | None = None
    duration_ms: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""


@dataclass(frozen=True, slots=True)
class AuditCheckpoint:
    """Where the retained log starts: its first ``seq`` and the hash it chains from."""

    seq: int
    prev_hash: str
    created_at: float


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A search of the audit log; every field left None matches everything."""

    user: str | None = None
    organization: str | None = None
    method: str | None = None
    outcome: str | None = None
    since: float | None = None
    until: float | None = None
    after_seq: int = 0
    limit: int | None = None
    newest_first: bool = False


@dataclass(frozen=True, slots=True)
class RateBucket:
    key: str
    tokens: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class BucketResult:
    allowed: bool
    tokens: float
    #: seconds until ``cost`` tokens are available again (0 when allowed)
    retry_after: float


class StoreError(Exception):
    """A store refused an operation."""


class DuplicateError(StoreError):
    """A record with that key exists already."""


class AuditConflict(StoreError):
    """An audit append lost a race: its ``seq`` is no longer the next one."""


def check_new_organization(org: Organization, owner: Membership,
                           rules: Sequence[Rule]) -> None:
    """What every store checks before ``create_organization_with_owner`` writes
    anything: each record belongs to the new organization."""
    if owner.org_id != org.id or any(r.org_id != org.id for r in rules):
        raise ValueError(f"a record given with organization {org.id} names another one")


def refill(bucket: RateBucket | None, key: str, capacity: float, per_second: float,
           cost: float, now: float) -> tuple[RateBucket, BucketResult]:
    """The token-bucket step every store implements the same way: a new bucket
    starts full, tokens accrue at ``per_second`` up to ``capacity``."""
    if bucket is None:
        tokens = capacity
    else:
        elapsed = max(0.0, now - bucket.updated_at)
        tokens = min(capacity, bucket.tokens + elapsed * per_second)
    if tokens >= cost:
        tokens -= cost
        return RateBucket(key, tokens, now), BucketResult(True, tokens, 0.0)
    wait = (cost - tokens) / per_second if per_second > 0 else float("inf")
    return RateBucket(key, tokens, now), BucketResult(False, tokens, wait)


class SecurityStore(Protocol):
    """Everything security persists; plain records in and out."""

    async def create_organization(self, org: Organization) -> None: ...
    async def create_organization_with_owner(self, org: Organization, owner: Membership,
                                             rules: Sequence[Rule] = ()) -> Organization:
        """``org``, ``owner`` (its membership) and ``rules`` (in this order) in one
        atomic step; the organization as stored (its ``rules_version`` moved once per
        rule, as :meth:`add_rule` would).  :class:`DuplicateError` and nothing written
        when the organization exists (of concurrent creators exactly one succeeds, and
        when the others fail the organization is complete) or a rule id repeats;
        ValueError when a record names another organization."""
        ...
    async def get_organization(self, org_id: str) -> Organization | None: ...
    async def list_organizations(self) -> list[Organization]: ...

    async def create_user(self, user: User) -> None: ...
    async def get_user(self, user_id: str) -> User | None: ...
    async def get_user_by_name(self, name: str) -> User | None: ...
    async def list_users(self) -> list[User]: ...
    async def set_user_disabled(self, user_id: str, disabled: bool) -> bool: ...

    async def put_membership(self, membership: Membership) -> None: ...
    async def get_membership(self, org_id: str, user_id: str) -> Membership | None: ...
    async def delete_membership(self, org_id: str, user_id: str) -> bool: ...
    async def list_memberships(self, *, org_id: str | None = None,
                               user_id: str | None = None) -> list[Membership]: ...

    async def add_token(self, token: ApiToken) -> None: ...
    async def get_token(self, token_id: str) -> ApiToken | None: ...
    async def list_tokens(self, *, user_id: str | None = None,
                          org_id: str | None = None) -> list[ApiToken]: ...
    async def revoke_token(self, token_id: str, at: float) -> bool: ...
    async def touch_token(self, token_id: str, at: float) -> None: ...
    async def resolve_token(self, token_id: str) -> ResolvedToken | None: ...
    async def security_epoch(self) -> int:
        """A number every change that can end or narrow access moves (revoking a
        token, disabling a user, changing or removing a membership, changing a
        rule): a cache of resolved tokens is good while it stays the same."""
        ...

    async def add_rule(self, rule: Rule) -> Rule: ...
    async def delete_rule(self, org_id: str, rule_id: str) -> bool: ...
    async def list_rules(self, org_id: str) -> list[Rule]: ...

    async def append_audit(self, records: list[AuditRecord]) -> None: ...
    async def last_audit(self) -> AuditRecord | None: ...
    async def list_audit(self, query: AuditQuery) -> list[AuditRecord]: ...
    async def get_audit_checkpoint(self) -> AuditCheckpoint | None: ...
    async def retain_audit(self, checkpoint: AuditCheckpoint) -> int: ...

    async def consume_bucket(self, key: str, capacity: float, per_second: float,
                             cost: float, now: float) -> BucketResult: ...


class MemorySecurityStore:
    """A :class:`SecurityStore` in process memory.

    Each method runs without awaiting, so it is atomic on the event loop.
    ``audit_records`` is public on purpose: tests tamper with it to prove that
    :meth:`~.audit.AuditLog.verify` notices.
    """

    def __init__(self) -> None:
        self.organizations: dict[str, Organization] = {}
        self.users: dict[str, User] = {}
        self.memberships: dict[tuple[str, str], Membership] = {}
        self.tokens: dict[str, ApiToken] = {}
        self.rules: dict[str, list[Rule]] = {}
        self.audit_records: list[AuditRecord] = []
        self.checkpoint: AuditCheckpoint | None = None
        self.buckets: dict[str, RateBucket] = {}
        self._positions = 0
        self.epoch = 0

    # organizations and users
    async def create_organization(self, org: Organization) -> None:
        if org.id in self.organizations:
            raise DuplicateError(f"organization {org.id} exists")
        self.organizations[org.id] = org

    async def create_organization_with_owner(self, org: Organization, owner: Membership,
                                             rules: Sequence[Rule] = ()) -> Organization:
        check_new_organization(org, owner, rules)
        if org.id in self.organizations:
            raise DuplicateError(f"organization {org.id} already exists")
        if len({r.id for r in rules}) != len(rules):
            raise DuplicateError(f"a rule id repeats among the rules of {org.id}")
        # everything checked: from here on nothing can fail, and nothing awaits
        stored = replace(org, rules_version=org.rules_version + len(rules))
        self.organizations[org.id] = stored
        self.memberships[(owner.org_id, owner.user_id)] = owner
        placed = self.rules.setdefault(org.id, [])
        for rule in rules:
            self._positions += 1
            placed.append(replace(rule, position=self._positions))
        self.epoch += 1
        return stored

    async def get_organization(self, org_id: str) -> Organization | None:
        return self.organizations.get(org_id)

    async def list_organizations(self) -> list[Organization]:
        return list(self.organizations.values())

    async def create_user(self, user: User) -> None:
        if user.id in self.users or any(u.name == user.name for u in self.users.values()):
            raise DuplicateError(f"user {user.name} exists")
        self.users[user.id] = user

    async def get_user(self, user_id: str) -> User | None:
        return self.users.get(user_id)

    async def get_user_by_name(self, name: str) -> User | None:
        return next((u for u in self.users.values() if u.name == name), None)

    async def list_users(self) -> list[User]:
        return list(self.users.values())

    async def set_user_disabled(self, user_id: str, disabled: bool) -> bool:
        user = self.users.get(user_id)
        if user is None:
            return False
        self.users[user_id] = replace(user, disabled=disabled)
        self.epoch += 1
        return True

    # memberships
    async def put_membership(self, membership: Membership) -> None:
        self.memberships[(membership.org_id, membership.user_id)] = membership
        self.epoch += 1

    async def get_membership(self, org_id: str, user_id: str) -> Membership | None:
        return self.memberships.get((org_id, user_id))

    async def delete_membership(self, org_id: str, user_id: str) -> bool:
        gone = self.memberships.pop((org_id, user_id), None) is not None
        self.epoch += gone
        return gone

    async def list_memberships(self, *, org_id: str | None = None,
                               user_id: str | None = None) -> list[Membership]:
        return [m for m in self.memberships.values()
                if (org_id is None or m.org_id == org_id)
                and (user_id is None or m.user_id == user_id)]

    # API tokens
    async def add_token(self, token: ApiToken) -> None:
        if token.id in self.tokens:
            raise DuplicateError(f"token {token.id} exists")
        self.tokens[token.id] = token

    async def get_token(self, token_id: str) -> ApiToken | None:
        return self.tokens.get(token_id)

    async def list_tokens(self, *, user_id: str | None = None,
                          org_id: str | None = None) -> list[ApiToken]:
        return [t for t in self.tokens.values()
                if (user_id is None or t.user_id == user_id)
                and (org_id is None or t.org_id == org_id)]

    async def revoke_token(self, token_id: str, at: float) -> bool:
        token = self.tokens.get(token_id)
        if token is None or token.revoked_at is not None:
            return False
        self.tokens[token_id] = replace(token, revoked_at=at)
        self.epoch += 1
        return True

    async def touch_token(self, token_id: str, at: float) -> None:
        token = self.tokens.get(token_id)
        if token is not None:
            self.tokens[token_id] = replace(token, last_used_at=at)

    async def security_epoch(self) -> int:
        return self.epoch

    async def resolve_token(self, token_id: str) -> ResolvedToken | None:
        token = self.tokens.get(token_id)
        if token is None:
            return None
        user = self.users.get(token.user_id)
        membership = self.memberships.get((token.org_id, token.user_id))
        org = self.organizations.get(token.org_id)
        return ResolvedToken(token, user is not None and not user.disabled,
                             membership.role if membership else None,
                             org.rules_version if org else None)

    # rules
    def _bump(self, org_id: str) -> None:
        self.epoch += 1
        org = self.organizations.get(org_id)
        if org is not None:
            self.organizations[org_id] = replace(org, rules_version=org.rules_version + 1)

    async def add_rule(self, rule: Rule) -> Rule:
        if rule.org_id not in self.organizations:
            raise StoreError(f"no organization {rule.org_id}")
        rules = self.rules.setdefault(rule.org_id, [])
        if any(r.id == rule.id for r in rules):
            raise DuplicateError(f"rule {rule.id} exists")
        self._positions += 1
        stored = replace(rule, position=self._positions)
        rules.append(stored)
        self._bump(rule.org_id)
        return stored

    async def delete_rule(self, org_id: str, rule_id: str) -> bool:
        rules = self.rules.get(org_id, [])
        kept = [r for r in rules if r.id != rule_id]
        if len(kept) == len(rules):
            return False
        self.rules[org_id] = kept
        self._bump(org_id)
        return True

    async def list_rules(self, org_id: str) -> list[Rule]:
        return list(self.rules.get(org_id, []))

    # audit
    async def append_audit(self, records: list[AuditRecord]) -> None:
        last = self.audit_records[-1].seq if self.audit_records else (
            self.checkpoint.seq - 1 if self.checkpoint else 0)
        if any(r.seq != last + 1 + i for i, r in enumerate(records)):
            raise AuditConflict(f"audit seq {records[0].seq} is not next ({last + 1})")
        self.audit_records.extend(records)

    async def last_audit(self) -> AuditRecord | None:
        return self.audit_records[-1] if self.audit_records else None

    async def list_audit(self, query: AuditQuery) -> list[AuditRecord]:
        records = self.audit_records[::-1] if query.newest_first else self.audit_records
        found: list[AuditRecord] = []
        for r in records:
            if r.seq <= query.after_seq or not _matches(r, query):
                continue
            found.append(r)
            if query.limit is not None and len(found) >= query.limit:
                break
        return found

    async def get_audit_checkpoint(self) -> AuditCheckpoint | None:
        return self.checkpoint

    async def retain_audit(self, checkpoint: AuditCheckpoint) -> int:
        before = len(self.audit_records)
        self.audit_records = [r for r in self.audit_records if r.seq >= checkpoint.seq]
        self.checkpoint = checkpoint
        return before - len(self.audit_records)

    # rate limits
    async def consume_bucket(self, key: str, capacity: float, per_second: float,
                             cost: float, now: float) -> BucketResult:
        bucket, result = refill(self.buckets.get(key), key, capacity, per_second, cost, now)
        self.buckets[key] = bucket
        return result


def _matches(r: AuditRecord, q: AuditQuery) -> bool:
    return ((q.user is None or r.user == q.user)
            and (q.organization is None or r.organization == q.organization)
            and (q.method is None or r.method == q.method)
            and (q.outcome is None or r.outcome == q.outcome)
            and (q.since is None or r.time >= q.since)
            and (q.until is None or r.time < q.until))
