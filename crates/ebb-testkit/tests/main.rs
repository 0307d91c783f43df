//! Integration tests of ebb-testkit, against real PostgreSQL clusters.

mod cluster;
mod replication;

use std::path::Path;
use std::time::{Duration, Instant};

/// The postmaster's pid, from the first line of `postmaster.pid` in the data directory.
fn postmaster_pid(data_dir: &Path) -> u32 {
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).unwrap();
    pid_file.lines().next().unwrap().trim().parse().unwrap()
}

/// Whether `pid` is a live process (a zombie that has exited does not count).
fn process_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may contain spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Waits until `condition` holds, failing after `timeout`.
fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
