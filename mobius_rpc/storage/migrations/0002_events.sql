-- Migration 2: the events of a session's streams, for resuming a dropped stream.
-- event_logs holds one counter per session, so event ids are gapless and commit
-- in order (appenders of one session serialize on its row); floor_id is the
-- highest id retention has evicted, total_bytes the size of what remains.
-- event_streams remembers per stream the last evicted id, so a resume is refused
-- only when this stream lost events, not when another stream of the session did.

CREATE TABLE event_logs (
    session_id TEXT PRIMARY KEY,
    last_id BIGINT NOT NULL,
    floor_id BIGINT NOT NULL,
    total_bytes BIGINT NOT NULL
);

CREATE TABLE event_streams (
    session_id TEXT NOT NULL REFERENCES event_logs (session_id) ON DELETE CASCADE,
    stream TEXT NOT NULL,
    last_id BIGINT NOT NULL,
    evicted_through BIGINT NOT NULL,
    finished INTEGER NOT NULL,
    PRIMARY KEY (session_id, stream)
);

-- dialect: sqlite
CREATE TABLE events (
    session_id TEXT NOT NULL REFERENCES event_logs (session_id) ON DELETE CASCADE,
    event_id BIGINT NOT NULL,
    stream TEXT NOT NULL,
    data BLOB NOT NULL,
    size BIGINT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (session_id, event_id)
);

-- dialect: postgresql
CREATE TABLE events (
    session_id TEXT NOT NULL REFERENCES event_logs (session_id) ON DELETE CASCADE,
    event_id BIGINT NOT NULL,
    stream TEXT NOT NULL,
    data BYTEA NOT NULL,
    size BIGINT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (session_id, event_id)
);

-- dialect: all
CREATE INDEX events_stream ON events (session_id, stream, event_id);

CREATE INDEX events_created ON events (created);
