//! Webhook settings from `ebb.yml`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ebb_core::Secret;
use ebb_core::config::project::DestinationConfig;

use crate::RateLimit;
use crate::http::{DEFAULT_TIMEOUT, parse_base_url};

/// Changes in one POST at most when batching.
pub const MAX_BATCH_SIZE: usize = 1000;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: url::Url,
    /// `whsec_` keys; every one signs each message (several while a key is rotated).
    pub secrets: Vec<Secret>,
    /// Changes in one POST; 1 sends one message per change.
    pub batch_size: usize,
    pub timeout: Duration,
    /// The receiver's limit, if it has one (receivers publish none by default).
    pub rate_limit: Option<RateLimit>,
}

impl WebhookConfig {
    pub fn new(url: &str, secrets: Vec<Secret>) -> Result<WebhookConfig, String> {
        let config = WebhookConfig {
            url: parse_base_url("url", url)?,
            secrets,
            batch_size: 1,
            timeout: DEFAULT_TIMEOUT,
            rate_limit: None,
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads the `webhook` kind of a destination in `ebb.yml`.
    pub fn from_config(config: &DestinationConfig) -> Result<WebhookConfig, String> {
        let DestinationConfig::Webhook {
            url,
            secret,
            secrets,
            batch_size,
            timeout,
        } = config
        else {
            return Err(format!("destination is {}, not webhook", config.kind()));
        };
        let mut all: Vec<Secret> = secret.iter().cloned().collect();
        all.extend(secrets.iter().cloned());
        let mut out = WebhookConfig::new(url, all)?;
        if let Some(size) = batch_size {
            out.batch_size = *size as usize;
        }
        if let Some(timeout) = timeout {
            out.timeout = timeout.0;
        }
        out.validate()?;
        Ok(out)
    }

    /// Checks the settings without I/O.
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return Err(format!(
                "batch_size {} is out of range; write a number from 1 to {MAX_BATCH_SIZE}",
                self.batch_size
            ));
        }
        for (i, secret) in self.secrets.iter().enumerate() {
            signing_key(secret).map_err(|e| format!("secret {}: {e}", i + 1))?;
        }
        Ok(())
    }
}

/// The HMAC key of a `whsec_` secret: the base64-decoded part after the prefix.
pub fn signing_key(secret: &Secret) -> Result<Vec<u8>, String> {
    let Some(encoded) = secret.expose().strip_prefix("whsec_") else {
        return Err("a signing secret starts with \"whsec_\" followed by base64".into());
    };
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| "the part after \"whsec_\" is not base64".to_string())?;
    if key.len() < 16 {
        return Err(format!(
            "the signing key is {} bytes; use at least 16 (24 to 64 is usual)",
            key.len()
        ));
    }
    Ok(key)
}
