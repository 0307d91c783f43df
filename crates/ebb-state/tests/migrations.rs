//! Opening, migrating, reopening; refusing a schema from a newer ebb.

use std::path::Path;

use ebb_core::Secret;
use ebb_core::config::project::StateConfig;
use ebb_state::migrate::LATEST;
use ebb_state::{NewRun, RunKind, StateError, StateStore, Trigger};
use ebb_testkit::PgCluster;
use serde_json::json;

use crate::contract;
use crate::support::Fixture;

async fn reopening_keeps_everything(f: Fixture) {
    let store = f.open().await;
    assert_eq!(store.schema_version().await.unwrap(), LATEST);
    let run = store
        .create_run(&NewRun::new(
            "acme",
            "contacts",
            RunKind::Cdc,
            Trigger::Schedule,
        ))
        .await
        .unwrap()
        .run;
    store
        .append_event("acme", "t", &json!({"x": 1}))
        .await
        .unwrap();
    store.put_checkpoint("p", 42, &json!({})).await.unwrap();
    drop(store);

    let reopened = f.open().await;
    assert_eq!(reopened.schema_version().await.unwrap(), LATEST);
    assert_eq!(reopened.get_run(run.id).await.unwrap(), Some(run.clone()));
    assert_eq!(
        reopened.events_after("acme", None, 10).await.unwrap().len(),
        1
    );
    assert_eq!(reopened.get_checkpoint("p").await.unwrap().unwrap().lsn, 42);
    // The queued run still holds its sync after the reopen.
    let again = reopened
        .create_run(&NewRun::new(
            "acme",
            "contacts",
            RunKind::Cdc,
            Trigger::Manual,
        ))
        .await
        .unwrap();
    assert_eq!((again.created, again.run.id), (false, run.id));
    // Migrations ran once.
    assert_eq!(f.count("SELECT COUNT(*) FROM schema_version").await, LATEST);
}

async fn a_newer_schema_is_refused(f: Fixture) {
    let store = f.open().await;
    drop(store);
    let newer = LATEST + 6;
    f.raw(&format!(
        "INSERT INTO schema_version (version, name, applied_at) VALUES ({newer}, 'future', 0)"
    ))
    .await
    .unwrap();
    let err = f.try_open().await.unwrap_err();
    assert!(
        matches!(err, StateError::SchemaTooNew { found, known, .. } if found == newer && known == LATEST),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "state store schema version {newer} is newer than this ebb ({LATEST}); upgrade ebb"
        )),
        "{message}"
    );
    assert!(!err.is_retryable());
}

async fn concurrent_opens_migrate_once(f: Fixture) {
    let (a, b, c, d) = tokio::join!(f.try_open(), f.try_open(), f.try_open(), f.try_open());
    for result in [a, b, c, d] {
        result.unwrap();
    }
    assert_eq!(f.count("SELECT COUNT(*) FROM schema_version").await, LATEST);
}

async fn a_version_1_store_is_migrated_to_the_latest(f: Fixture) {
    let store = f.open().await;
    let run = store
        .create_run(&NewRun::new("acme", "a", RunKind::Sync, Trigger::Manual))
        .await
        .unwrap()
        .run;
    drop(store);
    // Take the store back to version 1, as an older ebb left it (with a run in it).
    f.raw(
        "DROP TABLE schedules; DROP TABLE sync_settings;
         ALTER TABLE outbox DROP COLUMN relay_worker;
         ALTER TABLE outbox DROP COLUMN relay_until;
         DELETE FROM schema_version WHERE version > 1;",
    )
    .await
    .unwrap();
    assert_eq!(f.count("SELECT MAX(version) FROM schema_version").await, 1);

    let upgraded = f.open().await;
    assert_eq!(upgraded.schema_version().await.unwrap(), LATEST);
    assert_eq!(f.count("SELECT COUNT(*) FROM schema_version").await, LATEST);
    assert_eq!(upgraded.get_run(run.id).await.unwrap(), Some(run));
    // Version 2's tables work.
    upgraded.set_paused("acme", "a", true).await.unwrap();
    assert_eq!(upgraded.paused_syncs(None).await.unwrap().len(), 1);
    let new = NewRun::new("acme", "b", RunKind::Sync, Trigger::Schedule);
    assert_eq!(upgraded.fire_schedule(&new, 1_000).await.unwrap(), None);
    assert!(upgraded.fire_schedule(&new, 2_000).await.unwrap().is_some());
    // Version 3's relay lease works.
    upgraded
        .append_event("acme", "t", &serde_json::json!({}))
        .await
        .unwrap();
    let claimed = upgraded
        .claim_events("w", 10, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
}

contract!(
    reopening_keeps_everything,
    a_version_1_store_is_migrated_to_the_latest,
    a_newer_schema_is_refused,
    concurrent_opens_migrate_once,
);

#[tokio::test]
async fn open_from_config_puts_sqlite_in_the_project() {
    let project = tempfile::tempdir().unwrap();
    let store = StateStore::open(&StateConfig::default(), project.path())
        .await
        .unwrap();
    assert_eq!(store.backend(), "sqlite");
    let file = project.path().join(".ebb/state.db");
    assert!(file.is_file(), "{} exists", file.display());
    assert_eq!(Path::new(&store.location()), file);

    let absolute = project.path().join("elsewhere/s.db");
    let config = StateConfig::Sqlite {
        path: absolute.display().to_string(),
    };
    StateStore::open(&config, Path::new("/nonexistent"))
        .await
        .unwrap();
    assert!(absolute.is_file());
}

#[tokio::test]
async fn open_from_config_uses_the_postgres_schema_it_names() {
    let db = PgCluster::shared().fresh_database().await;
    let config = StateConfig::Postgres {
        url: Secret::new(db.url()),
        schema: Some("ops_state".into()),
    };
    let store = StateStore::open(&config, Path::new(".")).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    assert!(
        store.location().contains("schema ops_state"),
        "{}",
        store.location()
    );
    store
        .create_run(&NewRun::new("acme", "s", RunKind::Sync, Trigger::Manual))
        .await
        .unwrap();
    let client = db.connect().await;
    let n: i64 = client
        .query_one("SELECT COUNT(*) FROM ops_state.runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let default_schema: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'ebb_state'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(default_schema, 0, "nothing went to the default schema");
}

#[tokio::test]
async fn bad_postgres_settings_are_explained() {
    let err = StateStore::open_postgres("postgres://localhost/db", Some("Bad-Name"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("state.schema \"Bad-Name\""),
        "{err}"
    );
    let err = StateStore::open_postgres("postgres://u:secretpw@[bad", None)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("not a valid connection string"),
        "{message}"
    );
    assert!(
        !message.contains("secretpw"),
        "the password is never printed: {message}"
    );
}
