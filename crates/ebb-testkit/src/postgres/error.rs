//! What can go wrong while starting or using a test cluster.

use std::error::Error as _;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;

use super::binaries::BIN_DIR_ENV;

/// Why a test cluster could not be started or used.
///
/// `Debug` prints the message and its causes, so `.unwrap()` and `.expect()` in tests show
/// what went wrong and what to do, not a struct dump.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum PgClusterError {
    /// No PostgreSQL server binaries on this machine.
    #[error(
        "PostgreSQL is not installed: no directory with `initdb`, `pg_ctl` and `postgres` was \
         found on PATH, in `pg_config --bindir` or under /usr/lib/postgresql/*/bin{}. Install the \
         server (Debian/Ubuntu: `apt-get install postgresql`; Fedora: `dnf install \
         postgresql-server`; macOS: `brew install postgresql`) or set {BIN_DIR_ENV} to the \
         directory that holds `initdb`",
        searched_list(.searched)
    )]
    NotInstalled {
        /// Directories that were looked at and lacked a program.
        searched: Vec<PathBuf>,
    },

    /// `EBB_PG_BINDIR` points at a directory without the server programs.
    #[error(
        "{BIN_DIR_ENV}={dir} has no executable `{program}`; set it to the PostgreSQL bin \
         directory (what `pg_config --bindir` prints) or unset it to search PATH"
    )]
    BinDirIncomplete {
        /// The directory `EBB_PG_BINDIR` names.
        dir: PathBuf,
        /// The program missing from it.
        program: &'static str,
    },

    /// Running as root and no unprivileged user to run the server as.
    #[error(
        "the tests run as root, which PostgreSQL refuses, and there is no `postgres` user to run \
         it as; creating the user `ebbtest` failed: {detail}. Create an unprivileged user \
         (`useradd --system postgres`) or run the tests as a non-root user"
    )]
    NoServerUser {
        /// What `useradd` said.
        detail: String,
    },

    /// A file-system or process operation failed.
    #[error("could not {action}")]
    Io {
        /// What was being done, e.g. "create the cluster directory".
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A PostgreSQL program (`initdb`) exited with an error.
    #[error("`{command}` failed ({status}); its output:\n{output}")]
    CommandFailed {
        /// The command line and the user it ran as.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// Its stdout and stderr.
        output: String,
    },

    /// The server did not come up.
    #[error("PostgreSQL did not start: {reason}. The end of the server log:\n{log_tail}")]
    Startup {
        /// What was observed, e.g. "the server exited (exit status: 1) while starting".
        reason: String,
        /// The last lines of the server log (which is deleted with the cluster).
        log_tail: String,
    },

    /// A setting given to [`PgClusterBuilder::setting`](super::PgClusterBuilder::setting)
    /// cannot be written to `postgresql.conf`.
    #[error("invalid PostgreSQL setting `{name}` = {value:?}: {problem}")]
    InvalidSetting {
        /// The setting name.
        name: String,
        /// The value given.
        value: String,
        /// Why it was refused.
        problem: &'static str,
    },

    /// A statement on the test cluster failed.
    #[error("could not {action} on the test cluster at 127.0.0.1:{port}")]
    Sql {
        /// What was being done, e.g. "create database ebb_test_1_0".
        action: String,
        /// The cluster's port.
        port: u16,
        /// The underlying error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl PgClusterError {
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let action = action.into();
        move |source| Self::Io { action, source }
    }
}

impl fmt::Debug for PgClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut cause = self.source();
        while let Some(err) = cause {
            write!(f, "\n  caused by: {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

fn searched_list(searched: &[PathBuf]) -> String {
    if searched.is_empty() {
        return String::new();
    }
    let dirs: Vec<String> = searched.iter().map(|d| d.display().to_string()).collect();
    format!(" (incomplete: {})", dirs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_installed_says_how_to_install() {
        let err = PgClusterError::NotInstalled {
            searched: vec![PathBuf::from("/usr/local/bin")],
        };
        let message = err.to_string();
        assert!(message.contains("apt-get install postgresql"), "{message}");
        assert!(message.contains(BIN_DIR_ENV), "{message}");
        assert!(message.contains("/usr/local/bin"), "{message}");
    }

    #[test]
    fn debug_shows_the_causes() {
        let err = PgClusterError::io("create the cluster directory")(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "permission denied",
        ));
        assert_eq!(
            format!("{err:?}"),
            "could not create the cluster directory\n  caused by: permission denied"
        );
    }
}
