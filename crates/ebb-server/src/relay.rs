//! The outbox relay of `ebb serve`: events the state store wrote in the same transaction as
//! the change that caused them (a run's result, ...) are delivered to the webhook named by
//! `events:` in ebb.yml, with retries, in id order.
//!
//! Every process runs the relay; the store lets one at a time hold a claim on unrelayed
//! events ([`ebb_state::StateStore::claim_events`]), so events leave in order and a dead relayer's claim
//! expires for another to take. Each event is its own Standard Webhooks message whose
//! `webhook-id` is `evt_<id>`, the same on every retry and from every process, so a receiver
//! that remembers ids applies each event once. A refused event (4xx) is retried like a
//! failed one: events are never dropped; a receiver that keeps refusing holds the relay,
//! and `/metrics` shows the failures.
//!
//! Consumers that pull rather than receive replay the same events with
//! `GET /v1/events?cursor=`.

use std::sync::Arc;
use std::time::Duration;

use ebb_core::config::project::EventsConfig;
use ebb_destinations::destinations::webhook::WebhookDestination;
use ebb_destinations::{AnyDestination, DestinationError};
use ebb_state::Event;
use serde_json::json;
use tokio::sync::watch;

use crate::api::AppState;

/// Events claimed at a time.
const BATCH: usize = 500;
/// How long a claim lasts unless it is marked relayed.
const LEASE: Duration = Duration::from_secs(60);
/// Idle poll when there is nothing to relay.
const IDLE: Duration = Duration::from_millis(500);
/// Longest wait between attempts after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Relays until `shutdown`; returns at once when the project configures no `events:`.
pub async fn run(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let Some(config) = state
        .project
        .config
        .as_ref()
        .and_then(|c| c.events.as_ref())
        .map(|e| e.value.clone())
    else {
        return;
    };
    let destination = match open(&state, &config) {
        Ok(d) => d,
        Err(err) => {
            tracing::error!(error = %err, "events are not relayed");
            return;
        }
    };
    let worker = format!("{}#relay", state.worker_id);
    let mut backoff = Duration::from_millis(200);
    loop {
        let wait = match relay_once(&state, &worker, &destination, &config).await {
            Ok(0) => IDLE,
            Ok(_) => {
                backoff = Duration::from_millis(200);
                Duration::ZERO
            }
            Err(wait) => {
                let wait = wait.unwrap_or(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

fn open(state: &AppState, config: &EventsConfig) -> Result<WebhookDestination, String> {
    let project = state.project;
    let name = &config.destination.value;
    let dest = project
        .config
        .as_ref()
        .and_then(|c| c.destinations.get(name))
        .ok_or_else(|| format!("events.destination: no destination named \"{name}\""))?;
    match AnyDestination::from_config(name, &dest.value, &project.root) {
        Ok(AnyDestination::Webhook(w)) => Ok(w),
        Ok(_) => Err(format!("events.destination: \"{name}\" is not a webhook")),
        Err(err) => Err(format!("events.destination \"{name}\": {err}")),
    }
}

/// One claim: how many events were delivered, or how long to wait before trying again.
async fn relay_once(
    state: &AppState,
    worker: &str,
    destination: &WebhookDestination,
    config: &EventsConfig,
) -> Result<usize, Option<Duration>> {
    let store = &state.store;
    let events = match store.claim_events(worker, BATCH, LEASE).await {
        Ok(e) => e,
        Err(err) => {
            tracing::warn!(error = %err, "cannot claim events to relay");
            return Err(None);
        }
    };
    if events.is_empty() {
        return Ok(0);
    }
    let mut done: Vec<i64> = Vec::with_capacity(events.len());
    let mut failed: Option<Option<Duration>> = None;
    for event in &events {
        let wanted = config.topics.is_empty() || config.topics.contains(&event.topic);
        if wanted {
            match send(destination, event).await {
                Ok(()) => state.prom.event_relayed(),
                Err(err) => {
                    state.prom.event_relay_failed();
                    tracing::warn!(event = event.id, error = %err, "event not relayed; retrying");
                    failed = Some(match err {
                        DestinationError::Throttled { after, .. }
                        | DestinationError::Retryable { after, .. } => after,
                        _ => None,
                    });
                    // Later events wait: they leave in id order.
                    break;
                }
            }
        }
        done.push(event.id);
    }
    if !done.is_empty()
        && let Err(err) = store.mark_relayed(&done).await
    {
        // Delivered but not marked: they go again with the same webhook-id.
        tracing::warn!(error = %err, "relayed events not marked");
    }
    match failed {
        Some(wait) => Err(wait),
        None => Ok(done.len()),
    }
}

async fn send(destination: &WebhookDestination, event: &Event) -> Result<(), DestinationError> {
    let body = json!({
        "type": event.topic,
        "data": {
            "id": event.id,
            "tenant": event.tenant,
            "created_at": event.created_at,
            "payload": event.payload,
        },
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    destination
        .post_message(&format!("evt_{}", event.id), body)
        .await
}
