-- Migration 1: the schema ledger and legacy sessions with their subscriptions.
-- Shared SQL unless a "-- dialect:" line says otherwise (sqlite, postgresql, all).
-- Times are seconds since the Unix epoch; JSON objects are stored as text.

CREATE TABLE mobius_schema (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,
    protocol_version TEXT,
    client_info TEXT,
    capabilities TEXT,
    log_level TEXT,
    created DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- one row per (session, resource URI): subscribing is one atomic insert, and
-- "who is subscribed to this URI" is an index lookup
CREATE TABLE session_subscriptions (
    session_id TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    uri TEXT NOT NULL,
    PRIMARY KEY (session_id, uri)
);

CREATE INDEX session_subscriptions_uri ON session_subscriptions (uri);
