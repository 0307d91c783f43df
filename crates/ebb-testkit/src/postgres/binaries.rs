//! Finding the PostgreSQL server programs installed on this machine.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::PgClusterError;

/// Environment variable naming the PostgreSQL bin directory; overrides the search.
pub const BIN_DIR_ENV: &str = "EBB_PG_BINDIR";

/// The programs a bin directory must hold to run a cluster.
const SERVER_PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Where distributions with several PostgreSQL versions side by side put them
/// (`/usr/lib/postgresql/15/bin`, ...).
const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

/// The PostgreSQL bin directory to use: `EBB_PG_BINDIR` if set, else the first complete one of
/// `initdb` on `PATH`, `pg_config --bindir`, and `/usr/lib/postgresql/*/bin` newest first.
pub(crate) fn find_bin_dir() -> Result<PathBuf, PgClusterError> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        let dir = PathBuf::from(dir);
        return match missing_program(&dir) {
            None => Ok(dir),
            Some(program) => Err(PgClusterError::BinDirIncomplete { dir, program }),
        };
    }

    let mut searched = Vec::new();
    let mut candidates = on_path();
    // Only ask pg_config and list /usr/lib/postgresql when PATH had nothing.
    if !candidates.iter().any(|dir| missing_program(dir).is_none()) {
        candidates.extend(from_pg_config());
        candidates.extend(versioned_bin_dirs(Path::new(VERSIONED_ROOT)));
    }
    for dir in candidates {
        if missing_program(&dir).is_none() {
            return Ok(dir);
        }
        if !searched.contains(&dir) {
            searched.push(dir);
        }
    }
    Err(PgClusterError::NotInstalled { searched })
}

/// Directories of `initdb` found on `PATH`. A symlink (`/usr/local/bin/initdb ->
/// /usr/lib/postgresql/15/bin/initdb`) counts by its target first, so that the directory
/// found also has `psql` and `pg_recvlogical` of the same version.
fn on_path() -> Vec<PathBuf> {
    let Some(path) = std::env::var_os("PATH") else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for dir in std::env::split_paths(&path) {
        let initdb = dir.join("initdb");
        if !is_executable(&initdb) {
            continue;
        }
        if let Some(real_dir) = std::fs::canonicalize(&initdb)
            .ok()
            .and_then(|real| real.parent().map(Path::to_path_buf))
        {
            dirs.push(real_dir);
        }
        dirs.push(dir);
    }
    dirs
}

/// What `pg_config --bindir` prints, if `pg_config` is on `PATH`.
fn from_pg_config() -> Option<PathBuf> {
    let output = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = dir.trim();
    (output.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `<root>/<version>/bin` for every version directory under `root`, newest first
/// (`17` before `15` before `9.6`).
fn versioned_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn missing_program(dir: &Path) -> Option<&'static str> {
    SERVER_PROGRAMS
        .into_iter()
        .find(|program| !is_executable(&dir.join(program)))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bin_dir(dir: &Path, programs: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        for program in programs {
            let path = dir.join(program);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn versioned_dirs_come_newest_first_numerically() {
        let root = tempfile::tempdir().unwrap();
        for version in ["9.6", "15", "10", "17", "not-a-version"] {
            std::fs::create_dir(root.path().join(version)).unwrap();
        }
        let found = versioned_bin_dirs(root.path());
        let names: Vec<String> = found
            .iter()
            .map(|dir| {
                dir.parent()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["17", "15", "10", "9.6"]);
        assert!(found.iter().all(|dir| dir.ends_with("bin")));
    }

    #[test]
    fn a_bin_dir_needs_all_server_programs() {
        let root = tempfile::tempdir().unwrap();
        let complete = root.path().join("complete");
        let partial = root.path().join("partial");
        fake_bin_dir(&complete, &SERVER_PROGRAMS);
        fake_bin_dir(&partial, &["initdb", "postgres"]);
        assert_eq!(missing_program(&complete), None);
        assert_eq!(missing_program(&partial), Some("pg_ctl"));

        let not_executable = root.path().join("partial/pg_ctl");
        std::fs::write(&not_executable, "").unwrap();
        std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(missing_program(&partial), Some("pg_ctl"));
    }
}
