//! Authentication methods, bad credentials, TLS and keepalives, on a cluster whose
//! `pg_hba.conf` asks for passwords and which serves TLS with a certificate made here.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use ebb_postgres::Lsn;
use ebb_postgres::replication::{
    PgOutputOptions, ReplicationConfig, ReplicationConnection, ReplicationError, ReplicationEvent,
    SnapshotAction, SslMode,
};
use ebb_testkit::PgCluster;

use crate::support::wait_for;

const HBA: &str = "\
local all         all                     trust
host  all         ebb_clear  127.0.0.1/32 password
host  all         ebb_md5    127.0.0.1/32 md5
host  all         ebb_scram  127.0.0.1/32 scram-sha-256
host  all         all        127.0.0.1/32 trust
local replication all                     trust
host  replication all        127.0.0.1/32 trust
";

struct AuthCluster {
    cluster: PgCluster,
    ca_cert: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn psql(cluster: &PgCluster, sql: &str) {
    run(Command::new(cluster.bin_dir().join("psql"))
        .arg("-h")
        .arg(cluster.socket_dir())
        .args([
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql]));
}

/// A CA and a server certificate for 127.0.0.1 signed by it, written into the data directory
/// and owned by the server's user.
fn make_certificates(data: &Path) -> PathBuf {
    let openssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(data));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=ebb test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        data.join("server.ext"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    let meta = std::fs::metadata(data).unwrap();
    for f in ["server.key", "server.crt", "ca.crt"] {
        std::os::unix::fs::chown(data.join(f), Some(meta.uid()), Some(meta.gid())).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    data.join("ca.crt")
}

fn auth_cluster() -> &'static AuthCluster {
    static CLUSTER: OnceLock<AuthCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = PgCluster::builder()
            .setting("wal_sender_timeout", "2s")
            .start()
            .expect("start the authentication test cluster");
        let ca_cert = make_certificates(cluster.data_dir());
        std::fs::write(cluster.data_dir().join("pg_hba.conf"), HBA).unwrap();
        psql(
            &cluster,
            "CREATE ROLE ebb_clear LOGIN REPLICATION PASSWORD 'clear pw'",
        );
        psql(
            &cluster,
            "SET password_encryption = 'md5'; CREATE ROLE ebb_md5 LOGIN REPLICATION PASSWORD 'md5 pw'",
        );
        psql(
            &cluster,
            "SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE ebb_scram LOGIN REPLICATION PASSWORD 'scram pw'",
        );
        psql(&cluster, "ALTER SYSTEM SET ssl = on");
        psql(&cluster, "ALTER SYSTEM SET ssl_cert_file = 'server.crt'");
        psql(&cluster, "ALTER SYSTEM SET ssl_key_file = 'server.key'");
        psql(&cluster, "SELECT pg_reload_conf()");
        AuthCluster { cluster, ca_cert }
    })
}

fn config_for(user: &str, password: Option<&str>) -> ReplicationConfig {
    let c = &auth_cluster().cluster;
    let mut cfg = ReplicationConfig::parse(&format!(
        "host={} port={} dbname=postgres sslmode=disable",
        c.host(),
        c.port()
    ))
    .unwrap();
    cfg.user = user.into();
    cfg.password = password.map(Into::into);
    cfg
}

/// Waits until the reloaded `pg_hba.conf` is in force (a reload is asynchronous): `user`
/// is asked for a password.
async fn wait_for_hba(user: &str) {
    let no_password = config_for(user, None);
    wait_for(
        "pg_hba.conf to be reloaded",
        Duration::from_secs(20),
        || async {
            match ReplicationConnection::connect(&no_password).await {
                Err(ReplicationError::PasswordRequired { .. }) => Some(()),
                Ok(_) => None,
                Err(e) => panic!("{e}"),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn cleartext_md5_and_scram_passwords() {
    for (user, password) in [
        ("ebb_clear", "clear pw"),
        ("ebb_md5", "md5 pw"),
        ("ebb_scram", "scram pw"),
    ] {
        wait_for_hba(user).await;
        let mut conn = ReplicationConnection::connect(&config_for(user, Some(password)))
            .await
            .unwrap();
        assert_eq!(conn.user(), user);
        let system = conn.identify_system().await.unwrap();
        assert_eq!(system.dbname.as_deref(), Some("postgres"), "{user}");
        conn.close().await.unwrap();
    }
}

#[tokio::test]
async fn bad_credentials() {
    for user in ["ebb_clear", "ebb_md5", "ebb_scram"] {
        let cfg = config_for(user, Some("wrong"));
        wait_for_hba(user).await;
        let err = ReplicationConnection::connect(&cfg).await.unwrap_err();
        assert!(
            matches!(err, ReplicationError::BadCredentials { user: ref u, .. } if u == user),
            "{user}: {err:?}"
        );
        assert!(err.to_string().contains("check the user and password"));
        assert!(
            !err.to_string().contains("wrong"),
            "the password leaked: {err}"
        );
    }
}

async fn connect_tls(
    mode: SslMode,
    root: Option<PathBuf>,
) -> Result<ReplicationConnection, ReplicationError> {
    let mut cfg = config_for("postgres", None);
    cfg.ssl_mode = mode;
    cfg.ssl_root_cert = root;
    ReplicationConnection::connect(&cfg).await
}

#[tokio::test]
async fn tls_when_required_and_verified() {
    let ca = auth_cluster().ca_cert.clone();
    // ssl = on takes effect with the reload.
    let mut conn = wait_for(
        "the server to offer TLS",
        Duration::from_secs(20),
        || async {
            match connect_tls(SslMode::Require, None).await {
                Ok(conn) => Some(conn),
                Err(ReplicationError::TlsNotSupported) => None,
                Err(e) => panic!("{e}"),
            }
        },
    )
    .await;
    let ssl = conn
        .simple_query("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .await
        .unwrap();
    assert_eq!(ssl[0].rows, vec![vec![Some("true".to_owned())]]);
    conn.close().await.unwrap();

    let mut verified = connect_tls(SslMode::VerifyFull, Some(ca)).await.unwrap();
    verified.identify_system().await.unwrap();
    // The public roots do not know the test CA.
    let err = connect_tls(SslMode::VerifyFull, None).await.unwrap_err();
    assert!(matches!(err, ReplicationError::Io(_)), "{err:?}");
    // prefer uses TLS when offered.
    let mut preferred = connect_tls(SslMode::Prefer, None).await.unwrap();
    let ssl = preferred
        .simple_query("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .await
        .unwrap();
    assert_eq!(ssl[0].rows, vec![vec![Some("true".to_owned())]]);
}

#[tokio::test]
async fn keepalives_are_answered_so_the_server_keeps_the_stream() {
    let db = auth_cluster().cluster.fresh_database().await;
    let client = db.connect().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t;")
        .await
        .unwrap();
    let cfg = ReplicationConfig::parse(&db.conn_string()).unwrap();
    let mut conn = ReplicationConnection::connect(&cfg).await.unwrap();
    conn.create_slot("idle", true, SnapshotAction::NoExport)
        .await
        .unwrap();
    let mut stream = conn
        .start_replication("idle", Lsn::ZERO, &PgOutputOptions::new(["p"]))
        .await
        .unwrap();
    // wal_sender_timeout = 2s: the server asks for a reply after 1 s of silence and hangs up
    // after 2 s without one. Stay connected for 5 s.
    let mut requested = 0;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        match tokio::time::timeout(Duration::from_secs(3), stream.next_event()).await {
            Ok(Ok(Some(ReplicationEvent::Keepalive {
                reply_requested: true,
                ..
            }))) => requested += 1,
            Ok(Ok(Some(_))) => {}
            other => panic!("stream ended: {other:?}"),
        }
    }
    assert!(requested >= 2, "{requested} keepalives asked for a reply");
}
