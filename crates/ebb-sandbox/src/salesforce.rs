//! Salesforce Bulk API 2.0 ingest jobs, as documented, under
//! `{instance_url}/services/data/vXX.X/`:
//!
//! - `POST jobs/ingest` `{"object","operation","externalIdFieldName","contentType":"CSV",
//!   "lineEnding","columnDelimiter"}` opens a job (`operation`: `insert`, `update`,
//!   `upsert`, `delete`, `hardDelete`; upserts need an external id field of the object or
//!   `Id`).
//! - `PUT jobs/ingest/{id}/batches` (`Content-Type: text/csv`) uploads the job's data, at
//!   most [`MAX_UPLOAD_BYTES`]; one upload a job.
//! - `PATCH jobs/ingest/{id}` `{"state":"UploadComplete"}` closes it (or `"Aborted"`);
//!   the job then goes `InProgress` and ends `JobComplete` (or `Failed`, with
//!   `errorMessage`). `GET jobs/ingest/{id}` polls it; `DELETE` removes it.
//! - `GET jobs/ingest/{id}/successfulResults/` (`sf__Id`, `sf__Created`, then the uploaded
//!   columns), `failedResults/` (`sf__Id`, `sf__Error`, then the uploaded columns) and
//!   `unprocessedrecords/` (the uploaded columns) as CSV.
//! - `GET query?q=SELECT Id, Ext__c FROM Contact WHERE Ext__c IN ('a','b')`: the one SOQL
//!   form ebb uses, to find record ids before a delete.
//!
//! Limits: [`DAILY_RECORDS`] records uploaded a rolling 24 hours (over it the job fails
//! with `ExceededQuota`), an org's API requests a rolling window (default
//! [`DAILY_API_REQUESTS`] a day; over it every request gets `403
//! [{"errorCode":"REQUEST_LIMIT_EXCEEDED"}]`), and at most `max_open_jobs` jobs not yet
//! finished (more: `400 LIMIT_EXCEEDED`). Every answer carries `Sforce-Limit-Info:
//! api-usage=USED/MAX`. `Authorization: Bearer <access token>`, otherwise `401
//! INVALID_SESSION_ID`.
//!
//! Records are checked as Salesforce does: a CSV column that is not a field of the object
//! fails the whole job (`InvalidBatch : Field name not found`); per record, values must fit
//! the field's type (`INVALID_EMAIL_ADDRESS`, `INVALID_TYPE_ON_FIELD_IN_RECORD`),
//! required fields must be there on create (`REQUIRED_FIELD_MISSING`), upserts need an
//! external id value (`MISSING_ARGUMENT`), external ids are unique (`DUPLICATE_VALUE`),
//! updates and deletes need a live `Id` (`ENTITY_IS_DELETED`, `INVALID_CROSS_REFERENCE_KEY`).
//! An empty CSV value leaves a field as it is; `#N/A` clears it. Each record counts its
//! `writes` and `versions` so a test can tell a harmless repeated upsert from a duplicate.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::state_file::StateFile;
use crate::{Faults, LoggedRequest, RequestLog, SandboxError, Server, SlidingWindow};

/// The most CSV bytes one upload may carry.
pub const MAX_UPLOAD_BYTES: usize = 100 * 1024 * 1024;
/// Records uploaded to ingest jobs in a rolling 24 hours at most.
pub const DAILY_RECORDS: u64 = 150_000_000;
/// API requests a rolling 24 hours (an Enterprise org's base allocation).
pub const DAILY_API_REQUESTS: u32 = 100_000;
/// Jobs open or in progress at once at most.
pub const MAX_OPEN_JOBS: usize = 100;
const DAY: Duration = Duration::from_secs(86_400);

/// The type of a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Email,
    /// Double, currency, percent.
    Number,
    Boolean,
    /// `YYYY-MM-DD`.
    Date,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Field {
    #[serde(rename = "type")]
    kind: FieldType,
    /// Marked "External ID" (and unique): usable as `externalIdFieldName`.
    #[serde(default)]
    external_id: bool,
    /// Must have a value when a record is created.
    #[serde(default)]
    required: bool,
}

/// One record as the emulator holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesforceRecord {
    /// The 18-character record id.
    pub id: String,
    pub fields: BTreeMap<String, String>,
    pub deleted: bool,
    /// Jobs that applied to this record.
    pub writes: u32,
    /// Writes that changed it (the create included).
    pub versions: u32,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    Open,
    UploadComplete,
    InProgress,
    JobComplete,
    Failed,
    Aborted,
}

impl JobState {
    fn finished(self) -> bool {
        matches!(
            self,
            JobState::JobComplete | JobState::Failed | JobState::Aborted
        )
    }
}

#[derive(Debug, Clone)]
struct Job {
    id: String,
    object: String,
    operation: String,
    external_id: Option<String>,
    api_version: String,
    state: JobState,
    /// The state the job reaches once its polls are spent.
    outcome: JobState,
    polls_left: u32,
    data: Option<Vec<u8>>,
    header: Vec<String>,
    successful: Vec<Vec<String>>,
    failed: Vec<Vec<String>>,
    unprocessed: Vec<Vec<String>>,
    error_message: Option<String>,
}

#[derive(Debug)]
struct Inner {
    schemas: HashMap<String, BTreeMap<String, Field>>,
    records: HashMap<String, Vec<SalesforceRecord>>,
    /// (object, field, value) → position of the live record: `Id` and external ids.
    index: HashMap<(String, String, String), usize>,
    jobs: HashMap<String, Job>,
    next_id: u64,
    next_job: u64,
    api: SlidingWindow,
    /// (when, records) uploads of the last 24 hours.
    uploaded: VecDeque<(Instant, u64)>,
    daily_records: u64,
    max_open_jobs: usize,
    /// Polls a closed job answers `InProgress` before it ends.
    polls: u32,
    /// A job stops after this many records: it fails, the rest is unprocessed.
    process_limit: Option<usize>,
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

/// What the state file holds.
#[derive(Serialize, Deserialize)]
struct Saved {
    schemas: BTreeMap<String, BTreeMap<String, Field>>,
    records: BTreeMap<String, Vec<SalesforceRecord>>,
    next_id: u64,
}

fn snapshot(inner: &Inner) -> Value {
    serde_json::to_value(Saved {
        schemas: inner.schemas.clone().into_iter().collect(),
        records: inner.records.clone().into_iter().collect(),
        next_id: inner.next_id,
    })
    .expect("the state serializes")
}

/// Builds an emulator: objects and their fields, the token and the limits.
#[derive(Debug)]
pub struct SalesforceBuilder {
    token: Option<String>,
    schemas: HashMap<String, BTreeMap<String, Field>>,
    api_limit: (u32, Duration),
    daily_records: u64,
    max_open_jobs: usize,
    polls: u32,
    lenient: bool,
    addr: SocketAddr,
    state: Option<PathBuf>,
}

impl SalesforceBuilder {
    /// Adds a field to an object (created on first use).
    pub fn field(
        mut self,
        object: &str,
        name: &str,
        kind: FieldType,
        external_id: bool,
        required: bool,
    ) -> Self {
        self.schemas.entry(object.to_string()).or_default().insert(
            name.to_string(),
            Field {
                kind,
                external_id,
                required,
            },
        );
        self
    }

    /// API requests allowed in any `per` (default [`DAILY_API_REQUESTS`] a day).
    pub fn api_limit(mut self, requests: u32, per: Duration) -> Self {
        self.api_limit = (requests, per);
        self
    }

    /// Records uploaded in any 24 hours (default [`DAILY_RECORDS`]).
    pub fn daily_records(mut self, records: u64) -> Self {
        self.daily_records = records;
        self
    }

    pub fn max_open_jobs(mut self, jobs: usize) -> Self {
        self.max_open_jobs = jobs;
        self
    }

    /// Polls a closed job answers `InProgress` before it ends (default 1).
    pub fn polls_until_done(mut self, polls: u32) -> Self {
        self.polls = polls;
        self
    }

    /// Accept any bearer token (a sandbox).
    pub fn any_token(mut self) -> Self {
        self.token = None;
        self
    }

    /// Create unknown objects and fields (as text; a field named like the job's external
    /// id as an external id) instead of failing the job (a sandbox).
    pub fn lenient(mut self) -> Self {
        self.lenient = true;
        self
    }

    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Load the records from this JSON file (when it exists) and save them after every
    /// change.
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state = Some(path.into());
        self
    }

    pub async fn start(self) -> SalesforceEmulator {
        self.try_start()
            .await
            .expect("start the Salesforce emulator")
    }

    pub async fn try_start(self) -> Result<SalesforceEmulator, SandboxError> {
        let mut inner = Inner {
            schemas: self.schemas,
            records: HashMap::new(),
            index: HashMap::new(),
            jobs: HashMap::new(),
            next_id: 1,
            next_job: 1,
            api: SlidingWindow::new(self.api_limit.0, self.api_limit.1),
            uploaded: VecDeque::new(),
            daily_records: self.daily_records,
            max_open_jobs: self.max_open_jobs,
            polls: self.polls,
            process_limit: None,
        };
        let state = self.state.map(StateFile::new);
        if let Some(file) = &state
            && let Some(saved) = file.load()?
        {
            let saved: Saved = serde_json::from_value(saved).map_err(|e| SandboxError::State {
                path: file.path().to_path_buf(),
                message: format!(
                    "not a Salesforce sandbox state ({e}); fix the file or delete it to start empty"
                ),
            })?;
            for (object, fields) in saved.schemas {
                inner.schemas.entry(object).or_default().extend(fields);
            }
            inner.records = saved.records.into_iter().collect();
            inner.next_id = saved.next_id;
            let all: Vec<(String, usize, SalesforceRecord)> = inner
                .records
                .iter()
                .flat_map(|(o, list)| {
                    list.iter()
                        .enumerate()
                        .map(move |(i, r)| (o.clone(), i, r.clone()))
                })
                .collect();
            for (object, at, record) in all.iter().filter(|(_, _, r)| !r.deleted) {
                index_record(&mut inner, object, record, *at);
            }
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
            .route("/services/data/{version}/{*rest}", any(route))
            .with_state(shared.clone());
        let server =
            Server::bind(router, self.addr)
                .await
                .map_err(|source| SandboxError::Bind {
                    addr: self.addr,
                    source,
                })?;
        Ok(SalesforceEmulator { server, shared })
    }
}

/// A running Salesforce emulator; its [`instance_url`](SalesforceEmulator::instance_url)
/// is the base of every request.
#[derive(Debug)]
pub struct SalesforceEmulator {
    server: Server,
    shared: Arc<Shared>,
}

impl SalesforceEmulator {
    /// An emulator that accepts `token`, with `Contact` (`Email` an email, `LastName`
    /// required, `FirstName`, `Phone`, `Ebb_Id__c` an external id, `MRR__c` a number,
    /// `Active__c` a boolean, `Signup_Date__c` a date) and `Account` (`Name` required,
    /// `Website`, `Ebb_Id__c` an external id, `MRR__c`, `Health_Score__c` numbers).
    pub fn builder(token: &str) -> SalesforceBuilder {
        use FieldType as T;
        SalesforceBuilder {
            token: Some(token.to_string()),
            schemas: HashMap::new(),
            api_limit: (DAILY_API_REQUESTS, DAY),
            daily_records: DAILY_RECORDS,
            max_open_jobs: MAX_OPEN_JOBS,
            polls: 1,
            lenient: false,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            state: None,
        }
        .field("Contact", "Email", T::Email, false, false)
        .field("Contact", "FirstName", T::Text, false, false)
        .field("Contact", "LastName", T::Text, false, true)
        .field("Contact", "Phone", T::Text, false, false)
        .field("Contact", "Ebb_Id__c", T::Text, true, false)
        .field("Contact", "MRR__c", T::Number, false, false)
        .field("Contact", "Active__c", T::Boolean, false, false)
        .field("Contact", "Signup_Date__c", T::Date, false, false)
        .field("Account", "Name", T::Text, false, true)
        .field("Account", "Website", T::Text, false, false)
        .field("Account", "Ebb_Id__c", T::Text, true, false)
        .field("Account", "MRR__c", T::Number, false, false)
        .field("Account", "Health_Score__c", T::Number, false, false)
    }

    /// `http://127.0.0.1:PORT`, what a destination's `instance_url` is set to.
    pub fn instance_url(&self) -> String {
        self.server.base_url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    pub fn log(&self) -> &RequestLog {
        &self.shared.log
    }

    /// Writes the state file now (it is also written after every change).
    pub fn save(&self) -> Result<(), SandboxError> {
        self.shared.save()
    }

    /// Every record of an object, deleted ones included.
    pub fn records(&self, object: &str) -> Vec<SalesforceRecord> {
        let inner = self.shared.inner.lock().unwrap();
        inner.records.get(object).cloned().unwrap_or_default()
    }

    /// The live record whose `field` is `value`.
    pub fn find(&self, object: &str, field: &str, value: &str) -> Option<SalesforceRecord> {
        self.records(object)
            .into_iter()
            .find(|r| !r.deleted && r.fields.get(field).map(String::as_str) == Some(value))
    }

    /// The state of every job, by id.
    pub fn jobs(&self) -> BTreeMap<String, JobState> {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .jobs
            .values()
            .map(|j| (j.id.clone(), j.state))
            .collect()
    }

    /// From now on a job stops after `records` records: it fails and the rest of its
    /// records are unprocessed (`None`: jobs run to the end).
    pub fn set_process_limit(&self, records: Option<usize>) {
        self.shared.inner.lock().unwrap().process_limit = records;
    }

    /// Changes a field's type (e.g. to let previously invalid values through).
    pub fn set_field_type(&self, object: &str, name: &str, kind: FieldType) {
        let mut inner = self.shared.inner.lock().unwrap();
        let fields = inner.schemas.entry(object.to_string()).or_default();
        fields
            .entry(name.to_string())
            .and_modify(|f| f.kind = kind)
            .or_insert(Field {
                kind,
                external_id: false,
                required: false,
            });
    }
}

/// `[{"errorCode","message"}]`, Salesforce's error body.
fn sf_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!([{ "errorCode": code, "message": message }])),
    )
        .into_response()
}

fn csv_response(text: Vec<u8>) -> Response {
    (StatusCode::OK, [("content-type", "text/csv")], text).into_response()
}

async fn route(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path((version, rest)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let path = format!("/services/data/{version}/{rest}");
    let (over_limit, records, response) =
        handle(&shared, &method, &version, &rest, query, &headers, body, at).await;
    shared.log.push(LoggedRequest {
        at,
        path,
        records,
        status: response.status().as_u16(),
        over_limit,
    });
    response
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    shared: &Shared,
    method: &Method,
    version: &str,
    rest: &str,
    query: Option<String>,
    headers: &HeaderMap,
    body: Bytes,
    now: Instant,
) -> (bool, usize, Response) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token_ok = match &shared.token {
        Some(token) => auth == format!("Bearer {token}"),
        None => auth.len() > "Bearer ".len() && auth.starts_with("Bearer "),
    };
    if !token_ok {
        return (
            false,
            0,
            sf_error(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
            ),
        );
    }
    let usage = {
        let mut inner = shared.inner.lock().unwrap();
        let max = inner.api.limit;
        inner.api.admit(now).map(|left| (max - left, max))
    };
    let Ok((used, max)) = usage else {
        let resp = sf_error(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        );
        return (true, 0, resp);
    };
    let api_version = version
        .strip_prefix('v')
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| *v >= 47.0);
    let Some(api_version) = api_version else {
        return (
            false,
            0,
            sf_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("The requested resource does not exist: API version {version}"),
            ),
        );
    };
    let fault = shared.faults.next();
    if let Some(resp) = shared.faults.before_apply(fault).await {
        return (false, 0, resp);
    }
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (records, changed, resp) = {
        let mut inner = shared.inner.lock().unwrap();
        dispatch(
            &mut inner,
            shared.lenient,
            method,
            api_version,
            &segments,
            query.as_deref(),
            headers,
            &body,
        )
    };
    if changed && let Err(err) = shared.save() {
        tracing::error!(error = %err, "cannot save the Salesforce sandbox state");
    }
    if shared.faults.after_apply(fault).await {
        return (false, records, StatusCode::GATEWAY_TIMEOUT.into_response());
    }
    let mut resp = resp;
    if let Ok(v) = format!("api-usage={used}/{max}").parse() {
        resp.headers_mut().insert("sforce-limit-info", v);
    }
    (false, records, resp)
}

/// Answers one admitted request: (records it carried, whether records changed, answer).
#[allow(clippy::too_many_arguments)]
fn dispatch(
    inner: &mut Inner,
    lenient: bool,
    method: &Method,
    api_version: f64,
    segments: &[&str],
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> (usize, bool, Response) {
    let not_found = || {
        sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        )
    };
    match (method.as_str(), segments) {
        ("POST", ["jobs", "ingest"]) => (0, false, create_job(inner, lenient, api_version, body)),
        ("PUT", ["jobs", "ingest", id, "batches"]) => {
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            upload(inner, id, content_type, body)
        }
        ("PATCH", ["jobs", "ingest", id]) => set_state(inner, lenient, id, body),
        ("GET", ["jobs", "ingest", id]) => match inner.jobs.get_mut(*id) {
            Some(job) => {
                if matches!(job.state, JobState::UploadComplete | JobState::InProgress) {
                    if job.polls_left == 0 {
                        job.state = job.outcome;
                    } else {
                        job.polls_left -= 1;
                        job.state = JobState::InProgress;
                    }
                }
                (
                    0,
                    false,
                    (StatusCode::OK, axum::Json(job_info(job))).into_response(),
                )
            }
            None => (0, false, not_found()),
        },
        ("DELETE", ["jobs", "ingest", id]) => match inner.jobs.get(*id) {
            Some(job) if job.state.finished() => {
                inner.jobs.remove(*id);
                (0, false, StatusCode::NO_CONTENT.into_response())
            }
            Some(_) => (
                0,
                false,
                sf_error(
                    StatusCode::BAD_REQUEST,
                    "INVALIDJOBSTATE",
                    "Job is not in a state that can be deleted",
                ),
            ),
            None => (0, false, not_found()),
        },
        ("GET", ["jobs", "ingest", id, which]) => {
            let Some(job) = inner.jobs.get(*id) else {
                return (0, false, not_found());
            };
            if !job.state.finished() {
                return (
                    0,
                    false,
                    sf_error(
                        StatusCode::BAD_REQUEST,
                        "INVALIDJOBSTATE",
                        "Results are not available until the job is complete",
                    ),
                );
            }
            let (prefix, rows): (&[&str], &Vec<Vec<String>>) = match *which {
                "successfulResults" => (&["sf__Id", "sf__Created"], &job.successful),
                "failedResults" => (&["sf__Id", "sf__Error"], &job.failed),
                "unprocessedrecords" => (&[], &job.unprocessed),
                _ => return (0, false, not_found()),
            };
            let header: Vec<String> = prefix
                .iter()
                .map(|s| s.to_string())
                .chain(job.header.iter().cloned())
                .collect();
            (rows.len(), false, csv_response(write_csv(&header, rows)))
        }
        ("GET", ["query"]) => (0, false, soql(inner, query.unwrap_or(""))),
        _ => (0, false, not_found()),
    }
}

fn job_info(job: &Job) -> Value {
    let mut info = json!({
        "id": job.id,
        "operation": job.operation,
        "object": job.object,
        "createdById": "005000000000001AAA",
        "createdDate": "2026-01-01T00:00:00.000+0000",
        "systemModstamp": "2026-01-01T00:00:00.000+0000",
        "state": job.state,
        "concurrencyMode": "Parallel",
        "contentType": "CSV",
        "apiVersion": job.api_version.parse::<f64>().unwrap_or(0.0),
        "contentUrl": format!("services/data/v{}/jobs/ingest/{}/batches", job.api_version, job.id),
        "lineEnding": "LF",
        "columnDelimiter": "COMMA",
        "jobType": "V2Ingest",
        "numberRecordsProcessed": job.successful.len() + job.failed.len(),
        "numberRecordsFailed": job.failed.len(),
        "retries": 0,
        "totalProcessingTime": 0,
    });
    if let Some(ext) = &job.external_id {
        info["externalIdFieldName"] = json!(ext);
    }
    if job.state.finished()
        && let Some(message) = &job.error_message
    {
        info["errorMessage"] = json!(message);
    }
    info
}

fn create_job(inner: &mut Inner, lenient: bool, api_version: f64, body: &[u8]) -> Response {
    let bad = |message: &str| sf_error(StatusCode::BAD_REQUEST, "INVALIDJOB", message);
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "The request body is not valid JSON",
        );
    };
    let text = |k: &str| request.get(k).and_then(Value::as_str);
    let Some(object) = text("object") else {
        return bad("InvalidJob : Object is required");
    };
    let operation = text("operation").unwrap_or("");
    if !matches!(
        operation,
        "insert" | "update" | "upsert" | "delete" | "hardDelete"
    ) {
        return bad(&format!(
            "InvalidJob : Invalid operation: {operation}; use insert, update, upsert, delete or hardDelete"
        ));
    }
    if text("contentType").is_some_and(|c| c != "CSV") {
        return bad("InvalidJob : contentType must be CSV");
    }
    if text("columnDelimiter").is_some_and(|c| c != "COMMA")
        || text("lineEnding").is_some_and(|l| l != "LF" && l != "CRLF")
    {
        return bad(
            "InvalidJob : this emulator takes columnDelimiter COMMA and lineEnding LF or CRLF",
        );
    }
    if lenient {
        inner.schemas.entry(object.to_string()).or_default();
    }
    let Some(fields) = inner.schemas.get(object) else {
        return sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("sObject type '{object}' is not supported."),
        );
    };
    let external_id = text("externalIdFieldName").map(str::to_string);
    if operation == "upsert" {
        let Some(ext) = &external_id else {
            return bad("InvalidJob : External ID field name is required for upsert");
        };
        let known = ext.eq_ignore_ascii_case("Id")
            || find_field(fields, ext).is_some_and(|(_, f)| f.external_id);
        if !known && lenient && find_field(fields, ext).is_none() {
            inner
                .schemas
                .get_mut(object)
                .expect("created above")
                .insert(
                    ext.clone(),
                    Field {
                        kind: FieldType::Text,
                        external_id: true,
                        required: false,
                    },
                );
        } else if !known {
            return bad(&format!(
                "InvalidJob : The field {ext} is not an External ID field of {object}"
            ));
        }
    }
    let open = inner.jobs.values().filter(|j| !j.state.finished()).count();
    if open >= inner.max_open_jobs {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "LIMIT_EXCEEDED",
            &format!(
                "Max open jobs exceeded: {open} jobs are open or in progress; close or abort some"
            ),
        );
    }
    let id = format!("750{:015}", inner.next_job);
    inner.next_job += 1;
    let job = Job {
        id: id.clone(),
        object: object.to_string(),
        operation: operation.to_string(),
        external_id,
        api_version: format!("{api_version:.1}"),
        state: JobState::Open,
        outcome: JobState::Open,
        polls_left: 0,
        data: None,
        header: Vec::new(),
        successful: Vec::new(),
        failed: Vec::new(),
        unprocessed: Vec::new(),
        error_message: None,
    };
    let info = job_info(&job);
    inner.jobs.insert(id, job);
    (StatusCode::OK, axum::Json(info)).into_response()
}

fn upload(inner: &mut Inner, id: &str, content_type: &str, body: &[u8]) -> (usize, bool, Response) {
    let Some(job) = inner.jobs.get_mut(id) else {
        return (
            0,
            false,
            sf_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            ),
        );
    };
    let rows = body
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        .saturating_sub(1);
    if job.state != JobState::Open {
        return (
            rows,
            false,
            sf_error(
                StatusCode::CONFLICT,
                "INVALIDJOBSTATE",
                "Job is not open for uploads",
            ),
        );
    }
    if !content_type.starts_with("text/csv") {
        return (
            rows,
            false,
            sf_error(
                StatusCode::BAD_REQUEST,
                "INVALIDCONTENTTYPE",
                "Content-Type must be text/csv",
            ),
        );
    }
    if body.len() > MAX_UPLOAD_BYTES {
        return (
            rows,
            false,
            sf_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "INVALID_BATCH_SIZE",
                &format!(
                    "The upload is {} bytes; a job takes at most {MAX_UPLOAD_BYTES} bytes",
                    body.len()
                ),
            ),
        );
    }
    if job.data.is_some() {
        return (
            rows,
            false,
            sf_error(
                StatusCode::CONFLICT,
                "INVALIDJOBSTATE",
                "Data has already been uploaded to this job",
            ),
        );
    }
    job.data = Some(body.to_vec());
    (rows, false, StatusCode::CREATED.into_response())
}

fn set_state(inner: &mut Inner, lenient: bool, id: &str, body: &[u8]) -> (usize, bool, Response) {
    let wanted = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("state").and_then(Value::as_str).map(str::to_string));
    let Some(job) = inner.jobs.get_mut(id) else {
        return (
            0,
            false,
            sf_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            ),
        );
    };
    match wanted.as_deref() {
        Some("Aborted") if !job.state.finished() => {
            job.state = JobState::Aborted;
            let info = job_info(job);
            (0, false, (StatusCode::OK, axum::Json(info)).into_response())
        }
        Some("UploadComplete") if job.state == JobState::Open => {
            let data = job.data.take().unwrap_or_default();
            let mut job = job.clone();
            let rows = process(inner, lenient, &mut job, &data);
            let info = job_info(&job);
            inner.jobs.insert(job.id.clone(), job);
            (
                rows,
                true,
                (StatusCode::OK, axum::Json(info)).into_response(),
            )
        }
        _ => (
            0,
            false,
            sf_error(
                StatusCode::BAD_REQUEST,
                "INVALIDJOBSTATE",
                &format!(
                    "Cannot change the job from {:?} to {}",
                    job.state,
                    wanted.unwrap_or_default()
                ),
            ),
        ),
    }
}

/// The field of `fields` named `name`, ignoring case (Salesforce API names are
/// case-insensitive), with its exact name.
fn find_field<'a>(fields: &'a BTreeMap<String, Field>, name: &str) -> Option<(&'a str, &'a Field)> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(n, f)| (n.as_str(), f))
}

/// Runs a closed job over its data: the job ends (after its polls) `JobComplete` or
/// `Failed`. Returns the records it carried.
fn process(inner: &mut Inner, lenient: bool, job: &mut Job, data: &[u8]) -> usize {
    job.state = JobState::UploadComplete;
    job.polls_left = inner.polls;
    job.outcome = JobState::JobComplete;
    let (header, rows) = match read_csv(data) {
        Ok(parsed) => parsed,
        Err(message) => {
            job.outcome = JobState::Failed;
            job.error_message = Some(format!("InvalidBatch : {message}"));
            return 0;
        }
    };
    job.header = header.clone();
    let now = Instant::now();
    while inner
        .uploaded
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) >= DAY)
    {
        inner.uploaded.pop_front();
    }
    let used: u64 = inner.uploaded.iter().map(|(_, n)| n).sum();
    if used + rows.len() as u64 > inner.daily_records {
        job.outcome = JobState::Failed;
        job.error_message = Some(format!(
            "ExceededQuota : The number of records uploaded in the last 24 hours would exceed {}",
            inner.daily_records
        ));
        job.unprocessed = rows;
        return job.unprocessed.len();
    }
    inner.uploaded.push_back((now, rows.len() as u64));
    if let Err(message) = check_header(inner, lenient, job, &header) {
        job.outcome = JobState::Failed;
        job.error_message = Some(format!("InvalidBatch : {message}"));
        job.unprocessed = rows;
        return job.unprocessed.len();
    }
    let limit = inner.process_limit.unwrap_or(usize::MAX);
    let mut seen_ext = HashSet::new();
    let n = rows.len();
    for (i, row) in rows.into_iter().enumerate() {
        if i >= limit {
            job.outcome = JobState::Failed;
            job.error_message = Some(
                "InternalServerError : the job stopped before it processed every record".into(),
            );
            job.unprocessed.push(row);
            continue;
        }
        match apply_row(inner, job, &header, &row, &mut seen_ext) {
            Ok((id, created)) => {
                let mut out = vec![id, created.to_string()];
                out.extend(row);
                job.successful.push(out);
            }
            Err(error) => {
                let mut out = vec![String::new(), error];
                out.extend(row);
                job.failed.push(out);
            }
        }
    }
    n
}

/// Fails the job when a column is not a field of the object (or the operation's columns
/// are wrong). A lenient sandbox creates unknown fields instead.
fn check_header(
    inner: &mut Inner,
    lenient: bool,
    job: &Job,
    header: &[String],
) -> Result<(), String> {
    let fields = inner.schemas.entry(job.object.clone()).or_default();
    let mut seen = HashSet::new();
    for column in header {
        if !seen.insert(column.to_ascii_lowercase()) {
            return Err(format!("Duplicate field name: {column}"));
        }
    }
    let has_id = header.iter().any(|c| c.eq_ignore_ascii_case("Id"));
    match job.operation.as_str() {
        "delete" | "hardDelete" => {
            if header.len() != 1 || !has_id {
                return Err("A delete job takes exactly one column: Id".into());
            }
            return Ok(());
        }
        "update" if !has_id => return Err("Field name not found : Id".into()),
        "insert" if has_id => {
            return Err("Id is not allowed in an insert job".into());
        }
        "upsert" => {
            let ext = job.external_id.as_deref().unwrap_or("Id");
            if !header.iter().any(|c| c.eq_ignore_ascii_case(ext)) {
                return Err(format!("Field name not found : {ext}"));
            }
        }
        _ => {}
    }
    for column in header.iter().filter(|c| !c.eq_ignore_ascii_case("Id")) {
        if find_field(fields, column).is_none() {
            if lenient {
                fields.insert(
                    column.clone(),
                    Field {
                        kind: FieldType::Text,
                        external_id: false,
                        required: false,
                    },
                );
            } else {
                return Err(format!("Field name not found : {column}"));
            }
        }
    }
    Ok(())
}

/// The Salesforce error of a value that does not fit its field, `CODE:message:field --`.
fn check_value(name: &str, kind: FieldType, value: &str) -> Result<(), String> {
    let ok = match kind {
        FieldType::Text => value.chars().count() <= 32_000,
        FieldType::Email => value
            .split_once('@')
            .is_some_and(|(a, d)| !a.is_empty() && d.contains('.') && !d.ends_with('.')),
        FieldType::Number => value.parse::<f64>().is_ok_and(f64::is_finite),
        FieldType::Boolean => matches!(
            value.to_ascii_lowercase().as_str(),
            "true" | "false" | "1" | "0"
        ),
        FieldType::Date => {
            let parts: Vec<&str> = value.split('-').collect();
            parts.len() == 3
                && parts[0].len() == 4
                && parts.iter().all(|p| p.parse::<u32>().is_ok())
                && parts[1].parse::<u32>().is_ok_and(|m| (1..=12).contains(&m))
                && parts[2].parse::<u32>().is_ok_and(|d| (1..=31).contains(&d))
        }
    };
    if ok {
        return Ok(());
    }
    Err(match kind {
        FieldType::Email => {
            format!("INVALID_EMAIL_ADDRESS:{name}: invalid email address: {value}:{name} --")
        }
        FieldType::Text => format!("STRING_TOO_LONG:{name}: data value too large:{name} --"),
        _ => format!(
            "INVALID_TYPE_ON_FIELD_IN_RECORD:{name}: value not of required type: {value}:{name} --"
        ),
    })
}

/// Applies one CSV row: the record id and whether it was created, or the error text.
fn apply_row(
    inner: &mut Inner,
    job: &Job,
    header: &[String],
    row: &[String],
    seen_ext: &mut HashSet<String>,
) -> Result<(String, bool), String> {
    let fields = inner.schemas.get(&job.object).cloned().unwrap_or_default();
    let value_of = |name: &str| {
        header
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
            .and_then(|i| row.get(i))
            .map(String::as_str)
            .unwrap_or("")
    };
    // Values to set: (exact field name, Some(value) or None to clear).
    let mut values: Vec<(String, Option<String>)> = Vec::new();
    for (column, value) in header.iter().zip(row) {
        if column.eq_ignore_ascii_case("Id") || value.is_empty() {
            continue;
        }
        let (name, field) = find_field(&fields, column).expect("checked by check_header");
        if value == "#N/A" {
            values.push((name.to_string(), None));
            continue;
        }
        check_value(name, field.kind, value)?;
        values.push((name.to_string(), Some(value.clone())));
    }
    let object = job.object.clone();
    let lookup = |inner: &Inner, field: &str, value: &str| {
        inner
            .index
            .get(&(object.clone(), field.to_string(), value.to_string()))
            .copied()
    };
    let deleted_id = |inner: &Inner, id: &str| {
        inner
            .records
            .get(&object)
            .is_some_and(|list| list.iter().any(|r| r.id == id && r.deleted))
    };
    let missing_id = |inner: &Inner, id: &str| {
        if deleted_id(inner, id) {
            "ENTITY_IS_DELETED:entity is deleted:--".to_string()
        } else {
            format!("INVALID_CROSS_REFERENCE_KEY:invalid cross reference id: {id}:--")
        }
    };
    let target = match job.operation.as_str() {
        "insert" => None,
        "update" => {
            let id = value_of("Id");
            match lookup(inner, "Id", id) {
                Some(i) => Some(i),
                None => return Err(missing_id(inner, id)),
            }
        }
        "upsert" => {
            let ext = job.external_id.as_deref().unwrap_or("Id");
            let key = value_of(ext);
            if key.is_empty() || key == "#N/A" {
                return Err(format!("MISSING_ARGUMENT:{ext} not specified:--"));
            }
            if !seen_ext.insert(key.to_string()) {
                return Err(format!(
                    "DUPLICATE_EXTERNAL_ID:Duplicate external id specified: {key}:{ext} --"
                ));
            }
            if ext.eq_ignore_ascii_case("Id") {
                match lookup(inner, "Id", key) {
                    Some(i) => Some(i),
                    None => return Err(missing_id(inner, key)),
                }
            } else {
                let (name, _) = find_field(&fields, ext).expect("checked when the job opened");
                lookup(inner, name, key)
            }
        }
        _ => {
            let id = value_of("Id");
            let Some(i) = lookup(inner, "Id", id) else {
                return Err(missing_id(inner, id));
            };
            let record = inner.records.get_mut(&object).expect("indexed")[i].clone();
            unindex_record(inner, &object, &record);
            let record = &mut inner.records.get_mut(&object).expect("indexed")[i];
            record.deleted = true;
            record.writes += 1;
            record.versions += 1;
            return Ok((record.id.clone(), false));
        }
    };
    // An external id value another live record holds.
    for (name, value) in &values {
        let (Some(value), Some(field)) = (value, fields.get(name)) else {
            continue;
        };
        if field.external_id
            && let Some(other) = lookup(inner, name, value)
            && Some(other) != target
        {
            return Err(format!(
                "DUPLICATE_VALUE:duplicate value found: {name} duplicates value on record with id: {}:{name} --",
                inner.records[&object][other].id
            ));
        }
    }
    let records = inner.records.entry(object.clone()).or_default();
    match target {
        Some(i) => {
            let old = records[i].clone();
            let record = &mut records[i];
            let before = record.fields.clone();
            for (name, value) in values {
                match value {
                    Some(v) => record.fields.insert(name, v),
                    None => record.fields.remove(&name),
                };
            }
            record.writes += 1;
            if record.fields != before {
                record.versions += 1;
            }
            let (id, new) = (record.id.clone(), record.clone());
            unindex_record(inner, &object, &old);
            index_record(inner, &object, &new, i);
            Ok((id, false))
        }
        None => {
            let mut new_fields = BTreeMap::new();
            for (name, value) in values {
                if let Some(v) = value {
                    new_fields.insert(name, v);
                }
            }
            let missing: Vec<&str> = fields
                .iter()
                .filter(|(n, f)| f.required && !new_fields.contains_key(*n))
                .map(|(n, _)| n.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "REQUIRED_FIELD_MISSING:Required fields are missing: [{}]:{} --",
                    missing.join(", "),
                    missing.join(",")
                ));
            }
            let prefix = match job.object.as_str() {
                "Contact" => "003",
                "Account" => "001",
                "Lead" => "00Q",
                _ => "a00",
            };
            let id = format!("{prefix}{:012}AAA", inner.next_id);
            inner.next_id += 1;
            let record = SalesforceRecord {
                id: id.clone(),
                fields: new_fields,
                deleted: false,
                writes: 1,
                versions: 1,
            };
            let list = inner.records.get_mut(&object).expect("entry made above");
            list.push(record.clone());
            let at = list.len() - 1;
            index_record(inner, &object, &record, at);
            Ok((id, true))
        }
    }
}

/// Indexes a live record's `Id` and external id values at position `at`.
fn index_record(inner: &mut Inner, object: &str, record: &SalesforceRecord, at: usize) {
    let external: Vec<String> = inner
        .schemas
        .get(object)
        .map(|f| {
            f.iter()
                .filter(|(_, f)| f.external_id)
                .map(|(n, _)| n.clone())
                .collect()
        })
        .unwrap_or_default();
    inner
        .index
        .insert((object.to_string(), "Id".into(), record.id.clone()), at);
    for name in external {
        if let Some(value) = record.fields.get(&name) {
            inner
                .index
                .insert((object.to_string(), name, value.clone()), at);
        }
    }
}

/// Forgets a record's index entries.
fn unindex_record(inner: &mut Inner, object: &str, record: &SalesforceRecord) {
    inner
        .index
        .remove(&(object.to_string(), "Id".into(), record.id.clone()));
    for (name, value) in &record.fields {
        inner
            .index
            .remove(&(object.to_string(), name.clone(), value.clone()));
    }
}

/// `SELECT Id, F FROM Obj WHERE F IN ('a', 'b')`, the one query form ebb sends.
fn soql(inner: &Inner, raw_query: &str) -> Response {
    let q = raw_query
        .split('&')
        .find_map(|kv| kv.strip_prefix("q="))
        .map(percent_decode)
        .unwrap_or_default();
    let malformed = |why: &str| {
        sf_error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            &format!("{why}: {q}"),
        )
    };
    let Some(parsed) = parse_select(&q) else {
        return malformed(
            "this emulator answers SELECT <fields> FROM <object> WHERE <field> IN (<'values'>)",
        );
    };
    let Some(fields) = inner.schemas.get(&parsed.object) else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_TYPE",
            &format!("sObject type '{}' is not supported.", parsed.object),
        );
    };
    for f in parsed.fields.iter().chain(std::iter::once(&parsed.filter)) {
        if !f.eq_ignore_ascii_case("Id") && find_field(fields, f).is_none() {
            return sf_error(
                StatusCode::BAD_REQUEST,
                "INVALID_FIELD",
                &format!("No such column '{f}' on entity '{}'", parsed.object),
            );
        }
    }
    let exact = |f: &str| {
        if f.eq_ignore_ascii_case("Id") {
            "Id".to_string()
        } else {
            find_field(fields, f)
                .map(|(n, _)| n.to_string())
                .unwrap_or_default()
        }
    };
    let filter = exact(&parsed.filter);
    let wanted: HashSet<&str> = parsed.values.iter().map(String::as_str).collect();
    let records: Vec<Value> = inner
        .records
        .get(&parsed.object)
        .into_iter()
        .flatten()
        .filter(|r| !r.deleted)
        .filter(|r| {
            let v = if filter == "Id" {
                Some(r.id.as_str())
            } else {
                r.fields.get(&filter).map(String::as_str)
            };
            v.is_some_and(|v| wanted.contains(v))
        })
        .map(|r| {
            let mut out = serde_json::Map::new();
            out.insert(
                "attributes".into(),
                json!({"type": parsed.object, "url": format!("/services/data/v62.0/sobjects/{}/{}", parsed.object, r.id)}),
            );
            for f in &parsed.fields {
                let name = exact(f);
                let v = if name == "Id" {
                    json!(r.id)
                } else {
                    r.fields.get(&name).map_or(Value::Null, |v| json!(v))
                };
                out.insert(name, v);
            }
            Value::Object(out)
        })
        .collect();
    (
        StatusCode::OK,
        axum::Json(json!({"totalSize": records.len(), "done": true, "records": records})),
    )
        .into_response()
}

struct Select {
    fields: Vec<String>,
    object: String,
    filter: String,
    values: Vec<String>,
}

fn parse_select(q: &str) -> Option<Select> {
    let q = q.trim();
    let upper = q.to_ascii_uppercase();
    let rest = q.get(upper.find("SELECT ")? + 7..)?;
    let from = rest.to_ascii_uppercase().find(" FROM ")?;
    let fields = rest[..from]
        .split(',')
        .map(|f| f.trim().to_string())
        .collect::<Vec<_>>();
    let rest = rest[from + 6..].trim_start();
    let where_at = rest.to_ascii_uppercase().find(" WHERE ")?;
    let object = rest[..where_at].trim().to_string();
    let rest = rest[where_at + 7..].trim_start();
    let in_at = rest.to_ascii_uppercase().find(" IN ")?;
    let filter = rest[..in_at].trim().to_string();
    let list = rest[in_at + 4..].trim();
    let list = list.strip_prefix('(')?.strip_suffix(')')?;
    let mut values = Vec::new();
    let mut chars = list.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some('\'') => {}
            Some(_) => return None,
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => value.push(chars.next()?),
                '\'' => break,
                c => value.push(c),
            }
        }
        values.push(value);
    }
    if fields.iter().any(String::is_empty) || object.is_empty() || filter.is_empty() {
        return None;
    }
    Some(Select {
        fields,
        object,
        filter,
        values,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A CSV upload: the header and the rows, each row as long as the header.
fn read_csv(data: &[u8]) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(data);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("the CSV header cannot be read: {e}"))?
        .iter()
        .map(str::to_string)
        .collect();
    if header.iter().all(String::is_empty) {
        return Err("the upload has no header row".into());
    }
    let mut rows = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| format!("CSV row {}: {e}", i + 2))?;
        rows.push(row.iter().map(str::to_string).collect());
    }
    Ok((header, rows))
}

fn write_csv(header: &[String], rows: &[Vec<String>]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(Vec::new());
    writer.write_record(header).expect("writes to memory");
    for row in rows {
        writer.write_record(row).expect("writes to memory");
    }
    writer.into_inner().expect("writes to memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_id_lookup_query() {
        let s = parse_select("SELECT Id, Ebb_Id__c FROM Contact WHERE Ebb_Id__c IN ('a', 'b\\'c')")
            .unwrap();
        assert_eq!(s.fields, vec!["Id", "Ebb_Id__c"]);
        assert_eq!(s.object, "Contact");
        assert_eq!(s.filter, "Ebb_Id__c");
        assert_eq!(s.values, vec!["a", "b'c"]);
        assert!(parse_select("SELECT Id FROM Contact").is_none());
        assert_eq!(percent_decode("a%20b+c%27"), "a b c'");
    }

    #[test]
    fn values_are_checked_by_type() {
        assert!(check_value("Email", FieldType::Email, "a@b.io").is_ok());
        assert!(
            check_value("Email", FieldType::Email, "nope")
                .unwrap_err()
                .starts_with("INVALID_EMAIL_ADDRESS:")
        );
        assert!(check_value("MRR__c", FieldType::Number, "12.5").is_ok());
        assert!(check_value("MRR__c", FieldType::Number, "lots").is_err());
        assert!(check_value("D", FieldType::Date, "2026-02-30").is_ok());
        assert!(check_value("D", FieldType::Date, "2026-13-01").is_err());
    }
}
