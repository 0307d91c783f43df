//! `ebb models` on a copy of the example project: run, test, show, compile, and the
//! failures a data engineer must see clearly.

use super::{copy_tree, ebb, example_project, stderr, stdout};

fn example_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&example_project(), &tmp.path().join("proj"));
    tmp
}

#[test]
fn run_then_test_the_example_models() {
    let tmp = example_copy();
    let out = ebb(tmp.path(), &["models", "run", "-P", "proj"]);
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}\n{}", stderr(&out));
    assert!(printed.contains("Done in"), "{printed}");
    assert!(
        printed.contains(": 11 ok, 0 failed, 0 skipped"),
        "{printed}"
    );
    // Parquet models report the rows they wrote: one per account.
    let health = printed
        .lines()
        .find(|l| l.contains("account_health"))
        .unwrap();
    assert!(
        health.contains("parquet") && health.contains("300 rows"),
        "{health}"
    );

    let out = ebb(tmp.path(), &["models", "test", "-P", "proj"]);
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}\n{}", stderr(&out));
    assert!(printed.contains(" passed, 0 failed"), "{printed}");

    let out = ebb(
        tmp.path(),
        &[
            "models",
            "show",
            "-P",
            "proj",
            "account_health",
            "--limit",
            "3",
        ],
    );
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(printed.contains("| account_id |"), "{printed}");
    assert_eq!(
        printed.lines().filter(|l| l.starts_with("| ")).count(),
        4,
        "{printed}"
    );

    let out = ebb(
        tmp.path(),
        &["models", "compile", "-P", "proj", "dim_accounts"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("\"stg_accounts\""),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("ref("), "{}", stdout(&out));
}

#[test]
fn failing_tests_show_counts_and_samples() {
    let tmp = example_copy();
    let accounts = tmp.path().join("proj/data/accounts.csv");
    let text = std::fs::read_to_string(&accounts).unwrap();
    // Two accounts move to a plan nobody sells.
    let mut changed = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if changed < 2 && l.ends_with(",pro") {
                changed += 1;
                format!("{}platinum", &l[..l.len() - 3])
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(changed, 2, "the example has accounts on the pro plan");
    std::fs::write(&accounts, lines.join("\n") + "\n").unwrap();
    let out = ebb(
        tmp.path(),
        &["models", "test", "-P", "proj", "--select", "stg_accounts"],
    );
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}\n{}", stderr(&out));
    let fail = printed
        .lines()
        .find(|l| l.contains("FAIL") && l.contains("stg_accounts.plan accepted_values"))
        .unwrap_or_else(|| panic!("no failing plan test in:\n{printed}"));
    assert!(fail.ends_with(": 2 failing rows"), "{fail}");
    assert!(
        printed.contains("platinum"),
        "the sample rows are shown:\n{printed}"
    );
}

#[test]
fn type_drift_fails_the_model_with_column_expected_and_actual() {
    let tmp = example_copy();
    let yml = tmp.path().join("proj/models/fct_invoices.yml");
    let text = std::fs::read_to_string(&yml).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("name: invoice_id"))
        .expect("fct_invoices declares invoice_id")
        .to_string();
    let next = text[text.find(&line).unwrap() + line.len() + 1..]
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(
        next.contains("type: bigint"),
        "expected the type on the next line: {next}"
    );
    std::fs::write(
        &yml,
        text.replacen(&next, &next.replace("bigint", "text"), 1),
    )
    .unwrap();
    let out = ebb(tmp.path(), &["models", "run", "-P", "proj"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("model \"fct_invoices\" breaks its contract: column \"invoice_id\" is declared text but the model returns bigint"),
        "{all}"
    );
    // Models built on it are skipped, the others still run.
    assert!(
        all.contains("SKIPPED (upstream fct_invoices failed)"),
        "{all}"
    );
    assert!(all.contains("stg_users"), "{all}");
}

#[test]
fn an_invalid_project_is_not_run() {
    let tmp = example_copy();
    let sql = tmp.path().join("proj/models/dim_accounts.sql");
    let text = std::fs::read_to_string(&sql).unwrap();
    std::fs::write(
        &sql,
        text.replace("ref('stg_accounts')", "ref('stg_acounts')"),
    )
    .unwrap();
    let out = ebb(tmp.path(), &["models", "run", "-P", "proj"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no model named \"stg_acounts\""), "{err}");
    assert!(err.contains("fix them first"), "{err}");
    assert!(!tmp.path().join("proj/data/_ebb_models").exists());
}
