-- Migration: which organization owns each context project (mobius_rpc.context).
-- The security rules decide, per request, who may see a project; the owner is
-- the first thing they check (a project of another organization does not exist
-- for the caller). One row per project name; `mobius serve` writes it at start.

CREATE TABLE ctx_projects (
    name TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    root TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
