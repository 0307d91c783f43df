//! The HTTP API of `ebb serve`, under `/v1`, plus `/healthz`, `/readyz` and `/metrics`.
//!
//! - Errors are `application/problem+json` ([`problem`]), including malformed queries,
//!   paths and bodies, unknown routes (404) and wrong methods (405).
//! - Every `/v1` route but `/v1/openapi.json` needs a tenant's bearer token ([`auth`]); a
//!   tenant sees only its own resources.
//! - Listings page with `?cursor=&limit=` and answer `{"items": [...], "next_cursor": ...}`.
//! - POSTs honour `Idempotency-Key` ([`idempotency`]).
//! - Every configuration or admin change is written to the audit log.
//!
//! The routes are listed in [`openapi`], which is also what `/v1/openapi.json` serves.

pub mod auth;
pub mod extract;
pub mod idempotency;
pub mod openapi;
pub mod problem;
pub mod prom;
mod routes;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use ebb_core::project::Project;
use ebb_engine::metrics::MetricsLayer;
use ebb_state::StateStore;
use tokio::sync::Notify;

use problem::Problem;
use prom::Prom;

/// What every request handler and worker of one process shares.
pub struct AppState {
    pub store: StateStore,
    pub project: &'static Project,
    /// The metrics layer over the project's models (for `POST /v1/metrics/query`).
    pub metrics: &'static MetricsLayer<'static, 'static>,
    pub prom: Prom,
    /// False once shutdown starts: `/readyz` answers 503 so load balancers stop sending.
    pub ready: AtomicBool,
    /// Woken when a run is queued, so an idle worker picks it up at once.
    pub wake: Notify,
    /// This process's worker name (in leases and the run's `worker`).
    pub worker_id: String,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.location())
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// The whole HTTP surface.
pub fn router(state: Arc<AppState>) -> Router {
    routes::routes()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found() -> Problem {
    Problem::not_found("no such route; /v1/openapi.json lists them")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take that method; /v1/openapi.json lists what it takes",
    )
}

/// Counts every request and its latency by route template (never by raw path, so ids do
/// not blow up the label set).
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    state.prom.request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
