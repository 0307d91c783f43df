//! End-to-end CDC benchmark: the same WAL streamed through ebb's replication connection into
//! Arrow batches, and through `pg_recvlogical` to /dev/null, in one run.
//!
//! ```text
//! cargo bench -p ebb-postgres --bench cdc_stream
//! EBB_BENCH_ROWS=1000000 EBB_BENCH_ROUNDS=1 cargo bench -p ebb-postgres --bench cdc_stream
//! ```
//!
//! Workload (as in shared/FIELD-NOTES.md): a 12-column table, 60 % inserts, 30 % updates,
//! 10 % deletes, 1,000 changes per transaction, pgoutput v2 with streaming on for both
//! readers. Each round gives each reader its own slot over the same WAL; readers alternate.
//! Prints rates and the ratio (medians over rounds) and writes
//! `benchmarks/results/cdc_stream.json` at the workspace root.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use ebb_postgres::Lsn;
use ebb_postgres::pgoutput::{Decoder, LogicalMessage, Relation};
use ebb_postgres::replication::{
    PgOutputOptions, ReplicationConfig, ReplicationConnection, ReplicationEvent,
};
use ebb_postgres::types::{RowBatchBuilder, TypeRegistry};
use ebb_testkit::PgCluster;

const SCHEMA: &str = "
CREATE TABLE bench (
    id bigint PRIMARY KEY, qty int, amount numeric(12,2), name text, email text,
    created_at timestamptz, active bool, score float8, status text, external_id bigint,
    updated_at timestamptz, note text
);
CREATE PUBLICATION bench_pub FOR TABLE bench;
CREATE PROCEDURE workload(transactions int) LANGUAGE plpgsql AS $$
DECLARE base bigint := 0;
BEGIN
    FOR t IN 1..transactions LOOP
        INSERT INTO bench
        SELECT base + g, g % 100, (g * 7 % 100000) / 100.0, 'customer-' || (base + g),
               'user' || (base + g) || '@example.com', now(), g % 2 = 0, g / 7.0, 'active',
               base + g + 1000000000, now(), 'a short note about this row'
        FROM generate_series(1, 600) g;
        UPDATE bench SET qty = qty + 1, status = 'updated', updated_at = now()
        WHERE id > base + 300 AND id <= base + 600;
        DELETE FROM bench WHERE id > base AND id <= base + 100;
        base := base + 600;
        COMMIT;
    END LOOP;
END $$;
";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    seconds: f64,
    changes: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing we need.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = env_usize("EBB_BENCH_ROWS", 3_000_000);
    let rounds = env_usize("EBB_BENCH_ROUNDS", 3).max(1);
    let transactions = rows.div_ceil(1000);

    let cluster = PgCluster::builder()
        .setting("max_wal_size", "4GB")
        .setting("checkpoint_timeout", "30min")
        .start()
        .expect("start the benchmark cluster");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = runtime.block_on(cluster.fresh_database());
    let client = runtime.block_on(db.connect());
    runtime.block_on(client.batch_execute(SCHEMA)).unwrap();
    for round in 0..rounds {
        for reader in ["ebb", "recv"] {
            runtime
                .block_on(client.batch_execute(&format!(
                    "SELECT pg_create_logical_replication_slot('{reader}_{round}', 'pgoutput')"
                )))
                .unwrap();
        }
    }
    let start_lsn: Lsn = runtime
        .block_on(client.query_one("SELECT pg_current_wal_lsn()::text", &[]))
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap();
    eprintln!(
        "generating {} row changes in {transactions} transactions …",
        transactions * 1000
    );
    let generated = Instant::now();
    runtime
        .block_on(client.batch_execute(&format!("CALL workload({transactions})")))
        .unwrap();
    let end_lsn: Lsn = runtime
        .block_on(client.query_one("SELECT pg_current_wal_lsn()::text", &[]))
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap();
    let wal_mb = (end_lsn.0 - start_lsn.0) as f64 / 1e6;
    eprintln!(
        "generated in {:.1} s, {wal_mb:.0} MB of WAL",
        generated.elapsed().as_secs_f64()
    );

    let mut ebb_runs = Vec::new();
    let mut recv_runs = Vec::new();
    for round in 0..rounds {
        let recv = recvlogical(&cluster, db.name(), &format!("recv_{round}"), end_lsn);
        eprintln!("round {round}: pg_recvlogical {:.2} s", recv.seconds);
        let cfg = ReplicationConfig::parse(&db.conn_string()).unwrap();
        let ebb = runtime.block_on(ebb_stream(&cfg, &format!("ebb_{round}"), end_lsn));
        eprintln!(
            "round {round}: ebb {:.2} s, {} changes into Arrow",
            ebb.seconds, ebb.changes
        );
        recv_runs.push(recv);
        ebb_runs.push(ebb);
    }
    let changes = ebb_runs[0].changes as f64;
    let ebb_rate = median(ebb_runs.iter().map(|r| changes / r.seconds).collect());
    let recv_rate = median(recv_runs.iter().map(|r| changes / r.seconds).collect());
    let ratio = ebb_rate / recv_rate;
    println!();
    println!("| reader                    | changes/s | WAL MB/s |");
    println!("|---------------------------|-----------|----------|");
    println!(
        "| ebb (pgoutput → Arrow)    | {:>9.0} | {:>8.1} |",
        ebb_rate,
        ebb_rate / changes * wal_mb
    );
    println!(
        "| pg_recvlogical → /dev/null| {:>9.0} | {:>8.1} |",
        recv_rate,
        recv_rate / changes * wal_mb
    );
    println!(
        "ratio ebb / pg_recvlogical = {ratio:.2} (target ≥ 0.90), medians of {rounds} rounds, {changes} changes, {wal_mb:.0} MB WAL"
    );

    let report = format!(
        "{{\"benchmark\":\"cdc_stream\",\"changes\":{changes},\"wal_mb\":{wal_mb:.1},\"rounds\":{rounds},\
         \"ebb_changes_per_s\":{ebb_rate:.0},\"pg_recvlogical_changes_per_s\":{recv_rate:.0},\"ratio\":{ratio:.3},\
         \"ebb_seconds\":{:?},\"pg_recvlogical_seconds\":{:?}}}\n",
        ebb_runs.iter().map(|r| r.seconds).collect::<Vec<_>>(),
        recv_runs.iter().map(|r| r.seconds).collect::<Vec<_>>(),
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benchmarks/results");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("cdc_stream.json"), report);
    }
}

fn recvlogical(cluster: &PgCluster, dbname: &str, slot: &str, end: Lsn) -> Run {
    let started = Instant::now();
    let out = Command::new(cluster.bin_dir().join("pg_recvlogical"))
        .args([
            "-h",
            cluster.host(),
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
        ])
        .args([
            "-d",
            dbname,
            "--slot",
            slot,
            "--start",
            "--no-loop",
            "-f",
            "/dev/null",
        ])
        .args(["-o", "proto_version=2", "-o", "publication_names=bench_pub"])
        .args(["-o", "streaming=on", "--endpos", &end.to_string()])
        .output()
        .expect("run pg_recvlogical");
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "pg_recvlogical failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Run {
        seconds,
        changes: 0,
    }
}

async fn ebb_stream(cfg: &ReplicationConfig, slot: &str, end: Lsn) -> Run {
    let started = Instant::now();
    let conn = ReplicationConnection::connect(cfg).await.unwrap();
    let mut options = PgOutputOptions::new(["bench_pub"]);
    options.messages = false;
    let mut stream = conn
        .start_replication(slot, Lsn::ZERO, &options)
        .await
        .unwrap();
    let registry = TypeRegistry::new();
    let mut decoder = Decoder::new(options.proto_version);
    let mut relations: HashMap<u32, (Relation, RowBatchBuilder, RowBatchBuilder)> = HashMap::new();
    let mut changes = 0u64;
    let mut batches = 0u64;
    let flush = |b: &mut RowBatchBuilder, batches: &mut u64| {
        if b.len() >= 8192 {
            let batch = b.finish().unwrap();
            *batches += 1;
            std::hint::black_box(batch);
        }
    };
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), stream.next_event())
            .await
            .expect("no message for 60 s")
            .unwrap()
            .expect("stream open");
        let data = match event {
            ReplicationEvent::XLogData(x) => x.data,
            // Everything up to the server's end of WAL has been received.
            ReplicationEvent::Keepalive { wal_end, .. } if wal_end >= end => break,
            ReplicationEvent::Keepalive { .. } => continue,
        };
        match decoder.decode(&data).unwrap() {
            LogicalMessage::Relation(r) => {
                let rows = RowBatchBuilder::for_relation(&r, &registry);
                let keys = RowBatchBuilder::for_relation(&r, &registry);
                relations.insert(r.oid, (r, rows, keys));
            }
            LogicalMessage::Insert(i) => {
                let (_, rows, _) = relations.get_mut(&i.relation_id).unwrap();
                rows.append_tuple(&i.new).unwrap();
                flush(rows, &mut batches);
                changes += 1;
            }
            LogicalMessage::Update(u) => {
                let (_, rows, _) = relations.get_mut(&u.relation_id).unwrap();
                rows.append_tuple(&u.new).unwrap();
                flush(rows, &mut batches);
                changes += 1;
            }
            LogicalMessage::Delete(d) => {
                let (_, _, keys) = relations.get_mut(&d.relation_id).unwrap();
                keys.append_tuple(&d.old.tuple).unwrap();
                flush(keys, &mut batches);
                changes += 1;
            }
            LogicalMessage::Commit(c) => {
                stream.set_positions(c.end_lsn, c.end_lsn, c.end_lsn);
                if c.end_lsn >= end {
                    break;
                }
            }
            LogicalMessage::StreamCommit(c) => {
                stream.set_positions(c.end_lsn, c.end_lsn, c.end_lsn);
                if c.end_lsn >= end {
                    break;
                }
            }
            _ => {}
        }
    }
    for (_, rows, keys) in relations.values_mut() {
        std::hint::black_box(rows.finish().unwrap());
        std::hint::black_box(keys.finish().unwrap());
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stream.send_status_update(false).await;
    std::hint::black_box(batches);
    Run { seconds, changes }
}
