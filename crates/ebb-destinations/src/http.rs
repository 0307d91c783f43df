//! What HTTP destinations share: a base URL and timeout, one client, and turning HTTP
//! answers and transport failures into a retry class.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};

use crate::DestinationError;

/// The default time one request may take, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the client an HTTP destination uses (rustls, the same TLS stack as object_store).
pub fn client(timeout: Duration) -> Result<reqwest::Client, DestinationError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("ebb/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| DestinationError::Fatal {
            reason: format!("cannot build the HTTP client: {e}"),
        })
}

/// Parses a URL from config, with the fix in the message.
pub fn parse_base_url(what: &str, value: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(value).map_err(|e| {
        format!("{what} \"{value}\" is not a URL ({e}); write it as https://host[:port][/path]")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{what} \"{value}\" must start with https:// (or http:// for a local endpoint)"
        ));
    }
    Ok(url)
}

/// Joins `path` (no leading slash) to a base URL, keeping the base's own path.
pub fn join(base: &url::Url, path: &str) -> url::Url {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the APIs ebb talks to and
/// reads as absent).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// A header's value as an integer.
pub fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// A transport failure (connect, timeout, dropped connection, unreadable body) is
/// retryable: the destination may or may not have applied the request.
pub fn transport_error(err: reqwest::Error) -> DestinationError {
    let what = if err.is_timeout() {
        "request timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "connection failed"
    };
    DestinationError::Retryable {
        after: None,
        reason: what.to_string(),
        source: Some(Box::new(err)),
    }
}

/// The retry class of a non-success status for which the API has no more specific meaning.
pub fn status_error(status: StatusCode, headers: &HeaderMap, body: &str) -> DestinationError {
    let reason = format!("HTTP {status}: {}", excerpt(body));
    match status.as_u16() {
        429 => DestinationError::Throttled {
            after: retry_after(headers),
            policy: None,
        },
        408 | 425 | 500..=599 => DestinationError::Retryable {
            after: retry_after(headers),
            reason,
            source: None,
        },
        401 | 403 | 404 | 405 | 410 => DestinationError::Fatal { reason },
        _ => DestinationError::Rejected {
            reason,
            field: None,
        },
    }
}

/// The start of a response body, for messages (bodies are the API's words, not row values).
pub fn excerpt(body: &str) -> String {
    const MAX: usize = 300;
    let body = body.trim();
    if body.len() <= MAX {
        return body.to_string();
    }
    let mut end = MAX;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

/// A short stable fingerprint (hex SHA-256 prefix) of the parts, for account ids and
/// message ids. Parts are length-prefixed so `("ab","c")` and `("a","bc")` differ.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_paths_under_the_base_path() {
        let base = url::Url::parse("http://127.0.0.1:9/proxy/").unwrap();
        assert_eq!(
            join(&base, "crm/v3/objects/contacts/batch/upsert").as_str(),
            "http://127.0.0.1:9/proxy/crm/v3/objects/contacts/batch/upsert"
        );
    }

    #[test]
    fn classifies_statuses() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert!(matches!(
            status_error(StatusCode::TOO_MANY_REQUESTS, &h, ""),
            DestinationError::Throttled { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            status_error(StatusCode::BAD_GATEWAY, &HeaderMap::new(), ""),
            DestinationError::Retryable { .. }
        ));
        assert!(matches!(
            status_error(StatusCode::UNAUTHORIZED, &HeaderMap::new(), ""),
            DestinationError::Fatal { .. }
        ));
        assert!(matches!(
            status_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), ""),
            DestinationError::Rejected { .. }
        ));
    }

    #[test]
    fn fingerprints_keep_part_boundaries() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["x"]).len(), 32);
    }
}
