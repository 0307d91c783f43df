//! `ebb init`: a new project that checks clean, and no clobbering of existing work.

use super::{ebb, stderr, stdout};

#[test]
fn init_scaffolds_a_project_that_checks_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ebb(tmp.path(), &["init", "Growth-Team"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("ebb check Growth-Team"),
        "{}",
        stdout(&out)
    );
    let dir = tmp.path().join("Growth-Team");
    let ebb_yml = std::fs::read_to_string(dir.join("ebb.yml")).unwrap();
    assert!(ebb_yml.contains("name: growth_team"), "{ebb_yml}");
    for part in ["models", "syncs", "metrics", "identity", "data"] {
        let entries = std::fs::read_dir(dir.join(part))
            .unwrap_or_else(|_| panic!("{part}/ is missing"))
            .count();
        assert!(entries > 0, "{part}/ is empty");
    }
    let out = ebb(tmp.path(), &["check", "Growth-Team"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn init_with_a_name_and_into_the_current_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ebb(tmp.path(), &["init", ".", "--name", "finance_ops"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ebb_yml = std::fs::read_to_string(tmp.path().join("ebb.yml")).unwrap();
    assert!(ebb_yml.contains("name: finance_ops"));
    let out = ebb(tmp.path(), &["init", "other", "--name", "Bad Name"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("\"bad_name\""), "{}", stderr(&out));
}

#[test]
fn init_never_overwrites_a_project() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(ebb(tmp.path(), &["init", "p"]).status.code(), Some(0));
    let ebb_yml = tmp.path().join("p/ebb.yml");
    std::fs::write(&ebb_yml, "name: mine\n").unwrap();
    let out = ebb(tmp.path(), &["init", "p"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already holds an ebb project"));
    assert_eq!(std::fs::read_to_string(&ebb_yml).unwrap(), "name: mine\n");
}
