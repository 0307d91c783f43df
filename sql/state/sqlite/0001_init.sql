-- ebb state store, SQLite: the first schema. Times are Unix milliseconds.

CREATE TABLE runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant           TEXT    NOT NULL,
    sync             TEXT    NOT NULL,
    kind             TEXT    NOT NULL CHECK (kind IN ('sync', 'cdc', 'identity')),
    trigger          TEXT    NOT NULL CHECK (trigger IN ('manual', 'schedule', 'after', 'api')),
    status           TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'partial', 'failed', 'cancelled')),
    planned          INTEGER NOT NULL DEFAULT 0,
    inserted         INTEGER NOT NULL DEFAULT 0,
    updated          INTEGER NOT NULL DEFAULT 0,
    deleted          INTEGER NOT NULL DEFAULT 0,
    accepted         INTEGER NOT NULL DEFAULT 0,
    rejected         INTEGER NOT NULL DEFAULT 0,
    retried          INTEGER NOT NULL DEFAULT 0,
    skipped_bad_keys INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    error            TEXT,
    worker           TEXT,
    lease_expires_at INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0
);
-- At most one queued and one running run per sync: a trigger during a run is queued once.
CREATE UNIQUE INDEX runs_one_queued  ON runs (tenant, sync) WHERE status = 'queued';
CREATE UNIQUE INDEX runs_one_running ON runs (tenant, sync) WHERE status = 'running';
CREATE INDEX runs_by_sync ON runs (tenant, sync, id);
CREATE INDEX runs_by_status ON runs (status, id);

CREATE TABLE run_logs (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    at      INTEGER NOT NULL,
    level   TEXT    NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    message TEXT    NOT NULL,
    sample  TEXT    -- JSON, redacted before it is written
);
CREATE INDEX run_logs_by_run ON run_logs (run_id, id);

CREATE TABLE dead_letters (
    tenant          TEXT    NOT NULL,
    sync            TEXT    NOT NULL,
    record_key      TEXT    NOT NULL,
    record          TEXT    NOT NULL, -- JSON of the record, kept whole so it can be retried
    reason          TEXT    NOT NULL,
    field           TEXT,
    failures        INTEGER NOT NULL,
    first_failed_at INTEGER NOT NULL,
    last_failed_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, sync, record_key)
);

CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant     TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    payload    TEXT    NOT NULL, -- JSON
    created_at INTEGER NOT NULL,
    relayed_at INTEGER
);
CREATE INDEX outbox_by_tenant ON outbox (tenant, id);
CREATE INDEX outbox_unrelayed ON outbox (id) WHERE relayed_at IS NULL;

CREATE TABLE checkpoints (
    name       TEXT    PRIMARY KEY,
    lsn        INTEGER NOT NULL, -- the u64 LSN's bits
    detail     TEXT    NOT NULL, -- JSON
    updated_at INTEGER NOT NULL
);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    tenant  TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    details TEXT    NOT NULL -- JSON
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant, id);

CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant     TEXT    NOT NULL,
    token_hash TEXT    NOT NULL UNIQUE, -- hex SHA-256 of the plaintext
    scopes     TEXT    NOT NULL,        -- JSON array of strings
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant, id);

CREATE TABLE idempotency_keys (
    tenant          TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    request_hash    TEXT    NOT NULL,
    response_status INTEGER,          -- NULL while the first request is in flight
    response_body   TEXT,
    created_at      INTEGER NOT NULL,
    completed_at    INTEGER,
    PRIMARY KEY (tenant, key)
);
