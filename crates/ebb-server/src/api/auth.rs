//! Bearer tokens and scopes.
//!
//! Every `/v1` route but the OpenAPI document needs `Authorization: Bearer ebb_...`. A token
//! belongs to one tenant and carries scopes; the store keeps only its SHA-256. A request sees
//! only its tenant's syncs, runs, dead letters, events, tokens and audit log: another
//! tenant's resource answers 404, exactly as one that does not exist, so ids and names of
//! other tenants cannot be probed.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use ebb_state::TokenGrant;

use super::AppState;
use super::problem::Problem;

/// What a token may do. `admin` grants every other scope too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    SyncsRead,
    /// Trigger, dry-run, pause and resume syncs.
    SyncsWrite,
    RunsRead,
    /// Cancel runs.
    RunsWrite,
    DlqRead,
    /// Retry dead letters.
    DlqWrite,
    EventsRead,
    MetricsRead,
    /// Tokens and the audit log.
    Admin,
}

impl Scope {
    pub const ALL: &'static [Scope] = &[
        Scope::SyncsRead,
        Scope::SyncsWrite,
        Scope::RunsRead,
        Scope::RunsWrite,
        Scope::DlqRead,
        Scope::DlqWrite,
        Scope::EventsRead,
        Scope::MetricsRead,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::SyncsRead => "syncs:read",
            Scope::SyncsWrite => "syncs:write",
            Scope::RunsRead => "runs:read",
            Scope::RunsWrite => "runs:write",
            Scope::DlqRead => "dlq:read",
            Scope::DlqWrite => "dlq:write",
            Scope::EventsRead => "events:read",
            Scope::MetricsRead => "metrics:read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.iter().copied().find(|scope| scope.as_str() == s)
    }
}

/// The caller: a verified token's tenant and scopes.
#[derive(Debug, Clone)]
pub struct Caller(pub TokenGrant);

impl Caller {
    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }

    /// `token:ID`, as the audit log names actors.
    pub fn actor(&self) -> String {
        format!("token:{}", self.0.id)
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.0
            .scopes
            .iter()
            .any(|s| s == scope.as_str() || s == Scope::Admin.as_str())
    }

    /// 403 unless the token has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), Problem> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this token lacks the scope \"{}\"; create one that has it (ebb tokens create --scope {})",
                scope.as_str(),
                scope.as_str()
            )))
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Problem> {
        let missing = || {
            Problem::unauthorized(
                "send an API token as `Authorization: Bearer ebb_...` (create one with `ebb tokens create`)",
            )
        };
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(missing)?
            .to_str()
            .map_err(|_| missing())?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(missing)?;
        match state.store.verify_token(token).await {
            Ok(Some(grant)) => Ok(Caller(grant)),
            Ok(None) => Err(Problem::unauthorized(
                "the API token is not valid or was revoked",
            )),
            Err(err) => Err(Problem::internal(err)),
        }
    }
}
