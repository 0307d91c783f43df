//! The lake on S3, against a local S3-compatible server (`moto` in server mode) that the
//! test starts on a free port.
//!
//! The lake reads its S3 credentials and endpoint from `AWS_*` environment variables, and a
//! test cannot set environment variables safely while other tests run in the same process.
//! So [`lake_on_s3`] starts moto, then runs [`lake_on_s3_in_child`] in a child process of
//! this test binary with the environment set; the child is `#[ignore]`d when run alone.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ebb_core::config::project::Materialized;
use ebb_warehouse::lake::{LakeOptions, LakeWarehouse, MODELS_DIR};
use ebb_warehouse::{SourceTable, Warehouse};
use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::lake::orders;
use crate::support::table;

const ENDPOINT_ENV: &str = "EBB_TEST_S3_ENDPOINT";
const BUCKET: &str = "ebb-lake";

/// A moto server, stopped when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import moto.server, flask, flask_cors"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts moto, installing it with pip first if needed; `None` if that is impossible here.
fn start_moto() -> Option<Moto> {
    if !moto_installed() {
        eprintln!("moto is not installed; trying: python3 -m pip install --quiet 'moto[server]'");
        let _ = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "moto[server]"])
            .status();
        if !moto_installed() {
            return None;
        }
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = moto.child.try_wait().unwrap() {
            panic!("the moto server exited at startup ({status})");
        }
        assert!(
            Instant::now() < deadline,
            "the moto server did not listen within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(moto)
}

#[test]
fn lake_on_s3() {
    let Some(moto) = start_moto() else {
        let message = "\n\n*** SKIPPED s3::lake_on_s3: python3 with moto[server] is not available \
                       and could not be installed (pip install 'moto[server]') ***\n";
        assert!(
            std::env::var_os("CI").is_none(),
            "{message} (CI must run it)"
        );
        eprintln!("{message}");
        return;
    };
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "s3::lake_on_s3_in_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENDPOINT_ENV, format!("http://127.0.0.1:{}", moto.port))
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{}", moto.port))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "ebb-test")
        .env("AWS_SECRET_ACCESS_KEY", "ebb-test-secret")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the S3 test failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the S3 test did not run:\n{stdout}\n{stderr}"
    );
    drop(moto);
}

/// Creates a bucket with a plain HTTP request (moto does not check signatures).
async fn create_bucket(endpoint: &str, bucket: &str) {
    let host = endpoint.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "create bucket: {response}"
    );
}

fn parquet_bytes(batch: &arrow::record_batch::RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer =
        datafusion::parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    out
}

#[tokio::test]
#[ignore = "run by s3::lake_on_s3 with a moto server's AWS_* environment"]
async fn lake_on_s3_in_child() {
    let Ok(endpoint) = std::env::var(ENDPOINT_ENV) else {
        eprintln!("{ENDPOINT_ENV} is not set: run s3::lake_on_s3 instead");
        return;
    };
    create_bucket(&endpoint, BUCKET).await;
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(BUCKET)
        .build()
        .unwrap();
    store
        .put(
            &StorePath::from("warehouse/customers.csv"),
            "customer_id,email\n1,a@x.io\n2,\n3,c@x.io\n".into(),
        )
        .await
        .unwrap();
    store
        .put(
            &StorePath::from("warehouse/orders/year=2026/month=11/part-0.parquet"),
            parquet_bytes(&orders(&[10, 11, 12], &["paid", "open", "paid"])).into(),
        )
        .await
        .unwrap();

    let project_root = tempfile::tempdir().unwrap();
    let lake = LakeWarehouse::open(
        &format!("s3://{BUCKET}/warehouse"),
        project_root.path(),
        LakeOptions::default(),
    )
    .unwrap();
    let source = |table: &str, path: &str| SourceTable {
        source: "shop".into(),
        table: table.into(),
        path: Some(path.into()),
        format: None,
        schema: None,
        identifier: None,
    };
    lake.attach_sources(&[
        source("customers", "customers.csv"),
        source("orders", "orders/**/*.parquet"),
    ])
    .await
    .unwrap();

    let got = table(
        &lake,
        "select count(*) as n, count(email) as with_email from shop.customers",
    )
    .await;
    assert!(got.contains("| 3 | 2          |"), "{got}");
    let got = table(
        &lake,
        "select order_id, status, year, month from shop.orders order by order_id",
    )
    .await;
    assert!(
        got.contains("| 12       | paid   | 2026 | 11    |"),
        "{got}"
    );

    // A Parquet model written to S3, read back through a fresh lake.
    let done = lake
        .materialize(
            "paid_orders",
            "select order_id from shop.orders where status = 'paid'",
            Materialized::Parquet,
        )
        .await
        .unwrap();
    assert_eq!(done.rows, Some(2));
    assert!(
        done.location.starts_with(&format!(
            "s3://{BUCKET}/warehouse/{MODELS_DIR}/paid_orders/"
        )),
        "{}",
        done.location
    );
    let pointer = store
        .get(&StorePath::from(format!(
            "warehouse/{MODELS_DIR}/paid_orders/CURRENT"
        )))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        done.location
            .ends_with(&format!("{}/", String::from_utf8_lossy(&pointer)))
    );

    let fresh = LakeWarehouse::open(
        &format!("s3://{BUCKET}/warehouse"),
        project_root.path(),
        LakeOptions::default(),
    )
    .unwrap();
    assert!(fresh.attach_materialized("paid_orders").await.unwrap());
    let got = table(&fresh, "select order_id from paid_orders order by 1").await;
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        vec![
            "+----------+",
            "| order_id |",
            "+----------+",
            "| 10       |",
            "| 12       |",
            "+----------+"
        ]
    );
}
