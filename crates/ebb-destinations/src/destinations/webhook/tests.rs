use ebb_core::Secret;

use super::*;

fn record(key: &str) -> Record {
    Record {
        op: Operation::Upsert,
        key: key.into(),
        id: key.into(),
        fields: serde_json::json!({"email": format!("{key}@example.com")})
            .as_object()
            .unwrap()
            .clone(),
        idempotency_key: format!("sync:contacts:{key}:abc"),
    }
}

#[test]
fn signature_matches_the_spec_example() {
    // The example from the Standard Webhooks specification.
    let key = signing_key(&Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
    let body = br#"{"test": 2432232314}"#;
    let sig = signature(&[key], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
    assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

#[test]
fn signs_with_every_key_while_rotating() {
    let a = vec![1u8; 24];
    let b = vec![2u8; 24];
    let sig = signature(&[a.clone(), b], "msg_1", 1, b"{}");
    let parts: Vec<&str> = sig.split(' ').collect();
    assert_eq!(parts.len(), 2);
    assert!(parts.iter().all(|p| p.starts_with("v1,")));
    assert_eq!(parts[0], signature(&[a], "msg_1", 1, b"{}"));
}

#[test]
fn message_id_is_stable_and_depends_on_the_changes() {
    let a = [record("1"), record("2")];
    assert_eq!(message_id(&a), message_id(&a.clone()));
    assert_ne!(message_id(&a), message_id(&a[..1]));
}

#[test]
fn secrets_must_be_whsec_base64() {
    assert!(WebhookConfig::new("http://127.0.0.1:1/hook", vec![Secret::new("nope")]).is_err());
    assert!(WebhookConfig::new("http://127.0.0.1:1/hook", vec![Secret::new("whsec_!!")]).is_err());
    let err = WebhookConfig::new("ftp://x", vec![]).unwrap_err();
    assert!(err.contains("https://"), "{err}");
}

#[test]
fn batched_bodies_hold_every_change() {
    let v: serde_json::Value =
        serde_json::from_slice(&body(&[record("1"), record("2")], true)).unwrap();
    assert_eq!(v["type"], "ebb.changes");
    assert_eq!(v["data"]["changes"].as_array().unwrap().len(), 2);
    let v: serde_json::Value = serde_json::from_slice(&body(&[record("1")], false)).unwrap();
    assert_eq!(v["data"]["key"], "1");
}
