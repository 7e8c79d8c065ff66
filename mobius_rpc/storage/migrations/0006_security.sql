-- Migration: what the security layer keeps (organizations, users, memberships,
-- API tokens as hashes, access rules, the hash-chained audit log, rate buckets).
-- Column types are shared by both dialects; JSON values are TEXT, flags INTEGER.

CREATE TABLE security_orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    rules_version BIGINT NOT NULL DEFAULT 0,
    settings TEXT NOT NULL
);

CREATE TABLE security_users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at DOUBLE PRECISION NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    attributes TEXT NOT NULL
);

CREATE TABLE security_memberships (
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE INDEX security_memberships_user ON security_memberships (user_id);

-- Only the SHA-256 of a token is kept; id is the public prefix of the token.
CREATE TABLE security_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    scopes TEXT NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION,
    last_used_at DOUBLE PRECISION,
    description TEXT NOT NULL
);

CREATE TABLE security_rules (
    org_id TEXT NOT NULL,
    id TEXT NOT NULL,
    position BIGINT NOT NULL,
    effect TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    pattern TEXT NOT NULL,
    actions TEXT NOT NULL,
    conditions TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (org_id, id)
);

CREATE INDEX security_rules_position ON security_rules (org_id, position);

-- The audit log. The primary key on seq and the single-row head (updated only
-- from the seq a writer expects) make concurrent writers queue, never fork.
CREATE TABLE audit_records (
    seq BIGINT PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    method TEXT NOT NULL,
    outcome TEXT NOT NULL,
    user_id TEXT,
    organization TEXT,
    auth_method TEXT,
    credential TEXT,
    session_id TEXT,
    request_id TEXT,
    target TEXT,
    arguments_digest TEXT,
    error TEXT,
    error_code BIGINT,
    duration_ms DOUBLE PRECISION,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE INDEX audit_records_at ON audit_records (at);

CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);

INSERT INTO audit_head (id, seq) VALUES (1, 0);

CREATE TABLE audit_checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE rate_buckets (
    key TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

-- Bumped by every change that can end or narrow a credential's access (a revoked
-- token, a disabled user, a membership changed or removed, a rule changed), so a
-- server may cache resolved tokens and check one number per request.
CREATE TABLE security_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL
);

INSERT INTO security_state (id, epoch) VALUES (1, 0);
