//! Salesforce settings: the org (instance URL, OAuth access token, API version) from
//! `ebb.yml`, the sObject and its external id field from the sync.

use std::time::Duration;

use ebb_core::Secret;
use ebb_core::config::project::DestinationConfig;

use crate::RateLimit;
use crate::http::{DEFAULT_TIMEOUT, parse_base_url};

pub const DEFAULT_API_VERSION: &str = "62.0";
/// Records in one ingest job: Salesforce processes a job in internal batches of 10,000
/// records, so a job of at most 10,000 spends one of the org's daily batches.
pub const MAX_JOB_RECORDS: usize = 10_000;
/// CSV bytes in one upload at most.
pub const MAX_UPLOAD_BYTES: usize = 100 * 1024 * 1024;
/// Records uploaded to ingest jobs in a rolling 24 hours.
pub const DAILY_RECORDS: u64 = 150_000_000;
/// API requests in a rolling 24 hours: an Enterprise org's base allocation (it grows with
/// licenses; set `rate_limits` to the org's figure from `/limits`).
pub const DAILY_API_REQUESTS: RateLimit = RateLimit {
    requests: 100_000,
    per: Duration::from_secs(86_400),
};
/// Ingest jobs a rolling 24 hours: the 15,000 daily batches, one per job of at most
/// [`MAX_JOB_RECORDS`] (so at most [`DAILY_RECORDS`] records).
pub const DAILY_JOBS: u32 = 15_000;
/// How long one job may take from creation to its last result.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct SalesforceConfig {
    /// The org's `instance_url` from the OAuth token response, e.g.
    /// `https://acme.my.salesforce.com`.
    pub instance_url: url::Url,
    /// An OAuth 2.0 access token, sent as `Authorization: Bearer`.
    pub token: Secret,
    /// `62.0` (a leading `v` is dropped).
    pub api_version: String,
    /// One HTTP request at most.
    pub timeout: Duration,
    /// The sObject, e.g. `Contact` or `Customer__c`.
    pub object: String,
    /// The external id field that finds a record (`externalIdFieldName`), or `Id`.
    pub external_id: String,
    /// The org's API request limits.
    pub rate_limits: Vec<RateLimit>,
    /// The first wait between job polls; it doubles up to two seconds.
    pub poll_interval: Duration,
    /// A job not finished by then is aborted and its batch retried.
    pub job_timeout: Duration,
}

impl SalesforceConfig {
    pub fn new(
        instance_url: &str,
        token: Secret,
        object: &str,
        external_id: &str,
    ) -> Result<SalesforceConfig, String> {
        let config = SalesforceConfig {
            instance_url: parse_base_url("instance_url", instance_url)?,
            token,
            api_version: DEFAULT_API_VERSION.into(),
            timeout: DEFAULT_TIMEOUT,
            object: object.to_string(),
            external_id: external_id.to_string(),
            rate_limits: vec![DAILY_API_REQUESTS],
            poll_interval: Duration::from_millis(200),
            job_timeout: DEFAULT_JOB_TIMEOUT,
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads the `salesforce` kind of a destination in `ebb.yml`; the sync names the
    /// sObject (`object:`) and its external id field (`match.destination`).
    pub fn from_config(
        config: &DestinationConfig,
        object: &str,
        external_id: &str,
    ) -> Result<SalesforceConfig, String> {
        let DestinationConfig::Salesforce {
            instance_url,
            token,
            api_version,
            timeout,
        } = config
        else {
            return Err(format!("destination is {}, not salesforce", config.kind()));
        };
        let mut out = SalesforceConfig::new(instance_url, token.clone(), object, external_id)?;
        if let Some(version) = api_version {
            out.api_version = version.trim_start_matches('v').to_string();
        }
        if let Some(t) = timeout {
            out.timeout = t.0;
        }
        out.validate()?;
        Ok(out)
    }

    /// Checks the settings without I/O.
    pub fn validate(&self) -> Result<(), String> {
        if self.token.expose().trim().is_empty() {
            return Err("token is empty; set it to an OAuth access token of the org, e.g. token: ${SALESFORCE_TOKEN}".into());
        }
        let version_ok = self
            .api_version
            .split_once('.')
            .is_some_and(|(major, minor)| {
                major.parse::<u32>().is_ok_and(|m| m >= 47) && minor == "0"
            });
        if !version_ok {
            return Err(format!(
                "api_version \"{}\" is not a Salesforce API version; write it like \"{DEFAULT_API_VERSION}\" (47.0 or later)",
                self.api_version
            ));
        }
        if !is_api_name(&self.object) {
            return Err(format!(
                "object \"{}\" is not an sObject API name; use e.g. Contact, Account or Customer__c",
                self.object
            ));
        }
        if !is_api_name(&self.external_id) {
            return Err(format!(
                "match destination \"{}\" is not a field API name; use Id or an external id field like Ebb_Id__c",
                self.external_id
            ));
        }
        if self.rate_limits.iter().any(|l| l.requests == 0) {
            return Err("a rate limit allows no request".into());
        }
        Ok(())
    }

    /// Whether records are found by their Salesforce record id (no external id).
    pub fn by_record_id(&self) -> bool {
        self.external_id.eq_ignore_ascii_case("Id")
    }
}

/// A Salesforce API name: a letter, then letters, digits and single underscores, with an
/// optional `__c` (custom) or namespace suffix.
pub fn is_api_name(name: &str) -> bool {
    let base = name
        .strip_suffix("__c")
        .or_else(|| name.strip_suffix("__C"))
        .unwrap_or(name);
    let base = base.split_once("__").map_or(base, |(ns, rest)| {
        if ns.is_empty() || rest.is_empty() {
            ""
        } else {
            rest
        }
    });
    let mut chars = base.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.clone().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !base.contains("__")
        && !base.ends_with('_')
}
