//! Braze `POST /users/track`, as documented: `Authorization: Bearer <REST API key>`, at
//! most 75 objects in each of `attributes`, `events` and `purchases` (more: 400), user
//! attributes by `external_id` (`_update_existing_only` to only update known users), and
//! partial failures as `errors: [{"type","input_array","index"}]` in a 201 answer.
//! The endpoint's rate limit (a per-minute budget by default; configurable for tests) is
//! answered with 429 and `X-RateLimit-Limit`, `-Remaining`, `-Reset` on every answer.
//!
//! `email` must look like an email address and `external_id` must be present; each user
//! counts its `writes` and `versions` (writes that changed it).
//!
//! As a sandbox ([`BrazeOptions`]) it listens on a given address, may take any API key,
//! and keeps its users in a JSON file.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::state_file::StateFile;
use crate::{Faults, LoggedRequest, RequestLog, SandboxError, Server, SlidingWindow};

/// Objects of each kind in one request at most.
pub const MAX_OBJECTS: usize = 75;
/// `/users/track` requests a minute.
pub const REQUESTS_PER_MINUTE: u32 = 50_000;

/// A user profile as the emulator holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrazeUser {
    pub attributes: BTreeMap<String, Value>,
    pub writes: u32,
    pub versions: u32,
}

#[derive(Debug)]
struct Inner {
    users: HashMap<String, BrazeUser>,
    window: SlidingWindow,
}

#[derive(Debug)]
struct Shared {
    /// `None`: any key.
    api_key: Option<String>,
    state: Option<StateFile>,
    faults: Faults,
    log: RequestLog,
    inner: Mutex<Inner>,
}

/// A running Braze emulator at [`BrazeEmulator::base_url`].
#[derive(Debug)]
pub struct BrazeEmulator {
    server: Server,
    shared: Arc<Shared>,
}

/// How an emulator starts.
#[derive(Debug, Clone)]
pub struct BrazeOptions {
    /// The REST API key it takes; `None`: any.
    pub api_key: Option<String>,
    /// `limit` requests a `per` (Braze documents [`REQUESTS_PER_MINUTE`] a minute).
    pub limit: u32,
    pub per: Duration,
    pub addr: SocketAddr,
    /// Load the users from this JSON file and save them after every change.
    pub state_file: Option<PathBuf>,
}

impl Default for BrazeOptions {
    fn default() -> Self {
        BrazeOptions {
            api_key: None,
            limit: REQUESTS_PER_MINUTE,
            per: Duration::from_secs(60),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_file: None,
        }
    }
}

impl Shared {
    fn save(&self) -> Result<(), SandboxError> {
        match &self.state {
            Some(file) => file.save(|| {
                let users: BTreeMap<String, BrazeUser> = self
                    .inner
                    .lock()
                    .unwrap()
                    .users
                    .clone()
                    .into_iter()
                    .collect();
                json!({ "users": users })
            }),
            None => Ok(()),
        }
    }
}

impl BrazeEmulator {
    /// Starts an emulator that accepts `api_key`, limited to `limit` requests a `per`
    /// (Braze documents [`REQUESTS_PER_MINUTE`] a minute).
    pub async fn start(api_key: &str, limit: u32, per: Duration) -> BrazeEmulator {
        BrazeEmulator::start_with(BrazeOptions {
            api_key: Some(api_key.to_string()),
            limit,
            per,
            ..BrazeOptions::default()
        })
        .await
        .expect("start the Braze emulator")
    }

    pub async fn start_with(options: BrazeOptions) -> Result<BrazeEmulator, SandboxError> {
        let state = options.state_file.map(StateFile::new);
        let mut users = HashMap::new();
        if let Some(file) = &state
            && let Some(saved) = file.load()?
        {
            #[derive(Deserialize)]
            struct Saved {
                users: HashMap<String, BrazeUser>,
            }
            let saved: Saved = serde_json::from_value(saved).map_err(|e| SandboxError::State {
                path: file.path().to_path_buf(),
                message: format!(
                    "not a Braze sandbox state ({e}); fix the file or delete it to start empty"
                ),
            })?;
            users = saved.users;
        }
        let shared = Arc::new(Shared {
            api_key: options.api_key,
            state,
            faults: Faults::default(),
            log: RequestLog::default(),
            inner: Mutex::new(Inner {
                users,
                window: SlidingWindow::new(options.limit, options.per),
            }),
        });
        let router = Router::new()
            .route("/users/track", post(track))
            .with_state(shared.clone());
        let server =
            Server::bind(router, options.addr)
                .await
                .map_err(|source| SandboxError::Bind {
                    addr: options.addr,
                    source,
                })?;
        Ok(BrazeEmulator { server, shared })
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
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

    pub fn user(&self, external_id: &str) -> Option<BrazeUser> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .users
            .get(external_id)
            .cloned()
    }

    pub fn users(&self) -> HashMap<String, BrazeUser> {
        self.shared.inner.lock().unwrap().users.clone()
    }
}

async fn track(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let at = Instant::now();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let records = parsed
        .as_ref()
        .and_then(|v| v.get("attributes"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let (over_limit, response) = handle(&shared, &headers, parsed, at).await;
    shared.log.push(LoggedRequest {
        at,
        path: "/users/track".into(),
        records,
        status: response.status().as_u16(),
        over_limit,
    });
    response
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "message": text }))).into_response()
}

async fn handle(
    shared: &Shared,
    headers: &HeaderMap,
    body: Option<Value>,
    now: Instant,
) -> (bool, Response) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let key_ok = match &shared.api_key {
        Some(key) => auth == format!("Bearer {key}"),
        None => auth.len() > "Bearer ".len() && auth.starts_with("Bearer "),
    };
    if !key_ok {
        return (false, message(StatusCode::UNAUTHORIZED, "Invalid API key"));
    }
    let admitted = {
        let mut inner = shared.inner.lock().unwrap();
        let limit = inner.window.limit;
        let per = inner.window.per;
        inner
            .window
            .admit(now)
            .map(|r| (limit, r, per))
            .map_err(|o| (limit, o, per))
    };
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (rate_headers, over) = match admitted {
        Ok((limit, remaining, per)) => (
            [
                ("x-ratelimit-limit", limit.to_string()),
                ("x-ratelimit-remaining", remaining.to_string()),
                (
                    "x-ratelimit-reset",
                    (unix + per.as_secs().max(1)).to_string(),
                ),
            ],
            None,
        ),
        Err((limit, over, _)) => {
            let wait = over.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            (
                [
                    ("x-ratelimit-limit", limit.to_string()),
                    ("x-ratelimit-remaining", "0".to_string()),
                    ("x-ratelimit-reset", (unix + wait).to_string()),
                ],
                Some(wait),
            )
        }
    };
    if let Some(wait) = over {
        let mut resp = message(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded");
        for (k, v) in rate_headers {
            resp.headers_mut().insert(k, v.parse().expect("ASCII"));
        }
        resp.headers_mut()
            .insert("retry-after", wait.to_string().parse().expect("ASCII"));
        return (true, resp);
    }
    let fault = shared.faults.next();
    if let Some(resp) = shared.faults.before_apply(fault).await {
        return (false, resp);
    }
    let mut resp = {
        let mut inner = shared.inner.lock().unwrap();
        apply(&mut inner, body)
    };
    if resp.status().is_success()
        && let Err(err) = shared.save()
    {
        tracing::error!(error = %err, "cannot save the Braze sandbox state");
    }
    if shared.faults.after_apply(fault).await {
        return (false, StatusCode::GATEWAY_TIMEOUT.into_response());
    }
    for (k, v) in rate_headers {
        resp.headers_mut().insert(k, v.parse().expect("ASCII"));
    }
    (false, resp)
}

fn apply(inner: &mut Inner, body: Option<Value>) -> Response {
    let Some(body) = body.and_then(|b| b.as_object().cloned()) else {
        return message(StatusCode::BAD_REQUEST, "Request body is not valid JSON");
    };
    for kind in ["attributes", "events", "purchases"] {
        let n = body.get(kind).and_then(Value::as_array).map_or(0, Vec::len);
        if n > MAX_OBJECTS {
            return message(
                StatusCode::BAD_REQUEST,
                &format!("Too many {kind} objects in request: {n}; the limit is {MAX_OBJECTS}"),
            );
        }
    }
    let attributes = body
        .get("attributes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut errors = Vec::new();
    let mut processed = 0;
    for (index, object) in attributes.iter().enumerate() {
        let mut error = |t: String| {
            errors.push(json!({"type": t, "input_array": "attributes", "index": index}));
        };
        let Some(object) = object.as_object() else {
            error("Attributes object is not an object".into());
            continue;
        };
        let Some(external_id) = object.get("external_id").and_then(Value::as_str) else {
            error("Received attributes object without external_id, braze_id, user_alias, email or phone".into());
            continue;
        };
        if let Some(email) = object.get("email").and_then(Value::as_str)
            && !email
                .split_once('@')
                .is_some_and(|(a, d)| !a.is_empty() && d.contains('.'))
        {
            error(format!("'{email}' is not a valid email address"));
            continue;
        }
        let update_only = object
            .get("_update_existing_only")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let values: Map<String, Value> = object
            .iter()
            .filter(|(k, _)| k.as_str() != "external_id" && !k.starts_with('_'))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match inner.users.get_mut(external_id) {
            Some(user) => {
                let before = user.attributes.clone();
                user.attributes.extend(values);
                user.writes += 1;
                if user.attributes != before {
                    user.versions += 1;
                }
            }
            None if update_only => {
                error(format!(
                    "User with external_id '{external_id}' does not exist and _update_existing_only is set"
                ));
                continue;
            }
            None => {
                inner.users.insert(
                    external_id.to_string(),
                    BrazeUser {
                        attributes: values.into_iter().collect(),
                        writes: 1,
                        versions: 1,
                    },
                );
            }
        }
        processed += 1;
    }
    let mut out = json!({"message": "success", "attributes_processed": processed});
    if !errors.is_empty() {
        out["errors"] = json!(errors);
    }
    (StatusCode::CREATED, axum::Json(out)).into_response()
}
