//! The dead-letter queue behaves like `ebb_delivery::MemoryDeadLetters`, durably.

use ebb_delivery::{DeadLetter, DeadLetters, MemoryDeadLetters};
use ebb_destinations::{Operation, Record};
use serde_json::json;

use crate::contract;
use crate::support::Fixture;

fn letter(tenant: &str, sync: &str, key: &str, reason: &str, at: u64) -> DeadLetter {
    let mut fields = serde_json::Map::new();
    fields.insert("email".into(), json!(format!("{key}@example.com")));
    fields.insert("score".into(), json!(at));
    let record = Record {
        op: Operation::Upsert,
        key: key.to_string(),
        id: format!("{key}@example.com"),
        fields,
        idempotency_key: format!("idem-{key}-{at}"),
    };
    DeadLetter {
        tenant: tenant.into(),
        sync: sync.into(),
        record,
        reason: reason.into(),
        field: Some("email".into()),
        failures: 1,
        first_failed_at: at,
        last_failed_at: at,
    }
}

/// The same steps against any `DeadLetters`; returns what `pending` said after each.
async fn scenario(dlq: &impl DeadLetters) -> Vec<Vec<DeadLetter>> {
    let mut seen = Vec::new();
    dlq.put(vec![
        letter("acme", "contacts", "k2", "invalid email", 100),
        letter("acme", "contacts", "k1", "too long", 100),
        letter("acme", "deals", "k1", "missing amount", 100),
        letter("globex", "contacts", "k1", "invalid email", 100),
    ])
    .await
    .unwrap();
    seen.push(dlq.pending("acme", "contacts").await.unwrap());
    // A later failure of the same record replaces it and adds to its failures.
    let mut again = letter("acme", "contacts", "k2", "still invalid", 200);
    again.field = None;
    dlq.put(vec![again]).await.unwrap();
    seen.push(dlq.pending("acme", "contacts").await.unwrap());
    dlq.put(vec![letter("acme", "contacts", "k2", "third", 300)])
        .await
        .unwrap();
    seen.push(dlq.pending("acme", "contacts").await.unwrap());
    // Resolving removes only the named records of that sync.
    dlq.resolve("acme", "contacts", &["k2".into(), "unknown".into()])
        .await
        .unwrap();
    seen.push(dlq.pending("acme", "contacts").await.unwrap());
    seen.push(dlq.pending("acme", "deals").await.unwrap());
    seen.push(dlq.pending("globex", "contacts").await.unwrap());
    seen.push(dlq.pending("nobody", "contacts").await.unwrap());
    seen
}

async fn behaves_like_the_memory_dead_letters(f: Fixture) {
    let store = f.open().await;
    let expected = scenario(&MemoryDeadLetters::new()).await;
    let got = scenario(&store).await;
    assert_eq!(got, expected);

    // And what that is, spelled out.
    assert_eq!(
        got[0]
            .iter()
            .map(|l| l.record.key.as_str())
            .collect::<Vec<_>>(),
        ["k1", "k2"],
        "oldest record key first"
    );
    let k2 = &got[2][1];
    assert_eq!(
        (
            k2.failures,
            k2.first_failed_at,
            k2.last_failed_at,
            k2.reason.as_str()
        ),
        (3, 100, 300, "third")
    );
    assert_eq!(got[1][1].field, None);
    assert_eq!(got[3].len(), 1);
    assert_eq!(got[6], vec![]);
}

async fn letters_survive_a_new_handle(f: Fixture) {
    let store = f.open().await;
    store
        .put(vec![letter("acme", "contacts", "k1", "bad", 5)])
        .await
        .unwrap();
    drop(store);
    let reopened = f.open().await;
    let pending = reopened.pending("acme", "contacts").await.unwrap();
    assert_eq!(pending, vec![letter("acme", "contacts", "k1", "bad", 5)]);
}

async fn dlq_list_pages_and_counts_per_tenant(f: Fixture) {
    let store = f.open().await;
    let mut letters = Vec::new();
    for i in 0..13 {
        letters.push(letter("acme", "contacts", &format!("c{i:02}"), "bad", 1));
    }
    for i in 0..4 {
        letters.push(letter("acme", "deals", &format!("d{i}"), "bad", 1));
    }
    letters.push(letter("globex", "contacts", "x", "bad", 1));
    store.put(letters).await.unwrap();

    assert_eq!(store.dlq_count("acme", None).await.unwrap(), 17);
    assert_eq!(store.dlq_count("acme", Some("deals")).await.unwrap(), 4);
    assert_eq!(store.dlq_count("globex", None).await.unwrap(), 1);
    assert_eq!(store.dlq_count("initech", None).await.unwrap(), 0);

    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .dlq_list("acme", None, cursor.as_deref(), 5)
            .await
            .unwrap();
        assert!(page.items.len() <= 5);
        assert!(page.items.iter().all(|l| l.tenant == "acme"));
        keys.extend(
            page.items
                .iter()
                .map(|l| format!("{}/{}", l.sync, l.record.key)),
        );
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..13).map(|i| format!("contacts/c{i:02}")).collect();
    expected.extend((0..4).map(|i| format!("deals/d{i}")));
    assert_eq!(keys, expected);

    let deals = store
        .dlq_list("acme", Some("deals"), None, 100)
        .await
        .unwrap();
    assert_eq!(deals.items.len(), 4);
    assert_eq!(deals.next_cursor, None);
    let err = store
        .dlq_list("acme", None, Some("garbage!"), 5)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cursor"), "{err}");
}

contract!(
    behaves_like_the_memory_dead_letters,
    letters_survive_a_new_handle,
    dlq_list_pages_and_counts_per_tenant,
);
