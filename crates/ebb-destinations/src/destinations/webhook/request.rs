//! Messages and their Standard Webhooks signatures.
//!
//! Every message carries `webhook-id` (the same on every retry of the same changes),
//! `webhook-timestamp` (Unix seconds when sent) and `webhook-signature`: for each key,
//! `v1,` and the base64 HMAC-SHA256 of `"{id}.{timestamp}.{body}"`, space-separated.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::Record;
use crate::http::fingerprint;

/// The message id: stable across retries because it is derived from the changes'
/// idempotency keys, never from the time or an attempt counter.
pub fn message_id(records: &[Record]) -> String {
    let keys: Vec<&str> = records.iter().map(|r| r.idempotency_key.as_str()).collect();
    format!("msg_{}", fingerprint(&keys))
}

/// One change as the receiver sees it.
pub fn event(record: &Record) -> Value {
    json!({
        "id": record.idempotency_key,
        "op": record.op.as_str(),
        "key": record.key,
        "record_id": record.id,
        "fields": record.fields,
    })
}

/// The body: `{"type":"ebb.change","data":{..}}` for one change, or
/// `{"type":"ebb.changes","data":{"changes":[..]}}` when batching.
pub fn body(records: &[Record], batched: bool) -> Vec<u8> {
    let payload = if batched {
        json!({
            "type": "ebb.changes",
            "data": { "changes": records.iter().map(event).collect::<Vec<_>>() },
        })
    } else {
        json!({ "type": "ebb.change", "data": event(&records[0]) })
    };
    serde_json::to_vec(&payload).expect("JSON values serialize")
}

/// The `webhook-signature` header: one `v1,<base64>` per key, space-separated.
pub fn signature(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key size");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}
