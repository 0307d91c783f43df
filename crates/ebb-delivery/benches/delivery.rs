//! Delivery at each emulator's documented limit (HubSpot, a webhook receiver, Braze,
//! Salesforce Bulk API 2.0): records/s delivered, the share of the
//! allowed request rate used in steady state (after the first window's burst), throttled
//! answers a minute, and the CPU that ebb's delivery thread spent per million records.
//!
//! The emulators run on their own runtime thread; delivery runs on this thread, so this
//! thread's CPU time (`/proc/thread-self/schedstat`) is ebb's cost alone: planning change
//! batches into records, JSON, signing, HTTP, pacing.
//!
//!     cargo bench -p ebb-delivery --bench delivery      (EBB_BENCH_SECONDS, default 40)
//!
//! `EBB_BENCH_ONLY=salesforce` (a comma-separated list of emulator names) runs only those.
//!
//! Writes `benchmarks/results/delivery.json` in the benchmarks' report format; the peer
//! column is the documented limit itself.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use ebb_core::Secret;
use ebb_core::change::{ChangeBatch, Key, Op};
use ebb_core::config::project::SyncMode;
use ebb_delivery::{DeliveryOptions, MemoryDeadLetters, Origin, Quotas, SyncPlan, deliver_changes};
use ebb_destinations::destinations::braze::{
    BrazeConfig, BrazeDestination, MAX_OBJECTS, USERS_TRACK,
};
use ebb_destinations::destinations::hubspot::{self, HubspotConfig, HubspotDestination};
use ebb_destinations::destinations::salesforce::{self, SalesforceConfig, SalesforceDestination};
use ebb_destinations::destinations::webhook::{WebhookConfig, WebhookDestination};
use ebb_destinations::{Destination, RateLimit};
use ebb_testkit::emulators::RequestLog;
use ebb_testkit::emulators::braze::BrazeEmulator;
use ebb_testkit::emulators::hubspot::HubspotEmulator;
use ebb_testkit::emulators::salesforce::SalesforceEmulator;
use ebb_testkit::emulators::webhook::WebhookReceiver;
use serde_json::json;
use tokio::time::Instant;

/// Braze's documented `/users/track` rate, 50,000 a minute, as 5,000 per 6 s.
const BRAZE: RateLimit = RateLimit {
    requests: USERS_TRACK.requests / 10,
    per: Duration::from_secs(6),
};

/// Salesforce's documented API allocation, 100,000 requests a rolling day, at the same
/// rate over a 21.6 s window (25 requests) so the run sees whole windows.
const SALESFORCE: RateLimit = RateLimit {
    requests: 25,
    per: Duration::from_millis(21_600),
};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Nanoseconds this thread has run on a CPU.
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

fn changes(prefix: &str, from: usize, n: usize) -> ChangeBatch {
    let entity = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("email", DataType::Utf8, true),
            Field::new("firstname", DataType::Utf8, true),
            Field::new("mrr", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(
                (from..from + n).map(|i| format!("{prefix}{i}@example.com")),
            )),
            Arc::new(StringArray::from_iter_values(
                (from..from + n).map(|i| format!("Person {i}")),
            )),
            Arc::new(StringArray::from_iter_values(
                (from..from + n).map(|i| (i % 9973).to_string()),
            )),
        ],
    )
    .unwrap();
    ChangeBatch::from_parts(
        &vec![Op::Upsert; n],
        &(from..from + n)
            .map(|i| Key::single(i.to_string()))
            .collect::<Vec<_>>(),
        &(from as u64..(from + n) as u64).collect::<Vec<_>>(),
        &vec![None; n],
        &entity,
    )
    .unwrap()
}

fn plan(name: &str, mapping: &[(&str, &str)], match_column: Option<&str>) -> SyncPlan {
    SyncPlan {
        origin: Origin::Sync { name: name.into() },
        mode: SyncMode::Upsert,
        mapping: mapping
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        match_column: match_column.map(str::to_string),
        changed_fields_only: true,
    }
}

struct Case<'a, D> {
    name: &'static str,
    destination: &'a D,
    limit: RateLimit,
    batch: usize,
    /// HTTP requests one batch takes (a Salesforce job: 8).
    requests_per_batch: usize,
    /// Syncs sharing the account, each delivering its share.
    syncs: usize,
    plan: SyncPlan,
    log: &'a RequestLog,
}

struct Measured {
    name: &'static str,
    limit: RateLimit,
    batch: usize,
    records: usize,
    records_per_sec: f64,
    allowed_records_per_sec: f64,
    steady_utilization: f64,
    throttled_per_min: f64,
    cpu_s_per_million: f64,
}

async fn run<D: Destination>(case: Case<'_, D>, seconds: f64) -> Measured {
    let allowed_rps = case.limit.per_second();
    let allowed_batches = allowed_rps / case.requests_per_batch as f64;
    let records = (allowed_batches * seconds * case.batch as f64) as usize;
    let per_sync = records / case.syncs;
    let quotas = Quotas::new();
    let dlq = MemoryDeadLetters::new();
    let before_log = case.log.entries().len();
    let cpu0 = thread_cpu();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..case.syncs {
        let batches: Vec<ChangeBatch> = (0..per_sync)
            .step_by(10_000)
            .map(|from| changes(&format!("s{s}-"), from, 10_000.min(per_sync - from)))
            .collect();
        let mut options = DeliveryOptions::new("bench", &format!("{}-{s}", case.name));
        options.max_batch = Some(case.batch);
        let (quotas, dlq, plan, destination) = (&quotas, &dlq, &case.plan, case.destination);
        tasks.push(async move {
            deliver_changes(&batches, plan, destination, quotas, dlq, &options)
                .await
                .unwrap()
        });
    }
    let reports = futures_join_all(tasks).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (thread_cpu() - cpu0).as_secs_f64();
    let accepted: usize = reports.iter().map(|r| r.accepted).sum();
    assert_eq!(
        accepted,
        per_sync * case.syncs,
        "{} delivered everything",
        case.name
    );

    let log: Vec<_> = case.log.entries().into_iter().skip(before_log).collect();
    let throttled = log.iter().filter(|e| e.status == 429).count();
    // Steady state: whole windows after the first (whose burst a fresh bucket allows).
    let run_end = log.last().map_or(started, |e| e.at);
    let windows = (run_end.duration_since(started).as_secs_f64() / case.limit.per.as_secs_f64()
        - 1.0)
        .floor();
    let steady_utilization = if windows >= 1.0 {
        let from = started + case.limit.per;
        let to = from + case.limit.per.mul_f64(windows);
        let admitted = log
            .iter()
            .filter(|e| e.at >= from && e.at < to && e.status != 429)
            .count();
        admitted as f64 / (windows * f64::from(case.limit.requests))
    } else {
        f64::NAN
    };
    Measured {
        name: case.name,
        limit: case.limit,
        batch: case.batch,
        records: accepted,
        records_per_sec: accepted as f64 / elapsed,
        allowed_records_per_sec: allowed_batches * case.batch as f64,
        steady_utilization,
        throttled_per_min: throttled as f64 / (elapsed / 60.0),
        cpu_s_per_million: cpu / accepted as f64 * 1e6,
    }
}

/// Polls the futures together on this thread (no extra dependency for `join_all`).
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut handles = Vec::new();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            // Each future borrows from the caller, so they are boxed and polled in place.
            let mut pinned: Vec<std::pin::Pin<Box<F>>> =
                futures.into_iter().map(Box::pin).collect();
            let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
            std::future::poll_fn(|cx| {
                let mut pending = false;
                for (f, out) in pinned.iter_mut().zip(outputs.iter_mut()) {
                    if out.is_none() {
                        match f.as_mut().poll(cx) {
                            std::task::Poll::Ready(v) => *out = Some(v),
                            std::task::Poll::Pending => pending = true,
                        }
                    }
                }
                if pending {
                    std::task::Poll::Pending
                } else {
                    std::task::Poll::Ready(())
                }
            })
            .await;
            handles.extend(outputs.into_iter().map(|o| o.expect("ready")));
        })
        .await;
    handles
}

fn main() {
    let seconds: f64 = std::env::var("EBB_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40.0);
    // The emulators: their own runtime on their own thread.
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let emulator_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let hook = WebhookReceiver::start(SECRET).await;
            let hubspot = HubspotEmulator::builder("pat-bench").start().await;
            let braze = BrazeEmulator::start("braze-bench", BRAZE.requests, BRAZE.per).await;
            let salesforce = SalesforceEmulator::builder("sf-bench")
                .api_limit(SALESFORCE.requests, SALESFORCE.per)
                .start()
                .await;
            let emulators = Arc::new((hook, hubspot, braze, salesforce));
            tx.send(emulators.clone()).unwrap();
            stop_rx.await.ok();
            drop(emulators);
        });
    });
    let emulators = rx.recv().unwrap();
    let (hook, hubspot_emulator, braze, salesforce) =
        (&emulators.0, &emulators.1, &emulators.2, &emulators.3);
    let only: Option<Vec<String>> = std::env::var("EBB_BENCH_ONLY")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|n| n == name));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt.block_on(async {
        let mut out = Vec::new();

        // HubSpot at the documented 190 requests / 10 s, 100 inputs a batch.
        if wanted("hubspot") {
            let mut config = HubspotConfig::new(Secret::new("pat-bench"), "contacts", "email");
            config.base_url = url::Url::parse(&hubspot_emulator.base_url()).unwrap();
            let dest = HubspotDestination::new(config).unwrap();
            out.push(
                run(
                    Case {
                        name: "hubspot",
                        destination: &dest,
                        limit: hubspot::TEN_SECONDLY,
                        batch: hubspot::MAX_BATCH_INPUTS,
                        syncs: 1,
                        plan: plan(
                            "hubspot",
                            &[("firstname", "firstname"), ("mrr", "mrr")],
                            Some("email"),
                        ),
                        log: hubspot_emulator.log(),
                        requests_per_batch: 1,
                    },
                    seconds,
                )
                .await,
            );
        }

        // A webhook receiver that allows 50 messages a second, 100 changes a message.
        if wanted("webhook") {
            let limit = RateLimit {
                requests: 50,
                per: Duration::from_secs(1),
            };
            hook.set_rate_limit(limit.requests, limit.per);
            let mut config = WebhookConfig::new(&hook.url(), vec![Secret::new(SECRET)]).unwrap();
            config.batch_size = 100;
            config.rate_limit = Some(limit);
            let dest = WebhookDestination::new(config).unwrap();
            out.push(
                run(
                    Case {
                        name: "webhook",
                        destination: &dest,
                        limit,
                        batch: 100,
                        syncs: 1,
                        plan: plan("webhook", &[], None),
                        log: hook.log(),
                        requests_per_batch: 1,
                    },
                    seconds,
                )
                .await,
            );
        }

        // Braze /users/track at the documented rate (50,000 requests a minute) over a 6 s
        // window so the run sees whole windows; 75 objects a request; four syncs share the
        // workspace (one sync waits for each answer in turn).
        if wanted("braze") {
            let mut config =
                BrazeConfig::new(&braze.base_url(), Secret::new("braze-bench")).unwrap();
            config.rate_limit = BRAZE;
            let dest = BrazeDestination::new(config).unwrap();
            out.push(
                run(
                    Case {
                        name: "braze",
                        destination: &dest,
                        limit: BRAZE,
                        batch: MAX_OBJECTS,
                        syncs: 4,
                        plan: plan(
                            "braze",
                            &[
                                ("email", "email"),
                                ("firstname", "first_name"),
                                ("mrr", "mrr"),
                            ],
                            None,
                        ),
                        log: braze.log(),
                        requests_per_batch: 1,
                    },
                    (seconds * 0.6).max(13.0),
                )
                .await,
            );
        }

        // Salesforce Bulk API 2.0 at the org's documented API rate (100,000 requests a
        // day): one ingest job of 10,000 records a write, 8 requests each (create,
        // upload, close, two polls, three result files); at least two whole windows.
        if wanted("salesforce") {
            let mut config = SalesforceConfig::new(
                &salesforce.instance_url(),
                Secret::new("sf-bench"),
                "Contact",
                "Ebb_Id__c",
            )
            .unwrap();
            config.rate_limits = vec![SALESFORCE];
            config.poll_interval = Duration::from_millis(50);
            let dest = SalesforceDestination::new(config).unwrap();
            out.push(
                run(
                    Case {
                        name: "salesforce",
                        destination: &dest,
                        limit: SALESFORCE,
                        batch: salesforce::MAX_JOB_RECORDS,
                        syncs: 1,
                        plan: plan(
                            "salesforce",
                            &[("firstname", "LastName"), ("mrr", "MRR__c")],
                            Some("email"),
                        ),
                        log: salesforce.log(),
                        requests_per_batch: 8,
                    },
                    seconds.max(50.0),
                )
                .await,
            );
        }
        out
    });
    stop_tx.send(()).ok();
    drop(emulators);
    emulator_thread.join().ok();

    println!(
        "delivery at the documented limit, {seconds} s a destination     (higher is better, but for CPU and throttles)"
    );
    println!(
        "{:<10}{:>14}{:>16}{:>12}{:>14}{:>16}",
        "emulator", "records/s", "allowed rec/s", "steady use", "429s/min", "CPU s/M recs"
    );
    let mut rows = Vec::new();
    for m in &results {
        println!(
            "{:<10}{:>14.0}{:>16.0}{:>11.1}%{:>14.2}{:>16.2}",
            m.name,
            m.records_per_sec,
            m.allowed_records_per_sec,
            m.steady_utilization * 100.0,
            m.throttled_per_min,
            m.cpu_s_per_million
        );
        let row = |measure: String, unit: &str, ebb: f64, peer: f64, better: &str| {
            json!({"measure": measure, "unit": unit, "ebb": ebb, "peer": peer,
                   "peer_name": "documented limit", "ratio": ebb / peer, "better": better})
        };
        rows.push(row(
            format!("{} records/s", m.name),
            "records/s",
            m.records_per_sec,
            m.allowed_records_per_sec,
            "higher",
        ));
        rows.push(row(
            format!("{} steady request rate", m.name),
            "share of limit",
            m.steady_utilization,
            1.0,
            "higher",
        ));
        rows.push(row(
            format!("{} throttled", m.name),
            "429s/min",
            m.throttled_per_min,
            1.0,
            "lower",
        ));
        rows.push(json!({"measure": format!("{} CPU", m.name), "unit": "CPU s per million records",
                         "ebb": m.cpu_s_per_million, "peer": null, "peer_name": null, "ratio": null, "better": "lower"}));
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let report = json!({
        "benchmark": "delivery",
        "started_at": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "machine": {"cpus": cpus},
        "params": {
            "seconds": seconds,
            "limits": results.iter().map(|m| json!({"emulator": m.name, "requests": m.limit.requests,
                "per_s": m.limit.per.as_secs_f64(), "batch": m.batch, "records": m.records})).collect::<Vec<_>>(),
        },
        "rows": rows,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benchmarks/results");
    std::fs::create_dir_all(&dir).ok();
    std::fs::write(
        dir.join("delivery.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
}
