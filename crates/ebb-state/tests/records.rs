//! Checkpoints, the audit log, API tokens and idempotency keys.

use ebb_state::{Idempotency, StoredResponse};
use serde_json::json;

use crate::contract;
use crate::support::Fixture;

async fn checkpoints_are_replaced_and_keep_full_lsns(f: Fixture) {
    let store = f.open().await;
    assert_eq!(store.get_checkpoint("orders").await.unwrap(), None);
    store
        .put_checkpoint("orders", 0x16_B374_D848, &json!({"slot": "ebb_orders"}))
        .await
        .unwrap();
    let cp = store.get_checkpoint("orders").await.unwrap().unwrap();
    assert_eq!((cp.name.as_str(), cp.lsn), ("orders", 0x16_B374_D848));
    assert_eq!(cp.detail, json!({"slot": "ebb_orders"}));
    // The top bit of a u64 survives the signed column.
    let big = 0xFFFF_FFFF_0000_0001_u64;
    store
        .put_checkpoint("orders", big, &json!({"slot": "ebb_orders", "tables": 3}))
        .await
        .unwrap();
    let cp = store.get_checkpoint("orders").await.unwrap().unwrap();
    assert_eq!(cp.lsn, big);
    assert_eq!(cp.detail["tables"], json!(3));
    assert_eq!(store.get_checkpoint("other").await.unwrap(), None);
    // Durable: a new handle reads it.
    let again = f.open().await;
    assert_eq!(
        again.get_checkpoint("orders").await.unwrap().unwrap().lsn,
        big
    );
}

async fn the_audit_log_pages_newest_first_per_tenant(f: Fixture) {
    let store = f.open().await;
    for i in 0..7 {
        store
            .audit(
                "acme",
                "token:1",
                "sync.trigger",
                &format!("sync:s{i}"),
                &json!({"i": i}),
            )
            .await
            .unwrap();
    }
    store
        .audit("globex", "cli", "token.create", "token:9", &json!({}))
        .await
        .unwrap();
    let first = store.audit_list("acme", None, 4).await.unwrap();
    assert_eq!(first.items.len(), 4);
    assert_eq!(first.items[0].target, "sync:s6");
    assert_eq!(first.items[0].details, json!({"i": 6}));
    assert_eq!(first.items[0].actor, "token:1");
    let second = store
        .audit_list("acme", first.next_cursor.as_deref(), 4)
        .await
        .unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|a| a.target.as_str())
            .collect::<Vec<_>>(),
        ["sync:s2", "sync:s1", "sync:s0"]
    );
    assert_eq!(second.next_cursor, None);
    let globex = store.audit_list("globex", None, 10).await.unwrap();
    assert_eq!(globex.items.len(), 1);
    assert_eq!(globex.items[0].action, "token.create");
}

async fn tokens_are_stored_hashed_and_scoped_to_their_tenant(f: Fixture) {
    let store = f.open().await;
    let scopes = vec!["runs:read".to_string(), "syncs:trigger".to_string()];
    let token = store.create_token("acme", &scopes).await.unwrap();
    assert!(token.plaintext.starts_with("ebb_"));
    let other = store.create_token("globex", &[]).await.unwrap();
    assert_ne!(token.plaintext, other.plaintext);

    let grant = store.verify_token(&token.plaintext).await.unwrap().unwrap();
    assert_eq!((grant.id, grant.tenant.as_str()), (token.id, "acme"));
    assert_eq!(grant.scopes, scopes);
    assert_eq!(store.verify_token("ebb_wrong").await.unwrap(), None);
    let mut tampered = token.plaintext.clone();
    tampered.push('x');
    assert_eq!(store.verify_token(&tampered).await.unwrap(), None);

    // Only hashes are stored: 64 hex digits, never the plaintext.
    let stored = f
        .count(&format!(
            "SELECT COUNT(*) FROM api_tokens WHERE token_hash = '{}'",
            token.plaintext
        ))
        .await;
    assert_eq!(stored, 0);
    let hashed = f
        .count("SELECT COUNT(*) FROM api_tokens WHERE length(token_hash) = 64")
        .await;
    assert_eq!(hashed, 2);
    let listed = store.list_tokens("acme").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!format!("{listed:?}").contains(&token.plaintext));

    // Another tenant cannot revoke it; its own tenant can.
    assert!(!store.revoke_token("globex", token.id).await.unwrap());
    assert!(
        store
            .verify_token(&token.plaintext)
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.revoke_token("acme", token.id).await.unwrap());
    assert_eq!(store.verify_token(&token.plaintext).await.unwrap(), None);
    assert!(!store.revoke_token("acme", token.id).await.unwrap());
    assert!(
        store.list_tokens("acme").await.unwrap()[0]
            .revoked_at
            .is_some()
    );
    assert!(
        store
            .verify_token(&other.plaintext)
            .await
            .unwrap()
            .is_some()
    );
}

async fn idempotency_keys_answer_new_in_flight_done_or_mismatch(f: Fixture) {
    let store = f.open().await;
    let begin = |key: &'static str, hash: &'static str| {
        let store = store.clone();
        async move { store.begin_idempotent("acme", key, hash).await.unwrap() }
    };
    assert_eq!(begin("k1", "h1").await, Idempotency::New);
    assert_eq!(begin("k1", "h1").await, Idempotency::InFlight);
    assert_eq!(begin("k1", "h2").await, Idempotency::Mismatch);
    // Keys are per tenant.
    assert_eq!(
        store.begin_idempotent("globex", "k1", "h9").await.unwrap(),
        Idempotency::New
    );
    let response = StoredResponse {
        status: 202,
        body: r#"{"run_id":7}"#.into(),
    };
    store
        .complete_idempotent("acme", "k1", &response)
        .await
        .unwrap();
    assert_eq!(begin("k1", "h1").await, Idempotency::Done(response.clone()));
    assert_eq!(begin("k1", "h2").await, Idempotency::Mismatch);
    // Abandoning a completed key does nothing; an in-flight one is freed.
    store.abandon_idempotent("acme", "k1").await.unwrap();
    assert_eq!(begin("k1", "h1").await, Idempotency::Done(response));
    assert_eq!(begin("k2", "h1").await, Idempotency::New);
    store.abandon_idempotent("acme", "k2").await.unwrap();
    assert_eq!(begin("k2", "h3").await, Idempotency::New);
    // A key left in flight by a dead server is taken over after the timeout.
    assert_eq!(begin("k3", "h1").await, Idempotency::New);
    f.raw("UPDATE idempotency_keys SET created_at = 0 WHERE key = 'k3'")
        .await
        .unwrap();
    assert_eq!(begin("k3", "h2").await, Idempotency::Mismatch);
    assert_eq!(begin("k3", "h1").await, Idempotency::New);
    assert_eq!(begin("k3", "h1").await, Idempotency::InFlight);
    let err = store
        .complete_idempotent(
            "acme",
            "never-begun",
            &StoredResponse {
                status: 200,
                body: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

contract!(
    checkpoints_are_replaced_and_keep_full_lsns,
    the_audit_log_pages_newest_first_per_tenant,
    tokens_are_stored_hashed_and_scoped_to_their_tenant,
    idempotency_keys_answer_new_in_flight_done_or_mismatch,
);
