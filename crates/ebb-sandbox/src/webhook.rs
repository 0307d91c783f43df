//! A webhook receiver that behaves as the Standard Webhooks spec asks receivers to: it
//! verifies `webhook-signature` against its `whsec_` secret, refuses timestamps more than
//! five minutes off, and applies a message once per `webhook-id` (a repeat is answered 200
//! and ignored). Messages are ebb's: `{"type":"ebb.change","data":{..}}` or
//! `{"type":"ebb.changes","data":{"changes":[..]}}`, each change with an `id`.
//!
//! Switches: required fields (a change without one refuses the whole message with 400 and
//! the field), 410 Gone, a rate limit answered with 429 and `Retry-After`, and [`Faults`].
//!
//! It takes POSTs on any path (`/hook`, `/hooks`, ...). As a sandbox ([`WebhookOptions`])
//! it listens on a given address, keeps the applied changes in a JSON file, and without a
//! secret takes messages without checking signatures.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
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
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::time::Instant;

use crate::state_file::StateFile;
use crate::{Faults, LoggedRequest, RequestLog, SandboxError, Server, SlidingWindow};

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
    /// `None`: signatures are not checked (a sandbox without a secret).
    key: Option<Vec<u8>>,
    state: Option<StateFile>,
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

/// How a receiver starts.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// The `whsec_` secret signatures are checked with; `None` checks none.
    pub secret: Option<String>,
    pub addr: SocketAddr,
    /// Load the applied changes from this JSON file and save them after every change.
    pub state_file: Option<PathBuf>,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            secret: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_file: None,
        }
    }
}

/// What the state file holds.
#[derive(Serialize, Deserialize)]
struct Saved {
    /// Applied changes, in order.
    changes: Vec<Value>,
    /// Change id → times applied.
    applied: HashMap<String, u32>,
    /// `webhook-id`s already applied (repeats are ignored).
    seen_ids: Vec<String>,
}

impl WebhookReceiver {
    /// Starts a receiver on `127.0.0.1:0` that verifies with `secret` (`whsec_` + base64).
    pub async fn start(secret: &str) -> WebhookReceiver {
        WebhookReceiver::start_with(WebhookOptions {
            secret: Some(secret.to_string()),
            ..WebhookOptions::default()
        })
        .await
        .expect("start the webhook receiver")
    }

    pub async fn start_with(options: WebhookOptions) -> Result<WebhookReceiver, SandboxError> {
        let key = match &options.secret {
            Some(secret) => Some(
                secret
                    .strip_prefix("whsec_")
                    .and_then(|b| STANDARD.decode(b).ok())
                    .ok_or_else(|| SandboxError::Config {
                        message: "the webhook secret must be \"whsec_\" followed by base64".into(),
                    })?,
            ),
            None => None,
        };
        let state = options.state_file.map(StateFile::new);
        let mut inner = Inner::default();
        if let Some(file) = &state
            && let Some(saved) = file.load()?
        {
            let saved: Saved = serde_json::from_value(saved).map_err(|e| SandboxError::State {
                path: file.path().to_path_buf(),
                message: format!(
                    "not a webhook sandbox state ({e}); fix the file or delete it to start empty"
                ),
            })?;
            inner.changes = saved.changes;
            inner.applied = saved.applied;
            inner.seen_ids = saved.seen_ids.into_iter().collect();
        }
        let shared = Arc::new(Shared {
            key,
            state,
            faults: Faults::default(),
            log: RequestLog::default(),
            inner: Mutex::new(inner),
        });
        let router = Router::new()
            .route("/", post(receive))
            .route("/{*path}", post(receive))
            .with_state(shared.clone());
        let server =
            Server::bind(router, options.addr)
                .await
                .map_err(|source| SandboxError::Bind {
                    addr: options.addr,
                    source,
                })?;
        Ok(WebhookReceiver { server, shared })
    }

    pub fn url(&self) -> String {
        format!("{}/hook", self.server.base_url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Writes the state file now (it is also written after every change).
    pub fn save(&self) -> Result<(), SandboxError> {
        self.shared.save()
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

impl Shared {
    fn save(&self) -> Result<(), SandboxError> {
        let Some(file) = &self.state else {
            return Ok(());
        };
        file.save(|| {
            let inner = self.inner.lock().unwrap();
            let mut seen_ids: Vec<String> = inner.seen_ids.iter().cloned().collect();
            seen_ids.sort();
            serde_json::to_value(Saved {
                changes: inner.changes.clone(),
                applied: inner.applied.clone(),
                seen_ids,
            })
            .expect("the state serializes")
        })
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

async fn receive(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let changes = parse_changes(&body);
    let records = changes.as_ref().map_or(0, Vec::len);
    let (status, over_limit, response) = handle(&shared, &headers, &body, changes).await;
    shared.log.push(LoggedRequest {
        at,
        path: uri.path().to_string(),
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
    if let Some(key) = &shared.key
        && !verify(key, &id, &timestamp, body, &signature)
    {
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
    if let Err(err) = shared.save() {
        tracing::error!(error = %err, "cannot save the webhook sandbox state");
    }
    if shared.faults.after_apply(fault).await {
        return (504, false, StatusCode::GATEWAY_TIMEOUT.into_response());
    }
    (200, false, StatusCode::OK.into_response())
}
