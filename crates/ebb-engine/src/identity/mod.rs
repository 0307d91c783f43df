//! Identity resolution: the same customer in the CRM, billing and support tools becomes one
//! cluster with a stable id and a golden record.
//!
//! A run reads the identity space's source models through DataFusion (the only SQL in it),
//! then works in plain Rust over the records:
//!
//! 1. [`normalize`]: each attribute to a canonical form (lowercase email, E.164 phone,
//!    accent-folded name, `YYYY-MM-DD` date).
//! 2. [`blocking`] + [`rules`]: every rule compares only the pairs that share one of its
//!    blocking keys (several passes, their union, oversized blocks skipped with a warning);
//!    rules are exact, fuzzy (Jaro-Winkler, Levenshtein thresholds) or Fellegi-Sunter (m/u
//!    per comparison level, estimated by EM over the candidates with u from random pairs,
//!    or given; a match-probability threshold).
//! 3. [`cluster`]: matched pairs strongest first into a union-find, refusing any edge that
//!    would join two values of a strong attribute or exceed the size limit. The kept edges
//!    are the rule chains [`explain`] prints.
//! 4. [`stable`]: ids carried over from the previous run (merges keep the oldest, splits get
//!    new ids), with a queryable history, committed atomically as Parquet under
//!    `.ebb/identity/<name>/`.
//! 5. [`golden`]: survivorship per attribute; `<name>_resolved` and `<name>_golden` written
//!    as Parquet-materialized models on the lake so `ref('<name>_golden')` reads them.
//! 6. [`evaluate`]: pair precision/recall when a truth table is configured.
//!
//! # Layout
//! - [`resolve`]: the [`Resolver`], compiled from config; pure and synchronous.
//! - this file: the async glue to a project's [`Models`] ([`run`], [`explain`], [`history`]).

pub mod blocking;
pub mod cluster;
pub mod evaluate;
pub mod golden;
pub mod normalize;
pub mod records;
pub mod resolve;
pub mod rules;
pub mod stable;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use ebb_core::config::identity::IdentityConfig;
use ebb_core::config::project::Materialized;
use ebb_core::project::{Identity, Project};
use ebb_warehouse::{Relation, Warehouse};
use futures::TryStreamExt;

pub use cluster::{Clusters, Cut, Edge};
pub use evaluate::Evaluation;
pub use records::{Records, SourceBatch};
pub use resolve::{Resolution, Resolver, RuleStats};
pub use stable::{IdChanges, IdState, IdStore};

use crate::EngineError;
use crate::models::Models;

/// Where a project keeps identity state, relative to its root.
pub const STATE_DIR: &str = ".ebb/identity";

/// What `ebb identity run` reports.
#[derive(Debug, Clone)]
pub struct IdentityRun {
    pub name: String,
    /// The run number (1 for the first).
    pub run: u64,
    pub records: u64,
    pub compared: u64,
    pub matched: u64,
    pub clusters: u64,
    pub largest_cluster: u64,
    /// Clusters with more than one record.
    pub multi_record_clusters: u64,
    pub rules: Vec<RuleStats>,
    pub changes: IdChanges,
    pub warnings: Vec<String>,
    pub evaluation: Option<Evaluation>,
    /// Where the id state and history were committed.
    pub state_location: String,
    /// Where `<name>_resolved` and `<name>_golden` were written (lake models), if they were.
    pub outputs: Vec<String>,
    pub read_time: Duration,
    pub resolve_time: Duration,
    pub elapsed: Duration,
}

fn identity<'p>(project: &'p Project, name: &str) -> Result<&'p Identity, EngineError> {
    project
        .identities
        .iter()
        .find(|i| i.name == name)
        .ok_or_else(|| {
            let names = project.identities.iter().map(|i| i.name.as_str());
            let hint = ebb_core::diagnostic::closest(name, names)
                .map(|c| format!(" (did you mean \"{c}\"?)"))
                .unwrap_or_default();
            EngineError::Identity(format!(
                "no identity space named \"{name}\"{hint}; they are the files under identity/"
            ))
        })
}

async fn query_all(
    models: &Models<'_>,
    model_or_source: &str,
) -> Result<Vec<RecordBatch>, EngineError> {
    let (warehouse, sql) = match model_or_source.split_once('.') {
        Some((source, table)) if models.project().model(model_or_source).is_none() => {
            let config = models
                .project()
                .config
                .as_ref()
                .ok_or(EngineError::NoProject)?;
            let wh_name = config
                .sources
                .get(source)
                .and_then(|s| s.warehouse.as_ref().map(|w| w.value.clone()))
                .or_else(|| config.default_warehouse().map(str::to_string))
                .ok_or_else(|| EngineError::NoWarehouse(model_or_source.into()))?;
            let warehouse = models
                .warehouse_named(&wh_name)
                .ok_or_else(|| EngineError::NoWarehouse(model_or_source.into()))?;
            let rel = warehouse.relation_sql(&Relation::Source {
                source: source.into(),
                table: table.into(),
            });
            (warehouse, format!("select * from {rel}"))
        }
        _ => {
            let model = models
                .project()
                .model(model_or_source)
                .ok_or_else(|| EngineError::UnknownModel(model_or_source.into()))?;
            let rel = models.relation_or_subquery(model_or_source)?;
            (
                models.warehouse(model)?,
                format!("select * from {rel} as __ebb_identity_source"),
            )
        }
    };
    let stream = warehouse
        .query(&sql)
        .await
        .map_err(|e| EngineError::model(model_or_source, e))?;
    stream
        .try_collect()
        .await
        .map_err(|e| EngineError::model(model_or_source, e.into()))
}

/// Reads the identity space's records from its source models.
pub async fn load(
    models: &Models<'_>,
    config: &IdentityConfig,
    resolver: &Resolver,
) -> Result<Records, EngineError> {
    let mut sources = Vec::new();
    for s in &config.sources.value {
        let model = ebb_core::config::model::ref_target(&s.model.value).to_string();
        let batches = query_all(models, &model).await?;
        sources.push(SourceBatch {
            source: model,
            batches,
            key: s.key.value.clone(),
            updated_at: s.updated_at.as_ref().map(|u| u.value.clone()),
            columns: s
                .attributes
                .iter()
                .map(|(a, c)| (a.value.clone(), c.value.clone()))
                .collect(),
        });
    }
    Records::load(&resolver.attributes, &sources).map_err(EngineError::Identity)
}

async fn load_truth(
    models: &Models<'_>,
    config: &IdentityConfig,
) -> Result<Option<HashMap<(String, String), String>>, EngineError> {
    let Some(t) = &config.truth else {
        return Ok(None);
    };
    let target = ebb_core::config::model::ref_target(&t.relation.value);
    let mut truth = HashMap::new();
    for b in query_all(models, target).await? {
        let col = |name: &str| {
            let i = b.schema().index_of(name).map_err(|_| {
                EngineError::Identity(format!("truth table {target} has no column \"{name}\""))
            })?;
            cast(b.column(i), &DataType::Utf8)
                .map_err(|e| EngineError::Identity(format!("truth table {target}: {e}")))
        };
        let (s, r, e) = (
            col(&t.source_column)?,
            col(&t.record_column)?,
            col(&t.entity_column)?,
        );
        let (s, r, e) = (
            s.as_string::<i32>(),
            r.as_string::<i32>(),
            e.as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            if s.is_valid(i) && r.is_valid(i) && e.is_valid(i) {
                truth.insert(
                    (s.value(i).to_string(), r.value(i).trim().to_string()),
                    e.value(i).to_string(),
                );
            }
        }
    }
    Ok(Some(truth))
}

use arrow::array::Array as _;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Runs identity space `name`: resolve, assign stable ids, commit the state, write the
/// `<name>_resolved` and `<name>_golden` models. `progress` hears each step.
pub async fn run(
    models: &Models<'_>,
    name: &str,
    progress: &dyn Fn(&str),
) -> Result<IdentityRun, EngineError> {
    let started = Instant::now();
    let project = models.project();
    let space = identity(project, name)?;
    let config = &space.config;
    let resolver = Resolver::new(config).map_err(EngineError::Identity)?;
    progress("reading source models");
    let records = load(models, config, &resolver).await?;
    let truth = load_truth(models, config).await?;
    let read_time = started.elapsed();
    let t = Instant::now();
    let resolution = resolver.resolve(&records, progress);
    let resolve_time = t.elapsed();
    progress("assigning stable ids");
    let store = IdStore::local(&project.root.join(STATE_DIR))?;
    let previous = store.load(name).await?;
    let (state, id_of, changes) = previous.assign(&records, &resolution.clusters, now_micros());
    let resolved = golden::resolved(&records, &resolution.clusters, &id_of)?;
    let golden = golden::golden(
        config,
        &resolver.attributes,
        &records,
        &resolution.clusters,
        &id_of,
    )?;
    progress("committing");
    store
        .commit_with_outputs(name, &state, &resolved, &golden)
        .await?;
    let outputs = write_outputs(models, config, name, &resolved, &golden).await?;
    let sizes = resolution.clusters.sizes();
    let evaluation = truth
        .map(|t| evaluate::evaluate(&records, &resolution.clusters.of, &t, resolver.link_only));
    Ok(IdentityRun {
        name: name.to_string(),
        run: state.run,
        records: records.len() as u64,
        compared: resolution.compared(),
        matched: resolution.matched(),
        clusters: sizes.len() as u64,
        largest_cluster: sizes.values().copied().max().unwrap_or(0) as u64,
        multi_record_clusters: sizes.values().filter(|&&n| n > 1).count() as u64,
        rules: resolution.rules.clone(),
        changes,
        warnings: resolution.warnings.clone(),
        evaluation,
        state_location: store.version_url(name, state.run),
        outputs,
        read_time,
        resolve_time,
        elapsed: started.elapsed(),
    })
}

/// Writes the two output models on the lake of the first source model, as Parquet with a
/// `CURRENT` pointer (the lake's model layout), so `ref('<name>_resolved')` reads them.
/// Other warehouses get no copy: the Parquet files under `.ebb/identity/<name>/` are the
/// output there.
async fn write_outputs(
    models: &Models<'_>,
    config: &IdentityConfig,
    name: &str,
    resolved: &RecordBatch,
    golden: &RecordBatch,
) -> Result<Vec<String>, EngineError> {
    let Some(first) = config.sources.value.first() else {
        return Ok(Vec::new());
    };
    let Some(model) = models
        .project()
        .model(ebb_core::config::model::ref_target(&first.model.value))
    else {
        return Ok(Vec::new());
    };
    let warehouse = models.warehouse(model)?;
    let Some(lake) = warehouse.as_lake() else {
        return Ok(Vec::new());
    };
    let mut locations = Vec::new();
    for (suffix, batch) in [("resolved", resolved), ("golden", golden)] {
        let model = format!("{name}_{suffix}");
        let temp = format!("__ebb_identity_{suffix}");
        let ctx = lake.context();
        ctx.deregister_table(temp.as_str())
            .map_err(|e| EngineError::Identity(e.to_string()))?;
        ctx.register_batch(temp.as_str(), batch.clone())
            .map_err(|e| EngineError::Identity(e.to_string()))?;
        let done = warehouse
            .materialize(
                &model,
                &format!("select * from {temp}"),
                Materialized::Parquet,
            )
            .await
            .map_err(|e| EngineError::model(&model, e));
        let _ = ctx.deregister_table(temp.as_str());
        locations.push(done?.location);
    }
    Ok(locations)
}

/// Why two records are together or apart, in words.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub a: String,
    pub b: String,
    /// Same cluster (after the guards).
    pub together: bool,
    pub text: String,
}

/// Resolves `name` in memory (nothing is committed) and explains records `a` and `b`
/// (`SOURCE:KEY`, or a key that only one source has).
pub async fn explain(
    models: &Models<'_>,
    name: &str,
    a: &str,
    b: &str,
) -> Result<Explanation, EngineError> {
    let space = identity(models.project(), name)?;
    let resolver = Resolver::new(&space.config).map_err(EngineError::Identity)?;
    let records = load(models, &space.config, &resolver).await?;
    let (ia, ib) = (
        records.find(a).map_err(EngineError::Identity)?,
        records.find(b).map_err(EngineError::Identity)?,
    );
    let resolution = resolver.resolve(&records, &|_| {});
    Ok(explain_pair(&resolver, &records, &resolution, ia, ib))
}

/// Explains records `ia` and `ib` of a resolution.
pub fn explain_pair(
    resolver: &Resolver,
    r: &Records,
    resolution: &Resolution,
    ia: usize,
    ib: usize,
) -> Explanation {
    let c = &resolution.clusters;
    let rules = &resolution.trained;
    let mut text = String::new();
    let (la, lb) = (r.label(ia), r.label(ib));
    let together = c.of[ia] == c.of[ib];
    if ia == ib {
        let _ = writeln!(text, "{la} is one record");
    } else if let Some(path) = c.path(ia as u32, ib as u32) {
        let _ = writeln!(
            text,
            "{la} and {lb} are in one cluster, joined by {} matched pair{}:",
            path.len(),
            if path.len() == 1 { "" } else { "s" }
        );
        let mut at = ia as u32;
        for e in &path {
            let next = if e.a == at { e.b } else { e.a };
            let rule = &rules[e.rule as usize];
            let _ = writeln!(
                text,
                "  {} -> {}  rule {} (score {:.3}): {}",
                r.label(at as usize),
                r.label(next as usize),
                rule.name,
                e.score,
                rule.describe(r, at as usize, next as usize)
            );
            at = next;
        }
    } else {
        let _ = writeln!(text, "{la} and {lb} are in different clusters.");
        let _ = writeln!(text, "Each rule on this pair directly:");
        for rule in rules {
            let blocked = rule.passes.iter().any(|p| {
                p.iter()
                    .all(|&x| r.norm[x].get(ia).is_some() && r.norm[x].get(ia) == r.norm[x].get(ib))
            });
            let _ = writeln!(
                text,
                "  {}: {}{}",
                rule.name,
                rule.describe(r, ia, ib),
                if blocked {
                    ""
                } else {
                    " (not a candidate: they share no blocking key of this rule)"
                }
            );
        }
        let (ca, cb) = (c.of[ia], c.of[ib]);
        let cuts: Vec<_> = c
            .cut
            .iter()
            .filter(|(e, _)| {
                let (x, y) = (c.of[e.a as usize], c.of[e.b as usize]);
                (x == ca && y == cb) || (x == cb && y == ca)
            })
            .collect();
        for (e, why) in cuts {
            let reason = match why {
                Cut::Conflict { attribute, values } => format!(
                    "it would put two {} values in one cluster (\"{}\" and \"{}\")",
                    r.attributes[*attribute], values.0, values.1
                ),
                Cut::TooLarge { size, limit } => {
                    format!("the cluster would have {size} records (max_cluster_size {limit})")
                }
            };
            let _ = writeln!(
                text,
                "A match between their clusters was cut: {} ~ {} by rule {} (score {:.3}), because {reason}.",
                r.label(e.a as usize),
                r.label(e.b as usize),
                rules[e.rule as usize].name,
                e.score
            );
        }
        let _ = resolver;
    }
    Explanation {
        a: la,
        b: lb,
        together,
        text,
    }
}

/// The committed id state of `name` (history, clusters, assignments).
pub async fn history(project: &Project, name: &str) -> Result<IdState, EngineError> {
    identity(project, name)?;
    IdStore::local(&project.root.join(STATE_DIR))?
        .load(name)
        .await
}
