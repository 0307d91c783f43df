use std::net::SocketAddr;

use ebb_sandbox::{Kind, SandboxOptions, serve, serve_with};
use serde_json::{Value, json};

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn upsert(base: &str, token: &str, email: &str, plan: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/crm/v3/objects/companies/batch/upsert"))
        .bearer_auth(token)
        .json(&json!({"inputs": [{
            "idProperty": "ebb_account_id", "id": email,
            "properties": {"name": "Acme", "ebb_plan": plan},
            "objectWriteTraceId": "0"}]}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn hubspot_sandbox_keeps_records_across_runs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let options = SandboxOptions::in_dir(dir.path().join(".ebb/sandbox"));
    let first = serve_with(Kind::Hubspot, any_port(), &options).await?;
    assert_eq!(first.kind(), Kind::Hubspot);
    // Any token, and properties the sync writes are created on first use.
    assert_eq!(
        upsert(&first.base_url(), "sandbox", "acc-1", "pro").await,
        200
    );
    first.shutdown().await?;

    let file = dir.path().join(".ebb/sandbox/hubspot.json");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    let companies = saved["objects"]["companies"].as_array().unwrap();
    assert_eq!(companies.len(), 1);
    assert_eq!(companies[0]["properties"]["ebb_plan"], "pro");
    assert_eq!(
        saved["schemas"]["companies"]["ebb_account_id"]["unique"],
        true
    );

    // A second run sees the first run's record: the upsert updates it, no duplicate.
    let second = serve_with(Kind::Hubspot, any_port(), &options).await?;
    assert_eq!(
        upsert(&second.base_url(), "other", "acc-1", "enterprise").await,
        200
    );
    let ebb_sandbox::Sandbox::Hubspot(emulator) = &second else {
        unreachable!()
    };
    let found = emulator.find("companies", "ebb_account_id", "acc-1");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].properties["ebb_plan"], "enterprise");
    assert_eq!(found[0].versions, 2);
    drop(second);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    assert_eq!(
        saved["objects"]["companies"][0]["properties"]["ebb_plan"], "enterprise",
        "saved after every change, not only on shutdown"
    );
    Ok(())
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error_and_a_bad_state_file_names_itself() -> anyhow::Result<()> {
    let running = serve(Kind::Braze, any_port()).await?;
    let err = serve(Kind::Braze, running.addr()).await.unwrap_err();
    assert!(err.to_string().contains("another program"), "{err}");

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("webhook.json"), "{\"changes\": 3}")?;
    let err = serve_with(
        Kind::Webhook,
        any_port(),
        &SandboxOptions::in_dir(dir.path()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("webhook.json") && err.contains("delete it"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn webhook_sandbox_takes_any_path_and_keeps_changes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let options = SandboxOptions::in_dir(dir.path());
    let hook = serve_with(Kind::Webhook, any_port(), &options).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let status = reqwest::Client::new()
        .post(format!("{}/hooks", hook.base_url()))
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", "v1,unchecked")
        .json(&json!({"type": "ebb.change", "data": {"id": "c1", "op": "insert", "fields": {"a": 1}}}))
        .send()
        .await?
        .status();
    assert_eq!(status, 200);
    hook.shutdown().await?;
    let again = serve_with(Kind::Webhook, any_port(), &options).await?;
    let ebb_sandbox::Sandbox::Webhook(receiver) = &again else {
        unreachable!()
    };
    assert_eq!(receiver.applied()["c1"], 1);
    assert_eq!(receiver.changes()[0]["fields"]["a"], 1);
    Ok(())
}

#[tokio::test]
async fn salesforce_sandbox_runs_a_job_with_new_fields_and_keeps_the_records() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let options = SandboxOptions::in_dir(dir.path());
    let sf = serve_with(Kind::Salesforce, any_port(), &options).await?;
    let base = format!("{}/services/data/v62.0/jobs/ingest", sf.base_url());
    let client = reqwest::Client::new();
    let job: Value = client
        .post(&base)
        .bearer_auth("any")
        .json(&json!({"object": "Contact", "operation": "upsert",
                      "externalIdFieldName": "Account_Key__c", "contentType": "CSV"}))
        .send()
        .await?
        .json()
        .await?;
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["state"], "Open");
    let put = client
        .put(format!("{base}/{id}/batches"))
        .bearer_auth("any")
        .header("content-type", "text/csv")
        .body("Account_Key__c,LastName,Plan__c\nk1,Doe,pro\nk2,,team\n")
        .send()
        .await?;
    assert_eq!(put.status(), 201);
    let closed: Value = client
        .patch(format!("{base}/{id}/"))
        .bearer_auth("any")
        .json(&json!({"state": "UploadComplete"}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(closed["state"], "UploadComplete");
    let mut state = String::new();
    for _ in 0..5 {
        let info: Value = client
            .get(format!("{base}/{id}/"))
            .bearer_auth("any")
            .send()
            .await?
            .json()
            .await?;
        state = info["state"].as_str().unwrap().to_string();
        if state == "JobComplete" {
            assert_eq!(info["numberRecordsFailed"], 1);
            break;
        }
    }
    assert_eq!(state, "JobComplete");
    let failed = client
        .get(format!("{base}/{id}/failedResults/"))
        .bearer_auth("any")
        .send()
        .await?
        .text()
        .await?;
    assert!(
        failed.starts_with("\"sf__Id\",\"sf__Error\",\"Account_Key__c\""),
        "{failed}"
    );
    assert!(failed.contains("REQUIRED_FIELD_MISSING"), "{failed}");
    sf.shutdown().await?;

    let saved: Value = serde_json::from_str(&std::fs::read_to_string(
        dir.path().join("salesforce.json"),
    )?)?;
    let contacts = saved["records"]["Contact"].as_array().unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["fields"]["Plan__c"], "pro");
    assert_eq!(
        saved["schemas"]["Contact"]["Account_Key__c"]["external_id"],
        true
    );
    Ok(())
}
