-- ebb state store, Postgres: the first schema (in the configured schema,
-- default ebb_state). Times are Unix milliseconds.

CREATE TABLE runs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant           TEXT    NOT NULL,
    sync             TEXT    NOT NULL,
    kind             TEXT    NOT NULL CHECK (kind IN ('sync', 'cdc', 'identity')),
    trigger          TEXT    NOT NULL CHECK (trigger IN ('manual', 'schedule', 'after', 'api')),
    status           TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'partial', 'failed', 'cancelled')),
    planned          BIGINT  NOT NULL DEFAULT 0,
    inserted         BIGINT  NOT NULL DEFAULT 0,
    updated          BIGINT  NOT NULL DEFAULT 0,
    deleted          BIGINT  NOT NULL DEFAULT 0,
    accepted         BIGINT  NOT NULL DEFAULT 0,
    rejected         BIGINT  NOT NULL DEFAULT 0,
    retried          BIGINT  NOT NULL DEFAULT 0,
    skipped_bad_keys BIGINT  NOT NULL DEFAULT 0,
    created_at       BIGINT  NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    error            TEXT,
    worker           TEXT,
    lease_expires_at BIGINT,
    attempts         BIGINT  NOT NULL DEFAULT 0
);
-- At most one queued and one running run per sync: a trigger during a run is queued once.
CREATE UNIQUE INDEX runs_one_queued  ON runs (tenant, sync) WHERE status = 'queued';
CREATE UNIQUE INDEX runs_one_running ON runs (tenant, sync) WHERE status = 'running';
CREATE INDEX runs_by_sync ON runs (tenant, sync, id);
CREATE INDEX runs_by_status ON runs (status, id);

CREATE TABLE run_logs (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id  BIGINT  NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    at      BIGINT  NOT NULL,
    level   TEXT    NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    message TEXT    NOT NULL,
    sample  JSONB   -- redacted before it is written
);
CREATE INDEX run_logs_by_run ON run_logs (run_id, id);

-- Byte order ("C") for sync and key, as in SQLite: pages and `pending` come in the same
-- order on both backends, whatever the database's collation.
CREATE TABLE dead_letters (
    tenant          TEXT    NOT NULL,
    sync            TEXT    COLLATE "C" NOT NULL,
    record_key      TEXT    COLLATE "C" NOT NULL,
    record          JSONB   NOT NULL, -- the record, kept whole so it can be retried
    reason          TEXT    NOT NULL,
    field           TEXT,
    failures        BIGINT  NOT NULL,
    first_failed_at BIGINT  NOT NULL,
    last_failed_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant, sync, record_key)
);

CREATE TABLE outbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant     TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    payload    JSONB   NOT NULL,
    created_at BIGINT  NOT NULL,
    relayed_at BIGINT
);
CREATE INDEX outbox_by_tenant ON outbox (tenant, id);
CREATE INDEX outbox_unrelayed ON outbox (id) WHERE relayed_at IS NULL;

CREATE TABLE checkpoints (
    name       TEXT    PRIMARY KEY,
    lsn        BIGINT  NOT NULL, -- the u64 LSN's bits
    detail     JSONB   NOT NULL,
    updated_at BIGINT  NOT NULL
);

CREATE TABLE audit_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT  NOT NULL,
    tenant  TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    details JSONB   NOT NULL
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant, id);

CREATE TABLE api_tokens (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant     TEXT    NOT NULL,
    token_hash TEXT    NOT NULL UNIQUE, -- hex SHA-256 of the plaintext
    scopes     JSONB   NOT NULL,        -- array of strings
    created_at BIGINT  NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant, id);

CREATE TABLE idempotency_keys (
    tenant          TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    request_hash    TEXT    NOT NULL,
    response_status BIGINT,          -- NULL while the first request is in flight
    response_body   TEXT,
    created_at      BIGINT  NOT NULL,
    completed_at    BIGINT,
    PRIMARY KEY (tenant, key)
);
