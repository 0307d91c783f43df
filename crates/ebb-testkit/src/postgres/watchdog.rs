//! The process that stops a cluster and deletes its files when the test process is gone.
//!
//! The shared cluster lives in a static, which is never dropped, and a test binary may panic
//! or be killed. So each cluster gets a watchdog: a small `sh` whose stdin is a pipe held only
//! by the test process. It blocks reading that pipe; the read returns when the pipe closes,
//! which the kernel does when the test process exits in any way (even `SIGKILL`), or when the
//! cluster is dropped. It then runs `pg_ctl stop -m immediate` and removes the directory.
//!
//! The pipe is close-on-exec, so the server and other children never hold it open. The
//! watchdog runs in its own process group and ignores `SIGINT`/`SIGTERM`/`SIGHUP`, so a Ctrl-C
//! that ends the tests does not end it before it has cleaned up.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::PgClusterError;
use super::server_user::ServerUser;

/// `$1` = pg_ctl, `$2` = data directory, `$3` = the cluster's directory (removed).
const SCRIPT: &str = r#"trap '' INT TERM HUP QUIT
read -r _ignored
"$1" stop -D "$2" -m immediate -w -t 60 >/dev/null 2>&1
rm -rf "$3"
"#;

/// How long a dropped cluster waits for its postmaster to exit after the watchdog stopped it,
/// before killing it.
const POSTMASTER_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A cluster's watchdog and postmaster. Dropping it stops the server, removes the cluster's
/// directory and reaps both processes.
#[derive(Debug)]
pub(crate) struct ClusterProcesses {
    watchdog: Child,
    /// The write end of the watchdog's stdin: closing it starts the cleanup.
    trigger: Option<ChildStdin>,
    postmaster: Option<Child>,
}

impl ClusterProcesses {
    /// Starts the watchdog for a cluster in `cluster_dir` (which it will delete).
    pub(crate) fn start_watchdog(
        pg_ctl: &Path,
        data_dir: &Path,
        cluster_dir: &Path,
        user: &ServerUser,
    ) -> Result<Self, PgClusterError> {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(SCRIPT)
            .arg("ebb-pg-watchdog")
            .arg(pg_ctl)
            .arg(data_dir)
            .arg(cluster_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            .process_group(0);
        let mut watchdog = user
            .apply(&mut command)
            .spawn()
            .map_err(PgClusterError::io("start the cluster's watchdog (/bin/sh)"))?;
        let trigger = watchdog.stdin.take();
        Ok(Self {
            watchdog,
            trigger,
            postmaster: None,
        })
    }

    /// Keeps the postmaster, to be reaped when the cluster is stopped.
    pub(crate) fn set_postmaster(&mut self, postmaster: Child) -> &mut Child {
        self.postmaster.insert(postmaster)
    }

    /// Reaps a postmaster that has exited (after a failed start), so another can be started.
    pub(crate) fn forget_exited_postmaster(&mut self) {
        if let Some(mut postmaster) = self.postmaster.take() {
            let _ = postmaster.wait();
        }
    }
}

impl Drop for ClusterProcesses {
    fn drop(&mut self) {
        // Closing the pipe is what the watchdog waits for; the same path as after a crash.
        drop(self.trigger.take());
        let _ = self.watchdog.wait();
        if let Some(postmaster) = &mut self.postmaster {
            // `pg_ctl stop -w` returns once the pid file is gone, a moment before the
            // postmaster exits; if it could not stop the server at all, kill it.
            let deadline = Instant::now() + POSTMASTER_EXIT_TIMEOUT;
            while matches!(postmaster.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if matches!(postmaster.try_wait(), Ok(None)) {
                let _ = postmaster.kill();
            }
            let _ = postmaster.wait();
        }
    }
}
