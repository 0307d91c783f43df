//! Starting, configuring, isolating and cleaning up test clusters.

use std::collections::HashSet;
use std::io::BufRead as _;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use ebb_testkit::{PgCluster, PgClusterError};

use crate::{postmaster_pid, process_running, wait_until};

#[tokio::test]
async fn fresh_databases_are_distinct_and_isolated() -> anyhow::Result<()> {
    let cluster = PgCluster::shared();
    let first = cluster.fresh_database().await;
    let second = cluster.fresh_database().await;
    assert_ne!(first.name(), second.name());

    let a = first.connect().await;
    let b = second.connect().await;
    let name: String = a.query_one("SELECT current_database()", &[]).await?.get(0);
    assert_eq!(name, first.name());
    let name: String = b.query_one("SELECT current_database()", &[]).await?.get(0);
    assert_eq!(name, second.name());

    a.batch_execute("CREATE TABLE only_in_first (v text); INSERT INTO only_in_first VALUES ('x')")
        .await?;
    let seen: Option<String> = b
        .query_one("SELECT to_regclass('only_in_first')::text", &[])
        .await?
        .get(0);
    assert_eq!(
        seen, None,
        "a table of one test's database is visible in another's"
    );
    // Same table name in the second database, different contents.
    b.batch_execute("CREATE TABLE only_in_first (v text)")
        .await?;
    let count: i64 = b
        .query_one("SELECT count(*) FROM only_in_first", &[])
        .await?
        .get(0);
    assert_eq!(count, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tests_get_unique_databases() -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async {
                let db = PgCluster::shared().fresh_database().await;
                let client = db.connect().await;
                let name: String = client
                    .query_one("SELECT current_database()", &[])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(name, db.name());
                name
            })
        })
        .collect();
    let mut names = HashSet::new();
    for task in tasks {
        names.insert(task.await?);
    }
    assert_eq!(names.len(), 8, "{names:?}");
    Ok(())
}

#[tokio::test]
async fn the_server_has_logical_wal_level_and_does_not_run_as_root() -> anyhow::Result<()> {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database().await;
    let client = db.connect().await;

    let settings = client
        .query_one(
            "SELECT current_setting('wal_level'), current_setting('max_replication_slots'), \
                    current_setting('max_wal_senders'), current_setting('fsync'), \
                    current_setting('port')",
            &[],
        )
        .await?;
    let wal_level: String = settings.get(0);
    let slots: String = settings.get(1);
    let senders: String = settings.get(2);
    let fsync: String = settings.get(3);
    let port: String = settings.get(4);
    assert_eq!(wal_level, "logical");
    assert_eq!(slots, "32");
    assert_eq!(senders, "32");
    assert_eq!(fsync, "off");
    assert_eq!(port, cluster.port().to_string());

    let session = client
        .query_one(
            "SELECT usename::text, datname::text, client_addr::text \
             FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    let (user, database, addr): (String, String, String) =
        (session.get(0), session.get(1), session.get(2));
    assert_eq!(user, "postgres");
    assert_eq!(database, db.name());
    assert_eq!(addr, "127.0.0.1/32");

    let pid = postmaster_pid(cluster.data_dir());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let uids: Vec<u32> = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .expect("Uid line in /proc/<pid>/status")
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    assert!(
        uids.iter().all(|&uid| uid != 0),
        "the postmaster (pid {pid}) runs as root: {uids:?}"
    );
    assert_eq!(
        uids[1],
        std::fs::metadata(cluster.data_dir())?.uid(),
        "the postmaster should run as the owner of its data directory"
    );
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))?;
    assert_eq!(exe, cluster.bin_dir().join("postgres").canonicalize()?);
    Ok(())
}

#[tokio::test]
async fn client_programs_in_bin_dir_reach_the_server_over_its_socket() -> anyhow::Result<()> {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database().await;
    let psql = cluster.bin_dir().join("psql");

    let version = tokio::process::Command::new(&psql)
        .arg("--version")
        .output()
        .await?;
    let version = String::from_utf8(version.stdout)?;
    assert!(
        version.contains(&format!(" {}.", cluster.version())),
        "psql says {version:?}, the cluster says major version {}",
        cluster.version()
    );

    let output = tokio::process::Command::new(&psql)
        .arg("--host")
        .arg(cluster.socket_dir())
        .args(["--port", &cluster.port().to_string()])
        .args(["--username", "postgres", "--dbname", db.name()])
        .args(["--no-psqlrc", "--tuples-only", "--no-align"])
        .args([
            "--command",
            "SELECT current_database() || ' via ' || coalesce(inet_client_addr()::text, 'socket')",
        ])
        .output()
        .await?;
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout)?.trim(),
        format!("{} via socket", db.name())
    );
    Ok(())
}

#[tokio::test]
async fn a_builder_cluster_has_its_settings_and_leaves_nothing_when_dropped() -> anyhow::Result<()>
{
    let cluster = PgCluster::builder()
        .setting("logical_decoding_work_mem", "64kB")
        .setting("application_name", "it's ebb")
        .start()?;
    let db = cluster.fresh_database().await;
    let client = db.connect().await;
    let row = client
        .query_one(
            "SELECT current_setting('logical_decoding_work_mem'), \
                    current_setting('application_name'), current_setting('wal_level')",
            &[],
        )
        .await?;
    let (work_mem, app, wal_level): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(work_mem, "64kB");
    assert_eq!(app, "it's ebb");
    assert_eq!(
        wal_level, "logical",
        "custom settings must not drop the defaults"
    );

    let (dir, data_dir, port) = (
        cluster.socket_dir().to_path_buf(),
        cluster.data_dir().to_path_buf(),
        cluster.port(),
    );
    let pid = postmaster_pid(&data_dir);
    assert!(process_running(pid));
    drop(client);
    drop(cluster);

    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(!process_running(pid), "postmaster {pid} still runs");
    TcpListener::bind(("127.0.0.1", port))
        .map_err(|err| anyhow::anyhow!("port {port} is still in use: {err}"))?;
    assert!(
        tokio_postgres::connect(&db.conn_string(), tokio_postgres::NoTls)
            .await
            .is_err()
    );
    Ok(())
}

#[test]
fn a_setting_the_server_rejects_fails_with_the_server_log() {
    let err = PgCluster::builder()
        .setting("no_such_setting", "1")
        .start()
        .expect_err("the server must refuse an unknown setting");
    match &err {
        PgClusterError::Startup { reason, log_tail } => {
            assert!(reason.contains("exited"), "{err:?}");
            assert!(log_tail.contains("no_such_setting"), "{err:?}");
        }
        other => panic!("expected a startup error, got {other:?}"),
    }
}

#[test]
fn a_setting_that_would_break_postgresql_conf_is_refused_before_starting() {
    let err = PgCluster::builder()
        .setting("work_mem", "1MB\nfsync = on")
        .start()
        .expect_err("a multi-line value must be refused");
    assert!(
        matches!(err, PgClusterError::InvalidSetting { .. }),
        "{err:?}"
    );
}

/// Set for the child process of
/// [`the_watchdog_cleans_up_after_the_test_process_is_killed`].
const KILL_HELPER_ENV: &str = "EBB_TESTKIT_KILLED_PROCESS";

#[tokio::test]
#[ignore = "a helper, run as a child process by the_watchdog_cleans_up_after_the_test_process_is_killed"]
async fn helper_shared_cluster_in_a_process_that_is_killed() {
    if std::env::var_os(KILL_HELPER_ENV).is_none() {
        return;
    }
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database().await;
    let _client = db.connect().await;
    println!("cluster_dir={}", cluster.socket_dir().display());
    println!("postmaster_pid={}", postmaster_pid(cluster.data_dir()));
    // Wait here for SIGKILL; returns early only if the parent test is gone.
    let _ = std::io::stdin().read_line(&mut String::new());
}

#[test]
fn the_watchdog_cleans_up_after_the_test_process_is_killed() -> anyhow::Result<()> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "cluster::helper_shared_cluster_in_a_process_that_is_killed",
        ])
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .env(KILL_HELPER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut cluster_dir = None;
    let mut pid = None;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        // libtest may have printed "test <name> ... " on the same line.
        let line = line?;
        if let Some((_, dir)) = line.split_once("cluster_dir=") {
            cluster_dir = Some(PathBuf::from(dir));
        } else if let Some((_, p)) = line.split_once("postmaster_pid=") {
            pid = Some(p.parse::<u32>()?);
            break;
        }
    }
    let (Some(cluster_dir), Some(pid)) = (cluster_dir, pid) else {
        child.kill()?;
        anyhow::bail!(
            "the child process did not report its cluster: {:?}",
            child.wait()?
        );
    };
    assert!(cluster_dir.exists());
    assert!(process_running(pid));

    child.kill()?;
    child.wait()?;

    wait_until(
        Duration::from_secs(30),
        "the killed process's cluster is gone",
        || !process_running(pid) && !cluster_dir.exists(),
    );
    Ok(())
}
