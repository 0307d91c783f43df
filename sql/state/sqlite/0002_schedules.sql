-- ebb state store, SQLite: schedules and per-sync settings. Times are Unix milliseconds.

-- The last due instant each sync's schedule fired for: a schedule fires at most once per
-- instant, whichever worker asks first (fire_schedule).
CREATE TABLE schedules (
    tenant      TEXT    NOT NULL,
    sync        TEXT    NOT NULL,
    last_due_at INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, sync)
);

-- What an operator changed about a sync at run time (not in its YAML): paused or not.
CREATE TABLE sync_settings (
    tenant     TEXT    NOT NULL,
    sync       TEXT    NOT NULL,
    paused     INTEGER NOT NULL CHECK (paused IN (0, 1)),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, sync)
);
