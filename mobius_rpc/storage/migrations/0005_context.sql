-- Migration: the code-context index (mobius_rpc.context). One row per indexed file,
-- and the rows each file contributes; a changed file's rows are replaced together.
-- mtime_ns and sha256 decide whether a file is read again (mtime first, then hash).

CREATE TABLE ctx_files (
    project TEXT NOT NULL,
    path TEXT NOT NULL,
    language TEXT NOT NULL,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    lines INTEGER NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (project, path)
);

CREATE TABLE ctx_symbols (
    project TEXT NOT NULL,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    qualname TEXT NOT NULL,
    kind TEXT NOT NULL,
    line_start INTEGER NOT NULL,
    line_end INTEGER NOT NULL,
    signature TEXT NOT NULL,
    doc TEXT NOT NULL
);

CREATE INDEX ctx_symbols_name ON ctx_symbols (project, name);

CREATE INDEX ctx_symbols_qualname ON ctx_symbols (project, qualname);

CREATE INDEX ctx_symbols_path ON ctx_symbols (project, path, line_start);

CREATE TABLE ctx_refs (
    project TEXT NOT NULL,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    line INTEGER NOT NULL,
    scope TEXT NOT NULL
);

CREATE INDEX ctx_refs_name ON ctx_refs (project, name, path, line);

CREATE INDEX ctx_refs_path ON ctx_refs (project, path);

CREATE TABLE ctx_imports (
    project TEXT NOT NULL,
    path TEXT NOT NULL,
    module TEXT NOT NULL,
    line INTEGER NOT NULL
);

CREATE INDEX ctx_imports_module ON ctx_imports (project, module);

CREATE INDEX ctx_imports_path ON ctx_imports (project, path);

CREATE TABLE ctx_metrics (
    project TEXT NOT NULL,
    path TEXT NOT NULL,
    qualname TEXT NOT NULL,
    line_start INTEGER NOT NULL,
    line_end INTEGER NOT NULL,
    complexity INTEGER NOT NULL,
    nesting INTEGER NOT NULL
);

CREATE INDEX ctx_metrics_path ON ctx_metrics (project, path);

-- Search chunks. The token columns are already split by our code-aware tokenizer
-- (camelCase and snake_case parts plus the whole identifier), so the full-text
-- engines only split on spaces.
-- dialect: sqlite
CREATE TABLE ctx_chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    path TEXT NOT NULL,
    language TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    line_start INTEGER NOT NULL,
    line_end INTEGER NOT NULL,
    name_tokens TEXT NOT NULL,
    body_tokens TEXT NOT NULL
);

-- External-content FTS5 over ctx_chunks: filters (project, language, kind) are
-- columns of the normal table, joined by rowid, never UNINDEXED FTS columns.
CREATE VIRTUAL TABLE ctx_fts USING fts5(
    name_tokens, body_tokens, content='ctx_chunks', content_rowid='id',
    tokenize='unicode61 remove_diacritics 0'
);

CREATE TRIGGER ctx_chunks_insert AFTER INSERT ON ctx_chunks BEGIN
    INSERT INTO ctx_fts (rowid, name_tokens, body_tokens)
    VALUES (new.id, new.name_tokens, new.body_tokens);
END;

CREATE TRIGGER ctx_chunks_delete AFTER DELETE ON ctx_chunks BEGIN
    INSERT INTO ctx_fts (ctx_fts, rowid, name_tokens, body_tokens)
    VALUES ('delete', old.id, old.name_tokens, old.body_tokens);
END;

-- dialect: postgresql
CREATE TABLE ctx_chunks (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project TEXT NOT NULL,
    path TEXT NOT NULL,
    language TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    line_start INTEGER NOT NULL,
    line_end INTEGER NOT NULL,
    name_tokens TEXT NOT NULL,
    body_tokens TEXT NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple'::regconfig, name_tokens), 'A')
        || setweight(to_tsvector('simple'::regconfig, body_tokens), 'B')) STORED
);

CREATE INDEX ctx_chunks_tsv ON ctx_chunks USING GIN (tsv);

-- dialect: all
CREATE INDEX ctx_chunks_path ON ctx_chunks (project, path);
