//! `Idempotency-Key` on POSTs, as payment APIs do it: the first request with a key is
//! handled and its response kept; a repeat with the same body gets that response again
//! (nothing is done twice); a repeat while the first is still being handled gets 409; a
//! repeat with another body gets 422. Keys are per tenant. A response of 500 or more is not
//! kept (the key is freed, so the client's retry is handled as new).

use std::future::Future;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ebb_state::{Idempotency, StoredResponse};
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth::Caller;
use super::problem::{PROBLEM_JSON, Problem};

pub const HEADER: &str = "idempotency-key";

/// A handler's answer before it becomes a response: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

impl Answer {
    pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Answer {
        Answer {
            status,
            body: serde_json::to_string(value).unwrap_or_else(|_| "{}".into()),
        }
    }
}

impl From<Problem> for Answer {
    fn from(p: Problem) -> Answer {
        Answer {
            status: p.status_code(),
            body: p.body(),
        }
    }
}

fn respond(status: StatusCode, body: String, replayed: bool) -> Response {
    let kind = if status.is_success() {
        "application/json"
    } else {
        PROBLEM_JSON
    };
    let mut response = (status, Body::from(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Runs `handle` at most once per (tenant, `Idempotency-Key`); without the header it just
/// runs it.
pub async fn once<F, Fut>(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    method_and_path: &str,
    body: &[u8],
    handle: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Answer>,
{
    let Some(key) = headers.get(HEADER) else {
        let answer = handle().await;
        return respond(answer.status, answer.body, false);
    };
    let key = match key.to_str() {
        Ok(k) if !k.trim().is_empty() && k.len() <= 255 => k.trim(),
        _ => {
            return Problem::bad_request(
                "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID, say)",
            )
            .into_response();
        }
    };
    let mut hasher = Sha256::new();
    hasher.update(method_and_path.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    let hash: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match state
        .store
        .begin_idempotent(caller.tenant(), key, &hash)
        .await
    {
        Err(err) => Problem::from(err).into_response(),
        Ok(Idempotency::InFlight) => Problem::conflict(
            "a request with this Idempotency-Key is still being handled; retry after it finishes",
        )
        .into_response(),
        Ok(Idempotency::Mismatch) => Problem::unprocessable(
            "this Idempotency-Key was used with another request; use a new key for a new request",
        )
        .into_response(),
        Ok(Idempotency::Done(stored)) => respond(
            StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK),
            stored.body,
            true,
        ),
        Ok(Idempotency::New) => {
            let answer = handle().await;
            let kept = if answer.status.is_server_error() {
                state.store.abandon_idempotent(caller.tenant(), key).await
            } else {
                state
                    .store
                    .complete_idempotent(
                        caller.tenant(),
                        key,
                        &StoredResponse {
                            status: answer.status.as_u16(),
                            body: answer.body.clone(),
                        },
                    )
                    .await
            };
            if let Err(err) = kept {
                tracing::warn!(error = %err, "the idempotency key's response was not stored");
            }
            respond(answer.status, answer.body, false)
        }
    }
}
