//! HubSpot settings: the account (token, base URL) from `ebb.yml`, the object and its
//! unique property from the sync.

use std::time::Duration;

use ebb_core::Secret;
use ebb_core::config::project::DestinationConfig;

use crate::RateLimit;
use crate::http::{DEFAULT_TIMEOUT, parse_base_url};

pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";
/// Inputs in one batch request at most.
pub const MAX_BATCH_INPUTS: usize = 100;
/// Private apps on Professional and Enterprise accounts: 190 requests per 10 seconds.
pub const TEN_SECONDLY: RateLimit = RateLimit {
    requests: 190,
    per: Duration::from_secs(10),
};
/// Requests a day on Enterprise (Professional: 650,000).
pub const DAILY: RateLimit = RateLimit {
    requests: 1_000_000,
    per: Duration::from_secs(86_400),
};

#[derive(Debug, Clone)]
pub struct HubspotConfig {
    pub token: Secret,
    pub base_url: url::Url,
    pub timeout: Duration,
    /// `contacts`, `companies`, `deals`, or a custom object's type id.
    pub object_type: String,
    /// The unique property that finds a record (`email` for contacts, or a custom unique
    /// property), sent as `idProperty`.
    pub id_property: String,
    /// The account's limits: the 10-second limit of its tier and the daily limit.
    pub rate_limits: Vec<RateLimit>,
}

impl HubspotConfig {
    pub fn new(token: Secret, object_type: &str, id_property: &str) -> HubspotConfig {
        HubspotConfig {
            token,
            base_url: url::Url::parse(DEFAULT_BASE_URL).expect("a valid URL"),
            timeout: DEFAULT_TIMEOUT,
            object_type: object_type.to_string(),
            id_property: id_property.to_string(),
            rate_limits: vec![TEN_SECONDLY, DAILY],
        }
    }

    /// Reads the `hubspot` kind of a destination in `ebb.yml`; the sync names the object
    /// (`object:`) and its unique property (`match.destination`).
    pub fn from_config(
        config: &DestinationConfig,
        object_type: &str,
        id_property: &str,
    ) -> Result<HubspotConfig, String> {
        let DestinationConfig::Hubspot {
            token,
            base_url,
            timeout,
        } = config
        else {
            return Err(format!("destination is {}, not hubspot", config.kind()));
        };
        let mut out = HubspotConfig::new(token.clone(), object_type, id_property);
        if let Some(url) = base_url {
            out.base_url = parse_base_url("base_url", url)?;
        }
        if let Some(timeout) = timeout {
            out.timeout = timeout.0;
        }
        out.validate()?;
        Ok(out)
    }

    /// Checks the settings without I/O.
    pub fn validate(&self) -> Result<(), String> {
        if self.token.expose().trim().is_empty() {
            return Err("token is empty; set it to a private app's access token, e.g. token: ${HUBSPOT_TOKEN}".into());
        }
        if !is_internal_name(&self.object_type) && !is_custom_object_id(&self.object_type) {
            return Err(format!(
                "object \"{}\" is not a HubSpot object type; use e.g. contacts, companies, deals or a custom object id like 2-1234567",
                self.object_type
            ));
        }
        if !is_internal_name(&self.id_property) {
            return Err(format!(
                "match destination \"{}\" is not a property's internal name (lowercase letters, digits and _)",
                self.id_property
            ));
        }
        if self.rate_limits.iter().any(|l| l.requests == 0) {
            return Err("a rate limit allows no request".into());
        }
        Ok(())
    }
}

/// HubSpot's internal names: lowercase letters, digits and underscores, starting with a
/// letter.
pub fn is_internal_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_custom_object_id(name: &str) -> bool {
    name.split_once('-').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && (a.to_string() + b).chars().all(|c| c.is_ascii_digit())
    })
}
