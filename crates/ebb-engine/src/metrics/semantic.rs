//! The semantic graph: every semantic model, measure and metric of a project by name, and
//! how a dimension reference (`account__region`, `subscription__plan`,
//! `account__created_at__month`, `metric_time__week`, `account`) is reached from a measure's
//! semantic model.
//!
//! A reference is `entity__...__entity__name[__grain]`. Starting at the measure's semantic
//! model, each entity in the path is a hop: when the current model has that entity as its
//! `primary` or `unique` entity the hop stays (the dimension is the model's own, as in
//! `invoice__status` on invoices); when it has it as `foreign` (or `natural`) the hop joins
//! the one semantic model where that entity is primary or unique. Every join therefore goes
//! from many rows to at most one, and can never repeat a measure's rows.

use std::collections::BTreeMap;

use ebb_core::config::metrics::{
    Dimension, DimensionType, Entity, EntityType, Grain, Measure, MetricDef, SemanticModel,
};
use ebb_core::config::model::ref_target;
use ebb_core::project::Project;

use super::MetricsError;

/// A project's semantic models, measures and metrics, indexed.
#[derive(Debug)]
pub struct SemanticGraph<'p> {
    pub(crate) models: Vec<&'p SemanticModel>,
    measures: BTreeMap<&'p str, (usize, &'p Measure)>,
    metrics: BTreeMap<&'p str, &'p MetricDef>,
}

/// A parsed dimension reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimRef {
    /// As written: the output column's name.
    pub text: String,
    /// Entities to walk through, in order.
    pub path: Vec<String>,
    /// The dimension or entity at the end.
    pub name: String,
    /// A grain suffix (`__month`), for time dimensions.
    pub grain: Option<Grain>,
}

impl DimRef {
    pub fn parse(text: &str) -> Result<DimRef, MetricsError> {
        let valid = !text.is_empty()
            && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !text.starts_with("__")
            && !text.ends_with("__");
        if !valid {
            return Err(MetricsError::Query(format!(
                "\"{text}\" is not a dimension reference; write entity__dimension, e.g. account__region, or metric_time__month"
            )));
        }
        let mut parts: Vec<String> = text.split("__").map(str::to_string).collect();
        let mut grain = None;
        if parts.len() >= 2
            && let Some(g) = parts.last().and_then(|p| grain_from_name(p))
        {
            grain = Some(g);
            parts.pop();
        }
        let name = parts.pop().unwrap_or_default();
        if name.is_empty() || parts.iter().any(String::is_empty) {
            return Err(MetricsError::Query(format!(
                "\"{text}\" is not a dimension reference; write entity__dimension"
            )));
        }
        Ok(DimRef {
            text: text.to_string(),
            path: parts,
            name,
            grain,
        })
    }

    pub fn is_metric_time(&self) -> bool {
        self.path.is_empty() && self.name == "metric_time"
    }
}

pub fn grain_from_name(name: &str) -> Option<Grain> {
    Some(match name {
        "day" => Grain::Day,
        "week" => Grain::Week,
        "month" => Grain::Month,
        "quarter" => Grain::Quarter,
        "year" => Grain::Year,
        _ => return None,
    })
}

pub fn grain_name(grain: Grain) -> &'static str {
    match grain {
        Grain::Day => "day",
        Grain::Week => "week",
        Grain::Month => "month",
        Grain::Quarter => "quarter",
        Grain::Year => "year",
    }
}

/// Where a reference ends up, relative to a measure's semantic model.
#[derive(Debug, Clone)]
pub struct Reached<'p> {
    /// The entities joined through (foreign hops only), from the measure's model: the
    /// join path. Empty when the column is the measure's model's own.
    pub joins: Vec<(usize, &'p str)>,
    /// The semantic model holding the column.
    pub model: usize,
    pub column: Column<'p>,
}

#[derive(Debug, Clone, Copy)]
pub enum Column<'p> {
    Dimension(&'p Dimension),
    Entity(&'p Entity),
}

impl<'p> SemanticGraph<'p> {
    /// Indexes the project's metrics files. The project is expected to have passed
    /// `ebb check`; names that are missing anyway are reported when a query uses them.
    pub fn new(project: &'p Project) -> SemanticGraph<'p> {
        let mut models = Vec::new();
        let mut measures = BTreeMap::new();
        let mut metrics = BTreeMap::new();
        for doc in &project.metrics {
            for sm in &doc.file.semantic_models {
                let idx = models.len();
                models.push(sm);
                for m in &sm.measures {
                    measures.insert(m.name.value.as_str(), (idx, m));
                }
            }
            for m in &doc.file.metrics {
                metrics.insert(m.name.value.as_str(), m);
            }
        }
        SemanticGraph {
            models,
            measures,
            metrics,
        }
    }

    pub fn metrics(&self) -> impl Iterator<Item = &'p MetricDef> + '_ {
        self.metrics.values().copied()
    }

    pub fn metric(&self, name: &str) -> Result<&'p MetricDef, MetricsError> {
        self.metrics.get(name).copied().ok_or_else(|| {
            let hint = ebb_core::diagnostic::closest(name, self.metrics.keys().copied())
                .map(|c| format!(" (did you mean \"{c}\"?)"))
                .unwrap_or_default();
            MetricsError::Query(format!(
                "no metric named \"{name}\"{hint}; `ebb metrics list` shows them"
            ))
        })
    }

    pub fn measure(&self, name: &str) -> Result<(usize, &'p Measure), MetricsError> {
        self.measures.get(name).copied().ok_or_else(|| {
            MetricsError::Query(format!(
                "no measure named \"{name}\"; run `ebb check` to see where it is used"
            ))
        })
    }

    pub fn model(&self, idx: usize) -> &'p SemanticModel {
        self.models[idx]
    }

    /// The model (SQL model) a semantic model describes.
    pub fn model_name(&self, idx: usize) -> &'p str {
        ref_target(&self.models[idx].model.value)
    }

    /// The time dimension `measure` is aggregated over.
    pub fn agg_time(
        &self,
        idx: usize,
        measure: &'p Measure,
    ) -> Result<&'p Dimension, MetricsError> {
        let sm = self.models[idx];
        let name = measure
            .agg_time_dimension
            .as_ref()
            .or(sm.defaults.as_ref().map(|d| &d.agg_time_dimension))
            .ok_or_else(|| {
                MetricsError::Query(format!(
                    "measure \"{}\" has no agg_time_dimension; set `defaults: {{ agg_time_dimension: ... }}` on semantic model \"{}\"",
                    measure.name.value, sm.name.value
                ))
            })?;
        sm.dimensions
            .iter()
            .find(|d| d.name.value == name.value && d.kind == DimensionType::Time)
            .ok_or_else(|| {
                MetricsError::Query(format!(
                    "\"{}\" is not a time dimension of semantic model \"{}\"",
                    name.value, sm.name.value
                ))
            })
    }

    /// The entity a semantic model is "about": `primary_entity`, else its primary entity,
    /// else its first unique one.
    pub fn primary_entity(&self, idx: usize) -> Option<&'p str> {
        let sm = self.models[idx];
        if let Some(p) = &sm.primary_entity {
            return Some(p.value.as_str());
        }
        sm.entities
            .iter()
            .find(|e| e.kind == EntityType::Primary)
            .or_else(|| sm.entities.iter().find(|e| e.kind == EntityType::Unique))
            .map(|e| e.name.value.as_str())
    }

    fn entity(&self, idx: usize, name: &str) -> Option<&'p Entity> {
        self.models[idx]
            .entities
            .iter()
            .find(|e| e.name.value == name)
    }

    /// The semantic model where `entity` is primary (or else unique): the one side of a join.
    pub(crate) fn owner(&self, entity: &str) -> Result<usize, MetricsError> {
        let with = |kind| {
            (0..self.models.len())
                .filter(|&i| self.entity(i, entity).is_some_and(|e| e.kind == kind))
                .collect::<Vec<_>>()
        };
        let primary = with(EntityType::Primary);
        match primary.as_slice() {
            [one] => return Ok(*one),
            [] => {}
            many => {
                return Err(MetricsError::Query(format!(
                    "entity \"{entity}\" is primary in {} semantic models ({}); a join on it is ambiguous",
                    many.len(),
                    many.iter()
                        .map(|&i| self.models[i].name.value.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        match with(EntityType::Unique).as_slice() {
            [one] => Ok(*one),
            _ => Err(MetricsError::Query(format!(
                "no semantic model has \"{entity}\" as its primary entity, so nothing can be joined through it"
            ))),
        }
    }

    /// Walks `r` from semantic model `from`.
    pub fn reach(&self, from: usize, r: &DimRef) -> Result<Reached<'p>, MetricsError> {
        let mut current = from;
        let mut joins: Vec<(usize, &'p str)> = Vec::new();
        if r.path.is_empty() {
            if let Some(e) = self.entity(from, &r.name) {
                return Ok(Reached {
                    joins,
                    model: from,
                    column: Column::Entity(e),
                });
            }
            let candidates: Vec<String> = (0..self.models.len())
                .filter(|&i| {
                    self.models[i]
                        .dimensions
                        .iter()
                        .any(|d| d.name.value == r.name)
                })
                .filter_map(|i| self.primary_entity(i).map(|p| format!("{p}__{}", r.name)))
                .collect();
            return Err(MetricsError::Query(if candidates.is_empty() {
                format!(
                    "\"{}\" is neither an entity of semantic model \"{}\" nor a dimension anywhere",
                    r.text, self.models[from].name.value
                )
            } else {
                format!(
                    "\"{}\" needs its entity: write {}",
                    r.text,
                    candidates.join(" or ")
                )
            }));
        }
        for entity in &r.path {
            let Some(e) = self.entity(current, entity) else {
                return Err(MetricsError::Query(format!(
                    "\"{}\": semantic model \"{}\" has no entity \"{entity}\" to reach it through (its entities: {})",
                    r.text,
                    self.models[current].name.value,
                    self.models[current]
                        .entities
                        .iter()
                        .map(|e| e.name.value.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            if matches!(e.kind, EntityType::Primary | EntityType::Unique) {
                continue;
            }
            let target = self.owner(entity)?;
            joins.push((current, e.name.value.as_str()));
            current = target;
        }
        let sm = self.models[current];
        if let Some(d) = sm.dimensions.iter().find(|d| d.name.value == r.name) {
            return Ok(Reached {
                joins,
                model: current,
                column: Column::Dimension(d),
            });
        }
        if let Some(e) = self.entity(current, &r.name) {
            return Ok(Reached {
                joins,
                model: current,
                column: Column::Entity(e),
            });
        }
        let names = sm
            .dimensions
            .iter()
            .map(|d| d.name.value.as_str())
            .chain(sm.entities.iter().map(|e| e.name.value.as_str()));
        let hint = ebb_core::diagnostic::closest(&r.name, names)
            .map(|c| format!(" (did you mean \"{c}\"?)"))
            .unwrap_or_default();
        Err(MetricsError::Query(format!(
            "\"{}\": semantic model \"{}\" has no dimension \"{}\"{hint}",
            r.text, sm.name.value, r.name
        )))
    }

    /// The group-by references a measure of semantic model `idx` can use: `metric_time` at
    /// every grain, its own entities and dimensions, and those one join away.
    pub fn reachable(&self, idx: usize) -> Vec<String> {
        let mut out: Vec<String> = [
            Grain::Day,
            Grain::Week,
            Grain::Month,
            Grain::Quarter,
            Grain::Year,
        ]
        .iter()
        .map(|g| format!("metric_time__{}", grain_name(*g)))
        .collect();
        let sm = self.models[idx];
        for e in &sm.entities {
            out.push(e.name.value.clone());
        }
        let own = |model: usize, prefix: &str, out: &mut Vec<String>| {
            for d in &self.models[model].dimensions {
                out.push(format!("{prefix}__{}", d.name.value));
            }
        };
        if let Some(p) = self.primary_entity(idx) {
            own(idx, p, &mut out);
        }
        for e in &sm.entities {
            if matches!(e.kind, EntityType::Foreign | EntityType::Natural)
                && let Ok(target) = self.owner(&e.name.value)
            {
                own(target, &e.name.value, &mut out);
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|x| seen.insert(x.clone()));
        out
    }
}
