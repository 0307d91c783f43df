-- ebb state store, Postgres: schedules and per-sync settings. Times are Unix milliseconds.

-- The last due instant each sync's schedule fired for: a schedule fires at most once per
-- instant, whichever worker asks first (fire_schedule).
CREATE TABLE schedules (
    tenant      TEXT    NOT NULL,
    sync        TEXT    NOT NULL,
    last_due_at BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant, sync)
);

-- What an operator changed about a sync at run time (not in its YAML): paused or not.
-- Byte order ("C") as in SQLite, so listings come in the same order on both backends.
CREATE TABLE sync_settings (
    tenant     TEXT    COLLATE "C" NOT NULL,
    sync       TEXT    COLLATE "C" NOT NULL,
    paused     BOOLEAN NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (tenant, sync)
);
