//! Request extractors whose rejections are problems: axum's own answer a malformed query,
//! path or body in `text/plain`, which the OpenAPI document does not promise.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::problem::Problem;

/// `Query<T>` answering a bad query string with a 400 problem.
#[derive(Debug)]
pub struct Q<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Q(v)),
            Err(err) => Err(Problem::bad_request(query_message(&err))),
        }
    }
}

fn query_message(err: &QueryRejection) -> String {
    format!("the query string is not valid: {}", err.body_text())
}

/// `Path<T>` answering a bad path parameter with a 400 problem.
#[derive(Debug)]
pub struct P<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for P<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(P(v)),
            Err(err) => Err(Problem::bad_request(path_message(&err))),
        }
    }
}

fn path_message(err: &PathRejection) -> String {
    format!("a path parameter is not valid: {}", err.body_text())
}

/// Parses a JSON request body (already read, so its bytes can be hashed for
/// `Idempotency-Key`). An empty body is `{}`.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        let message =
            format!("the request body is not valid: {e}; see /v1/openapi.json for its schema");
        match e.classify() {
            // Well-formed JSON of the wrong shape.
            serde_json::error::Category::Data => Problem::unprocessable(message),
            _ => Problem::bad_request(message),
        }
    })
}
