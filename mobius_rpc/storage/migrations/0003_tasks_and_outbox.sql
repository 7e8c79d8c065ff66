-- Migration 3: task records (2025-11-25 tasks) and the notification outbox.
-- expires_at is created + ttl, kept as a column so expiry is an index range.

CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    result TEXT,
    error TEXT,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    ttl_ms BIGINT,
    poll_interval_ms BIGINT NOT NULL,
    expires_at DOUBLE PRECISION
);

CREATE INDEX tasks_session ON tasks (session_id, created, task_id);

CREATE INDEX tasks_expires_at ON tasks (expires_at);

-- Messages between replicas. SQLite replicas poll it for ids above the last
-- they saw: AUTOINCREMENT so an id is never reused once pruned rows are gone
-- (a reused id below a poller's position would be missed). PostgreSQL carries
-- small messages in NOTIFY itself and parks only large ones here.
-- dialect: sqlite
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    payload BLOB NOT NULL,
    origin TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);

-- dialect: postgresql
CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel TEXT NOT NULL,
    payload BYTEA NOT NULL,
    origin TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);

-- dialect: all
CREATE INDEX outbox_created ON outbox (created);
