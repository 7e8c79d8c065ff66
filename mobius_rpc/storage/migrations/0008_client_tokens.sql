-- Migration: what `mobius client` remembers between commands: the OAuth tokens
-- it holds per MCP server and its registrations per authorization server.
-- Tokens and client secrets are AES-GCM ciphertexts (the key is kept outside
-- the database); only what is not secret (issuer, scope, expiry) is in clear.

CREATE TABLE client_tokens (
    server TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    resource TEXT NOT NULL,
    token_type TEXT NOT NULL,
    scope TEXT,
    expires_at DOUBLE PRECISION,
    access_token TEXT NOT NULL,
    refresh_token TEXT,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE client_registrations (
    issuer TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    client_secret TEXT,
    auth_method TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
