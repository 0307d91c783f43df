//! The OS user the server runs as.
//!
//! PostgreSQL refuses to run as root, and CI runs as root. Then the cluster's processes run
//! as an unprivileged user: `postgres` if it exists (the distribution's package creates it),
//! else `ebbtest`, created once with `useradd --system`.

use std::path::Path;
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Uid, User, geteuid};

use super::PgClusterError;

/// Users tried, in order, when running as root.
const EXISTING_USER: &str = "postgres";
const CREATED_USER: &str = "ebbtest";

#[derive(Debug, Clone)]
pub(crate) enum ServerUser {
    /// Not root: the server runs as the user running the tests.
    Current,
    /// Root: the server runs as this unprivileged user.
    Unprivileged { name: String, uid: Uid, gid: Gid },
}

impl ServerUser {
    /// The user to run the server as, creating `ebbtest` if running as root and there is no
    /// `postgres` user.
    pub(crate) fn for_this_process() -> Result<Self, PgClusterError> {
        if !geteuid().is_root() {
            return Ok(Self::Current);
        }
        for name in [EXISTING_USER, CREATED_USER] {
            if let Some(user) = lookup(name)? {
                return Ok(user);
            }
        }
        // Another test process may create the user at the same time; whoever loses sees
        // `useradd` fail, so the outcome is judged by looking the user up again.
        let useradd = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home", CREATED_USER])
            .stdin(Stdio::null())
            .output();
        if let Some(user) = lookup(CREATED_USER)? {
            return Ok(user);
        }
        let detail = match useradd {
            Ok(output) => format!(
                "`useradd` exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(err) => format!("could not run `useradd`: {err}"),
        };
        Err(PgClusterError::NoServerUser { detail })
    }

    /// Makes `command` run as this user.
    pub(crate) fn apply<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        match self {
            Self::Current => command,
            Self::Unprivileged { uid, gid, .. } => {
                use std::os::unix::process::CommandExt;
                command.uid(uid.as_raw()).gid(gid.as_raw())
            }
        }
    }

    /// Gives `path` to this user, so the server can write into it.
    pub(crate) fn take_ownership(&self, path: &Path) -> Result<(), PgClusterError> {
        match self {
            Self::Current => Ok(()),
            Self::Unprivileged { name, uid, gid } => {
                std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw())).map_err(
                    PgClusterError::io(format!("give {} to user `{name}`", path.display())),
                )
            }
        }
    }

    /// For messages: "as user `postgres`", or nothing.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Current => String::new(),
            Self::Unprivileged { name, .. } => format!(" (as user `{name}`)"),
        }
    }
}

fn lookup(name: &str) -> Result<Option<ServerUser>, PgClusterError> {
    let user = User::from_name(name).map_err(|errno| PgClusterError::Io {
        action: format!("look up the user `{name}`"),
        source: errno.into(),
    })?;
    Ok(user.map(|user| ServerUser::Unprivileged {
        name: user.name,
        uid: user.uid,
        gid: user.gid,
    }))
}
