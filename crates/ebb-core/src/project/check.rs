//! Checks across files: every name a file uses must exist somewhere, once, without cycles.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::sql::TemplateRef;
use super::{Project, ProjectSource};
use crate::config::identity::{FellegiSunter, FuzzyMethod, IdentityConfig, Survivorship};
use crate::config::metrics::{Agg, DimensionType, EntityType, MetricType};
use crate::config::model::{ColumnTest, ModelConfig, ref_target};
use crate::config::project::{DestinationConfig, Materialized, ProjectConfig, WarehouseConfig};
use crate::config::sync::{MetricSource, SyncConfig};
use crate::diagnostic::{Diagnostic, closest};
use crate::yaml::Pos;

struct Checker<'a> {
    project: &'a Project,
    texts: HashMap<&'a Path, &'a str>,
    diags: &'a mut Vec<Diagnostic>,
}

pub(super) fn check(project: &Project, source: &ProjectSource, diags: &mut Vec<Diagnostic>) {
    let texts = source
        .files
        .iter()
        .map(|f| (f.path.as_path(), f.text.as_str()))
        .collect();
    let mut c = Checker {
        project,
        texts,
        diags,
    };
    if let Some(config) = &project.config {
        c.project_file(config);
    }
    c.models();
    c.syncs();
    c.metrics();
    c.identities();
    c.pipelines();
}

/// "did you mean" help for a name that is not among `known`, or the list to choose from.
fn unknown_help<'k>(
    got: &str,
    known: impl IntoIterator<Item = &'k str> + Clone,
    what: &str,
) -> String {
    if let Some(best) = closest(got, known.clone()) {
        return format!("did you mean \"{best}\"?");
    }
    let mut names: Vec<&str> = known.into_iter().collect();
    names.sort_unstable();
    match names.len() {
        0 => format!("this project defines no {what}s"),
        n if n <= 12 => format!("{what}s in this project: {}", names.join(", ")),
        n => format!("{n} {what}s exist; `ebb check` lists none close to \"{got}\""),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn suggested_name(name: &str) -> String {
    let mut out: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

impl Checker<'_> {
    fn error(
        &mut self,
        file: &Path,
        pos: Option<Pos>,
        field: &str,
        message: String,
        help: Option<String>,
    ) {
        let mut d = Diagnostic::error(file, pos, message).field(field);
        if let Some(help) = help {
            d = d.help(help);
        }
        if let Some(text) = self.texts.get(file) {
            d = d.with_source(text);
        }
        self.diags.push(d);
    }

    fn warning(
        &mut self,
        file: &Path,
        pos: Option<Pos>,
        field: &str,
        message: String,
        help: String,
    ) {
        let mut d = Diagnostic::warning(file, pos, message)
            .field(field)
            .help(help);
        if let Some(text) = self.texts.get(file) {
            d = d.with_source(text);
        }
        self.diags.push(d);
    }

    fn config_path(&self) -> PathBuf {
        self.project
            .config
            .as_ref()
            .map(|_| {
                if self.texts.contains_key(Path::new("ebb.yaml")) {
                    PathBuf::from("ebb.yaml")
                } else {
                    PathBuf::from("ebb.yml")
                }
            })
            .unwrap_or_else(|| PathBuf::from("ebb.yml"))
    }

    /// Names `ref()` can use: models and the outputs of identity resolution.
    fn ref_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.project.models.iter().map(|m| m.name.clone()).collect();
        for i in &self.project.identities {
            names.push(format!("{}_resolved", i.name));
            names.push(format!("{}_golden", i.name));
        }
        names
    }

    fn model_config(&self, name: &str) -> Option<&ModelConfig> {
        self.project.model(name).map(|m| &m.config)
    }

    /// Checks that `column` is declared by model `model` when that model declares columns.
    fn check_column(&mut self, file: &Path, pos: Pos, field: &str, model: &str, column: &str) {
        let Some(config) = self.model_config(model) else {
            return;
        };
        if config.columns.is_empty() || config.column(column).is_some() {
            return;
        }
        let names: Vec<&str> = config
            .columns
            .iter()
            .map(|c| c.name.value.as_str())
            .collect();
        let help = unknown_help(column, names.iter().copied(), "column");
        let help = format!("{help} (declared in the model's .yml)");
        self.error(
            file,
            Some(pos),
            field,
            format!("model \"{model}\" has no column \"{column}\""),
            Some(help),
        );
    }

    fn project_file(&mut self, config: &ProjectConfig) {
        let file = self.config_path();
        if !valid_name(&config.name.value) {
            self.error(
                &file,
                Some(config.name.pos),
                "name",
                format!(
                    "project name \"{}\" must be lowercase letters, digits and _",
                    config.name.value
                ),
                Some(format!("use \"{}\"", suggested_name(&config.name.value))),
            );
        }
        if config.version.value != 1 {
            self.error(
                &file,
                Some(config.version.pos),
                "version",
                format!(
                    "project format version {} is not known to this ebb",
                    config.version.value
                ),
                Some("use `version: 1`, or upgrade ebb".into()),
            );
        }
        let warehouses: Vec<&str> = config.warehouses.names().collect();
        if let Some(default) = &config.default_warehouse
            && !config.warehouses.contains(&default.value)
        {
            self.error(
                &file,
                Some(default.pos),
                "default_warehouse",
                format!("no warehouse named \"{}\"", default.value),
                Some(unknown_help(
                    &default.value,
                    warehouses.iter().copied(),
                    "warehouse",
                )),
            );
        }
        for (name, source) in config.sources.iter() {
            let warehouse = match &source.warehouse {
                Some(w) if !config.warehouses.contains(&w.value) => {
                    self.error(
                        &file,
                        Some(w.pos),
                        &format!("sources.{name}.warehouse"),
                        format!("no warehouse named \"{}\"", w.value),
                        Some(unknown_help(
                            &w.value,
                            warehouses.iter().copied(),
                            "warehouse",
                        )),
                    );
                    continue;
                }
                Some(w) => Some(w.value.as_str()),
                None => config.default_warehouse(),
            };
            let Some(warehouse_name) = warehouse else {
                self.error(
                    &file,
                    Some(name.pos),
                    &format!("sources.{name}"),
                    format!("source \"{name}\" has no warehouse to live in"),
                    Some("declare one under `warehouses:`".into()),
                );
                continue;
            };
            let is_lake = matches!(
                config.warehouses.get(warehouse_name).map(|w| &w.value),
                Some(WarehouseConfig::Lake { .. })
            );
            for (table, t) in source.tables.iter() {
                let field = format!("sources.{name}.tables.{table}");
                if is_lake && t.path.is_none() {
                    self.error(
                        &file,
                        Some(table.pos),
                        &field,
                        format!("lake table \"{name}.{table}\" needs a `path`"),
                        Some(format!("add `path: {table}.parquet` (a file or glob under the warehouse's path)")),
                    );
                }
                if let Some(path) = &t.path
                    && t.format.is_none()
                {
                    let ext = path.value.rsplit('.').next().unwrap_or("");
                    if !matches!(ext, "csv" | "parquet" | "ndjson" | "jsonl" | "json") {
                        self.error(
                            &file,
                            Some(path.pos),
                            &format!("{field}.path"),
                            format!(
                                "cannot tell the format of \"{}\" from its extension",
                                path.value
                            ),
                            Some("add `format: csv`, `parquet` or `ndjson`".into()),
                        );
                    }
                }
                if !is_lake && t.path.is_some() {
                    self.error(
                        &file,
                        t.path.as_ref().map(|p| p.pos),
                        &format!("{field}.path"),
                        format!("`path` applies to lake tables; \"{warehouse_name}\" is a postgres warehouse"),
                        Some("remove `path`, or use `identifier:` for a table with another name".into()),
                    );
                }
            }
        }
        for (name, dest) in config.destinations.iter() {
            self.destination(&file, name.value.as_str(), dest.pos, &dest.value);
        }
        if let Some(events) = &config.events {
            let name = &events.value.destination;
            match config.destinations.get(&name.value) {
                None => self.error(
                    &file,
                    Some(name.pos),
                    "events.destination",
                    format!("no destination named \"{}\" in ebb.yml", name.value),
                    Some(unknown_help(
                        &name.value,
                        config.destinations.names(),
                        "destination",
                    )),
                ),
                Some(dest) if !matches!(dest.value, DestinationConfig::Webhook { .. }) => self
                    .error(
                        &file,
                        Some(name.pos),
                        "events.destination",
                        format!(
                            "events are relayed to a webhook; \"{}\" is a {} destination",
                            name.value,
                            dest.value.kind()
                        ),
                        Some("name a destination of `type: webhook`".into()),
                    ),
                Some(_) => {}
            }
        }
        for (name, _) in config.tenants.iter() {
            if !valid_name(&name.value) {
                self.error(
                    &file,
                    Some(name.pos),
                    &format!("tenants.{name}"),
                    format!("tenant name \"{name}\" must be lowercase letters, digits and _"),
                    Some(format!("use \"{}\"", suggested_name(&name.value))),
                );
            }
        }
    }

    fn destination(&mut self, file: &Path, name: &str, pos: Pos, dest: &DestinationConfig) {
        let field = format!("destinations.{name}");
        if let Some(url) = dest.url()
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            self.error(
                file,
                Some(pos),
                &field,
                format!("destination \"{name}\": \"{url}\" is not an http(s) URL"),
                Some("write the full URL, e.g. https://api.example.com".into()),
            );
        }
        if let DestinationConfig::Webhook {
            secret, secrets, ..
        } = dest
        {
            for s in secret.iter().chain(secrets) {
                let value = s.expose();
                let key = value.strip_prefix("whsec_");
                let valid = key.is_some_and(|k| {
                    !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
                });
                if !valid {
                    self.error(
                        file,
                        Some(pos),
                        &format!("{field}.secret"),
                        format!("destination \"{name}\": a webhook secret is `whsec_` followed by base64"),
                        Some("generate one with `openssl rand -base64 32` and prefix it with whsec_".into()),
                    );
                }
            }
        }
    }

    fn models(&mut self) {
        let project = self.project;
        let config = project.config.as_ref();
        let ref_names = self.ref_names();
        let mut seen: HashMap<&str, &Path> = HashMap::new();
        for m in &project.models {
            if let Some(first) = seen.insert(m.name.as_str(), m.sql_path.as_path()) {
                self.error(
                    &m.sql_path,
                    None,
                    "",
                    format!(
                        "two models are named \"{}\": {} and {}",
                        m.name,
                        first.display(),
                        m.sql_path.display()
                    ),
                    Some("model names come from file names and must be unique; rename one".into()),
                );
            }
            if !m
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                self.error(
                    &m.sql_path,
                    None,
                    "",
                    format!(
                        "model name \"{}\" (from the file name) must be letters, digits and _",
                        m.name
                    ),
                    Some(format!(
                        "rename the file to {}.sql",
                        suggested_name(&m.name)
                    )),
                );
            }
            if m.sql.trim().is_empty() {
                self.error(
                    &m.sql_path,
                    None,
                    "",
                    format!("model \"{}\" has no SQL", m.name),
                    Some("write a SELECT statement".into()),
                );
            }
            for r in &m.refs {
                match r {
                    TemplateRef::Model { name, pos } if !ref_names.contains(name) => {
                        let help =
                            unknown_help(name, ref_names.iter().map(String::as_str), "model");
                        self.error(
                            &m.sql_path,
                            Some(*pos),
                            "",
                            format!("ref('{name}'): no model named \"{name}\""),
                            Some(help),
                        );
                    }
                    TemplateRef::Source { source, table, pos } => {
                        let Some(config) = config else { continue };
                        match config.sources.get(source) {
                            None => {
                                let help = unknown_help(source, config.sources.names(), "source");
                                self.error(&m.sql_path, Some(*pos), "", format!("source('{source}', '{table}'): no source named \"{source}\" in ebb.yml"), Some(help));
                            }
                            Some(s) if !s.tables.contains(table) => {
                                let help = unknown_help(table, s.tables.names(), "table");
                                self.error(&m.sql_path, Some(*pos), "", format!("source('{source}', '{table}'): source \"{source}\" has no table \"{table}\""), Some(help));
                            }
                            Some(_) => {}
                        }
                    }
                    TemplateRef::Model { .. } => {}
                }
            }
            if let Some(path) = m.config_path.clone() {
                self.model_config_checks(&path, &m.name, &m.config);
            }
        }
        self.model_cycles();
    }

    fn model_config_checks(&mut self, file: &Path, model: &str, config: &ModelConfig) {
        let project_config = self.project.config.as_ref();
        let warehouse_name = config
            .warehouse
            .as_ref()
            .map(|w| w.value.as_str())
            .or_else(|| project_config.and_then(|p| p.default_warehouse()));
        if let (Some(w), Some(p)) = (&config.warehouse, project_config)
            && !p.warehouses.contains(&w.value)
        {
            let help = unknown_help(&w.value, p.warehouses.names(), "warehouse");
            self.error(
                file,
                Some(w.pos),
                "warehouse",
                format!("no warehouse named \"{}\"", w.value),
                Some(help),
            );
        }
        let warehouse = project_config
            .zip(warehouse_name)
            .and_then(|(p, w)| p.warehouses.get(w))
            .map(|w| &w.value);
        let materialized_pos = config.materialized.as_ref().map(|m| m.pos);
        match (config.materialized.as_ref().map(|m| m.value), warehouse) {
            (Some(Materialized::Table), Some(WarehouseConfig::Lake { .. })) => self.error(
                file,
                materialized_pos,
                "materialized",
                format!("model \"{model}\" is materialized as a table, but its warehouse is a lake"),
                Some("use `materialized: parquet` on a lake, or put the model on a postgres warehouse".into()),
            ),
            (Some(Materialized::Parquet), Some(WarehouseConfig::Postgres { .. })) => self.error(
                file,
                materialized_pos,
                "materialized",
                format!("model \"{model}\" is materialized as parquet, but its warehouse is postgres"),
                Some("use `materialized: table` or `view` on postgres".into()),
            ),
            _ => {}
        }
        let mut names: HashMap<&str, Pos> = HashMap::new();
        for (i, col) in config.columns.iter().enumerate() {
            if let Some(first) = names.insert(col.name.value.as_str(), col.name.pos) {
                self.error(
                    file,
                    Some(col.name.pos),
                    &format!("columns[{i}].name"),
                    format!(
                        "column \"{}\" is declared twice (first at line {})",
                        col.name.value, first.line
                    ),
                    Some("keep one".into()),
                );
            }
            for (j, test) in col.tests.iter().enumerate() {
                let field = format!("columns[{i}].tests[{j}]");
                match &test.value {
                    ColumnTest::AcceptedValues { values } if values.is_empty() => self.error(
                        file,
                        Some(test.pos),
                        &field,
                        "accepted_values needs at least one value".into(),
                        Some("list them: `accepted_values: { values: [a, b] }`".into()),
                    ),
                    ColumnTest::Relationships { to, field: target } => {
                        let target_model = ref_target(to);
                        if self.project.model(target_model).is_none() {
                            let names = self.ref_names();
                            let help = unknown_help(
                                target_model,
                                names.iter().map(String::as_str),
                                "model",
                            );
                            self.error(
                                file,
                                Some(test.pos),
                                &format!("{field}.to"),
                                format!("relationships: no model named \"{target_model}\""),
                                Some(help),
                            );
                        } else {
                            self.check_column(
                                file,
                                test.pos,
                                &format!("{field}.field"),
                                target_model,
                                target,
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(pk) = &config.primary_key
            && !config.columns.is_empty()
        {
            for col in &pk.value.0 {
                self.check_column(file, pk.pos, "primary_key", model, col);
            }
        }
    }

    fn model_cycles(&mut self) {
        let project = self.project;
        let edges: BTreeMap<&str, Vec<(&str, Pos)>> = project
            .models
            .iter()
            .map(|m| {
                let deps = m
                    .refs
                    .iter()
                    .filter_map(|r| match r {
                        TemplateRef::Model { name, pos } => Some((name.as_str(), *pos)),
                        TemplateRef::Source { .. } => None,
                    })
                    .collect();
                (m.name.as_str(), deps)
            })
            .collect();
        for cycle in find_cycles(&edges) {
            let first = cycle[0];
            let model = project.model(first).expect("cycle members are models");
            let pos = edges[first]
                .iter()
                .find(|(n, _)| *n == cycle[1])
                .map(|(_, p)| *p);
            self.error(
                &model.sql_path,
                pos,
                "",
                format!("models form a cycle: {}", cycle.join(" -> ")),
                Some(
                    "a model cannot depend on itself, directly or through others; remove one ref()"
                        .into(),
                ),
            );
        }
    }

    /// A metric sync's rows have two columns, the entity's key and the metric's value: its
    /// key, mapping and match name those.
    fn metric_sync_columns(&mut self, file: &Path, c: &SyncConfig, metric: &MetricSource) {
        let (name, entity) = (&metric.name.value, &metric.entity.value);
        if name == entity {
            self.error(
                file,
                Some(metric.name.pos),
                "metric.name",
                format!("metric \"{name}\" has the name of the entity it is grouped by, so the key and the value would be one column"),
                Some("group it by another entity, or sync a model that renames the columns".into()),
            );
            return;
        }
        let columns = [entity.as_str(), name.as_str()];
        let help = format!(
            "a sync with `metric: {{ name: {name}, entity: {entity} }}` reads one row per {entity} with the columns \"{entity}\" (the key) and \"{name}\" (the value)"
        );
        if let Some(pk) = &c.primary_key
            && pk.value.0 != [entity.clone()]
        {
            let key = pk.value.0.join(", ");
            self.error(
                file,
                Some(pk.pos),
                "primary_key",
                format!("a metric sync is keyed by its entity \"{entity}\", not \"{key}\""),
                Some(format!("remove `primary_key` (or set it to {entity})")),
            );
        }
        let mut check = |field: &str, pos: Pos, column: &str| {
            if !columns.contains(&column) {
                let suggestion = closest(column, columns.iter().copied())
                    .map(|c| format!("did you mean \"{c}\"? "))
                    .unwrap_or_default();
                self.error(
                    file,
                    Some(pos),
                    field,
                    format!(
                        "the rows of metric \"{name}\" per {entity} have no column \"{column}\""
                    ),
                    Some(format!("{suggestion}{help}")),
                );
            }
        };
        if let Some(m) = &c.match_on {
            check("match.source", m.source.pos, &m.source.value);
        }
        for (i, mapping) in c.mapping.value.iter().enumerate() {
            check(
                &format!("mapping[{i}].from"),
                mapping.from.pos,
                &mapping.from.value,
            );
        }
    }

    fn syncs(&mut self) {
        let project = self.project;
        let config = project.config.as_ref();
        let metric_names: Vec<&str> = project
            .metrics
            .iter()
            .flat_map(|d| d.file.metrics.iter().map(|m| m.name.value.as_str()))
            .collect();
        let entity_names: Vec<&str> = project
            .metrics
            .iter()
            .flat_map(|d| d.file.semantic_models.iter())
            .flat_map(|s| s.entities.iter().map(|e| e.name.value.as_str()))
            .collect();
        let sync_names: Vec<&str> = project.syncs.iter().map(|s| s.name.as_str()).collect();
        for sync in &project.syncs {
            let file = sync.path.as_path();
            let c = &sync.config;
            if !valid_name(&sync.name) {
                self.error(file, None, "", format!("sync name \"{}\" (from the file name) must be lowercase letters, digits and _", sync.name), Some(format!("rename the file to {}.yml", suggested_name(&sync.name))));
            }
            match (&c.model, &c.metric) {
                (None, None) => self.error(
                    file,
                    Some(Pos::new(1, 1)),
                    "model",
                    "a sync needs a `model` (or a `metric`) to read from".into(),
                    Some("add `model: <model name>`".into()),
                ),
                (Some(m), Some(_)) => self.error(
                    file,
                    Some(m.pos),
                    "model",
                    "a sync reads a `model` or a `metric`, not both".into(),
                    Some("remove one".into()),
                ),
                (Some(m), None) => {
                    let target = ref_target(&m.value);
                    let names = self.ref_names();
                    if !names.iter().any(|n| n == target) {
                        let help = unknown_help(target, names.iter().map(String::as_str), "model");
                        self.error(
                            file,
                            Some(m.pos),
                            "model",
                            format!("no model named \"{target}\""),
                            Some(help),
                        );
                    }
                }
                (None, Some(metric)) => {
                    if !metric_names.contains(&metric.name.value.as_str()) {
                        let help = unknown_help(
                            &metric.name.value,
                            metric_names.iter().copied(),
                            "metric",
                        );
                        self.error(
                            file,
                            Some(metric.name.pos),
                            "metric.name",
                            format!("no metric named \"{}\"", metric.name.value),
                            Some(help),
                        );
                    }
                    if !entity_names.contains(&metric.entity.value.as_str()) {
                        let help = unknown_help(
                            &metric.entity.value,
                            entity_names.iter().copied(),
                            "entity",
                        );
                        self.error(
                            file,
                            Some(metric.entity.pos),
                            "metric.entity",
                            format!("no entity named \"{}\"", metric.entity.value),
                            Some(help),
                        );
                    }
                }
            }
            let dest = config.and_then(|p| p.destinations.get(&c.destination.value));
            if let Some(p) = config
                && dest.is_none()
            {
                let help =
                    unknown_help(&c.destination.value, p.destinations.names(), "destination");
                self.error(
                    file,
                    Some(c.destination.pos),
                    "destination",
                    format!(
                        "no destination named \"{}\" in ebb.yml",
                        c.destination.value
                    ),
                    Some(help),
                );
            }
            if let Some(p) = config {
                match &c.tenant {
                    Some(t) if !p.tenants.contains(&t.value) => {
                        let help = unknown_help(&t.value, p.tenants.names(), "tenant");
                        self.error(
                            file,
                            Some(t.pos),
                            "tenant",
                            format!("no tenant named \"{}\" in ebb.yml", t.value),
                            Some(help),
                        );
                    }
                    None if !p.tenants.is_empty() => self.error(
                        file,
                        Some(c.destination.pos),
                        "tenant",
                        "ebb.yml declares tenants, so every sync names its `tenant`".into(),
                        Some(format!(
                            "add `tenant: {}`",
                            p.tenants.names().next().unwrap_or("...")
                        )),
                    ),
                    _ => {}
                }
            }
            let model_name = c.model.as_ref().map(|m| ref_target(&m.value).to_string());
            if let Some(model) = &model_name {
                let model_pk = self.model_config(model).and_then(|m| m.primary_key.clone());
                match (&c.primary_key, model_pk) {
                    (Some(pk), _) => {
                        for col in &pk.value.0 {
                            self.check_column(file, pk.pos, "primary_key", model, col);
                        }
                    }
                    (None, Some(_)) => {}
                    (None, None) if self.project.model(model).is_some() => self.error(
                        file,
                        c.model.as_ref().map(|m| m.pos),
                        "primary_key",
                        format!("sync \"{}\" has no primary key: neither the sync nor model \"{model}\" declares one", sync.name),
                        Some(format!("add `primary_key: <column>` here or in models/{model}.yml")),
                    ),
                    (None, None) => {}
                }
                if let Some(m) = &c.match_on {
                    self.check_column(file, m.source.pos, "match.source", model, &m.source.value);
                }
                for (i, mapping) in c.mapping.value.iter().enumerate() {
                    self.check_column(
                        file,
                        mapping.from.pos,
                        &format!("mapping[{i}].from"),
                        model,
                        &mapping.from.value,
                    );
                }
            }
            if let (None, Some(metric)) = (&c.model, &c.metric) {
                self.metric_sync_columns(file, c, metric);
            }
            if c.mapping.value.is_empty() {
                self.error(
                    file,
                    Some(c.destination.pos),
                    "mapping",
                    format!(
                        "sync \"{}\" maps no fields, so it would send nothing",
                        sync.name
                    ),
                    Some("add `mapping:` with `- { from: column, to: field }` entries".into()),
                );
            }
            let mut targets: HashMap<&str, Pos> = HashMap::new();
            for (i, mapping) in c.mapping.value.iter().enumerate() {
                if let Some(first) = targets.insert(mapping.to.value.as_str(), mapping.to.pos) {
                    self.error(
                        file,
                        Some(mapping.to.pos),
                        &format!("mapping[{i}].to"),
                        format!(
                            "field \"{}\" is mapped twice (first at line {})",
                            mapping.to.value, first.line
                        ),
                        Some("map each destination field once".into()),
                    );
                }
            }
            if let Some(dest) = dest {
                let kind = dest.value.kind();
                let needs_match = matches!(
                    dest.value,
                    DestinationConfig::Hubspot { .. }
                        | DestinationConfig::Salesforce { .. }
                        | DestinationConfig::Braze { .. }
                );
                if needs_match && c.match_on.is_none() {
                    self.error(
                        file,
                        Some(c.destination.pos),
                        "match",
                        format!("a {kind} sync needs `match:` to find each record"),
                        Some(
                            "add `match: { source: <column>, destination: <unique field> }`".into(),
                        ),
                    );
                }
                let needs_object = matches!(
                    dest.value,
                    DestinationConfig::Hubspot { .. }
                        | DestinationConfig::Salesforce { .. }
                        | DestinationConfig::Postgres { .. }
                );
                if needs_object && c.object.is_none() {
                    let example = match dest.value {
                        DestinationConfig::Hubspot { .. } => "companies",
                        DestinationConfig::Salesforce { .. } => "Account",
                        _ => "account_health",
                    };
                    self.error(
                        file,
                        Some(c.destination.pos),
                        "object",
                        format!("a {kind} sync needs `object:` (what to write)"),
                        Some(format!("add e.g. `object: {example}`")),
                    );
                }
            }
            if let Some(schedule) = &c.schedule {
                for (pos, msg) in schedule.value.validate() {
                    self.error(
                        file,
                        Some(pos.unwrap_or(schedule.pos)),
                        "schedule",
                        msg,
                        None,
                    );
                }
                if let Some(after) = &schedule.value.after {
                    if !sync_names.contains(&after.value.as_str()) {
                        let help = unknown_help(&after.value, sync_names.iter().copied(), "sync");
                        self.error(
                            file,
                            Some(after.pos),
                            "schedule.after",
                            format!("no sync named \"{}\"", after.value),
                            Some(help),
                        );
                    } else if after.value == sync.name {
                        self.error(
                            file,
                            Some(after.pos),
                            "schedule.after",
                            "a sync cannot run after itself".into(),
                            None,
                        );
                    }
                }
            }
        }
        let edges: BTreeMap<&str, Vec<(&str, Pos)>> = project
            .syncs
            .iter()
            .map(|s| {
                let after = s
                    .config
                    .schedule
                    .as_ref()
                    .and_then(|sch| sch.value.after.as_ref())
                    .filter(|a| a.value != s.name)
                    .map(|a| vec![(a.value.as_str(), a.pos)])
                    .unwrap_or_default();
                (s.name.as_str(), after)
            })
            .collect();
        for cycle in find_cycles(&edges) {
            let sync = project.sync(cycle[0]).expect("cycle members are syncs");
            let pos = edges[cycle[0]].first().map(|(_, p)| *p);
            self.error(
                &sync.path,
                pos,
                "schedule.after",
                format!(
                    "syncs wait on each other in a cycle: {}",
                    cycle.join(" -> ")
                ),
                Some("one of them needs a cron or interval schedule".into()),
            );
        }
    }

    fn metrics(&mut self) {
        let project = self.project;
        let mut sm_names: HashMap<&str, (&Path, Pos)> = HashMap::new();
        let mut measures: HashMap<&str, (&Path, Pos)> = HashMap::new();
        let mut metric_names: HashMap<&str, (&Path, Pos)> = HashMap::new();
        let mut dimension_names: HashSet<&str> = HashSet::new();
        for doc in &project.metrics {
            let file = doc.path.as_path();
            for (i, sm) in doc.file.semantic_models.iter().enumerate() {
                let field = format!("semantic_models[{i}]");
                if let Some((f, p)) = sm_names.insert(&sm.name.value, (file, sm.name.pos)) {
                    self.error(
                        file,
                        Some(sm.name.pos),
                        &format!("{field}.name"),
                        format!(
                            "semantic model \"{}\" is defined twice (first at {}:{})",
                            sm.name.value,
                            f.display(),
                            p.line
                        ),
                        Some("rename one".into()),
                    );
                }
                let model = ref_target(&sm.model.value).to_string();
                let names = self.ref_names();
                if !names.contains(&model) {
                    let help = unknown_help(&model, names.iter().map(String::as_str), "model");
                    self.error(
                        file,
                        Some(sm.model.pos),
                        &format!("{field}.model"),
                        format!("no model named \"{model}\""),
                        Some(help),
                    );
                }
                let mut local: HashMap<&str, Pos> = HashMap::new();
                let mut primaries = 0;
                for e in &sm.entities {
                    primaries += usize::from(e.kind == EntityType::Primary);
                    let expr = e
                        .expr
                        .as_ref()
                        .map_or(e.name.value.as_str(), |x| x.value.as_str());
                    if is_identifier(expr) {
                        self.check_column(
                            file,
                            e.expr.as_ref().map_or(e.name.pos, |x| x.pos),
                            &format!("{field}.entities"),
                            &model,
                            expr,
                        );
                    }
                    if let Some(first) = local.insert(&e.name.value, e.name.pos) {
                        self.error(file, Some(e.name.pos), &format!("{field}.entities"), format!("\"{}\" is defined twice in semantic model \"{}\" (first at line {})", e.name.value, sm.name.value, first.line), None);
                    }
                }
                if primaries > 1 {
                    self.error(file, Some(sm.name.pos), &format!("{field}.entities"), format!("semantic model \"{}\" has {primaries} primary entities; it may have one", sm.name.value), Some("make the others `unique` or `natural`".into()));
                }
                let mut time_dims = Vec::new();
                for d in &sm.dimensions {
                    dimension_names.insert(&d.name.value);
                    let expr = d
                        .expr
                        .as_ref()
                        .map_or(d.name.value.as_str(), |x| x.value.as_str());
                    if is_identifier(expr) {
                        self.check_column(
                            file,
                            d.expr.as_ref().map_or(d.name.pos, |x| x.pos),
                            &format!("{field}.dimensions"),
                            &model,
                            expr,
                        );
                    }
                    if let Some(first) = local.insert(&d.name.value, d.name.pos) {
                        self.error(file, Some(d.name.pos), &format!("{field}.dimensions"), format!("\"{}\" is defined twice in semantic model \"{}\" (first at line {})", d.name.value, sm.name.value, first.line), None);
                    }
                    if d.kind == DimensionType::Time {
                        time_dims.push(d.name.value.as_str());
                        if d.type_params.is_none() {
                            self.error(
                                file,
                                Some(d.name.pos),
                                &format!("{field}.dimensions"),
                                format!("time dimension \"{}\" needs a granularity", d.name.value),
                                Some("add `type_params: { time_granularity: day }`".into()),
                            );
                        }
                    }
                }
                let default_time = sm.defaults.as_ref().map(|d| &d.agg_time_dimension);
                if let Some(t) = default_time
                    && !time_dims.contains(&t.value.as_str())
                {
                    let help = unknown_help(&t.value, time_dims.iter().copied(), "time dimension");
                    self.error(
                        file,
                        Some(t.pos),
                        &format!("{field}.defaults.agg_time_dimension"),
                        format!(
                            "\"{}\" is not a time dimension of semantic model \"{}\"",
                            t.value, sm.name.value
                        ),
                        Some(help),
                    );
                }
                for m in &sm.measures {
                    if let Some((f, p)) = measures.insert(&m.name.value, (file, m.name.pos)) {
                        self.error(file, Some(m.name.pos), &format!("{field}.measures"), format!("measure \"{}\" is defined twice (first at {}:{}); measure names are global", m.name.value, f.display(), p.line), Some("rename one".into()));
                    }
                    let expr = m
                        .expr
                        .as_ref()
                        .map_or(m.name.value.as_str(), |x| x.value.as_str());
                    if is_identifier(expr) {
                        self.check_column(
                            file,
                            m.expr.as_ref().map_or(m.name.pos, |x| x.pos),
                            &format!("{field}.measures"),
                            &model,
                            expr,
                        );
                    }
                    match (&m.agg_time_dimension, default_time) {
                        (Some(t), _) if !time_dims.contains(&t.value.as_str()) => {
                            let help = unknown_help(&t.value, time_dims.iter().copied(), "time dimension");
                            self.error(file, Some(t.pos), &format!("{field}.measures"), format!("\"{}\" is not a time dimension of semantic model \"{}\"", t.value, sm.name.value), Some(help));
                        }
                        (None, None) => self.error(file, Some(m.name.pos), &format!("{field}.measures"), format!("measure \"{}\" has no time dimension to aggregate over", m.name.value), Some("set `defaults: { agg_time_dimension: <time dimension> }` on the semantic model, or `agg_time_dimension` on the measure".into())),
                        _ => {}
                    }
                    let percentile = m.agg_params.as_ref().and_then(|p| p.percentile.as_ref());
                    if m.agg.value == Agg::Percentile {
                        match percentile {
                            None => self.error(file, Some(m.agg.pos), &format!("{field}.measures"), format!("percentile measure \"{}\" needs `agg_params: {{ percentile: 0.9 }}`", m.name.value), None),
                            Some(p) if !(p.value > 0.0 && p.value < 1.0) => self.error(file, Some(p.pos), &format!("{field}.measures"), format!("percentile {} is outside (0, 1)", p.value), Some("write 0.9 for the 90th percentile".into())),
                            _ => {}
                        }
                    }
                }
            }
            for m in &doc.file.metrics {
                if let Some((f, p)) = metric_names.insert(&m.name.value, (file, m.name.pos)) {
                    self.error(
                        file,
                        Some(m.name.pos),
                        "metrics",
                        format!(
                            "metric \"{}\" is defined twice (first at {}:{})",
                            m.name.value,
                            f.display(),
                            p.line
                        ),
                        Some("rename one".into()),
                    );
                }
            }
        }
        // Metric references, now that every name is known.
        let measure_names: Vec<&str> = measures.keys().copied().collect();
        let all_metrics: Vec<&str> = metric_names.keys().copied().collect();
        let mut edges: BTreeMap<&str, Vec<(&str, Pos)>> = BTreeMap::new();
        for doc in &project.metrics {
            let file = doc.path.as_path();
            for m in &doc.file.metrics {
                let params = &m.type_params.value;
                for (field, msg) in params.validate(m.kind.value) {
                    self.error(
                        file,
                        Some(m.type_params.pos.max(m.kind.pos)),
                        &format!("type_params.{field}"),
                        format!("metric \"{}\": {msg}", m.name.value),
                        None,
                    );
                }
                let mut deps = Vec::new();
                if matches!(m.kind.value, MetricType::Simple | MetricType::Cumulative)
                    && let Some(measure) = &params.measure
                    && !measures.contains_key(measure.value.name.as_str())
                {
                    let help = unknown_help(
                        &measure.value.name,
                        measure_names.iter().copied(),
                        "measure",
                    );
                    self.error(
                        file,
                        Some(measure.pos),
                        "type_params.measure",
                        format!(
                            "metric \"{}\": no measure named \"{}\"",
                            m.name.value, measure.value.name
                        ),
                        Some(help),
                    );
                }
                let inputs = params
                    .numerator
                    .iter()
                    .chain(params.denominator.iter())
                    .chain(params.metrics.iter());
                for input in inputs {
                    if !metric_names.contains_key(input.value.name.as_str()) {
                        let help =
                            unknown_help(&input.value.name, all_metrics.iter().copied(), "metric");
                        self.error(
                            file,
                            Some(input.pos),
                            "type_params",
                            format!(
                                "metric \"{}\": no metric named \"{}\"",
                                m.name.value, input.value.name
                            ),
                            Some(help),
                        );
                    } else {
                        deps.push((input.value.name.as_str(), input.pos));
                    }
                }
                if m.kind.value == MetricType::Derived
                    && let Some(expr) = &params.expr
                {
                    let known: Vec<&str> = params
                        .metrics
                        .iter()
                        .map(|i| i.value.alias_or_name())
                        .collect();
                    for ident in identifiers(&expr.value) {
                        if !known.contains(&ident.as_str()) {
                            let help = unknown_help(&ident, known.iter().copied(), "input");
                            self.error(file, Some(expr.pos), "type_params.expr", format!("metric \"{}\": `{ident}` in expr is not one of its `metrics` (by name or alias)", m.name.value), Some(help));
                        }
                    }
                }
                if let Some(filter) = &m.filter {
                    for dim in filter_dimensions(&filter.value) {
                        if !dimension_names.contains(dim.as_str()) {
                            let help =
                                unknown_help(&dim, dimension_names.iter().copied(), "dimension");
                            self.error(
                                file,
                                Some(filter.pos),
                                "filter",
                                format!(
                                    "metric \"{}\": filter uses unknown dimension \"{dim}\"",
                                    m.name.value
                                ),
                                Some(help),
                            );
                        }
                    }
                }
                edges.insert(&m.name.value, deps);
            }
        }
        for cycle in find_cycles(&edges) {
            if let Some((file, pos)) = metric_names.get(cycle[0]) {
                let file = file.to_path_buf();
                self.error(
                    &file,
                    Some(*pos),
                    "metrics",
                    format!(
                        "metrics depend on each other in a cycle: {}",
                        cycle.join(" -> ")
                    ),
                    None,
                );
            }
        }
    }

    /// CDC pipelines: file names, each file's own rules, and slots that two pipelines share.
    fn pipelines(&mut self) {
        let project = self.project;
        let mut slots: HashMap<String, &Path> = HashMap::new();
        let mut names: HashMap<&str, &Path> = HashMap::new();
        for p in &project.pipelines {
            let file = p.path.as_path();
            let in_main = file.components().count() == 1;
            if let Some(other) = names.insert(p.name.as_str(), file) {
                self.error(
                    file,
                    None,
                    "",
                    format!(
                        "pipeline \"{}\" is declared twice: here and in {}",
                        p.name,
                        other.display()
                    ),
                    Some(
                        "keep one of them (a pipeline lives in ebb.yml or in pipelines/NAME.yml)"
                            .into(),
                    ),
                );
            }
            if !valid_name(&p.name) && in_main {
                self.error(
                    file,
                    None,
                    "pipelines",
                    format!(
                        "pipeline name \"{}\" must be lowercase letters, digits and _",
                        p.name
                    ),
                    Some(format!("rename it to {}", suggested_name(&p.name))),
                );
            } else if !valid_name(&p.name) {
                self.error(
                    file,
                    None,
                    "",
                    format!(
                        "pipeline name \"{}\" (from the file name) must be lowercase letters, digits and _",
                        p.name
                    ),
                    Some(format!("rename the file to {}.yml", suggested_name(&p.name))),
                );
            }
            for (pos, field, message, help) in p.config.validate() {
                self.error(file, pos, field, message, Some(help));
            }
            let slot = p.config.slot_name(&p.name);
            if let Some(other) = slots.get(&slot) {
                let pos = p.config.slot.as_ref().map(|s| s.pos);
                self.error(
                    file,
                    pos,
                    "slot",
                    format!(
                        "replication slot \"{slot}\" is also used by {}",
                        other.display()
                    ),
                    Some("give each pipeline its own `slot:`".into()),
                );
            } else {
                slots.insert(slot, file);
            }
        }
    }

    fn identities(&mut self) {
        for identity in &self.project.identities {
            self.identity(&identity.path, &identity.config);
        }
    }

    fn identity(&mut self, file: &Path, c: &IdentityConfig) {
        let attributes: Vec<&str> = c.attributes.names().collect();
        let names = self.ref_names();
        if c.sources.value.is_empty() {
            self.error(
                file,
                Some(c.sources.pos),
                "sources",
                "an identity space needs at least one source".into(),
                Some("add `- { model: ..., key: ..., attributes: {...} }`".into()),
            );
        }
        let source_models: Vec<&str> = c
            .sources
            .value
            .iter()
            .map(|s| ref_target(&s.model.value))
            .collect();
        for (i, s) in c.sources.value.iter().enumerate() {
            let model = ref_target(&s.model.value);
            if !names.iter().any(|n| n == model) {
                let help = unknown_help(model, names.iter().map(String::as_str), "model");
                self.error(
                    file,
                    Some(s.model.pos),
                    &format!("sources[{i}].model"),
                    format!("no model named \"{model}\""),
                    Some(help),
                );
                continue;
            }
            self.check_column(
                file,
                s.key.pos,
                &format!("sources[{i}].key"),
                model,
                &s.key.value,
            );
            if let Some(u) = &s.updated_at {
                self.check_column(
                    file,
                    u.pos,
                    &format!("sources[{i}].updated_at"),
                    model,
                    &u.value,
                );
            }
            for (attr, column) in s.attributes.iter() {
                if !c.attributes.contains(&attr.value) {
                    let help = unknown_help(&attr.value, attributes.iter().copied(), "attribute");
                    self.error(
                        file,
                        Some(attr.pos),
                        &format!("sources[{i}].attributes.{attr}"),
                        format!("\"{attr}\" is not declared under `attributes:`"),
                        Some(help),
                    );
                }
                self.check_column(
                    file,
                    column.pos,
                    &format!("sources[{i}].attributes.{attr}"),
                    model,
                    &column.value,
                );
            }
        }
        if c.rules.value.is_empty() {
            self.error(
                file,
                Some(c.rules.pos),
                "rules",
                "an identity space needs at least one match rule".into(),
                Some("add `- { name: same_email, exact: [email] }`".into()),
            );
        }
        let mut rule_names: HashMap<&str, Pos> = HashMap::new();
        for (i, rule) in c.rules.value.iter().enumerate() {
            let field = format!("rules[{i}]");
            if let Some(first) = rule_names.insert(&rule.name.value, rule.name.pos) {
                self.error(
                    file,
                    Some(rule.name.pos),
                    &format!("{field}.name"),
                    format!(
                        "rule \"{}\" is defined twice (first at line {})",
                        rule.name.value, first.line
                    ),
                    None,
                );
            }
            if rule.exact.is_empty() && rule.fuzzy.is_empty() && rule.fellegi_sunter.is_none() {
                self.error(
                    file,
                    Some(rule.name.pos),
                    &field,
                    format!("rule \"{}\" compares nothing", rule.name.value),
                    Some(
                        "add `exact: [attribute]`, `fuzzy:` comparisons or `fellegi_sunter:`"
                            .into(),
                    ),
                );
            }
            let fs_comparisons = rule
                .fellegi_sunter
                .iter()
                .flat_map(|f| f.comparisons.value.iter());
            let used = rule
                .exact
                .iter()
                .chain(rule.blocking.iter())
                .chain(rule.blocking_passes.iter().flatten())
                .chain(rule.fuzzy.iter().map(|f| &f.attribute))
                .chain(fs_comparisons.clone().map(|f| &f.attribute));
            for attr in used {
                if !c.attributes.contains(&attr.value) {
                    let help = unknown_help(&attr.value, attributes.iter().copied(), "attribute");
                    self.error(
                        file,
                        Some(attr.pos),
                        &field,
                        format!("\"{}\" is not declared under `attributes:`", attr.value),
                        Some(help),
                    );
                }
            }
            for f in &rule.fuzzy {
                let ok = match f.method {
                    FuzzyMethod::JaroWinkler | FuzzyMethod::Levenshtein => {
                        (0.0..=1.0).contains(&f.threshold.value)
                    }
                    FuzzyMethod::Exact => true,
                };
                if !ok {
                    self.error(
                        file,
                        Some(f.threshold.pos),
                        &format!("{field}.fuzzy"),
                        format!("threshold {} is outside 0..1", f.threshold.value),
                        Some("thresholds are similarities: 1.0 is identical, 0.9 close".into()),
                    );
                }
            }
            if let Some(fs) = &rule.fellegi_sunter {
                self.fellegi_sunter(file, &field, fs);
            }
            let compares_pairs = !rule.fuzzy.is_empty() || rule.fellegi_sunter.is_some();
            if compares_pairs && rule.passes().is_empty() && rule.exact.is_empty() {
                self.warning(file, Some(rule.name.pos), &field, format!("fuzzy rule \"{}\" has no blocking key, so it compares every pair of records", rule.name.value), "add `blocking: [attribute]` so work grows with the data, not its square".into());
            }
        }
        if let Some(max) = &c.max_cluster_size
            && max.value < 2
        {
            self.error(
                file,
                Some(max.pos),
                "max_cluster_size",
                "max_cluster_size must be at least 2".into(),
                None,
            );
        }
        if let Some(max) = &c.max_block_size
            && max.value < 2
        {
            self.error(
                file,
                Some(max.pos),
                "max_block_size",
                "max_block_size must be at least 2".into(),
                None,
            );
        }
        if let Some(truth) = &c.truth {
            let target = ref_target(&truth.relation.value);
            let is_source = target.split_once('.').is_some_and(|(s, t)| {
                self.project
                    .config
                    .as_ref()
                    .is_some_and(|c| c.sources.get(s).is_some_and(|src| src.tables.contains(t)))
            });
            if !is_source && !names.iter().any(|n| n == target) {
                self.error(
                    file,
                    Some(truth.relation.pos),
                    "truth.relation",
                    format!("no model or source table named \"{target}\""),
                    Some("give a model name or `source.table` declared in ebb.yml".into()),
                );
            }
        }
        for (attr, rule) in c.survivorship.iter() {
            if !c.attributes.contains(&attr.value) {
                let help = unknown_help(&attr.value, attributes.iter().copied(), "attribute");
                self.error(
                    file,
                    Some(attr.pos),
                    &format!("survivorship.{attr}"),
                    format!("\"{attr}\" is not declared under `attributes:`"),
                    Some(help),
                );
            }
            if let Survivorship::SourcePriority { order } = &rule.value {
                for source in order {
                    if !source_models.contains(&source.value.as_str()) {
                        let help = unknown_help(
                            &source.value,
                            source_models.iter().copied(),
                            "source model",
                        );
                        self.error(
                            file,
                            Some(source.pos),
                            &format!("survivorship.{attr}.order"),
                            format!(
                                "\"{}\" is not one of this identity's source models",
                                source.value
                            ),
                            Some(help),
                        );
                    }
                }
            }
            if rule.value == Survivorship::MostRecent
                && c.sources.value.iter().any(|s| s.updated_at.is_none())
            {
                self.warning(file, Some(rule.pos), &format!("survivorship.{attr}"), "most_recent needs `updated_at` on every source; records without it count as oldest".into(), "add `updated_at: <timestamp column>` to each source".into());
            }
        }
    }
}

impl Checker<'_> {
    fn fellegi_sunter(&mut self, file: &Path, field: &str, fs: &FellegiSunter) {
        let field = format!("{field}.fellegi_sunter");
        if !(0.0..=1.0).contains(&fs.threshold.value) {
            self.error(
                file,
                Some(fs.threshold.pos),
                &format!("{field}.threshold"),
                format!("threshold {} is outside 0..1", fs.threshold.value),
                Some("the threshold is a match probability, e.g. 0.9".into()),
            );
        }
        if let Some(prior) = &fs.prior
            && !(prior.value > 0.0 && prior.value < 1.0)
        {
            self.error(
                file,
                Some(prior.pos),
                &format!("{field}.prior"),
                format!("prior {} must be strictly between 0 and 1", prior.value),
                None,
            );
        }
        if fs.comparisons.value.is_empty() {
            self.error(
                file,
                Some(fs.comparisons.pos),
                &format!("{field}.comparisons"),
                "a Fellegi-Sunter rule needs at least one comparison".into(),
                Some("add `- { attribute: name, method: jaro_winkler, levels: [0.9] }`".into()),
            );
        }
        for (i, c) in fs.comparisons.value.iter().enumerate() {
            let cfield = format!("{field}.comparisons[{i}]");
            let mut previous = 1.0;
            for level in &c.levels {
                if !(0.0..1.0).contains(&level.value) || level.value >= previous {
                    self.error(
                        file,
                        Some(level.pos),
                        &format!("{cfield}.levels"),
                        format!(
                            "level {} must be below 1 and below the level before it",
                            level.value
                        ),
                        Some(
                            "levels are similarities in descending order, e.g. [0.92, 0.8]".into(),
                        ),
                    );
                }
                previous = level.value;
            }
            let want = c.levels.len() + 2;
            for (name, probs) in [("m", &c.m), ("u", &c.u)] {
                let Some(probs) = probs else { continue };
                let bad_len = probs.value.len() != want;
                let bad_value = probs.value.iter().any(|p| !(*p > 0.0 && *p < 1.0));
                if bad_len || bad_value {
                    self.error(
                        file,
                        Some(probs.pos),
                        &format!("{cfield}.{name}"),
                        format!(
                            "`{name}` needs {want} probabilities strictly between 0 and 1 (exact, one per level, different)"
                        ),
                        None,
                    );
                }
            }
        }
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Identifiers in a derived metric's expression (skipping numbers and SQL keywords).
fn identifiers(expr: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "and", "or", "not", "null", "case", "when", "then", "else", "end", "coalesce", "nullif",
        "abs", "round", "greatest", "least", "cast", "as", "double", "float", "integer", "bigint",
        "decimal", "numeric",
    ];
    let mut out = Vec::new();
    let mut current = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            current.push(c);
        } else {
            if is_identifier(&current)
                && !KEYWORDS.contains(&current.to_lowercase().as_str())
                && !out.contains(&current)
            {
                out.push(current.clone());
            }
            current.clear();
        }
    }
    out
}

/// The dimension names used by `{{ Dimension('entity__name') }}` / `TimeDimension(...)`.
fn filter_dimensions(filter: &str) -> Vec<String> {
    let mut out = Vec::new();
    for func in ["Dimension(", "TimeDimension("] {
        let mut rest = filter;
        while let Some(i) = rest.find(func) {
            if i > 0 && rest[..i].ends_with(|c: char| c.is_ascii_alphabetic()) {
                rest = &rest[i + func.len()..];
                continue;
            }
            rest = &rest[i + func.len()..];
            let arg = rest.trim_start().trim_start_matches(['\'', '"']);
            let end = arg.find(['\'', '"']).unwrap_or(arg.len());
            let full = &arg[..end];
            let name = full.rsplit("__").next().unwrap_or(full);
            out.push(name.to_string());
        }
    }
    out
}

/// Every elementary cycle reachable in `edges`, each once, starting at its smallest name.
fn find_cycles<'a>(edges: &BTreeMap<&'a str, Vec<(&'a str, Pos)>>) -> Vec<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Fresh,
        Open,
        Done,
    }
    let mut state: HashMap<&str, State> = edges.keys().map(|k| (*k, State::Fresh)).collect();
    let mut cycles: Vec<Vec<&str>> = Vec::new();
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, Vec<(&'a str, Pos)>>,
        state: &mut HashMap<&'a str, State>,
        stack: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<&'a str>>,
    ) {
        state.insert(node, State::Open);
        stack.push(node);
        for (next, _) in edges.get(node).into_iter().flatten() {
            match state.get(next).copied() {
                Some(State::Fresh) => visit(next, edges, state, stack, cycles),
                Some(State::Open) => {
                    let start = stack
                        .iter()
                        .position(|n| n == next)
                        .expect("open nodes are on the stack");
                    let mut cycle: Vec<&str> = stack[start..].to_vec();
                    let min = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, n)| **n)
                        .map_or(0, |(i, _)| i);
                    cycle.rotate_left(min);
                    cycle.push(cycle[0]);
                    if !cycles.contains(&cycle) {
                        cycles.push(cycle);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node, State::Done);
    }
    for node in edges.keys() {
        if state[node] == State::Fresh {
            visit(node, edges, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_found_once() {
        let p = Pos::new(1, 1);
        let edges: BTreeMap<&str, Vec<(&str, Pos)>> = [
            ("a", vec![("b", p)]),
            ("b", vec![("c", p)]),
            ("c", vec![("a", p)]),
            ("d", vec![("d", p)]),
            ("e", vec![("a", p)]),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            find_cycles(&edges),
            vec![vec!["a", "b", "c", "a"], vec!["d", "d"]]
        );
    }

    #[test]
    fn pipelines_are_loaded_and_checked() {
        use crate::project::{SourceFile, load};
        let file = |path: &str, text: &str| SourceFile {
            path: PathBuf::from(path),
            text: text.to_string(),
        };
        let pipeline = "source: {url: postgres://h/db}\npublication: {name: p}\nslot: shared\nsinks: [{ndjson: {}}]\n";
        let source = ProjectSource {
            root: PathBuf::from("/p"),
            files: vec![
                file("ebb.yml", "name: shop\n"),
                file("pipelines/orders.yml", pipeline),
                file("pipelines/Bad-Name.yml", pipeline),
            ],
        };
        assert!(ProjectSource::wants(Path::new("pipelines/orders.yml")));
        let loaded = load(&source, &|_: &str| None);
        assert_eq!(loaded.project.pipelines.len(), 2);
        assert!(loaded.project.pipeline("orders").is_some());
        let errors: Vec<String> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == crate::Severity::Error)
            .map(|d| format!("{} {}", d.file.display(), d.message))
            .collect();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].contains("Bad-Name") && errors[0].contains("lowercase"));
        assert!(errors[1].contains("slot \"shared\" is also used by pipelines/Bad-Name.yml"));
    }

    #[test]
    fn pipelines_can_be_declared_in_ebb_yml() {
        use crate::project::{SourceFile, load};
        let file = |path: &str, text: &str| SourceFile {
            path: PathBuf::from(path),
            text: text.to_string(),
        };
        let main = [
            "name: shop",
            "pipelines:",
            "  orders:",
            "    source: {url: postgres://h/db}",
            "    publication: {name: p, create: true}",
            "    tables: [orders]",
            "    sinks: [{ndjson: {path: out.ndjson}}]",
            "  users:",
            "    source: {url: postgres://h/db}",
            "    publication: {name: q}",
            "    sinks: []",
            "",
        ]
        .join("\n");
        let other =
            "source: {url: postgres://h/db}\npublication: {name: r}\nsinks: [{discard: {}}]\n";
        let source = ProjectSource {
            root: PathBuf::from("/p"),
            files: vec![
                file("ebb.yml", &main),
                file("pipelines/users.yml", other),
                file("pipelines/events.yml", other),
            ],
        };
        let loaded = load(&source, &|_: &str| None);
        let names: Vec<(&str, String)> = loaded
            .project
            .pipelines
            .iter()
            .map(|p| (p.name.as_str(), p.path.display().to_string()))
            .collect();
        assert!(
            names.contains(&("orders", "ebb.yml".to_string())),
            "{names:?} {:#?}",
            loaded.diagnostics
        );
        assert!(names.contains(&("events", "pipelines/events.yml".to_string())));
        let orders = loaded.project.pipeline("orders").unwrap();
        assert_eq!(orders.config.slot_name("orders"), "ebb_orders");
        let errors: Vec<String> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == crate::Severity::Error)
            .map(|d| {
                format!(
                    "{}:{} {}",
                    d.file.display(),
                    d.pos.map_or(0, |p| p.line),
                    d.message
                )
            })
            .collect();
        // The empty sink list is reported at its line in ebb.yml; the name used twice too.
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("ebb.yml:11 ") && e.contains("at least one sink")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("\"users\" is declared twice")),
            "{errors:#?}"
        );
    }

    #[test]
    fn expression_identifiers() {
        assert_eq!(
            identifiers("(revenue - revenue_prev) / nullif(revenue_prev, 0)"),
            vec!["revenue", "revenue_prev"]
        );
        assert_eq!(
            filter_dimensions("{{ Dimension('invoice__status') }} = 'paid'"),
            vec!["status"]
        );
    }
}
