//! Schema migrations, embedded from `sql/state/{sqlite,postgres}/NNNN_name.sql`.
//!
//! On open, each backend takes its write lock (SQLite `BEGIN IMMEDIATE`, Postgres an
//! advisory lock inside the transaction, so workers starting together migrate once), reads
//! the highest version in `schema_version`, refuses a database newer than [`LATEST`], and
//! applies the missing migrations and their `schema_version` rows in that one transaction:
//! a failed migration leaves nothing behind.
//!
//! Adding a migration: add `NNNN_name.sql` for both backends and a line to both lists; the
//! `migration_files_match_the_lists` test fails until both agree.

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../../sql/state/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "schedules",
        sql: include_str!("../../../sql/state/sqlite/0002_schedules.sql"),
    },
    Migration {
        version: 3,
        name: "outbox_relay",
        sql: include_str!("../../../sql/state/sqlite/0003_outbox_relay.sql"),
    },
];

pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../../sql/state/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "schedules",
        sql: include_str!("../../../sql/state/postgres/0002_schedules.sql"),
    },
    Migration {
        version: 3,
        name: "outbox_relay",
        sql: include_str!("../../../sql/state/postgres/0003_outbox_relay.sql"),
    },
];

/// The newest schema this build knows.
pub const LATEST: i64 = 3;

/// The table both backends keep their version in.
pub(crate) const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version    BIGINT PRIMARY KEY,
    name       TEXT   NOT NULL,
    applied_at BIGINT NOT NULL
)";

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &str) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        names.sort();
        names
    }

    fn listed(list: &[Migration]) -> Vec<String> {
        list.iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.name))
            .collect()
    }

    #[test]
    fn migration_files_match_the_lists() {
        assert_eq!(files("../../sql/state/sqlite"), listed(SQLITE));
        assert_eq!(files("../../sql/state/postgres"), listed(POSTGRES));
        for list in [SQLITE, POSTGRES] {
            let versions: Vec<i64> = list.iter().map(|m| m.version).collect();
            let expected: Vec<i64> = (1..=LATEST).collect();
            assert_eq!(versions, expected, "versions are 1, 2, ... LATEST");
        }
    }
}
