//! HubSpot CRM objects, as documented for the v3 object APIs:
//!
//! - `POST /crm/v3/objects/{objectType}/batch/upsert` and `.../batch/update`: inputs
//!   `{"id","idProperty","properties","objectWriteTraceId"}`, at most 100 a request.
//!   `idProperty` must be a unique property. When every input carries an
//!   `objectWriteTraceId`, invalid inputs are reported in a 207 Multi-Status answer and the
//!   valid ones applied; otherwise one invalid input fails the whole batch with 400.
//! - `POST .../batch/read` with `idProperty` (unknown ids come back as 207 errors).
//! - `POST .../batch/archive` by record id (204).
//! - `Authorization: Bearer <token>`; otherwise 401.
//! - Rate limits of a private app: 190 requests in any 10 s (configurable for tests) and a
//!   daily limit, answered with 429 `{"errorType":"RATE_LIMIT","policyName":...}` and
//!   `Retry-After`. Every answer carries `X-HubSpot-RateLimit-Max`, `-Remaining`,
//!   `-Interval-Milliseconds`, `-Daily` and `-Daily-Remaining`.
//!
//! Property values are strings; `number` properties must parse as numbers, and `email`
//! values must look like an email address. Each object counts its `writes` (requests that
//! applied to it) and `versions` (writes that changed it), so a test can tell a harmless
//! repeated upsert from a duplicate.
//!
//! As a sandbox ([`HubspotBuilder::any_token`], [`HubspotBuilder::lenient`],
//! [`HubspotBuilder::state_file`]) it takes any bearer token, creates a text property the
//! first time a request writes one (a unique one when it is used as `idProperty`) where
//! real HubSpot would answer "Property does not exist", and keeps its records in a JSON
//! file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::state_file::StateFile;
use crate::{Faults, LoggedRequest, RequestLog, SandboxError, Server, SlidingWindow};

/// Inputs in one batch request at most.
pub const MAX_BATCH_INPUTS: usize = 100;
/// Private apps on Professional and Enterprise: 190 requests per 10 seconds.
pub const TEN_SECONDLY_LIMIT: u32 = 190;
pub const TEN_SECONDS: Duration = Duration::from_secs(10);
/// Requests a day (Professional: 650,000; Enterprise: 1,000,000).
pub const DAILY_LIMIT: u32 = 1_000_000;

/// The type of a property's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyType {
    Text,
    Number,
    Email,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Property {
    #[serde(rename = "type")]
    kind: PropertyType,
    unique: bool,
}

/// One CRM record as the emulator holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubspotObject {
    pub id: String,
    pub properties: BTreeMap<String, String>,
    pub archived: bool,
    /// Requests that applied to this record.
    pub writes: u32,
    /// Writes that changed it (the create included).
    pub versions: u32,
}

#[derive(Debug)]
struct Inner {
    schemas: HashMap<String, HashMap<String, Property>>,
    objects: HashMap<String, Vec<HubspotObject>>,
    /// (object type, property, value) → position in `objects`, for unique properties and
    /// `hs_object_id` of live records.
    index: HashMap<(String, String, String), usize>,
    next_id: u64,
    window: SlidingWindow,
    daily: SlidingWindow,
}

#[derive(Debug)]
struct Shared {
    /// `None`: any bearer token.
    token: Option<String>,
    lenient: bool,
    state: Option<StateFile>,
    faults: Faults,
    log: RequestLog,
    inner: Mutex<Inner>,
}

impl Shared {
    fn save(&self) -> Result<(), SandboxError> {
        match &self.state {
            Some(file) => file.save(|| snapshot(&self.inner.lock().unwrap())),
            None => Ok(()),
        }
    }
}

/// Builds an emulator: object types, their properties, the token and the limits.
#[derive(Debug)]
pub struct HubspotBuilder {
    token: Option<String>,
    schemas: HashMap<String, HashMap<String, Property>>,
    limit: (u32, Duration),
    daily: u32,
    lenient: bool,
    addr: SocketAddr,
    state: Option<PathBuf>,
}

impl HubspotBuilder {
    /// Adds a property to an object type (created on first use).
    pub fn property(
        mut self,
        object_type: &str,
        name: &str,
        kind: PropertyType,
        unique: bool,
    ) -> Self {
        self.schemas
            .entry(object_type.to_string())
            .or_default()
            .insert(name.to_string(), Property { kind, unique });
        self
    }

    /// The rolling limit, 190 per 10 s by default.
    pub fn rate_limit(mut self, requests: u32, per: Duration) -> Self {
        self.limit = (requests, per);
        self
    }

    pub fn daily_limit(mut self, requests: u32) -> Self {
        self.daily = requests;
        self
    }

    /// Accept any bearer token (a sandbox).
    pub fn any_token(mut self) -> Self {
        self.token = None;
        self
    }

    /// Create unknown properties on first write instead of refusing them (a sandbox).
    pub fn lenient(mut self) -> Self {
        self.lenient = true;
        self
    }

    /// Listen on `addr` instead of `127.0.0.1:0`.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Load the records from this JSON file (when it exists) and save them to it after
    /// every change.
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state = Some(path.into());
        self
    }

    /// Starts the emulator; panics when it cannot (for tests).
    pub async fn start(self) -> HubspotEmulator {
        self.try_start().await.expect("start the HubSpot emulator")
    }

    pub async fn try_start(self) -> Result<HubspotEmulator, SandboxError> {
        let mut inner = Inner {
            schemas: self.schemas,
            objects: HashMap::new(),
            index: HashMap::new(),
            next_id: 1001,
            window: SlidingWindow::new(self.limit.0, self.limit.1),
            daily: SlidingWindow::new(self.daily, Duration::from_secs(86_400)),
        };
        let state = self.state.map(StateFile::new);
        if let Some(file) = &state
            && let Some(saved) = file.load()?
        {
            restore(&mut inner, saved).map_err(|message| SandboxError::State {
                path: file.path().to_path_buf(),
                message,
            })?;
        }
        let shared = Arc::new(Shared {
            token: self.token,
            lenient: self.lenient,
            state,
            faults: Faults::default(),
            log: RequestLog::default(),
            inner: Mutex::new(inner),
        });
        let router = Router::new()
            .route("/crm/v3/objects/{object_type}/batch/{action}", post(batch))
            .with_state(shared.clone());
        let server =
            Server::bind(router, self.addr)
                .await
                .map_err(|source| SandboxError::Bind {
                    addr: self.addr,
                    source,
                })?;
        Ok(HubspotEmulator { server, shared })
    }
}

/// What the state file holds: property definitions, records, the next record id.
#[derive(Serialize, Deserialize)]
struct Saved {
    schemas: BTreeMap<String, BTreeMap<String, Property>>,
    objects: BTreeMap<String, Vec<HubspotObject>>,
    next_id: u64,
}

fn snapshot(inner: &Inner) -> Value {
    let saved = Saved {
        schemas: inner
            .schemas
            .iter()
            .map(|(t, props)| (t.clone(), props.clone().into_iter().collect()))
            .collect(),
        objects: inner.objects.clone().into_iter().collect(),
        next_id: inner.next_id,
    };
    serde_json::to_value(saved).expect("the state serializes")
}

fn restore(inner: &mut Inner, saved: Value) -> Result<(), String> {
    let saved: Saved = serde_json::from_value(saved).map_err(|e| {
        format!("not a HubSpot sandbox state ({e}); fix the file or delete it to start empty")
    })?;
    for (object_type, props) in saved.schemas {
        inner.schemas.entry(object_type).or_default().extend(props);
    }
    inner.objects = saved.objects.into_iter().collect();
    inner.next_id = saved.next_id;
    inner.index.clear();
    let objects = inner.objects.clone();
    for (object_type, list) in &objects {
        for (at, object) in list.iter().enumerate().filter(|(_, o)| !o.archived) {
            reindex(inner, object_type, object, at);
        }
    }
    Ok(())
}

/// Indexes a live record's unique properties and `hs_object_id` at position `at`.
fn reindex(inner: &mut Inner, object_type: &str, object: &HubspotObject, at: usize) {
    let schema = inner.schemas.get(object_type);
    let unique: Vec<(String, String)> = object
        .properties
        .iter()
        .filter(|(name, _)| schema.and_then(|s| s.get(*name)).is_some_and(|p| p.unique))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    for (name, value) in unique {
        inner
            .index
            .insert((object_type.to_string(), name, value), at);
    }
    inner.index.insert(
        (
            object_type.to_string(),
            "hs_object_id".into(),
            object.id.clone(),
        ),
        at,
    );
}

/// A running HubSpot emulator at [`HubspotEmulator::base_url`].
#[derive(Debug)]
pub struct HubspotEmulator {
    server: Server,
    shared: Arc<Shared>,
}

impl HubspotEmulator {
    /// An emulator that accepts `token`, with `contacts` (`email` unique, `firstname`,
    /// `lastname`, `company`, `mrr` a number) and `companies` (`domain` unique, `name`,
    /// `mrr`).
    pub fn builder(token: &str) -> HubspotBuilder {
        HubspotBuilder {
            token: Some(token.to_string()),
            schemas: HashMap::new(),
            limit: (TEN_SECONDLY_LIMIT, TEN_SECONDS),
            daily: DAILY_LIMIT,
            lenient: false,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            state: None,
        }
        .property("contacts", "email", PropertyType::Email, true)
        .property("contacts", "firstname", PropertyType::Text, false)
        .property("contacts", "lastname", PropertyType::Text, false)
        .property("contacts", "company", PropertyType::Text, false)
        .property("contacts", "mrr", PropertyType::Number, false)
        .property("companies", "domain", PropertyType::Text, true)
        .property("companies", "name", PropertyType::Text, false)
        .property("companies", "mrr", PropertyType::Number, false)
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

    /// Every record of an object type, archived ones included.
    pub fn objects(&self, object_type: &str) -> Vec<HubspotObject> {
        let inner = self.shared.inner.lock().unwrap();
        inner.objects.get(object_type).cloned().unwrap_or_default()
    }

    /// The live records whose `property` is `value`.
    pub fn find(&self, object_type: &str, property: &str, value: &str) -> Vec<HubspotObject> {
        self.objects(object_type)
            .into_iter()
            .filter(|o| {
                !o.archived && o.properties.get(property).map(String::as_str) == Some(value)
            })
            .collect()
    }

    /// Changes a property's type (e.g. to let previously invalid values through).
    pub fn set_property(&self, object_type: &str, name: &str, kind: PropertyType) {
        let mut inner = self.shared.inner.lock().unwrap();
        let schema = inner.schemas.entry(object_type.to_string()).or_default();
        schema
            .entry(name.to_string())
            .and_modify(|p| p.kind = kind)
            .or_insert(Property {
                kind,
                unique: false,
            });
    }
}

fn hubspot_error(status: StatusCode, category: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "status": "error",
            "message": message,
            "correlationId": "00000000-0000-4000-8000-000000000000",
            "category": category,
        })),
    )
        .into_response()
}

async fn batch(
    State(shared): State<Arc<Shared>>,
    Path((object_type, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let at = Instant::now();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let records = parsed
        .as_ref()
        .and_then(|v| v.get("inputs"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let (over_limit, response) = handle(&shared, &object_type, &action, &headers, parsed, at).await;
    shared.log.push(LoggedRequest {
        at,
        path: format!("/crm/v3/objects/{object_type}/batch/{action}"),
        records,
        status: response.status().as_u16(),
        over_limit,
    });
    response
}

async fn handle(
    shared: &Shared,
    object_type: &str,
    action: &str,
    headers: &HeaderMap,
    body: Option<Value>,
    now: Instant,
) -> (bool, Response) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token_ok = match &shared.token {
        Some(token) => auth == format!("Bearer {token}"),
        None => auth.starts_with("Bearer ") && auth.len() > "Bearer ".len(),
    };
    if !token_ok {
        return (
            false,
            hubspot_error(
                StatusCode::UNAUTHORIZED,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found.",
            ),
        );
    }
    let admitted = {
        let mut inner = shared.inner.lock().unwrap();
        let (limit, per) = (inner.window.limit, inner.window.per);
        let daily_limit = inner.daily.limit;
        match inner.window.admit(now) {
            Err(over) => Err((
                over.retry_after,
                "TEN_SECONDLY_ROLLING",
                "ten_secondly_rolling",
            )),
            Ok(remaining) => match inner.daily.admit(now) {
                Err(over) => Err((over.retry_after, "DAILY", "daily")),
                Ok(daily_remaining) => Ok(rate_header_values(
                    limit,
                    remaining,
                    per,
                    daily_limit,
                    daily_remaining,
                )),
            },
        }
        .map_err(|refused| (refused, rate_header_values(limit, 0, per, daily_limit, 0)))
    };
    match admitted {
        Ok(headers) => dispatch(shared, object_type, action, body, headers).await,
        Err(((retry_after, policy, name), mut headers)) => {
            headers.push((
                "retry-after".into(),
                retry_after.as_secs_f64().ceil().max(1.0).to_string(),
            ));
            let resp = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({
                    "status": "error",
                    "message": format!("You have reached your {name} limit."),
                    "errorType": "RATE_LIMIT",
                    "correlationId": "00000000-0000-4000-8000-000000000000",
                    "policyName": policy,
                })),
            );
            (true, with_headers(resp.into_response(), headers))
        }
    }
}

fn rate_header_values(
    limit: u32,
    remaining: u32,
    per: Duration,
    daily: u32,
    daily_remaining: u32,
) -> Vec<(String, String)> {
    vec![
        ("x-hubspot-ratelimit-max".into(), limit.to_string()),
        (
            "x-hubspot-ratelimit-remaining".into(),
            remaining.to_string(),
        ),
        (
            "x-hubspot-ratelimit-interval-milliseconds".into(),
            per.as_millis().to_string(),
        ),
        ("x-hubspot-ratelimit-daily".into(), daily.to_string()),
        (
            "x-hubspot-ratelimit-daily-remaining".into(),
            daily_remaining.to_string(),
        ),
    ]
}

fn with_headers(mut resp: Response, headers: Vec<(String, String)>) -> Response {
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::try_from(k),
            axum::http::HeaderValue::try_from(v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

async fn dispatch(
    shared: &Shared,
    object_type: &str,
    action: &str,
    body: Option<Value>,
    rate: Vec<(String, String)>,
) -> (bool, Response) {
    let fault = shared.faults.next();
    if let Some(resp) = shared.faults.before_apply(fault).await {
        return (false, resp);
    }
    let resp = {
        let mut inner = shared.inner.lock().unwrap();
        if shared.lenient {
            create_missing_properties(&mut inner, object_type, body.as_ref());
        }
        apply(&mut inner, object_type, action, body)
    };
    if action != "read"
        && resp.status().is_success()
        && let Err(err) = shared.save()
    {
        tracing::error!(error = %err, "cannot save the HubSpot sandbox state");
    }
    if shared.faults.after_apply(fault).await {
        return (false, StatusCode::GATEWAY_TIMEOUT.into_response());
    }
    (false, with_headers(resp, rate))
}

/// A sandbox's leniency: the object type, the `idProperty` (unique) and every written
/// property are created as text properties when missing.
fn create_missing_properties(inner: &mut Inner, object_type: &str, body: Option<&Value>) {
    let Some(body) = body else { return };
    let schema = inner.schemas.entry(object_type.to_string()).or_default();
    let inputs = body.get("inputs").and_then(Value::as_array);
    let id_properties = body
        .get("idProperty")
        .into_iter()
        .chain(
            inputs
                .into_iter()
                .flatten()
                .filter_map(|i| i.get("idProperty")),
        )
        .filter_map(Value::as_str);
    for name in id_properties.filter(|n| *n != "hs_object_id") {
        schema.entry(name.to_string()).or_insert(Property {
            kind: PropertyType::Text,
            unique: true,
        });
    }
    for input in inputs.into_iter().flatten() {
        for name in input
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|p| p.keys())
        {
            schema.entry(name.clone()).or_insert(Property {
                kind: PropertyType::Text,
                unique: false,
            });
        }
    }
}

/// One input's problem, reported against its `objectWriteTraceId`.
struct InputError {
    category: &'static str,
    message: String,
    property: Option<String>,
}

fn apply(inner: &mut Inner, object_type: &str, action: &str, body: Option<Value>) -> Response {
    let Some(schema) = inner.schemas.get(object_type).cloned() else {
        return hubspot_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("Unable to infer object type from: {object_type}"),
        );
    };
    let Some(inputs) = body
        .as_ref()
        .and_then(|b| b.get("inputs"))
        .and_then(Value::as_array)
    else {
        return hubspot_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Invalid input JSON: the body needs an \"inputs\" array.",
        );
    };
    if inputs.len() > MAX_BATCH_INPUTS {
        return hubspot_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!(
                "Batch input cannot exceed {MAX_BATCH_INPUTS} inputs; {} were sent.",
                inputs.len()
            ),
        );
    }
    match action {
        "upsert" | "update" => write(inner, object_type, &schema, inputs, action == "upsert"),
        "read" => read(
            inner,
            object_type,
            &schema,
            body.as_ref().expect("parsed above"),
            inputs,
        ),
        "archive" => {
            let ids: HashSet<&str> = inputs
                .iter()
                .filter_map(|i| i.get("id").and_then(Value::as_str))
                .collect();
            let mut gone = Vec::new();
            for object in inner.objects.entry(object_type.to_string()).or_default() {
                if ids.contains(object.id.as_str()) && !object.archived {
                    object.archived = true;
                    object.writes += 1;
                    object.versions += 1;
                    gone.push(object.clone());
                }
            }
            for object in gone {
                unindex(inner, object_type, &object);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        _ => hubspot_error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            &format!("Unknown batch action {action}"),
        ),
    }
}

fn check_value(
    name: &str,
    value: &Value,
    property: Option<&Property>,
) -> Result<String, InputError> {
    let Some(property) = property else {
        return Err(InputError {
            category: "VALIDATION_ERROR",
            message: format!("Property \"{name}\" does not exist"),
            property: Some(name.to_string()),
        });
    };
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let ok = text.is_empty()
        || match property.kind {
            PropertyType::Text => true,
            PropertyType::Number => text.parse::<f64>().is_ok(),
            PropertyType::Email => text
                .split_once('@')
                .is_some_and(|(a, d)| !a.is_empty() && d.contains('.')),
        };
    if !ok {
        let what = match property.kind {
            PropertyType::Number => "a valid number",
            PropertyType::Email => "a valid email address",
            PropertyType::Text => "valid",
        };
        return Err(InputError {
            category: "VALIDATION_ERROR",
            message: format!(
                "Property values were not valid: \"{text}\" is not {what} for property \"{name}\""
            ),
            property: Some(name.to_string()),
        });
    }
    Ok(text)
}

fn write(
    inner: &mut Inner,
    object_type: &str,
    schema: &HashMap<String, Property>,
    inputs: &[Value],
    create_missing: bool,
) -> Response {
    let traced = inputs.iter().all(|i| i.get("objectWriteTraceId").is_some());
    let mut seen = HashSet::new();
    let mut plans = Vec::new();
    let mut errors: Vec<(String, InputError)> = Vec::new();
    for input in inputs {
        let trace = input
            .get("objectWriteTraceId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let id = input.get("id").and_then(Value::as_str).unwrap_or_default();
        let id_property = input
            .get("idProperty")
            .and_then(Value::as_str)
            .unwrap_or("hs_object_id");
        if id_property != "hs_object_id" && !schema.get(id_property).is_some_and(|p| p.unique) {
            return hubspot_error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                &format!("Property \"{id_property}\" is not a unique identifier property"),
            );
        }
        if !seen.insert(id.to_string()) {
            return hubspot_error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                &format!("Duplicate IDs found in batch input: [{id}]"),
            );
        }
        let mut properties = BTreeMap::new();
        let mut problem = None;
        if id_property != "hs_object_id"
            && let Err(e) = check_value(
                id_property,
                &Value::String(id.to_string()),
                schema.get(id_property),
            )
        {
            problem = Some(e);
        }
        if let Some(props) = input.get("properties").and_then(Value::as_object) {
            for (name, value) in props {
                match check_value(name, value, schema.get(name)) {
                    Ok(text) => {
                        properties.insert(name.clone(), text);
                    }
                    Err(e) => {
                        problem.get_or_insert(e);
                    }
                }
            }
        }
        let existing = lookup(inner, object_type, id_property, id);
        if problem.is_none() && existing.is_none() && !create_missing {
            problem = Some(InputError {
                category: "OBJECT_NOT_FOUND",
                message: format!("Could not find an object with {id_property} {id}"),
                property: None,
            });
        }
        match problem {
            Some(e) => errors.push((trace, e)),
            None => plans.push((
                trace,
                id_property.to_string(),
                id.to_string(),
                properties,
                existing,
            )),
        }
    }
    if !errors.is_empty() && !traced {
        let (_, first) = errors.remove(0);
        return hubspot_error(StatusCode::BAD_REQUEST, first.category, &first.message);
    }
    let mut results = Vec::new();
    for (trace, id_property, id, mut properties, existing) in plans {
        let position = inner.objects.get(object_type).map_or(0, Vec::len);
        let objects = inner.objects.entry(object_type.to_string()).or_default();
        let (object, new) = match existing {
            Some(i) => {
                let object = &mut objects[i];
                let before = object.properties.clone();
                object.properties.extend(properties);
                object.writes += 1;
                if object.properties != before {
                    object.versions += 1;
                }
                (object.clone(), false)
            }
            None => {
                if id_property != "hs_object_id" {
                    properties.insert(id_property, id);
                }
                let object = HubspotObject {
                    id: inner.next_id.to_string(),
                    properties,
                    archived: false,
                    writes: 1,
                    versions: 1,
                };
                inner.next_id += 1;
                objects.push(object.clone());
                (object, true)
            }
        };
        let at = existing.unwrap_or(position);
        for (name, value) in &object.properties {
            if schema.get(name).is_some_and(|p| p.unique) {
                inner
                    .index
                    .insert((object_type.to_string(), name.clone(), value.clone()), at);
            }
        }
        inner.index.insert(
            (
                object_type.to_string(),
                "hs_object_id".into(),
                object.id.clone(),
            ),
            at,
        );
        let mut result = json!({
            "id": object.id,
            "properties": object.properties,
            "new": new,
            "archived": false,
            "createdAt": "2026-01-01T00:00:00Z",
            "updatedAt": "2026-01-01T00:00:00Z",
        });
        if !trace.is_empty() {
            result["objectWriteTraceId"] = json!(trace);
        }
        results.push(result);
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    let errors: Vec<Value> = errors
        .into_iter()
        .map(|(trace, e)| {
            let mut context = json!({ "objectWriteTraceId": [trace] });
            if let Some(p) = e.property {
                context["propertyName"] = json!([p]);
            }
            json!({"status": "error", "category": e.category, "message": e.message, "context": context})
        })
        .collect();
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": "2026-01-01T00:00:00Z",
        "completedAt": "2026-01-01T00:00:00Z",
    });
    if !errors.is_empty() {
        body["numErrors"] = json!(errors.len());
        body["errors"] = json!(errors);
    }
    (status, axum::Json(body)).into_response()
}

fn read(
    inner: &Inner,
    object_type: &str,
    schema: &HashMap<String, Property>,
    body: &Value,
    inputs: &[Value],
) -> Response {
    let id_property = body
        .get("idProperty")
        .and_then(Value::as_str)
        .unwrap_or("hs_object_id");
    if id_property != "hs_object_id" && !schema.get(id_property).is_some_and(|p| p.unique) {
        return hubspot_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("Property \"{id_property}\" is not a unique identifier property"),
        );
    }
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in inputs {
        let id = input.get("id").and_then(Value::as_str).unwrap_or_default();
        let found = lookup(inner, object_type, id_property, id)
            .and_then(|i| inner.objects.get(object_type)?.get(i));
        match found {
            Some(o) => {
                results.push(json!({"id": o.id, "properties": o.properties, "archived": false}))
            }
            None => missing.push(id.to_string()),
        }
    }
    let mut body = json!({"status": "COMPLETE", "results": results});
    if missing.is_empty() {
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    body["numErrors"] = json!(1);
    body["errors"] = json!([{
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": "Could not get some objects, they may be deleted or not exist.",
        "context": { "ids": missing },
    }]);
    (StatusCode::MULTI_STATUS, axum::Json(body)).into_response()
}

/// The live record whose `property` (unique, or `hs_object_id`) is `value`.
fn lookup(inner: &Inner, object_type: &str, property: &str, value: &str) -> Option<usize> {
    let key = (
        object_type.to_string(),
        property.to_string(),
        value.to_string(),
    );
    let i = *inner.index.get(&key)?;
    let object = inner.objects.get(object_type)?.get(i)?;
    let matches = !object.archived
        && if property == "hs_object_id" {
            object.id == value
        } else {
            object.properties.get(property).map(String::as_str) == Some(value)
        };
    matches.then_some(i)
}

/// Forgets an archived record's index entries.
fn unindex(inner: &mut Inner, object_type: &str, object: &HubspotObject) {
    inner.index.retain(|(t, p, v), _| {
        !(t == object_type
            && ((p == "hs_object_id" && *v == object.id)
                || object.properties.get(p).is_some_and(|x| x == v)))
    });
}
