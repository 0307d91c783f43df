//! The OpenAPI 3.1 document of the API, served at `/v1/openapi.json`. It is written by hand
//! next to the handlers; `tests/main.rs` runs schemathesis against it, which fails on any
//! response that is not in it.

use serde_json::{Value, json};

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn page_of(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": reference(item)},
            "next_cursor": {"type": ["string", "null"], "description": "Pass as `cursor` for the next page; null on the last page."}
        }
    })
}

/// An operation that needs a token; `responses` are its successes, the errors every
/// authenticated route can answer are added.
fn op(
    summary: &str,
    scope: &str,
    params: Value,
    body: Option<Value>,
    responses: Value,
    extra_errors: &[(&str, &str)],
) -> Value {
    let mut responses = responses.as_object().cloned().unwrap_or_default();
    for (code, what) in [
        ("400", "The query, path or body is malformed."),
        ("401", "No valid token."),
        ("403", "The token lacks the scope."),
    ] {
        responses.insert(code.into(), problem_response(what));
    }
    for (code, what) in extra_errors {
        responses.insert((*code).into(), problem_response(what));
    }
    let mut op = json!({
        "summary": summary,
        "description": format!("Needs the `{scope}` scope (or `admin`)."),
        "security": [{"bearer": []}],
        "parameters": params,
        "responses": responses,
    });
    if let Some(schema) = body {
        op["requestBody"] = json!({
            "required": false,
            "content": {"application/json": {"schema": schema}}
        });
    }
    op
}

fn path_name(what: &str) -> Value {
    json!({"name": "name", "in": "path", "required": true, "description": what, "schema": {"type": "string"}})
}

fn path_id(what: &str) -> Value {
    json!({"name": "id", "in": "path", "required": true, "description": what, "schema": {"type": "integer", "format": "int64"}})
}

fn idempotency_key() -> Value {
    json!({
        "name": "Idempotency-Key", "in": "header", "required": false,
        "description": "Makes the POST safe to retry: a repeat with the same body gets the first response; 409 while the first is in flight; 422 if reused with another body.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255}
    })
}

/// `cursor` and `limit`; `numeric`: the cursor is an id (runs, events, audit entries).
fn paging(numeric: bool) -> Vec<Value> {
    let cursor = if numeric {
        json!({"type": "string", "pattern": "^-?[0-9]{1,18}$"})
    } else {
        json!({"type": "string"})
    };
    vec![
        json!({"name": "cursor", "in": "query", "required": false, "schema": cursor, "description": "`next_cursor` of the previous page."}),
        json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}),
    ]
}

fn empty_body() -> Value {
    json!({"type": "object", "additionalProperties": false})
}

/// The document.
pub fn document() -> Value {
    let not_found = ("404", "No such resource in the caller's tenant.");
    let unprocessable = (
        "422",
        "The body is well-formed JSON of the wrong shape, or names something that does not exist.",
    );
    let in_flight = (
        "409",
        "A request with this Idempotency-Key is in flight, or the resource is in a state that forbids it.",
    );
    let mut runs_params = paging(true);
    runs_params.push(
        json!({"name": "sync", "in": "query", "required": false, "schema": {"type": "string"}}),
    );
    runs_params.push(json!({"name": "status", "in": "query", "required": false, "schema": {"type": "string", "enum": ["queued", "running", "succeeded", "partial", "failed", "cancelled"]}}));
    let mut dlq_params = paging(false);
    dlq_params.push(
        json!({"name": "sync", "in": "query", "required": false, "schema": {"type": "string"}}),
    );

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ebb",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Syncs, runs, the dead-letter queue, events and metrics of an ebb project. Every /v1 route but this document needs `Authorization: Bearer <token>`; a token belongs to one tenant and sees only that tenant's resources. Errors are application/problem+json."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"}, "title": {"type": "string"},
                        "status": {"type": "integer"}, "detail": {"type": "string"}
                    }
                },
                "RunCounts": {
                    "type": "object",
                    "required": ["planned", "inserted", "updated", "deleted", "accepted", "rejected", "retried", "skipped_bad_keys"],
                    "properties": {
                        "planned": {"type": "integer"}, "inserted": {"type": "integer"},
                        "updated": {"type": "integer"}, "deleted": {"type": "integer"},
                        "accepted": {"type": "integer"}, "rejected": {"type": "integer"},
                        "retried": {"type": "integer"}, "skipped_bad_keys": {"type": "integer"}
                    }
                },
                "Run": {
                    "type": "object",
                    "required": ["id", "tenant", "sync", "kind", "trigger", "status", "counts", "created_at", "started_at", "finished_at", "error", "worker", "lease_expires_at", "attempts"],
                    "properties": {
                        "id": {"type": "integer"},
                        "tenant": {"type": "string"},
                        "sync": {"type": "string"},
                        "kind": {"type": "string", "enum": ["sync", "cdc", "identity"]},
                        "trigger": {"type": "string", "enum": ["manual", "schedule", "after", "api"]},
                        "status": {"type": "string", "enum": ["queued", "running", "succeeded", "partial", "failed", "cancelled"]},
                        "counts": reference("RunCounts"),
                        "created_at": {"type": "integer", "description": "Unix milliseconds."},
                        "started_at": {"type": ["integer", "null"]},
                        "finished_at": {"type": ["integer", "null"]},
                        "error": {"type": ["string", "null"]},
                        "worker": {"type": ["string", "null"]},
                        "lease_expires_at": {"type": ["integer", "null"]},
                        "attempts": {"type": "integer"}
                    }
                },
                "LogEntry": {
                    "type": "object",
                    "required": ["id", "run_id", "at", "level", "message", "sample"],
                    "properties": {
                        "id": {"type": "integer"}, "run_id": {"type": "integer"}, "at": {"type": "integer"},
                        "level": {"type": "string", "enum": ["debug", "info", "warn", "error"]},
                        "message": {"type": "string"},
                        "sample": {"description": "A redacted sample record, or null."}
                    }
                },
                "Sync": {
                    "type": "object",
                    "required": ["name", "tenant", "destination", "enabled", "paused", "schedule", "latest_run"],
                    "properties": {
                        "name": {"type": "string"},
                        "tenant": {"type": "string"},
                        "description": {"type": ["string", "null"]},
                        "model": {"type": ["string", "null"]},
                        "metric": {"type": ["string", "null"]},
                        "destination": {"type": "string"},
                        "mode": {"type": ["string", "null"], "enum": ["upsert", "update", "insert", "mirror", "archive", null]},
                        "schedule": {
                            "type": ["object", "null"],
                            "properties": {
                                "cron": {"type": ["string", "null"]},
                                "every_seconds": {"type": ["integer", "null"]},
                                "after": {"type": ["string", "null"]}
                            }
                        },
                        "enabled": {"type": "boolean"},
                        "paused": {"type": "boolean", "description": "Paused syncs are not fired by their schedule; triggers still run them."},
                        "latest_run": {"oneOf": [reference("Run"), {"type": "null"}]}
                    }
                },
                "QueuedRun": {
                    "type": "object",
                    "required": ["run", "created"],
                    "properties": {
                        "run": reference("Run"),
                        "created": {"type": "boolean", "description": "False when the sync already had a queued run: the trigger is folded into it."}
                    }
                },
                "DryRun": {
                    "type": "object",
                    "required": ["sync", "rows_read", "inserts", "updates", "deletes", "unchanged", "planned", "bad_keys", "samples"],
                    "properties": {
                        "sync": {"type": "string"},
                        "rows_read": {"type": "integer"}, "inserts": {"type": "integer"},
                        "updates": {"type": "integer"}, "deletes": {"type": "integer"},
                        "unchanged": {"type": "integer"}, "planned": {"type": "integer"},
                        "bad_keys": {"type": "object"},
                        "samples": {"type": "array", "items": {"type": "object"}}
                    }
                },
                "DeadLetter": {
                    "type": "object",
                    "required": ["tenant", "sync", "record", "reason", "failures", "first_failed_at", "last_failed_at"],
                    "properties": {
                        "tenant": {"type": "string"}, "sync": {"type": "string"},
                        "record": {"type": "object"},
                        "reason": {"type": "string"},
                        "field": {"type": ["string", "null"]},
                        "failures": {"type": "integer"},
                        "first_failed_at": {"type": "integer", "description": "Unix seconds."},
                        "last_failed_at": {"type": "integer"}
                    }
                },
                "Event": {
                    "type": "object",
                    "required": ["id", "tenant", "topic", "payload", "created_at", "relayed_at"],
                    "properties": {
                        "id": {"type": "integer"}, "tenant": {"type": "string"}, "topic": {"type": "string"},
                        "payload": {}, "created_at": {"type": "integer"},
                        "relayed_at": {"type": ["integer", "null"]}
                    }
                },
                "Token": {
                    "type": "object",
                    "required": ["id", "tenant", "scopes", "created_at", "revoked_at"],
                    "properties": {
                        "id": {"type": "integer"}, "tenant": {"type": "string"},
                        "scopes": {"type": "array", "items": {"type": "string"}},
                        "created_at": {"type": "integer"}, "revoked_at": {"type": ["integer", "null"]}
                    }
                },
                "NewToken": {
                    "type": "object",
                    "required": ["id", "tenant", "scopes", "token"],
                    "properties": {
                        "id": {"type": "integer"}, "tenant": {"type": "string"},
                        "scopes": {"type": "array", "items": {"type": "string"}},
                        "token": {"type": "string", "description": "The plaintext, shown this once."}
                    }
                },
                "AuditEntry": {
                    "type": "object",
                    "required": ["id", "at", "tenant", "actor", "action", "target", "details"],
                    "properties": {
                        "id": {"type": "integer"}, "at": {"type": "integer"}, "tenant": {"type": "string"},
                        "actor": {"type": "string"}, "action": {"type": "string"}, "target": {"type": "string"},
                        "details": {}
                    }
                },
                "MetricsQuery": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["metrics"],
                    "properties": {
                        "metrics": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        "group_by": {"type": "array", "items": {"type": "string"}},
                        "grain": {"type": ["string", "null"], "enum": ["day", "week", "month", "quarter", "year", null]},
                        "where": {"type": ["string", "null"], "description": "A condition over dimensions, e.g. account__region = 'EMEA'."},
                        "order": {"type": "array", "items": {"type": "string"}},
                        "limit": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000000}
                    }
                },
                "MetricsResult": {
                    "type": "object",
                    "required": ["columns", "rows"],
                    "properties": {
                        "columns": {"type": "array", "items": {"type": "string"}},
                        "rows": {"type": "array", "items": {"type": "array"}}
                    }
                }
            }
        },
        "paths": {
            "/healthz": {"get": {
                "summary": "Liveness: the process answers.",
                "responses": {"200": ok("Alive.", json!({"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}))}
            }},
            "/readyz": {"get": {
                "summary": "Readiness: the state store answers and the process is not shutting down.",
                "responses": {
                    "200": ok("Ready.", json!({"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}, "state_store": {"type": "string"}, "schema_version": {"type": "integer"}}})),
                    "503": problem_response("Not ready.")
                }
            }},
            "/metrics": {"get": {
                "summary": "Prometheus metrics: runs, records, throttles, DLQ depth, slot lag, HTTP.",
                "responses": {"200": {"description": "Text exposition format.", "content": {"text/plain": {"schema": {"type": "string"}}}}}
            }},
            "/v1/openapi.json": {"get": {
                "summary": "This document.",
                "responses": {"200": ok("The OpenAPI document.", json!({"type": "object"}))}
            }},
            "/v1/syncs": {"get": op("The tenant's syncs, each with its latest run.", "syncs:read", json!([]), None,
                json!({"200": ok("Syncs.", page_of("Sync"))}), &[])},
            "/v1/syncs/{name}": {"get": op("One sync.", "syncs:read", json!([path_name("The sync's name.")]), None,
                json!({"200": ok("The sync.", reference("Sync"))}), &[not_found])},
            "/v1/syncs/{name}/trigger": {"post": op("Queue a run of the sync (once: a trigger while one is queued returns that run).", "syncs:write",
                json!([path_name("The sync's name."), idempotency_key()]), Some(empty_body()),
                json!({"202": ok("The queued run.", reference("QueuedRun"))}), &[not_found, in_flight, unprocessable])},
            "/v1/syncs/{name}/dry-run": {"post": op("Diff the sync's model now and show what a run would send; nothing is written.", "syncs:write",
                json!([path_name("The sync's name.")]),
                Some(json!({"type": "object", "additionalProperties": false, "properties": {"samples": {"type": ["integer", "null"], "minimum": 0, "maximum": 100}}})),
                json!({"200": ok("Counts and sample payloads.", reference("DryRun"))}), &[not_found, unprocessable])},
            "/v1/syncs/{name}/pause": {"post": op("Stop the sync's schedule from firing (audited).", "syncs:write",
                json!([path_name("The sync's name.")]), None,
                json!({"200": ok("The sync.", reference("Sync"))}), &[not_found])},
            "/v1/syncs/{name}/resume": {"post": op("Let the sync's schedule fire again (audited).", "syncs:write",
                json!([path_name("The sync's name.")]), None,
                json!({"200": ok("The sync.", reference("Sync"))}), &[not_found])},
            "/v1/runs": {"get": op("The tenant's runs, newest first.", "runs:read", Value::Array(runs_params), None,
                json!({"200": ok("A page of runs.", page_of("Run"))}), &[])},
            "/v1/runs/{id}": {"get": op("One run with its log.", "runs:read", json!([path_id("The run's id.")]), None,
                json!({"200": ok("The run.", json!({"type": "object", "required": ["run", "log"], "properties": {"run": reference("Run"), "log": {"type": "array", "items": reference("LogEntry")}}}))}), &[not_found])},
            "/v1/runs/{id}/cancel": {"post": op("Cancel a queued or running run (audited).", "runs:write",
                json!([path_id("The run's id."), idempotency_key()]), Some(empty_body()),
                json!({"200": ok("The cancelled run.", reference("Run"))}), &[not_found, in_flight, unprocessable])},
            "/v1/dlq": {"get": op("The tenant's dead letters: records a destination refused.", "dlq:read", Value::Array(dlq_params), None,
                json!({"200": ok("A page of dead letters.", page_of("DeadLetter"))}), &[])},
            "/v1/dlq/{name}/retry": {"post": op("Queue a run of the sync that retries its dead letters first (audited).", "dlq:write",
                json!([path_name("The sync's name."), idempotency_key()]), Some(empty_body()),
                json!({"202": ok("The queued run.", reference("QueuedRun"))}), &[not_found, in_flight, unprocessable])},
            "/v1/events": {"get": op("Replay the tenant's events (run results, ...) after a cursor, oldest first.", "events:read", Value::Array(paging(true)), None,
                json!({"200": ok("Events; poll again with next_cursor.", page_of("Event"))}), &[])},
            "/v1/metrics/query": {"post": op("Query semantic metrics: the numbers `ebb metrics query` gives.", "metrics:read",
                json!([]), Some(reference("MetricsQuery")),
                json!({"200": ok("Columns and rows.", reference("MetricsResult"))}), &[unprocessable])},
            "/v1/tokens": {
                "get": op("The tenant's API tokens (never their plaintext).", "admin", json!([]), None,
                    json!({"200": ok("Tokens.", page_of("Token"))}), &[]),
                "post": op("Create a token for the tenant (audited). Its plaintext is in the answer only.", "admin",
                    json!([idempotency_key()]),
                    Some(json!({"type": "object", "additionalProperties": false, "required": ["scopes"], "properties": {"scopes": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": ["syncs:read", "syncs:write", "runs:read", "runs:write", "dlq:read", "dlq:write", "events:read", "metrics:read", "admin"]}}}})),
                    json!({"201": ok("The new token.", reference("NewToken"))}), &[in_flight, unprocessable])
            },
            "/v1/tokens/{id}": {"delete": op("Revoke a token (audited).", "admin", json!([path_id("The token's id.")]), None,
                json!({"204": {"description": "Revoked."}}), &[not_found])},
            "/v1/audit": {"get": op("The tenant's audit log, newest first.", "admin", Value::Array(paging(true)), None,
                json!({"200": ok("A page of audit entries.", page_of("AuditEntry"))}), &[])}
        }
    })
}
