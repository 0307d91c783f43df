//! `ebb serve` as separate processes on one Postgres state store, killed with SIGKILL in the
//! middle of a sync: every record reaches the webhook receiver exactly once, and scheduled
//! runs execute once however many processes run the scheduler.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ebb_testkit::PgCluster;
use ebb_testkit::emulators::webhook::{WebhookOptions, WebhookReceiver};
use serde_json::Value;

const SECRET: &str = "whsec_L0eGefLzfEu8fI7tbSD7Sw7HVMUV5lTG";

/// A project whose sync `people` sends `rows` people to `hook_url`, 5 per message (at the
/// webhook destination's default pace that takes seconds), and whose sync `ticker` runs
/// every 2 s.
fn write_project(root: &Path, hook_url: &str, rows: usize) {
    let w = |rel: &str, text: &str| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let mut csv = String::from("id,name\n");
    for i in 1..=rows {
        csv.push_str(&format!("{i},Person {i}\n"));
    }
    w("data/people.csv", &csv);
    w("data/ticks.csv", "id,name\n1,tick\n");
    w(
        "ebb.yml",
        &format!(
            "name: serve_e2e\nwarehouses:\n  lake:\n    type: lake\n    path: data\n\
             sources:\n  app:\n    warehouse: lake\n    tables:\n      people:\n        path: people.csv\n        format: csv\n      ticks:\n        path: ticks.csv\n        format: csv\n\
             destinations:\n  hooks:\n    type: webhook\n    url: {hook_url}\n    secret: ${{TEST_HOOK_SECRET}}\n    batch_size: 5\n    timeout: 10s\n"
        ),
    );
    w(
        "models/people.sql",
        "select id, name from {{ source('app', 'people') }}\n",
    );
    w(
        "models/ticks.sql",
        "select id, name from {{ source('app', 'ticks') }}\n",
    );
    let sync = |model: &str, extra: &str| {
        format!(
            "model: {model}\ndestination: hooks\nobject: person\nmode: upsert\nprimary_key: id\n\
             mapping:\n  - {{ from: id, to: id }}\n  - {{ from: name, to: name }}\n{extra}"
        )
    };
    w("syncs/people.yml", &sync("people", ""));
    w(
        "syncs/ticker.yml",
        &sync("ticks", "schedule:\n  every: 2s\n"),
    );
}

/// One `ebb serve` process.
struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    fn start(project: &Path, state_url: &str, worker: &str, scheduler: bool) -> Serve {
        Serve::start_with(
            project,
            state_url,
            worker,
            scheduler,
            &["--lease-seconds", "3"],
        )
    }

    fn start_with(
        project: &Path,
        state_url: &str,
        worker: &str,
        scheduler: bool,
        extra: &[&str],
    ) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ebb"));
        cmd.args(["serve", "-P"])
            .arg(project)
            .args(["--listen", "127.0.0.1:0", "--workers", "1"])
            .args(extra)
            .args(["--worker-id", worker, "--state-url", state_url])
            .env("TEST_HOOK_SECRET", SECRET)
            .env("EBB_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !scheduler {
            cmd.arg("--no-scheduler");
        }
        let mut child = cmd.spawn().expect("ebb serve starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("ebb serve prints its address").unwrap();
        let base = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_string();
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Serve { child, base }
    }

    /// SIGTERM, then wait for the process to exit; how long it took.
    fn terminate(mut self) -> Duration {
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(
            exit.success(),
            "ebb serve exits cleanly on SIGTERM: {exit:?}"
        );
        started.elapsed()
    }

    /// SIGKILL: no shutdown, no cleanup.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(project: &Path, state_url: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["tokens", "create", "-P"])
        .arg(project)
        .args(["--state-url", state_url, "--scope", "admin"])
        .env("TEST_HOOK_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn get(url: &str, token: &str) -> Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn trigger(base: &str, token: &str, sync: &str) -> i64 {
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/v1/syncs/{sync}/trigger"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["run"]["id"].as_i64().unwrap_or_else(|| panic!("{v}"))
}

async fn run_of(base: &str, token: &str, id: i64) -> Value {
    get(&format!("{base}/v1/runs/{id}"), token).await["run"].clone()
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// What each test starts from: a webhook receiver, a project sending `rows` people to it,
/// a fresh Postgres database for the state store and an admin token.
struct Setup {
    receiver: WebhookReceiver,
    dir: tempfile::TempDir,
    _db: ebb_testkit::TestDatabase,
    url: String,
    token: String,
}

impl Setup {
    async fn new(rows: usize) -> Setup {
        let receiver = WebhookReceiver::start_with(WebhookOptions {
            secret: Some(SECRET.into()),
            ..WebhookOptions::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_project(dir.path(), &receiver.url(), rows);
        let db = PgCluster::shared().fresh_database().await;
        let url = db.url();
        let token = token(dir.path(), &url);
        Setup {
            receiver,
            dir,
            _db: db,
            url,
            token,
        }
    }
}

fn assert_each_once(receiver: &WebhookReceiver, rows: usize) {
    let applied = receiver.applied();
    assert_eq!(applied.len(), rows, "every record arrived");
    let twice: Vec<_> = applied.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "records applied more than once: {twice:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_sync_then_restart_applies_every_record_exactly_once() {
    let rows = 1500;
    let Setup {
        receiver,
        dir,
        _db,
        url,
        token,
    } = Setup::new(rows).await;

    let first = Serve::start(dir.path(), &url, "first", false);
    let base = first.base.clone();
    let id = trigger(&base, &token, "people").await;
    wait_until(
        "a part of the records",
        Duration::from_secs(60),
        async || receiver.applied().len() >= 200,
    )
    .await;
    first.kill();
    let delivered_before = receiver.applied().len();
    assert!(
        delivered_before < rows,
        "killed before the end ({delivered_before})"
    );

    // A new process takes the run over once the dead one's lease (3 s) expires.
    let second = Serve::start(dir.path(), &url, "second", false);
    let base = second.base.clone();
    wait_until("the run to finish", Duration::from_secs(120), async || {
        run_of(&base, &token, id).await["status"] == "succeeded"
    })
    .await;
    let run = run_of(&base, &token, id).await;
    assert_eq!(run["attempts"], 2, "{run}");
    assert_eq!(run["worker"], "second#0", "{run}");
    assert_each_once(&receiver, rows);

    // Nothing is left: the next run sends nothing.
    let again = trigger(&base, &token, "people").await;
    wait_until("the second run", Duration::from_secs(60), async || {
        run_of(&base, &token, again).await["status"] == "succeeded"
    })
    .await;
    assert_eq!(run_of(&base, &token, again).await["counts"]["planned"], 0);
    assert_each_once(&receiver, rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_run_each_scheduled_run_once_and_take_over_a_killed_ones_run() {
    let rows = 1500;
    let Setup {
        receiver,
        dir,
        _db,
        url,
        token,
    } = Setup::new(rows).await;
    let mut serves: Vec<Option<Serve>> = ["w1", "w2", "w3"]
        .iter()
        .map(|w| Some(Serve::start(dir.path(), &url, w, true)))
        .collect();
    let base = serves[0].as_ref().unwrap().base.clone();
    let started = Instant::now();

    // A long sync; kill whichever process took it.
    let id = trigger(&base, &token, "people").await;
    wait_until(
        "the sync to be running and sending",
        Duration::from_secs(60),
        async || {
            run_of(&base, &token, id).await["status"] == "running"
                && receiver.applied().len() >= 100
        },
    )
    .await;
    let holder = run_of(&base, &token, id).await["worker"]
        .as_str()
        .unwrap()
        .to_string();
    let victim = ["w1", "w2", "w3"]
        .iter()
        .position(|w| holder.starts_with(&format!("{w}#")))
        .unwrap_or_else(|| panic!("unknown worker {holder}"));
    serves[victim].take().unwrap().kill();
    let alive = serves.iter().flatten().next().unwrap().base.clone();
    wait_until(
        "another process to finish the run",
        Duration::from_secs(120),
        async || run_of(&alive, &token, id).await["status"] == "succeeded",
    )
    .await;
    let run = run_of(&alive, &token, id).await;
    assert_eq!(run["attempts"], 2, "{run}");
    assert_ne!(run["worker"].as_str().unwrap(), holder, "{run}");

    // Let the ticker fire a few more times with two processes, then count its runs.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let elapsed = started.elapsed();
    let runs = get(&format!("{alive}/v1/runs?sync=ticker&limit=500"), &token).await;
    let runs = runs["items"].as_array().unwrap().clone();
    // One run per due instant (every 2 s), never two: the first instant a process saw
    // only arms the schedule, so at most elapsed / 2 s runs.
    let most = elapsed.as_secs() / 2 + 1;
    assert!(runs.len() >= 2, "the schedule fired: {runs:?}");
    assert!(
        runs.len() as u64 <= most,
        "{} runs in {elapsed:?}: {runs:?}",
        runs.len()
    );
    let mut created: Vec<i64> = runs
        .iter()
        .map(|r| r["created_at"].as_i64().unwrap())
        .collect();
    created.sort();
    for pair in created.windows(2) {
        assert!(
            pair[1] - pair[0] >= 1000,
            "two runs for one instant: {created:?}"
        );
    }
    for r in &runs {
        assert_eq!(r["trigger"], "schedule");
        assert!(
            r["attempts"].as_i64().unwrap() <= 1 || r["status"] == "succeeded",
            "{r}"
        );
    }
    // The killed sync's records: each exactly once; the ticker's one record, once (its
    // later runs find nothing changed).
    let applied = receiver.applied();
    assert_eq!(applied.len(), rows + 1);
    assert!(
        applied.values().all(|n| *n == 1),
        "a record was applied twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_run_in_flight_after_the_grace_period_for_another_process() {
    let rows = 1500;
    let Setup {
        receiver,
        dir,
        _db,
        url,
        token,
    } = Setup::new(rows).await;
    // A lease far longer than the test: only the release at shutdown lets another process
    // take the run over in time.
    let long = ["--lease-seconds", "600", "--grace-seconds", "1"];
    // Slow the receiver down (20 messages a second, 429 beyond) so the sync outlasts the
    // grace period.
    receiver.set_rate_limit(20, Duration::from_secs(1));
    let first = Serve::start_with(dir.path(), &url, "first", false, &long);
    let base = first.base.clone();
    let id = trigger(&base, &token, "people").await;
    wait_until(
        "a part of the records",
        Duration::from_secs(60),
        async || receiver.applied().len() >= 100,
    )
    .await;
    let took = first.terminate();
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    assert!(receiver.applied().len() < rows, "released before the end");

    let second = Serve::start_with(dir.path(), &url, "second", false, &long);
    let base = second.base.clone();
    wait_until("the run to finish", Duration::from_secs(120), async || {
        run_of(&base, &token, id).await["status"] == "succeeded"
    })
    .await;
    let run = run_of(&base, &token, id).await;
    assert_eq!(run["attempts"], 2, "{run}");
    assert_eq!(run["worker"], "second#0", "{run}");
    assert_each_once(&receiver, rows);
}
