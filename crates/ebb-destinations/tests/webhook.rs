use std::process::{Command, Stdio};
use std::time::Duration;

use ebb_core::Secret;
use ebb_destinations::destinations::webhook::{WebhookConfig, WebhookDestination};
use ebb_destinations::{Destination, DestinationError, Operation};
use ebb_testkit::emulators::Fault;
use ebb_testkit::emulators::webhook::WebhookReceiver;
use serde_json::json;

use crate::record;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEXT_SECRET: &str = "whsec_c2Vjb25kLWtleS1mb3Itcm90YXRpb24tMDEyMzQ1";

fn destination(receiver: &WebhookReceiver, batch_size: usize) -> WebhookDestination {
    let mut config = WebhookConfig::new(
        &receiver.url(),
        vec![Secret::new(SECRET), Secret::new(NEXT_SECRET)],
    )
    .unwrap();
    config.batch_size = batch_size;
    config.timeout = Duration::from_millis(400);
    WebhookDestination::new(config).unwrap()
}

/// Runs the official `standardwebhooks` package (PyPI) over the messages the receiver
/// took: every one must verify with each key, and a tampered body must not.
#[tokio::test]
async fn signatures_verify_with_the_official_standardwebhooks_package() {
    let receiver = WebhookReceiver::start(SECRET).await;
    let single = destination(&receiver, 1);
    let batched = destination(&receiver, 10);
    single
        .write(&[record(
            Operation::Upsert,
            "1",
            json!({"email": "ada@example.com", "name": "Ada Lovelace — ü"}),
        )])
        .await
        .unwrap();
    batched
        .write(&[
            record(Operation::Upsert, "2", json!({"email": "b@example.com"})),
            record(Operation::Delete, "3", json!({})),
        ])
        .await
        .unwrap();
    let messages: Vec<_> = receiver
        .messages()
        .into_iter()
        .map(|m| {
            json!({"id": m.id, "timestamp": m.timestamp, "signature": m.signature,
                   "body": String::from_utf8(m.body).unwrap()})
        })
        .collect();
    assert_eq!(messages.len(), 2);
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
data = json.load(sys.stdin)
verified = 0
for m in data["messages"]:
    headers = {"webhook-id": m["id"], "webhook-timestamp": m["timestamp"],
               "webhook-signature": m["signature"]}
    for secret in data["secrets"]:
        Webhook(secret).verify(m["body"], headers)
        verified += 1
        try:
            Webhook(secret).verify(m["body"] + " ", headers)
            sys.exit("a tampered body verified")
        except WebhookVerificationError:
            pass
print(verified)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = json!({"messages": messages, "secrets": [SECRET, NEXT_SECRET]});
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "standardwebhooks refused ebb's signatures (install it with \
         `python3 -m pip install standardwebhooks`): {stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4");
}

#[tokio::test]
async fn webhook_id_is_stable_across_retries_and_the_receiver_applies_once() {
    let receiver = WebhookReceiver::start(SECRET).await;
    let dest = destination(&receiver, 5);
    let records = [
        record(Operation::Upsert, "1", json!({"email": "a@example.com"})),
        record(Operation::Upsert, "2", json!({"email": "b@example.com"})),
    ];
    receiver.faults().inject(Fault::TimeoutAfterApply, 1);
    let err = dest.write(&records).await.unwrap_err();
    assert!(matches!(err, DestinationError::Retryable { .. }), "{err}");
    let outcome = dest.write(&records).await.unwrap();
    assert_eq!(outcome.results.len(), 2);
    let messages = receiver.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].id, messages[1].id);
    assert_ne!(messages[0].body, b"");
    let applied = receiver.applied();
    assert_eq!(applied.len(), 2);
    assert!(applied.values().all(|n| *n == 1), "{applied:?}");
}

#[tokio::test]
async fn gone_disables_the_endpoint() {
    let receiver = WebhookReceiver::start(SECRET).await;
    let dest = destination(&receiver, 1);
    receiver.set_gone(true);
    let r = [record(Operation::Upsert, "1", json!({"a": 1}))];
    assert!(matches!(
        dest.write(&r).await,
        Err(DestinationError::Fatal { .. })
    ));
    assert!(dest.is_disabled());
    assert!(matches!(
        dest.write(&r).await,
        Err(DestinationError::Fatal { .. })
    ));
    assert_eq!(
        receiver.log().entries().len(),
        1,
        "no request once disabled"
    );
}

#[tokio::test]
async fn receiver_errors_keep_their_reason_and_class() {
    let receiver = WebhookReceiver::start(SECRET).await;
    let dest = destination(&receiver, 10);
    receiver.require_fields(&["email"]);
    let batch = [
        record(Operation::Upsert, "1", json!({"email": "a@example.com"})),
        record(Operation::Upsert, "2", json!({"name": "no email"})),
    ];
    match dest.write(&batch).await {
        Err(DestinationError::Rejected { reason, field }) => {
            assert!(reason.contains("missing required field"), "{reason}");
            assert_eq!(field.as_deref(), Some("email"));
        }
        other => panic!("expected a rejected batch, got {other:?}"),
    }
    receiver.faults().inject(
        Fault::Throttle {
            retry_after: Duration::from_secs(2),
        },
        1,
    );
    receiver.faults().inject(Fault::ServerError, 1);
    receiver.faults().inject(Fault::DropConnection, 1);
    assert!(matches!(
        dest.write(&batch[..1]).await,
        Err(DestinationError::Throttled { after: Some(a), .. }) if a == Duration::from_secs(2)
    ));
    assert!(matches!(
        dest.write(&batch[..1]).await,
        Err(DestinationError::Retryable { .. })
    ));
    assert!(matches!(
        dest.write(&batch[..1]).await,
        Err(DestinationError::Retryable { .. })
    ));
    assert_eq!(receiver.applied().len(), 0);
    dest.write(&batch[..1]).await.unwrap();
    assert_eq!(receiver.applied().len(), 1);
}
