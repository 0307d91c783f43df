//! A webhook receiver that behaves as the Standard Webhooks spec asks receivers to: it
//! verifies `webhook-signature` against its `whsec_` secret, refuses timestamps more than
//! five minutes off, and applies a message once per `webhook-id` (a repeat is answered 200
//! and ignored). Messages are ebb's: `{"type":"ebb.change","data":{..}}` or
//! `{"type":"ebb.changes","data":{"changes":[..]}}`, each change with an `id`.
//!
//! Switches: required fields (a change without one refuses the whole message with 400 and
//! the field), 410 Gone, a rate limit answered with 429 and `Retry-After`, and [`Faults`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::time::Instant;

use super::{Faults, LoggedRequest, RequestLog, Server, SlidingWindow};

/// How far a `webhook-timestamp` may be from now.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// One message the receiver took (signature checked), raw, for external verifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
}

#[derive(Debug, Default)]
struct Inner {
    required_fields: Vec<String>,
    gone: bool,
    rate: Option<SlidingWindow>,
    seen_ids: HashSet<String>,
    /// Change id → times its effect was applied.
    applied: HashMap<String, u32>,
    /// Applied changes, in order.
    changes: Vec<Value>,
    messages: Vec<ReceivedMessage>,
}

#[derive(Debug)]
struct Shared {
    key: Vec<u8>,
    faults: Faults,
    log: RequestLog,
    inner: Mutex<Inner>,
}

/// A running receiver at [`WebhookReceiver::url`].
#[derive(Debug)]
pub struct WebhookReceiver {
    server: Server,
    shared: Arc<Shared>,
}

impl WebhookReceiver {
    /// Starts a receiver that verifies with `secret` (`whsec_` + base64).
    pub async fn start(secret: &str) -> WebhookReceiver {
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
            .expect("base64 after whsec_");
        let shared = Arc::new(Shared {
            key,
            faults: Faults::default(),
            log: RequestLog::default(),
            inner: Mutex::new(Inner::default()),
        });
        let router = Router::new()
            .route("/hook", post(receive))
            .with_state(shared.clone());
        WebhookReceiver {
            server: Server::start(router).await,
            shared,
        }
    }

    pub fn url(&self) -> String {
        format!("{}/hook", self.server.base_url())
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    pub fn log(&self) -> &RequestLog {
        &self.shared.log
    }

    /// Changes without a non-null value for each of these fields are refused (not deletes).
    pub fn require_fields(&self, fields: &[&str]) {
        self.shared.inner.lock().unwrap().required_fields =
            fields.iter().map(|f| f.to_string()).collect();
    }

    /// Answer 410 Gone from now on.
    pub fn set_gone(&self, gone: bool) {
        self.shared.inner.lock().unwrap().gone = gone;
    }

    /// Admit at most `limit` messages in any `per`; more are answered 429.
    pub fn set_rate_limit(&self, limit: u32, per: Duration) {
        self.shared.inner.lock().unwrap().rate = Some(SlidingWindow::new(limit, per));
    }

    /// Change id → how many times its effect was applied.
    pub fn applied(&self) -> HashMap<String, u32> {
        self.shared.inner.lock().unwrap().applied.clone()
    }

    /// The applied changes, in order.
    pub fn changes(&self) -> Vec<Value> {
        self.shared.inner.lock().unwrap().changes.clone()
    }

    /// Messages whose signature verified, as received.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.shared.inner.lock().unwrap().messages.clone()
    }
}

fn verify(key: &[u8], id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key size");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|sig| sig == expected)
}

fn error(status: StatusCode, message: &str, field: Option<&str>) -> Response {
    (
        status,
        axum::Json(json!({"error": message, "field": field})),
    )
        .into_response()
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let at = Instant::now();
    let changes = parse_changes(&body);
    let records = changes.as_ref().map_or(0, Vec::len);
    let (status, over_limit, response) = handle(&shared, &headers, &body, changes).await;
    shared.log.push(LoggedRequest {
        at,
        path: "/hook".into(),
        records,
        status,
        over_limit,
    });
    response
}

fn parse_changes(body: &[u8]) -> Option<Vec<Value>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    match v.get("type")?.as_str()? {
        "ebb.change" => Some(vec![v.get("data")?.clone()]),
        "ebb.changes" => v.get("data")?.get("changes")?.as_array().cloned(),
        _ => None,
    }
}

async fn handle(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    changes: Option<Vec<Value>>,
) -> (u16, bool, Response) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    {
        let mut inner = shared.inner.lock().unwrap();
        if inner.gone {
            return (410, false, StatusCode::GONE.into_response());
        }
        if let Some(rate) = inner.rate.as_mut()
            && let Err(over) = rate.admit(Instant::now())
        {
            let secs = over.retry_after.as_secs_f64().ceil().max(1.0);
            let resp = (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
                "rate limit exceeded",
            )
                .into_response();
            return (429, true, resp);
        }
    }
    let fault = shared.faults.next();
    if let Some(resp) = shared.faults.before_apply(fault).await {
        return (resp.status().as_u16(), false, resp);
    }
    if !verify(&shared.key, &id, &timestamp, body, &signature) {
        return (
            401,
            false,
            error(StatusCode::UNAUTHORIZED, "bad signature", None),
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    match timestamp.parse::<i64>() {
        Ok(ts) if (now - ts).unsigned_abs() <= TOLERANCE.as_secs() => {}
        _ => {
            return (
                401,
                false,
                error(StatusCode::UNAUTHORIZED, "timestamp out of tolerance", None),
            );
        }
    }
    let Some(changes) = changes else {
        return (
            400,
            false,
            error(StatusCode::BAD_REQUEST, "not an ebb change message", None),
        );
    };
    {
        let mut inner = shared.inner.lock().unwrap();
        inner.messages.push(ReceivedMessage {
            id: id.clone(),
            timestamp,
            signature,
            body: body.to_vec(),
        });
        if inner.seen_ids.contains(&id) {
            return (200, false, StatusCode::OK.into_response());
        }
        for change in &changes {
            if change["op"] == "delete" || change["op"] == "archive" {
                continue;
            }
            for field in &inner.required_fields {
                if change["fields"].get(field).is_none_or(Value::is_null) {
                    let message = format!("missing required field \"{field}\"");
                    return (
                        400,
                        false,
                        error(StatusCode::BAD_REQUEST, &message, Some(field)),
                    );
                }
            }
        }
        inner.seen_ids.insert(id);
        for change in changes {
            let change_id = change["id"].as_str().unwrap_or_default().to_string();
            *inner.applied.entry(change_id).or_default() += 1;
            inner.changes.push(change);
        }
    }
    if shared.faults.after_apply(fault).await {
        return (504, false, StatusCode::GATEWAY_TIMEOUT.into_response());
    }
    (200, false, StatusCode::OK.into_response())
}
