//! `ebb check` on the example project, clean and with planted mistakes.

use std::path::Path;

use super::{copy_tree, ebb, example_project, stderr, stdout};

#[test]
fn the_example_project_is_clean() {
    let root = example_project();
    let out = ebb(root.parent().unwrap(), &["check", "models"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("no problems found"),
        "{}",
        stdout(&out)
    );
}

/// Replaces the first `from` in `file` with `to` and returns the 1-based line and column
/// where `to` now starts (plus `offset` characters into it).
fn plant(file: &Path, from: &str, to: &str, offset: usize) -> (usize, usize) {
    let text = std::fs::read_to_string(file).unwrap();
    let at = text
        .find(from)
        .unwrap_or_else(|| panic!("{} has no {from:?}", file.display()));
    let changed = format!("{}{}{}", &text[..at], to, &text[at + from.len()..]);
    std::fs::write(file, &changed).unwrap();
    let before = &changed[..at + offset];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

#[test]
fn five_planted_mistakes_are_all_reported_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("proj");
    copy_tree(&example_project(), &project);
    let models = project.join("models");

    // 1. A misspelled key in a model's YAML.
    let (l1, c1) = plant(
        &models.join("account_health.yml"),
        "primary_key:",
        "primary_ky:",
        0,
    );
    // 2. A ref() to a model that does not exist.
    let (l2, c2) = plant(
        &models.join("dim_accounts.sql"),
        "{{ ref('stg_accounts') }}",
        "{{ ref('stg_acounts') }}",
        0,
    );
    // 3. A sync pointing at a destination that does not exist.
    let sync = project.join("syncs/crm_companies.yml");
    let destination = sync_destination(&sync);
    let (l3, c3) = plant(
        &sync,
        &format!("\ndestination: {destination}\n"),
        &format!("\ndestination: {destination}x\n"),
        14,
    );
    // 4. Two models with the same name.
    std::fs::create_dir_all(models.join("marts")).unwrap();
    std::fs::copy(
        models.join("stg_users.sql"),
        models.join("marts/stg_users.sql"),
    )
    .unwrap();
    // 5. A cycle: a staging model now reads the mart built on it.
    let stg = models.join("stg_subscriptions.sql");
    let text = std::fs::read_to_string(&stg).unwrap();
    std::fs::write(
        &stg,
        format!(
            "{}\n-- planted: {{{{ ref('account_health') }}}}\n",
            text.trim_end()
        ),
    )
    .unwrap();

    let out = ebb(tmp.path(), &["check", "proj"]);
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}\n{}", stderr(&out));

    let expect = [
        (
            format!(
                "proj/models/account_health.yml:{l1}:{c1}: error: unknown field \"primary_ky\""
            ),
            "did you mean \"primary_key\"?".to_string(),
        ),
        (
            format!(
                "proj/models/dim_accounts.sql:{l2}:{c2}: error: ref('stg_acounts'): no model named \"stg_acounts\""
            ),
            "did you mean \"stg_accounts\"?".to_string(),
        ),
        (
            format!(
                "proj/syncs/crm_companies.yml:{l3}:{c3}: error: no destination named \"{destination}x\""
            ),
            format!("did you mean \"{destination}\"?"),
        ),
        (
            "proj/models/stg_users.sql: error: two models are named \"stg_users\"".to_string(),
            "rename one".to_string(),
        ),
        (
            "error: models form a cycle: ".to_string(),
            "remove one ref()".to_string(),
        ),
    ];
    for (line, help) in &expect {
        let found = printed
            .split("\n\n")
            .find(|block| block.contains(line.as_str()))
            .unwrap_or_else(|| panic!("missing {line:?} in:\n{printed}"));
        assert!(
            found.contains(help.as_str()),
            "{line}: no help {help:?} in:\n{found}"
        );
    }
    // The cycle names the models on it and points into one of their SQL files.
    let cycle = printed
        .lines()
        .find(|l| l.contains("models form a cycle"))
        .unwrap();
    assert!(
        cycle.contains("account_health") && cycle.contains("stg_subscriptions"),
        "{cycle}"
    );
    assert!(cycle.starts_with("proj/models/"), "{cycle}");
    assert!(
        printed.contains("5 errors, 0 warnings"),
        "expected exactly the five planted problems:\n{printed}"
    );
}

/// The top-level `destination:` of a sync file.
fn sync_destination(sync: &Path) -> String {
    std::fs::read_to_string(sync)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("destination: "))
        .expect("the sync names its destination")
        .trim()
        .to_string()
}

#[test]
fn json_output_lists_every_problem_with_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("proj");
    copy_tree(&example_project(), &project);
    let sync = project.join("syncs/crm_companies.yml");
    let destination = sync_destination(&sync);
    plant(
        &sync,
        &format!("\ndestination: {destination}\n"),
        "\ndestination: nowhere\n",
        0,
    );
    let out = ebb(tmp.path(), &["check", "--format", "json", "proj"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"], 1, "{report:#}");
    let d = &report["diagnostics"][0];
    assert_eq!(d["file"], "proj/syncs/crm_companies.yml");
    assert_eq!(d["field"], "destination");
    assert!(d["line"].as_u64().unwrap() >= 1);
}

#[test]
fn secrets_never_appear_in_output() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("proj");
    copy_tree(&example_project(), &project);
    // A literal secret is a warning that names the place, not the value.
    let ebb_yml = project.join("ebb.yml");
    let text = std::fs::read_to_string(&ebb_yml).unwrap();
    let token_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("token:"))
        .expect("the example has a HubSpot token");
    let indent = &token_line[..token_line.len() - token_line.trim_start().len()];
    std::fs::write(
        &ebb_yml,
        text.replace(
            token_line,
            &format!("{indent}token: pat-na1-TOPSECRET-1234"),
        ),
    )
    .unwrap();
    let out = ebb(tmp.path(), &["check", "proj"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("a secret is written here in plain text"),
        "{all}"
    );
    assert!(!all.contains("TOPSECRET"), "the secret leaked:\n{all}");
    let out = ebb(tmp.path(), &["check", "--deny-warnings", "proj"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_missing_environment_variable_is_reported_where_it_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("proj");
    copy_tree(&example_project(), &project);
    let ebb_yml = project.join("ebb.yml");
    let text = std::fs::read_to_string(&ebb_yml).unwrap();
    let token_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("token:"))
        .unwrap();
    let indent = &token_line[..token_line.len() - token_line.trim_start().len()];
    let changed = text.replace(
        token_line,
        &format!("{indent}token: ${{EBB_TEST_UNSET_TOKEN}}"),
    );
    let line = changed[..changed.find("EBB_TEST_UNSET_TOKEN").unwrap()]
        .matches('\n')
        .count()
        + 1;
    std::fs::write(&ebb_yml, changed).unwrap();
    let out = ebb(tmp.path(), &["check", "proj"]);
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains(&format!("proj/ebb.yml:{line}:")),
        "{printed}"
    );
    assert!(
        printed.contains("environment variable EBB_TEST_UNSET_TOKEN is not set"),
        "{printed}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ebb(tmp.path(), &["check", "does-not-exist"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does-not-exist does not exist"));
    let out = ebb(tmp.path(), &["check", "."]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no ebb.yml"), "{}", stderr(&out));
    let out = ebb(tmp.path(), &["check", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = ebb(tmp.path(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn version_and_help() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ebb(tmp.path(), &["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out).trim(),
        format!("ebb {}", env!("CARGO_PKG_VERSION"))
    );
    let out = ebb(tmp.path(), &["help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    assert!(help.contains("init") && help.contains("check"), "{help}");
    let out = ebb(tmp.path(), &["help", "check"]);
    assert!(stdout(&out).contains("Examples:"), "{}", stdout(&out));
}
