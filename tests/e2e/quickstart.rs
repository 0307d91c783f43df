//! The quickstart as a new user runs it: `ebb run --sandbox` on a copy of the example
//! project, the "change some rows" step, and `ebb run` again. The summary's numbers are
//! checked against what the example data holds (models/README.md documents them).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use super::{copy_tree, example_project, stderr, stdout};

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ebb_run(cwd: &Path, webhook: u16, hubspot: u16) -> Output {
    ebb_run_in(cwd, "proj", webhook, hubspot)
}

fn ebb_run_in(cwd: &Path, project: &str, webhook: u16, hubspot: u16) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["run", "-P", project, "--sandbox"])
        .current_dir(cwd)
        .env_remove("EBB_WEBHOOK_SECRET")
        .env_remove("HUBSPOT_TOKEN")
        .env(
            "EBB_WEBHOOK_URL",
            format!("http://127.0.0.1:{webhook}/hooks"),
        )
        .env("HUBSPOT_BASE_URL", format!("http://127.0.0.1:{hubspot}"))
        .output()
        .expect("the ebb binary runs")
}

/// One sync's row of the summary table.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    rows_read: u64,
    changes: u64,
    inserts: u64,
    updates: u64,
    deletes: u64,
    accepted: u64,
    rejected: u64,
    status: String,
}

fn summary_row(printed: &str, sync: &str) -> Row {
    let summary = printed
        .split("Summary:")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in:\n{printed}"));
    let line = summary
        .lines()
        .find(|l| l.split_whitespace().next() == Some(sync))
        .unwrap_or_else(|| panic!("no row for {sync} in:\n{summary}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    let n = |i: usize| -> u64 { f[i].parse().unwrap_or_else(|_| panic!("{line}")) };
    Row {
        rows_read: n(1),
        changes: n(2),
        inserts: n(3),
        updates: n(4),
        deletes: n(5),
        accepted: n(6),
        rejected: n(7),
        status: f[9].to_string(),
    }
}

fn row(read: u64, ins: u64, upd: u64, del: u64, accepted: u64) -> Row {
    Row {
        rows_read: read,
        changes: ins + upd + del,
        inserts: ins,
        updates: upd,
        deletes: del,
        accepted,
        rejected: 0,
        status: "succeeded".into(),
    }
}

fn sandbox_state(proj: &Path, kind: &str) -> serde_json::Value {
    let path = proj.join(format!(".ebb/sandbox/{kind}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the {kind} sandbox keeps its state in {}: {e}",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

/// Companies the HubSpot sandbox holds, each with its ebb account id.
fn companies(proj: &Path) -> usize {
    let state = sandbox_state(proj, "hubspot");
    let companies = state["objects"]["companies"].as_array().unwrap();
    assert!(
        companies
            .iter()
            .all(|c| c["properties"]["ebb_account_id"].is_string())
    );
    companies.len()
}

/// Messages the webhook receiver took (each signed; the sandbox checks the signatures).
fn webhook_messages(proj: &Path) -> usize {
    sandbox_state(proj, "webhook")["changes"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn quickstart_twice_sends_only_the_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let proj = tmp.path().join("proj");
    copy_tree(&example_project(), &proj);
    let (webhook, hubspot) = (free_port(), free_port());

    // First run: every account is new to both destinations.
    let out = ebb_run(tmp.path(), webhook, hubspot);
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}\n{}", stderr(&out));
    assert!(
        printed.contains("Summary: 11 models built (0 failed), 2 syncs"),
        "{printed}"
    );
    assert_eq!(
        summary_row(&printed, "crm_companies"),
        row(300, 300, 0, 0, 300)
    );
    assert_eq!(
        summary_row(&printed, "account_webhooks"),
        row(300, 300, 0, 0, 300)
    );
    assert!(printed.contains("Where to look next"), "{printed}");
    // The emulated CRM holds one company per account; the receiver got one message each.
    assert_eq!(companies(&proj), 300);
    assert_eq!(webhook_messages(&proj), 300);

    // Nothing changed: nothing is sent.
    let out = ebb_run(tmp.path(), webhook, hubspot);
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}\n{}", stderr(&out));
    assert_eq!(summary_row(&printed, "crm_companies"), row(300, 0, 0, 0, 0));
    assert_eq!(
        summary_row(&printed, "account_webhooks"),
        row(300, 0, 0, 0, 0)
    );

    // "Change some rows": 10 accounts change plan and MRR, 5 are added, 2 deleted.
    let mutate = Command::new("python3")
        .args(["proj/generate.py", "--mutate"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(mutate.status.success(), "{}", stderr(&mutate));

    let out = ebb_run(tmp.path(), webhook, hubspot);
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}\n{}", stderr(&out));
    // Upsert mode: the deletes are found but not sent, and not counted as changes to send.
    assert_eq!(
        summary_row(&printed, "crm_companies"),
        row(303, 5, 10, 2, 15)
    );
    // Mirror mode sends the deletes too.
    assert_eq!(
        summary_row(&printed, "account_webhooks"),
        row(303, 5, 10, 2, 17)
    );
    // Upsert mode leaves the two deleted accounts in the CRM; the webhook got 17 more.
    assert_eq!(companies(&proj), 305);
    assert_eq!(webhook_messages(&proj), 317);
}

#[test]
fn a_new_project_from_init_runs_the_same_way() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["init", "growth"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = ebb_run_in(tmp.path(), "growth", free_port(), free_port());
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}\n{}", stderr(&out));
    assert_eq!(
        summary_row(&printed, "crm_companies"),
        row(300, 300, 0, 0, 300)
    );
    assert_eq!(
        summary_row(&printed, "account_webhooks"),
        row(300, 300, 0, 0, 300)
    );
}
