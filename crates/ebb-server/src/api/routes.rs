//! The handlers. Each checks the caller's scope first, then that what it names belongs to
//! the caller's tenant (404 otherwise, the same answer as for something that does not
//! exist).

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use ebb_core::config::metrics::Grain;
use ebb_core::config::project::SyncMode;
use ebb_core::project::Sync;
use ebb_engine::EngineError;
use ebb_engine::metrics::MetricQuery;
use ebb_state::{NewRun, Page, Run, RunFilter, RunKind, RunStatus, Trigger};
use ebb_sync::{RunOptions, SyncRunner};

use crate::tenant_of;
use ebb_warehouse::Warehouse as _;
use futures::TryStreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Caller, Scope};
use super::extract::{P, Q, json_body};
use super::idempotency::{self, Answer};
use super::openapi;
use super::problem::Problem;
use super::prom::StoreGauges;

type St = State<Arc<AppState>>;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi_doc))
        .route("/v1/syncs", get(list_syncs))
        .route("/v1/syncs/{name}", get(get_sync))
        .route("/v1/syncs/{name}/trigger", post(trigger_sync))
        .route("/v1/syncs/{name}/dry-run", post(dry_run))
        .route("/v1/syncs/{name}/pause", post(pause_sync))
        .route("/v1/syncs/{name}/resume", post(resume_sync))
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/cancel", post(cancel_run))
        .route("/v1/dlq", get(list_dlq))
        .route("/v1/dlq/{name}/retry", post(retry_dlq))
        .route("/v1/events", get(list_events))
        .route("/v1/metrics/query", post(query_metrics))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", delete(revoke_token))
        .route("/v1/audit", get(list_audit))
}

// ---- health, metrics, the document ---------------------------------------------------

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(st): St) -> Response {
    if !st.is_ready() {
        return Problem::unavailable("shutting down").into_response();
    }
    match st.store.schema_version().await {
        Ok(version) => axum::Json(json!({
            "status": "ready",
            "state_store": st.store.backend(),
            "schema_version": version,
        }))
        .into_response(),
        Err(err) => {
            Problem::unavailable(format!("the state store does not answer: {err}")).into_response()
        }
    }
}

async fn metrics(State(st): St) -> Response {
    let mut gauges = StoreGauges::default();
    match (st.store.run_stats().await, st.store.dlq_depths().await) {
        (Ok(runs), Ok(dlq)) => {
            gauges.runs = runs
                .into_iter()
                .map(|(tenant, status, n)| (tenant, status.to_string(), n))
                .collect();
            gauges.dlq = dlq;
            gauges.up = true;
        }
        (Err(err), _) | (_, Err(err)) => {
            tracing::warn!(error = %err, "state store gauges left out of /metrics");
        }
    }
    let mut response = st.prom.render(&gauges).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn openapi_doc() -> Response {
    axum::Json(openapi::document()).into_response()
}

// ---- shared pieces --------------------------------------------------------------------

/// Page size: 50 unless asked, at most 500.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
/// Rows a metrics query may ask for.
const MAX_METRIC_ROWS: u64 = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageParams {
    cursor: Option<String>,
    limit: Option<i64>,
}

fn limit_of(limit: Option<i64>) -> Result<usize, Problem> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => Ok(n as usize),
        Some(n) => Err(Problem::bad_request(format!(
            "limit {n} is out of range; ask for 1 to {MAX_LIMIT}"
        ))),
    }
}

fn page_json<T: serde::Serialize>(page: &Page<T>) -> Response {
    axum::Json(json!({"items": page.items, "next_cursor": page.next_cursor})).into_response()
}

/// The caller's sync `name`, or 404 (for another tenant's sync too).
fn sync_of<'p>(st: &'p AppState, caller: &Caller, name: &str) -> Result<&'p Sync, Problem> {
    st.project
        .sync(name)
        .filter(|s| tenant_of(s) == caller.tenant())
        .ok_or_else(|| Problem::not_found(format!("no sync named \"{name}\"")))
}

/// The caller's run `id`, or 404.
async fn run_of(st: &AppState, caller: &Caller, id: i64) -> Result<Run, Problem> {
    match st.store.get_run(id).await? {
        Some(run) if run.tenant == caller.tenant() => Ok(run),
        _ => Err(Problem::not_found(format!("no run {id}"))),
    }
}

async fn audit(st: &AppState, caller: &Caller, action: &str, target: &str, details: Value) {
    if let Err(err) = st
        .store
        .audit(caller.tenant(), &caller.actor(), action, target, &details)
        .await
    {
        tracing::error!(error = %err, action, target, "audit entry not written");
    }
}

fn sync_json(sync: &Sync, paused: bool, latest: Option<&Run>) -> Value {
    let c = &sync.config;
    let schedule = c.schedule.as_ref().map(|s| {
        let s = &s.value;
        json!({
            "cron": s.cron.as_ref().map(|c| c.value.clone()),
            "every_seconds": s.every.as_ref().map(|d| d.0.as_secs()),
            "after": s.after.as_ref().map(|a| a.value.clone()),
        })
    });
    json!({
        "name": sync.name,
        "tenant": tenant_of(sync),
        "description": c.description,
        "model": c.model.as_ref().map(|m| m.value.clone()),
        "metric": c.metric.as_ref().map(|m| m.name.value.clone()),
        "destination": c.destination.value,
        "mode": c.mode.map(SyncMode::as_str),
        "schedule": schedule,
        "enabled": c.enabled,
        "paused": paused,
        "latest_run": latest,
    })
}

async fn is_paused(st: &AppState, tenant: &str, name: &str) -> Result<bool, Problem> {
    Ok(st
        .store
        .paused_syncs(Some(tenant))
        .await?
        .iter()
        .any(|(_, s)| s == name))
}

// ---- syncs ----------------------------------------------------------------------------

async fn list_syncs(State(st): St, caller: Caller) -> Result<Response, Problem> {
    caller.require(Scope::SyncsRead)?;
    let paused: HashSet<String> = st
        .store
        .paused_syncs(Some(caller.tenant()))
        .await?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    let mut items = Vec::new();
    for sync in st
        .project
        .syncs
        .iter()
        .filter(|s| tenant_of(s) == caller.tenant())
    {
        let latest = st.store.latest_run(caller.tenant(), &sync.name).await?;
        items.push(sync_json(
            sync,
            paused.contains(&sync.name),
            latest.as_ref(),
        ));
    }
    Ok(axum::Json(json!({"items": items, "next_cursor": null})).into_response())
}

async fn get_sync(State(st): St, caller: Caller, P(name): P<String>) -> Result<Response, Problem> {
    caller.require(Scope::SyncsRead)?;
    let sync = sync_of(&st, &caller, &name)?;
    let latest = st.store.latest_run(caller.tenant(), &name).await?;
    let paused = is_paused(&st, caller.tenant(), &name).await?;
    Ok(axum::Json(sync_json(sync, paused, latest.as_ref())).into_response())
}

async fn queue_run(
    st: &AppState,
    caller: &Caller,
    sync: &Sync,
    action: &str,
) -> Result<Answer, Problem> {
    if !sync.config.enabled {
        return Err(Problem::conflict(format!(
            "sync \"{}\" is disabled (`enabled: false` in syncs/{}.yml)",
            sync.name, sync.name
        )));
    }
    let created = st
        .store
        .create_run(&NewRun::new(
            caller.tenant(),
            &sync.name,
            RunKind::Sync,
            Trigger::Api,
        ))
        .await?;
    audit(
        st,
        caller,
        action,
        &format!("sync:{}", sync.name),
        json!({"run": created.run.id, "created": created.created}),
    )
    .await;
    st.wake.notify_waiters();
    Ok(Answer::json(
        StatusCode::ACCEPTED,
        &json!({"run": created.run, "created": created.created}),
    ))
}

/// A POST that queues a run of sync `name` (empty body, `Idempotency-Key` honoured), for
/// `scope`, audited as `action`; `path` names the request for the idempotency hash.
#[allow(clippy::too_many_arguments)]
async fn queue_once(
    st: &AppState,
    caller: &Caller,
    scope: Scope,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
    path: &str,
    action: &str,
) -> Result<Response, Problem> {
    caller.require(scope)?;
    let sync = sync_of(st, caller, name)?;
    let _: Empty = json_body(body)?;
    Ok(
        idempotency::once(st, caller, headers, path, body, || async {
            queue_run(st, caller, sync, action)
                .await
                .unwrap_or_else(Answer::from)
        })
        .await,
    )
}

async fn trigger_sync(
    State(st): St,
    caller: Caller,
    P(name): P<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let path = format!("POST /v1/syncs/{name}/trigger");
    queue_once(
        &st,
        &caller,
        Scope::SyncsWrite,
        &name,
        &headers,
        &body,
        &path,
        "sync.trigger",
    )
    .await
}

/// A body that must be empty or `{}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DryRunBody {
    #[serde(default)]
    samples: Option<i64>,
}

async fn dry_run(
    State(st): St,
    caller: Caller,
    P(name): P<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    caller.require(Scope::SyncsWrite)?;
    sync_of(&st, &caller, &name)?;
    let params: DryRunBody = json_body(&body)?;
    let samples = match params.samples {
        None => 5,
        Some(n) if (0..=100).contains(&n) => n as usize,
        Some(n) => {
            return Err(Problem::unprocessable(format!(
                "samples {n} is out of range; ask for 0 to 100"
            )));
        }
    };
    let runner = SyncRunner::open(st.project, st.store.clone())
        .await
        .map_err(|e| Problem::unprocessable(e.to_string()))?;
    let options = RunOptions {
        dry_run: true,
        full_resync: false,
        samples,
    };
    let outcome = runner
        .run(&name, &options, &|_| {})
        .await
        .map_err(|e| Problem::unprocessable(e.to_string()))?;
    let d = &outcome.diff;
    let samples: Vec<Value> = outcome
        .samples
        .iter()
        .map(|r| {
            ebb_state::redact::redact(&json!({
                "op": r.op.as_str(),
                "key": r.key,
                "id": r.id,
                "fields": r.fields,
            }))
        })
        .collect();
    Ok(axum::Json(json!({
        "sync": name,
        "rows_read": d.rows_read,
        "inserts": d.inserts,
        "updates": d.updates,
        "deletes": d.deletes,
        "unchanged": d.unchanged,
        "planned": outcome.planned,
        "bad_keys": {
            "null_key_rows": d.bad_keys.null_key_rows,
            "duplicate_keys": d.bad_keys.duplicate_keys,
            "duplicate_rows": d.bad_keys.duplicate_rows,
        },
        "samples": samples,
    }))
    .into_response())
}

async fn set_paused(
    st: &AppState,
    caller: &Caller,
    name: &str,
    paused: bool,
) -> Result<Response, Problem> {
    caller.require(Scope::SyncsWrite)?;
    let sync = sync_of(st, caller, name)?;
    st.store.set_paused(caller.tenant(), name, paused).await?;
    audit(
        st,
        caller,
        if paused { "sync.pause" } else { "sync.resume" },
        &format!("sync:{name}"),
        json!({}),
    )
    .await;
    let latest = st.store.latest_run(caller.tenant(), name).await?;
    Ok(axum::Json(sync_json(sync, paused, latest.as_ref())).into_response())
}

async fn pause_sync(
    State(st): St,
    caller: Caller,
    P(name): P<String>,
) -> Result<Response, Problem> {
    set_paused(&st, &caller, &name, true).await
}

async fn resume_sync(
    State(st): St,
    caller: Caller,
    P(name): P<String>,
) -> Result<Response, Problem> {
    set_paused(&st, &caller, &name, false).await
}

// ---- runs -----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunParams {
    sync: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn list_runs(
    State(st): St,
    caller: Caller,
    Q(params): Q<RunParams>,
) -> Result<Response, Problem> {
    caller.require(Scope::RunsRead)?;
    let status = params
        .status
        .as_deref()
        .map(RunStatus::from_str)
        .transpose()
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    let filter = RunFilter {
        tenant: Some(caller.tenant().to_string()),
        sync: params.sync,
        status,
    };
    let page = st
        .store
        .list_runs(&filter, params.cursor.as_deref(), limit_of(params.limit)?)
        .await?;
    Ok(page_json(&page))
}

async fn get_run(State(st): St, caller: Caller, P(id): P<i64>) -> Result<Response, Problem> {
    caller.require(Scope::RunsRead)?;
    let run = run_of(&st, &caller, id).await?;
    let log = st.store.run_log(id).await?;
    Ok(axum::Json(json!({"run": run, "log": log})).into_response())
}

async fn cancel_run(
    State(st): St,
    caller: Caller,
    P(id): P<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    caller.require(Scope::RunsWrite)?;
    let run = run_of(&st, &caller, id).await?;
    let _: Empty = json_body(&body)?;
    let path = format!("POST /v1/runs/{id}/cancel");
    Ok(
        idempotency::once(&st, &caller, &headers, &path, &body, || async {
            if run.status.is_final() {
                return Problem::conflict(format!(
                    "run {id} already ended ({}); only queued or running runs can be cancelled",
                    run.status
                ))
                .into();
            }
            let reason = format!("cancelled by {}", caller.actor());
            match st.store.cancel_run(id, Some(&reason)).await {
                Ok(run) => {
                    audit(&st, &caller, "run.cancel", &format!("run:{id}"), json!({})).await;
                    Answer::json(StatusCode::OK, &run)
                }
                Err(err) => Problem::from(err).into(),
            }
        })
        .await,
    )
}

// ---- dead letters ---------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DlqParams {
    sync: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn list_dlq(
    State(st): St,
    caller: Caller,
    Q(params): Q<DlqParams>,
) -> Result<Response, Problem> {
    caller.require(Scope::DlqRead)?;
    let page = st
        .store
        .dlq_list(
            caller.tenant(),
            params.sync.as_deref(),
            params.cursor.as_deref(),
            limit_of(params.limit)?,
        )
        .await?;
    Ok(page_json(&page))
}

/// A run retries the sync's dead letters with its first chunk.
async fn retry_dlq(
    State(st): St,
    caller: Caller,
    P(name): P<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let path = format!("POST /v1/dlq/{name}/retry");
    queue_once(
        &st,
        &caller,
        Scope::DlqWrite,
        &name,
        &headers,
        &body,
        &path,
        "dlq.retry",
    )
    .await
}

// ---- events ---------------------------------------------------------------------------

async fn list_events(
    State(st): St,
    caller: Caller,
    Q(params): Q<PageParams>,
) -> Result<Response, Problem> {
    caller.require(Scope::EventsRead)?;
    let after = params
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                Problem::bad_request(format!(
                    "cursor {c:?} is not valid; pass the next_cursor of the previous page (an event id)"
                ))
            })
        })
        .transpose()?;
    let events = st
        .store
        .events_after(caller.tenant(), after, limit_of(params.limit)?)
        .await?;
    // The cursor to poll with next: the last event seen, or the one given.
    let next = events.last().map(|e| e.id.to_string()).or(params.cursor);
    Ok(axum::Json(json!({"items": events, "next_cursor": next})).into_response())
}

// ---- metrics --------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsBody {
    metrics: Vec<String>,
    #[serde(default)]
    group_by: Vec<String>,
    #[serde(default)]
    grain: Option<String>,
    #[serde(default, rename = "where")]
    filter: Option<String>,
    #[serde(default)]
    order: Vec<String>,
    #[serde(default)]
    limit: Option<u64>,
}

async fn query_metrics(State(st): St, caller: Caller, body: Bytes) -> Result<Response, Problem> {
    caller.require(Scope::MetricsRead)?;
    let body: MetricsBody = json_body(&body)?;
    let grain = body
        .grain
        .as_deref()
        .map(|g| match g {
            "day" => Ok(Grain::Day),
            "week" => Ok(Grain::Week),
            "month" => Ok(Grain::Month),
            "quarter" => Ok(Grain::Quarter),
            "year" => Ok(Grain::Year),
            other => Err(Problem::unprocessable(format!(
                "grain \"{other}\" is not one of day, week, month, quarter, year"
            ))),
        })
        .transpose()?;
    if body.metrics.is_empty() {
        return Err(Problem::unprocessable(
            "name at least one metric in `metrics`",
        ));
    }
    if body
        .limit
        .is_some_and(|l| !(1..=MAX_METRIC_ROWS).contains(&l))
    {
        return Err(Problem::unprocessable(format!(
            "limit must be from 1 to {MAX_METRIC_ROWS}"
        )));
    }
    let query = MetricQuery {
        metrics: body.metrics,
        group_by: body.group_by,
        grain,
        filter: body.filter,
        order: body.order,
        limit: body.limit,
    };
    // A question that cannot be compiled is the caller's to fix; one that compiled and then
    // failed is the warehouse's (or ours).
    let (compiled, warehouse) = st.metrics.compile(&query).map_err(|err| match err {
        EngineError::Metrics(err) => Problem::unprocessable(err.to_string()),
        other => Problem::unprocessable(other.to_string()),
    })?;
    let batches: Vec<_> = warehouse
        .query(&compiled.sql)
        .await
        .map_err(Problem::internal)?
        .try_collect()
        .await
        .map_err(Problem::internal)?;
    let (columns, rows) =
        crate::json::rows(&batches).map_err(|e| Problem::internal(format!("metric rows: {e}")))?;
    Ok(axum::Json(json!({"columns": columns, "rows": rows})).into_response())
}

// ---- tokens and audit -----------------------------------------------------------------

async fn list_tokens(State(st): St, caller: Caller) -> Result<Response, Problem> {
    caller.require(Scope::Admin)?;
    let tokens = st.store.list_tokens(caller.tenant()).await?;
    Ok(axum::Json(json!({"items": tokens, "next_cursor": null})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    scopes: Vec<String>,
}

async fn create_token(
    State(st): St,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    caller.require(Scope::Admin)?;
    let params: TokenBody = json_body(&body)?;
    if params.scopes.is_empty() {
        return Err(Problem::unprocessable("a token needs at least one scope"));
    }
    for s in &params.scopes {
        if Scope::parse(s).is_none() {
            return Err(Problem::unprocessable(format!(
                "unknown scope \"{s}\"; scopes are: {}",
                Scope::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(
        idempotency::once(&st, &caller, &headers, "POST /v1/tokens", &body, || async {
            match st.store.create_token(caller.tenant(), &params.scopes).await {
                Ok(token) => {
                    audit(
                        &st,
                        &caller,
                        "token.create",
                        &format!("token:{}", token.id),
                        json!({"scopes": params.scopes}),
                    )
                    .await;
                    Answer::json(
                        StatusCode::CREATED,
                        &json!({
                            "id": token.id,
                            "tenant": caller.tenant(),
                            "scopes": params.scopes,
                            "token": token.plaintext,
                        }),
                    )
                }
                Err(err) => Problem::from(err).into(),
            }
        })
        .await,
    )
}

async fn revoke_token(State(st): St, caller: Caller, P(id): P<i64>) -> Result<Response, Problem> {
    caller.require(Scope::Admin)?;
    if !st.store.revoke_token(caller.tenant(), id).await? {
        return Err(Problem::not_found(format!("no live token {id}")));
    }
    audit(
        &st,
        &caller,
        "token.revoke",
        &format!("token:{id}"),
        json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_audit(
    State(st): St,
    caller: Caller,
    Q(params): Q<PageParams>,
) -> Result<Response, Problem> {
    caller.require(Scope::Admin)?;
    let page = st
        .store
        .audit_list(
            caller.tenant(),
            params.cursor.as_deref(),
            limit_of(params.limit)?,
        )
        .await?;
    Ok(page_json(&page))
}
