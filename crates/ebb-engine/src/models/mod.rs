//! SQL models: compile `ref()`/`source()` into the warehouse's relations, run them in
//! dependency order, enforce declared column types, and run column tests.
//!
//! # Layout
//! - [`graph`]: the DAG and `--select`.
//! - [`contract`]: declared column types against what a model returns.
//! - [`tests`]: `not_null`, `unique`, `accepted_values`, `relationships` as SQL.
//! - this file: [`Models`], a project's models on their warehouses.

pub mod contract;
pub mod graph;
pub mod tests;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use ebb_core::config::project::Materialized;
use ebb_core::project::sql::{TemplateRef, render};
use ebb_core::project::{Model, Project};
use ebb_warehouse::{AnyWarehouse, Relation, SourceTable, Warehouse};
use futures::TryStreamExt;

pub use contract::Violation;
pub use graph::ModelGraph;
pub use tests::{TestOutcome, TestSpec};

use crate::EngineError;

/// A project's models, attached to their warehouses and ready to compile, run and test.
#[derive(Debug)]
pub struct Models<'p> {
    project: &'p Project,
    graph: ModelGraph<'p>,
    warehouses: BTreeMap<String, AnyWarehouse>,
}

/// What running one model did.
#[derive(Debug, Clone)]
pub struct ModelRun {
    pub model: String,
    pub materialized: Materialized,
    /// Rows written, for models written out (parquet, table).
    pub rows: Option<u64>,
    pub location: String,
    pub elapsed: Duration,
}

impl<'p> Models<'p> {
    /// Opens every warehouse the project's models use, makes its sources readable, and
    /// makes every model queryable: views are defined, Parquet models from an earlier run are
    /// attached (or stand in as views until their first run).
    pub async fn open(project: &'p Project) -> Result<Models<'p>, EngineError> {
        let config = project.config.as_ref().ok_or(EngineError::NoProject)?;
        let graph = ModelGraph::new(project)?;
        let mut warehouses = BTreeMap::new();
        for (name, w) in config.warehouses.iter() {
            let warehouse = AnyWarehouse::open(&name.value, &w.value, &project.root)?;
            let tables: Vec<SourceTable> = config
                .sources
                .iter()
                .filter(|(_, s)| {
                    s.warehouse.as_ref().map(|w| w.value.as_str()) == Some(name.value.as_str())
                        || (s.warehouse.is_none()
                            && config.default_warehouse() == Some(name.value.as_str()))
                })
                .flat_map(|(source, s)| {
                    s.tables.iter().map(move |(table, t)| SourceTable {
                        source: source.value.clone(),
                        table: table.value.clone(),
                        path: t.path.as_ref().map(|p| p.value.clone()),
                        format: t.format,
                        schema: s.schema.clone(),
                        identifier: t.identifier.clone(),
                    })
                })
                .collect();
            warehouse.attach_sources(&tables).await?;
            warehouses.insert(name.value.clone(), warehouse);
        }
        let models = Models {
            project,
            graph,
            warehouses,
        };
        // Identity outputs (`<name>_resolved`, `<name>_golden`) written by an earlier
        // `ebb identity run` are models too, for `ref()`.
        for identity in &project.identities {
            for suffix in ["resolved", "golden"] {
                let name = format!("{}_{suffix}", identity.name);
                for warehouse in models.warehouses.values() {
                    if let Some(lake) = warehouse.as_lake() {
                        lake.attach_materialized(&name).await?;
                    }
                }
            }
        }
        // Make every model queryable by name, in dependency order.
        for model in models.graph.order() {
            let how = models.materialized(model);
            let warehouse = models.warehouse(model)?;
            if let Some(lake) = warehouse.as_lake() {
                match how {
                    Materialized::Ephemeral => {}
                    Materialized::Parquet if lake.attach_materialized(&model.name).await? => {}
                    _ => {
                        let sql = models.compile(&model.name)?;
                        warehouse
                            .materialize(&model.name, &sql, Materialized::View)
                            .await
                            .map_err(|e| EngineError::model(&model.name, e))?;
                    }
                }
            }
        }
        Ok(models)
    }

    /// The warehouse declared as `name` in ebb.yml.
    pub fn warehouse_named(&self, name: &str) -> Option<&AnyWarehouse> {
        self.warehouses.get(name)
    }

    pub fn graph(&self) -> &ModelGraph<'p> {
        &self.graph
    }

    pub fn project(&self) -> &'p Project {
        self.project
    }

    fn model(&self, name: &str) -> Result<&'p Model, EngineError> {
        self.project.model(name).ok_or_else(|| {
            let names = self.project.models.iter().map(|m| m.name.as_str());
            let hint = ebb_core::diagnostic::closest(name, names)
                .map(|c| format!(" (did you mean \"{c}\"?)"))
                .unwrap_or_default();
            EngineError::UnknownModel(format!("{name}{hint}"))
        })
    }

    /// How `model` is kept: its own setting, else the project's default.
    pub fn materialized(&self, model: &Model) -> Materialized {
        model
            .config
            .materialized
            .as_ref()
            .map(|m| m.value)
            .or_else(|| {
                self.project
                    .config
                    .as_ref()
                    .map(|c| c.defaults.materialized)
            })
            .unwrap_or_default()
    }

    /// The warehouse `model` runs on.
    pub fn warehouse(&self, model: &Model) -> Result<&AnyWarehouse, EngineError> {
        let config = self.project.config.as_ref().ok_or(EngineError::NoProject)?;
        let name = model
            .config
            .warehouse
            .as_ref()
            .map(|w| w.value.as_str())
            .or_else(|| config.default_warehouse())
            .ok_or_else(|| EngineError::NoWarehouse(model.name.clone()))?;
        self.warehouses
            .get(name)
            .ok_or_else(|| EngineError::NoWarehouse(model.name.clone()))
    }

    /// The SQL that runs for `name`: refs and sources replaced by the warehouse's relation
    /// names, ephemeral models inlined as common table expressions.
    pub fn compile(&self, name: &str) -> Result<String, EngineError> {
        let model = self.model(name)?;
        let warehouse = self.warehouse(model)?;
        let mut ctes: Vec<(String, String)> = Vec::new();
        let body = self.render(model, warehouse, &mut ctes, &mut Vec::new())?;
        if ctes.is_empty() {
            return Ok(body);
        }
        let with = ctes
            .iter()
            .map(|(n, sql)| format!("{} as (\n{sql}\n)", ephemeral_name(n)))
            .collect::<Vec<_>>()
            .join(",\n");
        Ok(format!(
            "with {with}\nselect * from (\n{body}\n) as __ebb_model"
        ))
    }

    /// Renders one model's SQL, adding the ephemeral models it reads (depth first, so each
    /// comes after the ones it needs) to `ctes`.
    fn render(
        &self,
        model: &Model,
        warehouse: &AnyWarehouse,
        ctes: &mut Vec<(String, String)>,
        stack: &mut Vec<String>,
    ) -> Result<String, EngineError> {
        if stack.contains(&model.name) {
            return Err(EngineError::Cycle(format!(
                "{} -> {}",
                stack.join(" -> "),
                model.name
            )));
        }
        stack.push(model.name.clone());
        let mut failure = None;
        let mut needed = Vec::new();
        for r in &model.refs {
            if let TemplateRef::Model { name, .. } = r
                && let Some(dep) = self.project.model(name)
                && self.materialized(dep) == Materialized::Ephemeral
                && !ctes.iter().any(|(n, _)| n == name)
            {
                needed.push(dep);
            }
        }
        for dep in needed {
            if ctes.iter().any(|(n, _)| *n == dep.name) {
                continue;
            }
            match self.render(dep, warehouse, ctes, stack) {
                Ok(sql) => ctes.push((dep.name.clone(), sql)),
                Err(e) => failure = Some(e),
            }
        }
        stack.pop();
        if let Some(e) = failure {
            return Err(e);
        }
        let sql = render(&model.sql, |r| match r {
            TemplateRef::Model { name, .. } => {
                match self.project.model(name).map(|m| self.materialized(m)) {
                    Some(Materialized::Ephemeral) => ephemeral_name(name),
                    _ => warehouse.relation_sql(&Relation::Model(name.clone())),
                }
            }
            TemplateRef::Source { source, table, .. } => {
                warehouse.relation_sql(&Relation::Source {
                    source: source.clone(),
                    table: table.clone(),
                })
            }
        });
        Ok(strip_statement_end(&sql))
    }

    /// Runs one model: checks its contract against the planned schema, then materializes it.
    /// A contract violation fails the model before anything is written.
    pub async fn run(&self, name: &str) -> Result<ModelRun, EngineError> {
        let started = Instant::now();
        let model = self.model(name)?;
        let warehouse = self.warehouse(model)?;
        let sql = self.compile(name)?;
        let violations = self.contract_violations(model, &sql).await?;
        if !violations.is_empty() {
            return Err(EngineError::Contract {
                model: name.to_string(),
                violations,
            });
        }
        let how = self.materialized(model);
        let done = warehouse
            .materialize(name, &sql, how)
            .await
            .map_err(|e| EngineError::model(name, e))?;
        Ok(ModelRun {
            model: name.to_string(),
            materialized: how,
            rows: done.rows,
            location: done.location,
            elapsed: started.elapsed(),
        })
    }

    /// Declared column types that the model's output does not honour.
    pub async fn contract_violations(
        &self,
        model: &Model,
        sql: &str,
    ) -> Result<Vec<Violation>, EngineError> {
        if model.config.columns.iter().all(|c| c.data_type.is_none()) {
            return Ok(Vec::new());
        }
        let schema = self
            .warehouse(model)?
            .schema(sql)
            .await
            .map_err(|e| EngineError::model(&model.name, e))?;
        Ok(contract::check(&model.config, &schema))
    }

    /// The first `limit` rows of a model, computed from its SQL.
    pub async fn show(&self, name: &str, limit: usize) -> Result<Vec<RecordBatch>, EngineError> {
        let model = self.model(name)?;
        let sql = format!(
            "select * from (\n{}\n) as __ebb_show limit {limit}",
            self.compile(name)?
        );
        let stream = self
            .warehouse(model)?
            .query(&sql)
            .await
            .map_err(|e| EngineError::model(name, e))?;
        stream
            .try_collect()
            .await
            .map_err(|e| EngineError::model(name, e.into()))
    }

    /// The SQL that reads a model's result: its relation, or its SQL when it is ephemeral.
    pub fn relation_or_subquery(&self, name: &str) -> Result<String, EngineError> {
        let model = self.model(name)?;
        Ok(match self.materialized(model) {
            Materialized::Ephemeral => format!("(\n{}\n)", self.compile(name)?),
            _ => self
                .warehouse(model)?
                .relation_sql(&Relation::Model(name.to_string())),
        })
    }

    /// Runs every test declared on `name`'s columns.
    pub async fn test(&self, name: &str) -> Result<Vec<TestOutcome>, EngineError> {
        let model = self.model(name)?;
        let warehouse = self.warehouse(model)?;
        let mut outcomes = Vec::new();
        for spec in tests::specs(model) {
            let target = match &spec.relationship_target() {
                Some(target) => Some(self.relation_or_subquery(target)?),
                None => None,
            };
            let failing =
                spec.failing_rows_sql(&self.relation_or_subquery(name)?, target.as_deref());
            outcomes.push(tests::run(warehouse, spec, &failing).await?);
        }
        Ok(outcomes)
    }
}

fn ephemeral_name(model: &str) -> String {
    format!("__ebb_ephemeral_{model}")
}

/// Removes a trailing `;` (and the blank space around it) so the SQL can be nested.
fn strip_statement_end(sql: &str) -> String {
    let mut s = sql.trim_end();
    while let Some(rest) = s.strip_suffix(';') {
        s = rest.trim_end();
    }
    s.to_string()
}
