//! End-to-end tests of the `ebb` binary, run as a user would run it: a real process, real
//! files, exit codes and printed output.

mod cdc;
mod check;
mod init;
mod models;
mod quickstart;
mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The example project shipped in the repository's `models/` folder.
pub fn example_project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// Runs `ebb ARGS` in `cwd` with a clean environment for the variables the example uses.
pub fn ebb(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(args)
        .current_dir(cwd)
        .env_remove("EBB_WEBHOOK_SECRET")
        .env_remove("HUBSPOT_TOKEN")
        .env_remove("HUBSPOT_BASE_URL")
        .output()
        .expect("the ebb binary runs")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Copies a folder tree (the example project) into `to`, skipping local state.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || name == "__pycache__" || name == "_ebb_models"
        {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
