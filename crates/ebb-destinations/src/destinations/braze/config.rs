//! Braze settings from `ebb.yml`: the REST endpoint of the workspace's cluster and its API
//! key.

use std::time::Duration;

use ebb_core::Secret;
use ebb_core::config::project::DestinationConfig;

use crate::RateLimit;
use crate::http::{DEFAULT_TIMEOUT, parse_base_url};

/// Attribute objects in one `/users/track` request at most.
pub const MAX_OBJECTS: usize = 75;
/// `/users/track`'s documented limit: 50,000 requests a minute per workspace.
pub const USERS_TRACK: RateLimit = RateLimit {
    requests: 50_000,
    per: Duration::from_secs(60),
};

#[derive(Debug, Clone)]
pub struct BrazeConfig {
    /// The cluster's REST endpoint, e.g. `https://rest.iad-01.braze.com`.
    pub base_url: url::Url,
    pub api_key: Secret,
    pub timeout: Duration,
    pub rate_limit: RateLimit,
}

impl BrazeConfig {
    pub fn new(base_url: &str, api_key: Secret) -> Result<BrazeConfig, String> {
        let config = BrazeConfig {
            base_url: parse_base_url("base_url", base_url)?,
            api_key,
            timeout: DEFAULT_TIMEOUT,
            rate_limit: USERS_TRACK,
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads the `braze` kind of a destination in `ebb.yml`.
    pub fn from_config(config: &DestinationConfig) -> Result<BrazeConfig, String> {
        let DestinationConfig::Braze {
            base_url,
            api_key,
            timeout,
        } = config
        else {
            return Err(format!("destination is {}, not braze", config.kind()));
        };
        let mut out = BrazeConfig::new(base_url, api_key.clone())?;
        if let Some(t) = timeout {
            out.timeout = t.0;
        }
        Ok(out)
    }

    /// Checks the settings without I/O.
    pub fn validate(&self) -> Result<(), String> {
        if self.api_key.expose().trim().is_empty() {
            return Err("api_key is empty; set it to a REST API key with users.track, e.g. api_key: ${BRAZE_API_KEY}".into());
        }
        if self.rate_limit.requests == 0 {
            return Err("the rate limit allows no request".into());
        }
        Ok(())
    }
}
