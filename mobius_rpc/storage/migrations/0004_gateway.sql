-- Migration: the gateway's pinned tool definitions. One row per approved tool
-- of an upstream (its canonical digest and the definition it was computed
-- from, so a diff can show what changed), and one row per upstream holding
-- the digest of its whole approved tool set.

CREATE TABLE gateway_tool_pins (
    upstream TEXT NOT NULL,
    tool TEXT NOT NULL,
    digest TEXT NOT NULL,
    definition TEXT NOT NULL,
    approved_at DOUBLE PRECISION NOT NULL,
    approved_by TEXT NOT NULL,
    PRIMARY KEY (upstream, tool)
);

CREATE TABLE gateway_tool_sets (
    upstream TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    approved_at DOUBLE PRECISION NOT NULL,
    approved_by TEXT NOT NULL
);
