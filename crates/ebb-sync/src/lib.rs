//! Runs a reverse-ETL sync end to end, the way `ebb sync run`, `ebb run` and the server's
//! scheduler all do it:
//!
//! 1. **Build** the sync's model and everything it is built on (views are defined, tables
//!    and Parquet models written), once per [`SyncRunner`].
//! 2. **Read** only the columns the sync needs (key, mapped, match) from the model's
//!    relation on its warehouse. A sync with `metric: { name, entity }` reads the metric's
//!    query instead (`ebb-engine`'s metrics layer, compiled for the warehouse its models
//!    live in): one row per entity key, with the columns `<entity>` (the key) and `<metric>`
//!    (the value). From here on it is a model's rows like any other.
//! 3. **Diff** them against the sync's last committed snapshot (`ebb-engine`'s diff):
//!    inserts, updates with the columns that changed, deletes; bad keys left out.
//! 4. **Deliver** the changes in chunks (`ebb-delivery`): the sync's mode decides what each
//!    change becomes, the destination's quota paces the requests, refused records go to the
//!    dead-letter queue with the destination's reason.
//! 5. **Commit** the new snapshot: the old one plus exactly the changes the destination
//!    accepted. A change that was planned but not accepted keeps its old state, so the next
//!    run finds it again and retries it.
//!
//! A dry run stops after step 3 and returns counts and sample payloads; nothing is written.
//! A crash anywhere before step 5 leaves the snapshot as it was: the next run sends the same
//! changes again with the same idempotency keys, so the destination sees them once in effect.

mod destination;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ebb_core::change::ChangeBatch;
use ebb_core::config::project::SyncMode;
use ebb_core::config::sync::{MetricSource, SyncConfig};
use ebb_core::project::{Project, Sync};
use ebb_delivery::{
    DeadLetters, DeliveryError, DeliveryOptions, DeliveryReport, Priority, Quotas, SyncPlan,
    deliver_changes,
};
use ebb_destinations::Record;
use ebb_engine::EngineError;
use ebb_engine::diff::{self, DiffOptions, DiffReport, DiffSpec, SnapshotStore};
use ebb_engine::metrics::{MetricsLayer, per_entity_query};
use ebb_engine::models::Models;
use ebb_warehouse::{AnyWarehouse, quote_ident};

pub use destination::open_destination;

/// The tenant of a sync that names none.
pub const DEFAULT_TENANT: &str = "default";

/// Changes handed to delivery at a time: bounds memory and paces progress reports.
const CHUNK_ROWS: usize = 10_000;

/// Why a sync could not run. Each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no sync named \"{name}\"{}", if known.is_empty() { "; the project has no syncs (add one under syncs/)".to_string() } else { format!("; the project's syncs: {}", known.join(", ")) })]
    UnknownSync { name: String, known: Vec<String> },
    /// A metric sync names a column its rows do not have.
    #[error(transparent)]
    MetricColumn(Box<MetricColumnError>),
    #[error("sync \"{0}\" names no model; set `model:` in syncs/{0}.yml")]
    NoModel(String),
    #[error("sync \"{0}\" has no primary key: set `primary_key` on the sync or on its model's yml")]
    NoKey(String),
    #[error("sync \"{sync}\" cannot use destination \"{destination}\": {reason}")]
    Destination {
        sync: String,
        destination: String,
        reason: String,
    },
    #[error("sync \"{sync}\": {source}")]
    Engine {
        sync: String,
        #[source]
        source: Box<EngineError>,
    },
    #[error("sync \"{sync}\": {source}")]
    Delivery {
        sync: String,
        #[source]
        source: Box<DeliveryError>,
    },
}

/// A metric sync's key, mapping or match names a column other than the entity's key and the
/// metric's value.
#[derive(Debug, thiserror::Error)]
#[error(
    "sync \"{sync}\" reads metric \"{metric}\" per {entity}: its rows have the columns {available}; \
     `{field}` names \"{column}\", which is not one of them"
)]
pub struct MetricColumnError {
    pub sync: String,
    pub metric: String,
    pub entity: String,
    /// `mapping.from`, `match.source` or `primary_key`.
    pub field: String,
    pub column: String,
    /// The columns it has, quoted, for the message.
    pub available: String,
}

impl SyncError {
    fn engine(sync: &str) -> impl FnOnce(EngineError) -> SyncError + '_ {
        move |source| SyncError::Engine {
            sync: sync.to_string(),
            source: Box::new(source),
        }
    }
}

/// How one run goes.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Diff and plan, report counts and sample payloads, write nothing anywhere.
    pub dry_run: bool,
    /// Send every row once more, whatever was delivered before.
    pub full_resync: bool,
    /// Payloads kept as samples (dry runs show them).
    pub samples: usize,
}

/// What happened, reported as the run goes.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Building a model the sync reads.
    Building { model: String },
    /// The diff is done; delivery starts.
    Diffed { report: DiffReport },
    /// Records delivered so far of the changes found.
    Delivering { done: usize, total: usize },
    /// The new snapshot is being committed.
    Committing,
}

/// The final state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every planned record was accepted (or there was nothing to send).
    Succeeded,
    /// Some records were accepted, some refused (they are in the DLQ) or not sent.
    Partial,
    /// Nothing got through, or the destination failed for good.
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
        }
    }
}

/// What one sync run did.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    pub sync: String,
    pub tenant: String,
    pub destination: String,
    pub mode: SyncMode,
    pub dry_run: bool,
    pub diff: DiffReport,
    /// Records the mode turns the changes into (a delete in `upsert` mode sends nothing).
    pub planned: usize,
    /// Delivery counts, summed over the chunks (absent on dry runs).
    pub delivery: Option<DeliveryReport>,
    /// A few payloads as they are (or would be) sent.
    pub samples: Vec<Record>,
    /// The snapshot version committed.
    pub snapshot_version: Option<u64>,
    /// Changes planned but neither accepted nor refused (delivery stopped early): retried
    /// next run.
    pub not_sent: usize,
    pub status: RunStatus,
    pub elapsed: Duration,
}

/// Runs a project's syncs. Holds the models' session (so a model built for one sync is not
/// built again for the next), the snapshot store, the quotas shared by every sync and the
/// dead-letter queue.
pub struct SyncRunner<'p, L> {
    project: &'p Project,
    models: Models<'p>,
    snapshots: SnapshotStore,
    staging: PathBuf,
    quotas: Quotas,
    dead_letters: L,
    built: Mutex<HashSet<String>>,
}

impl<L> std::fmt::Debug for SyncRunner<'_, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncRunner")
            .field("project", &self.project.root)
            .finish_non_exhaustive()
    }
}

/// Where one sync's rows come from.
struct Source<'w> {
    /// A relation or a parenthesized query whose result holds the sync's columns.
    relation: String,
    warehouse: &'w AnyWarehouse,
    key_columns: Vec<String>,
    /// Models to build (with what they are built on) before reading.
    build: Vec<String>,
    /// For a metric sync: the only columns its rows have.
    metric: Option<MetricColumns>,
}

/// The columns of a metric sync's rows: the entity's key and the metric's value.
struct MetricColumns {
    metric: String,
    entity: String,
    available: Vec<String>,
}

impl MetricColumns {
    fn check(&self, sync: &str, field: &str, column: &str) -> Result<(), SyncError> {
        if self.available.iter().any(|c| c == column) {
            Ok(())
        } else {
            Err(self.error(sync, field, column))
        }
    }

    fn error(&self, sync: &str, field: &str, column: &str) -> SyncError {
        SyncError::MetricColumn(Box::new(MetricColumnError {
            sync: sync.to_string(),
            metric: self.metric.clone(),
            entity: self.entity.clone(),
            field: field.to_string(),
            column: column.to_string(),
            available: self
                .available
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(" and "),
        }))
    }
}

/// Where a project keeps what ebb writes for itself.
pub fn state_dir(project: &Project) -> PathBuf {
    project.root.join(".ebb")
}

impl<'p, L: DeadLetters> SyncRunner<'p, L> {
    /// A runner keeping snapshots under `.ebb/snapshots/` in the project.
    pub async fn open(project: &'p Project, dead_letters: L) -> Result<Self, SyncError> {
        let dir = state_dir(project);
        let snapshots =
            SnapshotStore::local(&dir.join("snapshots")).map_err(SyncError::engine("*"))?;
        let models = Models::open(project)
            .await
            .map_err(SyncError::engine("*"))?;
        Ok(SyncRunner {
            project,
            models,
            snapshots,
            staging: dir.join("staging"),
            quotas: Quotas::new(),
            dead_letters,
            built: Mutex::new(HashSet::new()),
        })
    }

    pub fn models(&self) -> &Models<'p> {
        &self.models
    }

    pub fn dead_letters(&self) -> &L {
        &self.dead_letters
    }

    /// The project's syncs in an order that respects `schedule.after` (a sync runs after
    /// the one it follows), then by name.
    pub fn ordered_syncs(&self) -> Vec<&'p Sync> {
        order_syncs(self.project)
    }

    /// The tenant a sync belongs to (`tenant:`, or `default`).
    pub fn tenant_of(&self, sync: &str) -> String {
        self.project
            .sync(sync)
            .and_then(|s| s.config.tenant.as_ref())
            .map_or_else(|| DEFAULT_TENANT.to_string(), |t| t.value.clone())
    }

    /// Marks the model and its upstream as built (e.g. after `ebb models run`).
    pub fn mark_built(&self, model: &str) {
        self.built
            .lock()
            .expect("no panics while held")
            .insert(model.to_string());
    }

    async fn build(
        &self,
        sync: &str,
        model: &str,
        progress: &(dyn Fn(Progress) + std::marker::Sync),
    ) -> Result<(), SyncError> {
        let wanted = self
            .models
            .graph()
            .select(&[format!("+{model}")])
            .map_err(SyncError::engine(sync))?;
        for m in wanted {
            if self
                .built
                .lock()
                .expect("no panics while held")
                .contains(&m.name)
            {
                continue;
            }
            progress(Progress::Building {
                model: m.name.clone(),
            });
            self.models
                .run(&m.name)
                .await
                .map_err(SyncError::engine(sync))?;
            self.mark_built(&m.name);
        }
        Ok(())
    }

    /// Where a sync's rows come from: its model's relation, or its metric per entity.
    fn source(&self, name: &str, config: &SyncConfig) -> Result<Source<'_>, SyncError> {
        if let Some(metric) = &config.metric {
            return self.metric_source(name, metric, config);
        }
        let model_name = config
            .model
            .as_ref()
            .map(|m| m.value.clone())
            .ok_or_else(|| SyncError::NoModel(name.to_string()))?;
        let model = self.project.model(&model_name).ok_or_else(|| {
            SyncError::engine(name)(EngineError::UnknownModel(model_name.clone()))
        })?;
        let key_columns = config
            .primary_key
            .as_ref()
            .map(|k| k.value.0.clone())
            .or_else(|| model.config.primary_key.as_ref().map(|k| k.value.0.clone()))
            .filter(|k| !k.is_empty())
            .ok_or_else(|| SyncError::NoKey(name.to_string()))?;
        let relation = self
            .models
            .relation_or_subquery(&model_name)
            .map_err(SyncError::engine(name))?;
        let warehouse = self
            .models
            .warehouse(model)
            .map_err(SyncError::engine(name))?;
        Ok(Source {
            relation,
            warehouse,
            key_columns,
            build: vec![model_name],
            metric: None,
        })
    }

    /// A metric per entity, compiled by the metrics layer in its warehouse's dialect: one row
    /// per entity key, keyed by the entity's column.
    fn metric_source(
        &self,
        name: &str,
        metric: &MetricSource,
        config: &SyncConfig,
    ) -> Result<Source<'_>, SyncError> {
        let layer = MetricsLayer::new(&self.models);
        let query = per_entity_query(&metric.name.value, &metric.entity.value);
        let (compiled, warehouse) = layer.compile(&query).map_err(SyncError::engine(name))?;
        let columns = MetricColumns {
            metric: metric.name.value.clone(),
            entity: metric.entity.value.clone(),
            available: compiled.columns.iter().map(|c| c.name.clone()).collect(),
        };
        let key_columns = vec![metric.entity.value.clone()];
        if let Some(pk) = &config.primary_key
            && pk.value.0 != key_columns
        {
            return Err(columns.error(name, "primary_key", &pk.value.0.join(", ")));
        }
        Ok(Source {
            relation: format!("(\n{}\n)", compiled.sql),
            warehouse,
            key_columns,
            // The metric inlines its models' SQL; what they read must exist.
            build: compiled.models,
            metric: Some(columns),
        })
    }

    /// Runs one sync: build, read, diff, deliver, commit (see the crate docs).
    pub async fn run(
        &self,
        name: &str,
        options: &RunOptions,
        progress: &(dyn Fn(Progress) + std::marker::Sync),
    ) -> Result<SyncOutcome, SyncError> {
        let started = Instant::now();
        let sync = self
            .project
            .sync(name)
            .ok_or_else(|| SyncError::UnknownSync {
                name: name.to_string(),
                known: self.project.syncs.iter().map(|s| s.name.clone()).collect(),
            })?;
        let config = &sync.config;
        let source = self.source(name, config)?;
        let project_config = self.project.config.as_ref();
        let default_mode = project_config
            .map(|c| c.defaults.sync_mode)
            .unwrap_or_default();
        let plan = SyncPlan::from_config(name, config, default_mode);
        let tenant = self.tenant_of(name);
        let destination_name = config.destination.value.clone();

        // The destination first: a bad configuration fails before any work is done.
        let destination = open_destination(self.project, sync)?;
        let problems = plan.validate(&destination);
        if !problems.is_empty() {
            return Err(SyncError::Destination {
                sync: name.to_string(),
                destination: destination_name,
                reason: problems.join("; "),
            });
        }

        for model in &source.build {
            self.build(name, model, progress).await?;
        }

        // Only the columns the sync needs leave the warehouse.
        let mut columns: Vec<String> = plan.mapping.iter().map(|(from, _)| from.clone()).collect();
        if let Some(m) = &plan.match_column {
            columns.push(m.clone());
        }
        if columns.is_empty() {
            return Err(SyncError::Destination {
                sync: name.to_string(),
                destination: destination_name,
                reason: "the sync maps no fields; add `mapping:` entries".into(),
            });
        }
        if let Some(metric) = &source.metric {
            let froms = plan.mapping.iter().map(|(from, _)| ("mapping.from", from));
            let matched = plan.match_column.iter().map(|m| ("match.source", m));
            for (field, column) in froms.chain(matched) {
                metric.check(name, field, column)?;
            }
        }
        let Source {
            relation,
            warehouse,
            key_columns,
            ..
        } = source;
        let mut read: Vec<&String> = key_columns.iter().chain(columns.iter()).collect();
        let mut seen = HashSet::new();
        read.retain(|c| seen.insert(c.as_str()));
        let sql = format!(
            "select {} from {relation} as __ebb_sync",
            read.iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let spec = DiffSpec {
            sync: name.to_string(),
            key_columns,
            columns,
        };
        let diff_options = DiffOptions {
            skip_initial_backfill: config.skip_initial_backfill,
            full_resync: options.full_resync,
            staging_dir: Some(self.staging.clone()),
            ..DiffOptions::default()
        };
        // A lake diffs on DataFusion here; a Postgres warehouse diffs inside itself, so only
        // the changes leave it.
        let pending = diff::diff_model(warehouse, &sql, spec, &self.snapshots, diff_options)
            .await
            .map_err(SyncError::engine(name))?;
        let report = pending.report().clone();
        progress(Progress::Diffed {
            report: report.clone(),
        });

        let mut outcome = SyncOutcome {
            sync: name.to_string(),
            tenant: tenant.clone(),
            destination: destination_name,
            mode: plan.mode,
            dry_run: options.dry_run,
            diff: report,
            planned: 0,
            delivery: None,
            samples: Vec::new(),
            snapshot_version: None,
            not_sent: 0,
            status: RunStatus::Succeeded,
            elapsed: Duration::ZERO,
        };

        // Which changes the mode sends, by key: the ones that must be accepted to commit.
        let mut planned_keys: HashSet<String> = HashSet::new();
        let mut chunks: Vec<Vec<ChangeBatch>> = vec![Vec::new()];
        let mut rows_in_chunk = 0;
        for batch in pending.changes().map_err(SyncError::engine(name))? {
            let batch = batch.map_err(SyncError::engine(name))?;
            for row in 0..batch.num_rows() {
                if plan.operation(batch.op(row)).is_some() {
                    planned_keys.insert(batch.key(row).to_string());
                }
            }
            if outcome.samples.len() < options.samples {
                let records =
                    ebb_delivery::plan::plan(&batch, &plan).map_err(|e| SyncError::Delivery {
                        sync: name.to_string(),
                        source: Box::new(e.into()),
                    })?;
                let room = options.samples - outcome.samples.len();
                outcome.samples.extend(records.into_iter().take(room));
            }
            rows_in_chunk += batch.num_rows();
            chunks.last_mut().expect("never empty").push(batch);
            if rows_in_chunk >= CHUNK_ROWS {
                chunks.push(Vec::new());
                rows_in_chunk = 0;
            }
        }
        outcome.planned = planned_keys.len();
        if options.dry_run {
            outcome.elapsed = started.elapsed();
            return Ok(outcome);
        }

        let mut total = DeliveryReport::default();
        let mut delivery_options = DeliveryOptions::new(&tenant, name);
        delivery_options.priority = Priority::Bulk;
        let mut done = 0;
        progress(Progress::Delivering {
            done,
            total: outcome.planned,
        });
        for (i, chunk) in chunks.iter().enumerate() {
            // The sync's dead letters are retried with the first chunk only.
            delivery_options.retry_dead_letters = i == 0;
            if chunk.is_empty() && i > 0 {
                continue;
            }
            let report = deliver_changes(
                chunk,
                &plan,
                &destination,
                &self.quotas,
                &self.dead_letters,
                &delivery_options,
            )
            .await
            .map_err(|source| SyncError::Delivery {
                sync: name.to_string(),
                source: Box::new(source),
            })?;
            done += chunk.iter().map(ChangeBatch::num_rows).sum::<usize>();
            progress(Progress::Delivering {
                done: done.min(outcome.planned),
                total: outcome.planned,
            });
            let aborted = report.aborted.clone();
            add(&mut total, report);
            if aborted.is_some() {
                break;
            }
        }

        // Commit: every planned change the destination did not accept keeps its old state.
        progress(Progress::Committing);
        let accepted: HashSet<&str> = total.accepted_keys.iter().map(String::as_str).collect();
        let rejected: HashSet<String> = planned_keys
            .into_iter()
            .filter(|k| !accepted.contains(k.as_str()))
            .collect();
        let refused: HashSet<&str> = total.rejected_keys.iter().map(String::as_str).collect();
        outcome.not_sent = rejected
            .iter()
            .filter(|k| !refused.contains(k.as_str()))
            .count();
        let manifest = pending
            .commit(&self.snapshots, &rejected)
            .await
            .map_err(SyncError::engine(name))?;
        outcome.snapshot_version = Some(manifest.version);
        outcome.status = if total.aborted.is_some() && total.accepted == 0 {
            RunStatus::Failed
        } else if rejected.is_empty() && total.aborted.is_none() {
            RunStatus::Succeeded
        } else if total.accepted == 0 && outcome.planned > 0 {
            RunStatus::Failed
        } else {
            RunStatus::Partial
        };
        outcome.delivery = Some(total);
        outcome.elapsed = started.elapsed();
        Ok(outcome)
    }
}

fn add(total: &mut DeliveryReport, r: DeliveryReport) {
    total.planned += r.planned;
    total.sent += r.sent;
    total.accepted += r.accepted;
    total.rejected += r.rejected;
    total.retried += r.retried;
    total.dead_letters_retried += r.dead_letters_retried;
    total.requests += r.requests;
    total.throttled += r.throttled;
    total.splits += r.splits;
    total.accepted_keys.extend(r.accepted_keys);
    total.rejected_keys.extend(r.rejected_keys);
    if total.aborted.is_none() {
        total.aborted = r.aborted;
    }
}

/// The project's syncs, each after the sync its `schedule.after` names, otherwise by name.
pub fn order_syncs(project: &Project) -> Vec<&Sync> {
    let mut syncs: Vec<&Sync> = project.syncs.iter().collect();
    syncs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut ordered: Vec<&Sync> = Vec::with_capacity(syncs.len());
    let mut placed: HashSet<&str> = HashSet::new();
    // `ebb check` rejects cycles; a leftover (an `after` naming no sync) goes last.
    while ordered.len() < syncs.len() {
        let before = ordered.len();
        for s in &syncs {
            if placed.contains(s.name.as_str()) {
                continue;
            }
            let after = s
                .config
                .schedule
                .as_ref()
                .and_then(|sch| sch.value.after.as_ref())
                .map(|a| a.value.as_str());
            let ready = match after {
                Some(a) => placed.contains(a) || !syncs.iter().any(|o| o.name == a),
                None => true,
            };
            if ready {
                ordered.push(s);
                placed.insert(s.name.as_str());
            }
        }
        if ordered.len() == before {
            for s in &syncs {
                if placed.insert(s.name.as_str()) {
                    ordered.push(s);
                }
            }
        }
    }
    ordered
}

/// The folder that holds `project`'s snapshots, for messages.
pub fn snapshots_dir(project: &Project) -> PathBuf {
    state_dir(project).join("snapshots")
}

/// A path shown relative to the current folder when it is below it.
pub fn display_path(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}
