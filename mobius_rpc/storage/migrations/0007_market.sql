-- Migration: the marketplace (mobius_rpc/marketplace/store.py says what each row means).
-- Catalog entries imported from files and registries (the bundled catalog ships with the
-- code and is not stored), how far each registry has been synced, per-organization
-- installations (secret values only as ciphertext), cumulative install counts, ratings.

CREATE TABLE market_catalog (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    source TEXT NOT NULL,
    server TEXT NOT NULL,
    official TEXT NOT NULL,
    stored_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE market_sync (
    source TEXT PRIMARY KEY,
    updated_since TEXT NOT NULL,
    synced_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE market_installations (
    org_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    registry_type TEXT NOT NULL,
    identifier TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    config TEXT NOT NULL,
    secrets TEXT NOT NULL,
    path TEXT NOT NULL,
    launch TEXT NOT NULL,
    health TEXT NOT NULL,
    installed_by TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (org_id, name)
);

CREATE TABLE market_install_counts (
    name TEXT PRIMARY KEY,
    installs BIGINT NOT NULL
);

CREATE TABLE market_ratings (
    name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    stars INTEGER NOT NULL,
    review TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (name, user_id)
);
