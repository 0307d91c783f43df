//! `/metrics` in the Prometheus text format.
//!
//! Two kinds of figures: this process's own counters (HTTP requests and their latency,
//! records delivered, throttles, runs it finished, runs in flight), and gauges read from the
//! state store at scrape time (runs per tenant and status, dead letters per sync), which are
//! the same whichever worker is scraped. Replication slot lag is measured in the background
//! (a scrape never waits on a source database).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the request-latency histogram, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// This process's counters.
#[derive(Debug, Default)]
pub struct Prom {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    records: Mutex<BTreeMap<&'static str, u64>>,
    throttled: AtomicU64,
    runs_finished: Mutex<BTreeMap<String, u64>>,
    in_flight: AtomicI64,
    events_relayed: AtomicU64,
    event_relay_failures: AtomicU64,
    slot_lag: Mutex<BTreeMap<String, u64>>,
}

/// A label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Prom {
    pub fn request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .expect("no panics while held")
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().expect("no panics while held");
        let h = latency.entry(route.to_string()).or_default();
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// Counts a finished run's records and throttles.
    pub fn run_finished(
        &self,
        status: &str,
        accepted: u64,
        rejected: u64,
        retried: u64,
        throttled: u64,
    ) {
        *self
            .runs_finished
            .lock()
            .expect("no panics while held")
            .entry(status.to_string())
            .or_default() += 1;
        let mut records = self.records.lock().expect("no panics while held");
        *records.entry("accepted").or_default() += accepted;
        *records.entry("rejected").or_default() += rejected;
        *records.entry("retried").or_default() += retried;
        self.throttled.fetch_add(throttled, Ordering::Relaxed);
    }

    pub fn run_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn run_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn event_relayed(&self) {
        self.events_relayed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn event_relay_failed(&self) {
        self.event_relay_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_slot_lag(&self, pipeline: &str, bytes: Option<u64>) {
        let mut lag = self.slot_lag.lock().expect("no panics while held");
        match bytes {
            Some(b) => lag.insert(pipeline.to_string(), b),
            None => lag.remove(pipeline),
        };
    }

    /// The exposition: this process's counters plus the store's gauges.
    pub fn render(&self, store: &StoreGauges) -> String {
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };

        head(
            &mut out,
            "ebb_http_requests_total",
            "counter",
            "HTTP requests handled by this process.",
        );
        for ((route, method, status), n) in
            self.requests.lock().expect("no panics while held").iter()
        {
            let _ = writeln!(
                out,
                "ebb_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                label(route)
            );
        }
        head(
            &mut out,
            "ebb_http_request_duration_seconds",
            "histogram",
            "Time to answer an HTTP request.",
        );
        for (route, h) in self.latency.lock().expect("no panics while held").iter() {
            let route = label(route);
            for (bound, n) in BUCKETS.iter().zip(&h.counts) {
                let _ = writeln!(
                    out,
                    "ebb_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "ebb_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
                 ebb_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                 ebb_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count, h.sum, h.count
            );
        }

        head(
            &mut out,
            "ebb_records_total",
            "counter",
            "Records this process's runs delivered, by outcome.",
        );
        let records = self.records.lock().expect("no panics while held");
        for outcome in ["accepted", "rejected", "retried"] {
            let _ = writeln!(
                out,
                "ebb_records_total{{outcome=\"{outcome}\"}} {}",
                records.get(outcome).copied().unwrap_or(0)
            );
        }
        drop(records);
        head(
            &mut out,
            "ebb_throttles_total",
            "counter",
            "Requests destinations answered with 429 (rate limited) in this process's runs.",
        );
        let _ = writeln!(
            out,
            "ebb_throttles_total {}",
            self.throttled.load(Ordering::Relaxed)
        );
        head(
            &mut out,
            "ebb_worker_runs_finished_total",
            "counter",
            "Runs this process finished, by final status.",
        );
        for (status, n) in self
            .runs_finished
            .lock()
            .expect("no panics while held")
            .iter()
        {
            let _ = writeln!(
                out,
                "ebb_worker_runs_finished_total{{status=\"{status}\"}} {n}"
            );
        }
        head(
            &mut out,
            "ebb_worker_runs_in_flight",
            "gauge",
            "Runs this process is executing now.",
        );
        let _ = writeln!(
            out,
            "ebb_worker_runs_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );

        head(
            &mut out,
            "ebb_events_relayed_total",
            "counter",
            "Outbox events this process delivered to the events webhook.",
        );
        let _ = writeln!(
            out,
            "ebb_events_relayed_total {}",
            self.events_relayed.load(Ordering::Relaxed)
        );
        head(
            &mut out,
            "ebb_event_relay_failures_total",
            "counter",
            "Attempts to deliver an outbox event that failed (they are retried).",
        );
        let _ = writeln!(
            out,
            "ebb_event_relay_failures_total {}",
            self.event_relay_failures.load(Ordering::Relaxed)
        );
        head(
            &mut out,
            "ebb_runs",
            "gauge",
            "Runs in the state store, by tenant and status.",
        );
        for (tenant, status, n) in &store.runs {
            let _ = writeln!(
                out,
                "ebb_runs{{tenant=\"{}\",status=\"{status}\"}} {n}",
                label(tenant)
            );
        }
        head(
            &mut out,
            "ebb_dlq_depth",
            "gauge",
            "Records waiting in the dead-letter queue, by tenant and sync.",
        );
        for (tenant, sync, n) in &store.dlq {
            let _ = writeln!(
                out,
                "ebb_dlq_depth{{tenant=\"{}\",sync=\"{}\"}} {n}",
                label(tenant),
                label(sync)
            );
        }
        head(
            &mut out,
            "ebb_cdc_slot_lag_bytes",
            "gauge",
            "WAL bytes each CDC pipeline's replication slot holds (measured every 15 s).",
        );
        for (pipeline, bytes) in self.slot_lag.lock().expect("no panics while held").iter() {
            let _ = writeln!(
                out,
                "ebb_cdc_slot_lag_bytes{{pipeline=\"{}\"}} {bytes}",
                label(pipeline)
            );
        }
        head(
            &mut out,
            "ebb_state_store_up",
            "gauge",
            "1 when the state store answered this scrape.",
        );
        let _ = writeln!(out, "ebb_state_store_up {}", u8::from(store.up));
        out
    }
}

/// What the state store says at scrape time.
#[derive(Debug, Default)]
pub struct StoreGauges {
    pub runs: Vec<(String, String, i64)>,
    pub dlq: Vec<(String, String, i64)>,
    pub up: bool,
}
