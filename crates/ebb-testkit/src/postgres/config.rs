//! The configuration a test cluster gets: `postgresql.conf` additions and `pg_hba.conf`.

use std::fmt::Write as _;
use std::path::Path;

use super::PgClusterError;

/// Settings every test cluster gets, before the builder's (a later line wins).
///
/// Logical decoding needs `wal_level = logical` and slots and WAL senders for the CDC tests
/// that run at once; `fsync = off` because a test cluster never needs to survive a crash.
const DEFAULT_SETTINGS: [(&str, &str); 7] = [
    ("wal_level", "logical"),
    ("max_replication_slots", "32"),
    ("max_wal_senders", "32"),
    ("fsync", "off"),
    ("max_connections", "100"),
    ("shared_buffers", "128MB"),
    ("listen_addresses", "127.0.0.1"),
];

/// Trust for the superuser over the socket and loopback, including replication connections.
pub(crate) const PG_HBA_CONF: &str = "\
# written by ebb-testkit: a private test cluster, reachable only from this machine
local all         all               trust
host  all         all  127.0.0.1/32 trust
local replication all               trust
host  replication all  127.0.0.1/32 trust
";

/// Checks that a setting can be written to `postgresql.conf` as `name = 'value'`.
/// Whether PostgreSQL knows the setting is for the server to say at startup.
pub(crate) fn validate_setting(name: &str, value: &str) -> Result<(), PgClusterError> {
    let problem = if name.is_empty() {
        Some("the name is empty")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        Some("a name has only letters, digits, `_` and `.`")
    } else if value.contains(['\n', '\r']) {
        Some("a value cannot span lines")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(PgClusterError::InvalidSetting {
            name: name.to_owned(),
            value: value.to_owned(),
            problem,
        }),
    }
}

/// The lines appended to the `postgresql.conf` that `initdb` wrote: the defaults, the socket
/// directory, then `settings` (validated with [`validate_setting`]).
pub(crate) fn postgresql_conf(socket_dir: &Path, settings: &[(String, String)]) -> String {
    let mut conf = String::from("\n# added by ebb-testkit\n");
    let socket_dir = socket_dir.display().to_string();
    let defaults = DEFAULT_SETTINGS
        .into_iter()
        .chain([("unix_socket_directories", socket_dir.as_str())]);
    let custom = settings
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()));
    for (name, value) in defaults.chain(custom) {
        let _ = writeln!(conf, "{name} = {}", quote(value));
    }
    conf
}

/// A `postgresql.conf` string literal: any value may be quoted; `'` doubles, `\` escapes.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_settings_come_after_defaults_and_are_quoted() {
        let conf = postgresql_conf(
            Path::new("/tmp/ebb-pg-x"),
            &[
                ("logical_decoding_work_mem".into(), "64kB".into()),
                ("application_name".into(), r"it's a\b".into()),
                ("fsync".into(), "on".into()),
            ],
        );
        assert!(conf.contains("wal_level = 'logical'\n"));
        assert!(conf.contains("unix_socket_directories = '/tmp/ebb-pg-x'\n"));
        assert!(conf.contains("logical_decoding_work_mem = '64kB'\n"));
        assert!(conf.contains(r"application_name = 'it''s a\\b'"));
        let default_fsync = conf.find("fsync = 'off'").unwrap();
        let custom_fsync = conf.find("fsync = 'on'").unwrap();
        assert!(
            default_fsync < custom_fsync,
            "the custom setting must win:\n{conf}"
        );
    }

    #[test]
    fn settings_that_would_break_the_file_are_refused() {
        assert!(validate_setting("work_mem", "64kB").is_ok());
        assert!(validate_setting("ebb.custom_option", "x").is_ok());
        for (name, value) in [
            ("", "1"),
            ("work_mem = 1\nfsync", "on"),
            ("work mem", "1"),
            ("work_mem", "1\nfsync = on"),
        ] {
            let err = validate_setting(name, value).unwrap_err();
            assert!(
                matches!(err, PgClusterError::InvalidSetting { .. }),
                "{name:?} = {value:?}: {err:?}"
            );
        }
    }
}
