//! Local stand-ins for the SaaS APIs ebb delivers to: real HTTP servers that follow each
//! API's public documentation closely enough to test delivery against (batch-size errors,
//! documented rate limits answered with 429 and `Retry-After`, per-record validation
//! errors) and switches that inject 5xx answers, timeouts and dropped connections.
//!
//! Two users: tests (through `ebb-testkit`, which re-exports this crate as `emulators`)
//! start an emulator on `127.0.0.1:0`; the quickstart starts one on a fixed address with
//! [`serve`] and keeps what it holds in a JSON file (`.ebb/sandbox/hubspot.json`), so a
//! person can look at what the "CRM" got and a second run sees the first run's records.
//!
//! Every emulator keeps what it holds and how many times each record was applied, so a
//! test checks exactly-once effect by the emulator's own state.
//!
//! # Layout
//! - this module: [`Faults`] (what goes wrong next), [`SlidingWindow`] (a documented rate
//!   limit, enforced over any window), [`RequestLog`] and serving a router.
//! - [`sandbox`]: [`serve`] an emulator of a [`Kind`] on an address, with its state in a
//!   folder ([`SandboxOptions`]); the running [`Sandbox`].
//! - [`state_file`]: loading and atomically saving an emulator's state as JSON.
//! - [`webhook`]: a Standard Webhooks receiver that verifies signatures and deduplicates
//!   on `webhook-id`.
//! - [`hubspot`]: HubSpot CRM objects: batch upsert, update, read by `idProperty`, archive.
//! - [`salesforce`]: Salesforce Bulk API 2.0 ingest jobs (CSV upload, close, poll,
//!   successful/failed/unprocessed results) and the SOQL query that finds record ids.
//! - [`braze`]: Braze `/users/track` user attributes by `external_id`.

pub mod braze;
pub mod hubspot;
pub mod salesforce;
pub mod sandbox;
pub mod state_file;
pub mod webhook;

pub use sandbox::{Kind, Sandbox, SandboxError, SandboxOptions, serve, serve_with};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

/// Something that goes wrong with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 Service Unavailable, nothing applied.
    ServerError,
    /// 429 with `Retry-After`, nothing applied (as if another app used the account's quota).
    Throttle { retry_after: Duration },
    /// Never answers (until [`Faults::hang`] passes), nothing applied.
    TimeoutBeforeApply,
    /// Applies the request, then never answers: the client cannot know it succeeded.
    TimeoutAfterApply,
    /// Closes the connection in the middle of the answer, nothing applied.
    DropConnection,
}

/// The faults an emulator injects: a queue for the next requests, and optionally a cycle
/// that hits every `nth` request.
#[derive(Debug)]
pub struct Faults {
    inner: Mutex<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    queue: VecDeque<Fault>,
    every: Option<(usize, Vec<Fault>)>,
    requests: usize,
    cycled: usize,
    injected: usize,
    hang: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            inner: Mutex::new(FaultState {
                hang: Duration::from_secs(5),
                ..FaultState::default()
            }),
        }
    }
}

impl Faults {
    /// The next `times` requests fail with `fault`.
    pub fn inject(&self, fault: Fault, times: usize) {
        let mut s = self.inner.lock().unwrap();
        s.queue.extend(std::iter::repeat_n(fault, times));
    }

    /// Every `nth` request fails, with the faults of `cycle` in turn.
    pub fn inject_every(&self, nth: usize, cycle: Vec<Fault>) {
        assert!(nth > 0 && !cycle.is_empty());
        self.inner.lock().unwrap().every = Some((nth, cycle));
    }

    /// How long a timing-out request hangs before the emulator gives up on it.
    pub fn set_hang(&self, hang: Duration) {
        self.inner.lock().unwrap().hang = hang;
    }

    pub fn clear(&self) {
        let mut s = self.inner.lock().unwrap();
        s.queue.clear();
        s.every = None;
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> usize {
        self.inner.lock().unwrap().injected
    }

    /// The fault for the request arriving now, if any.
    pub fn next(&self) -> Option<Fault> {
        let mut s = self.inner.lock().unwrap();
        s.requests += 1;
        let fault = match s.queue.pop_front() {
            Some(f) => Some(f),
            None => match &s.every {
                Some((nth, cycle)) if s.requests % *nth == 0 => {
                    let f = cycle[s.cycled % cycle.len()];
                    s.cycled += 1;
                    Some(f)
                }
                _ => None,
            },
        };
        if fault.is_some() {
            s.injected += 1;
        }
        fault
    }

    fn hang(&self) -> Duration {
        self.inner.lock().unwrap().hang
    }

    /// The answer for a fault that happens before the request is applied, or `None` when
    /// the request goes on (no fault, or a fault that strikes after applying).
    pub async fn before_apply(&self, fault: Option<Fault>) -> Option<Response> {
        match fault? {
            Fault::ServerError => Some(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("content-type", "application/json")],
                    r#"{"status":"error","message":"Service temporarily unavailable (injected)"}"#,
                )
                    .into_response(),
            ),
            Fault::Throttle { retry_after } => Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [
                        ("retry-after", retry_after.as_secs_f64().ceil().to_string()),
                        ("content-type", "application/json".to_string()),
                    ],
                    r#"{"status":"error","message":"Too many requests (injected)","errorType":"RATE_LIMIT"}"#,
                )
                    .into_response(),
            ),
            Fault::TimeoutBeforeApply => {
                tokio::time::sleep(self.hang()).await;
                Some(StatusCode::GATEWAY_TIMEOUT.into_response())
            }
            Fault::DropConnection => Some(dropped_connection()),
            Fault::TimeoutAfterApply => None,
        }
    }

    /// Hangs when the fault strikes after applying; returns whether it did.
    pub async fn after_apply(&self, fault: Option<Fault>) -> bool {
        if fault == Some(Fault::TimeoutAfterApply) {
            tokio::time::sleep(self.hang()).await;
            return true;
        }
        false
    }
}

/// A response whose body fails after the headers: the connection closes mid-answer.
pub fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("connection dropped (injected)"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .expect("static response parts are valid")
}

/// A documented rate limit enforced over every window: at most `limit` requests in any
/// `per` (requests it refuses do not count).
#[derive(Debug)]
pub struct SlidingWindow {
    pub limit: u32,
    pub per: Duration,
    log: VecDeque<Instant>,
}

/// A refused request: when a slot frees up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub retry_after: Duration,
}

impl SlidingWindow {
    pub fn new(limit: u32, per: Duration) -> SlidingWindow {
        SlidingWindow {
            limit,
            per,
            log: VecDeque::new(),
        }
    }

    /// Admits a request at `now` and returns the requests left in the window, or refuses.
    pub fn admit(&mut self, now: Instant) -> Result<u32, OverLimit> {
        while self
            .log
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.per)
        {
            self.log.pop_front();
        }
        if self.log.len() as u32 >= self.limit {
            let oldest = *self.log.front().expect("limit > 0 means a full log");
            return Err(OverLimit {
                retry_after: self.per.saturating_sub(now.duration_since(oldest)),
            });
        }
        self.log.push_back(now);
        Ok(self.limit - self.log.len() as u32)
    }
}

/// One request an emulator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub at: Instant,
    pub path: String,
    /// The records the request carried.
    pub records: usize,
    pub status: u16,
    /// Set when the emulator refused the request for exceeding the documented rate (not
    /// for an injected fault).
    pub over_limit: bool,
}

/// Every request an emulator answered, in order.
#[derive(Debug, Default, Clone)]
pub struct RequestLog {
    entries: Arc<Mutex<Vec<LoggedRequest>>>,
}

impl RequestLog {
    pub fn push(&self, entry: LoggedRequest) {
        self.entries.lock().unwrap().push(entry);
    }

    pub fn entries(&self) -> Vec<LoggedRequest> {
        self.entries.lock().unwrap().clone()
    }

    /// The most requests admitted (not refused for the rate) in any window of `per`
    /// starting at or after `from`.
    pub fn max_in_window(&self, from: Instant, per: Duration) -> usize {
        let times: Vec<Instant> = self
            .entries()
            .iter()
            .filter(|e| e.at >= from && !e.over_limit)
            .map(|e| e.at)
            .collect();
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].duration_since(times[start]) >= per {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }
}

/// A running emulator's address; the server stops when this is dropped.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serves `router` on `127.0.0.1:0`.
    pub async fn start(router: Router) -> Server {
        Server::bind(router, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind 127.0.0.1:0")
    }

    /// Serves `router` on `addr` (port 0: any free port).
    pub async fn bind(router: Router, addr: SocketAddr) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.ok();
        });
        Ok(Server { addr, task })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_refuses_past_the_limit_and_frees_slots() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(2, Duration::from_secs(10));
        assert_eq!(w.admit(t0), Ok(1));
        assert_eq!(w.admit(t0 + Duration::from_secs(1)), Ok(0));
        assert_eq!(
            w.admit(t0 + Duration::from_secs(4)),
            Err(OverLimit {
                retry_after: Duration::from_secs(6)
            })
        );
        assert_eq!(w.admit(t0 + Duration::from_secs(10)), Ok(0));
    }

    #[test]
    fn faults_come_from_the_queue_then_the_cycle() {
        let f = Faults::default();
        f.inject(Fault::ServerError, 1);
        f.inject_every(2, vec![Fault::DropConnection]);
        assert_eq!(f.next(), Some(Fault::ServerError));
        assert_eq!(f.next(), Some(Fault::DropConnection));
        assert_eq!(f.next(), None);
        assert_eq!(f.next(), Some(Fault::DropConnection));
        assert_eq!(f.injected(), 3);
    }
}
