//! Models as a DAG: the order they run in, and `--select` over it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ebb_core::project::sql::TemplateRef;
use ebb_core::project::{Model, Project};

use crate::EngineError;

/// The models of a project in dependency order.
#[derive(Debug)]
pub struct ModelGraph<'p> {
    /// Every model, each after the models it reads.
    order: Vec<&'p Model>,
    /// model → the models it refs.
    upstream: BTreeMap<&'p str, BTreeSet<&'p str>>,
    /// model → the models that ref it.
    downstream: BTreeMap<&'p str, BTreeSet<&'p str>>,
}

impl<'p> ModelGraph<'p> {
    /// Orders the project's models; a cycle is an error that names it. Refs to names that are
    /// not models (identity outputs) are left to the warehouse.
    pub fn new(project: &'p Project) -> Result<ModelGraph<'p>, EngineError> {
        let mut upstream: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut downstream: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for m in &project.models {
            upstream.entry(&m.name).or_default();
            downstream.entry(&m.name).or_default();
        }
        for m in &project.models {
            for r in &m.refs {
                if let TemplateRef::Model { name, .. } = r
                    && let Some(dep) = project.model(name)
                {
                    upstream.entry(&m.name).or_default().insert(&dep.name);
                    downstream.entry(&dep.name).or_default().insert(&m.name);
                }
            }
        }
        // Kahn's algorithm, taking names alphabetically among the ready ones so the order is
        // the same on every run.
        let mut waiting: BTreeMap<&str, usize> =
            upstream.iter().map(|(k, v)| (*k, v.len())).collect();
        let mut ready: VecDeque<&str> = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(k, _)| *k)
            .collect();
        let mut order = Vec::with_capacity(project.models.len());
        while let Some(name) = ready.pop_front() {
            waiting.remove(name);
            order.push(project.model(name).expect("graph nodes are models"));
            for child in &downstream[name] {
                if let Some(n) = waiting.get_mut(child) {
                    *n -= 1;
                    if *n == 0 {
                        ready.push_back(child);
                    }
                }
            }
        }
        if !waiting.is_empty() {
            let stuck: Vec<&str> = waiting.keys().copied().collect();
            return Err(EngineError::Cycle(stuck.join(", ")));
        }
        Ok(ModelGraph {
            order,
            upstream,
            downstream,
        })
    }

    /// Every model, in run order.
    pub fn order(&self) -> &[&'p Model] {
        &self.order
    }

    /// The models `name` reads directly.
    pub fn upstream(&self, name: &str) -> impl Iterator<Item = &'p str> + '_ {
        self.upstream.get(name).into_iter().flatten().copied()
    }

    /// Models picked by dbt-style selectors, in run order: `name`, `name+` (and everything
    /// downstream), `+name` (and everything upstream), `+name+`. No selectors: all models.
    pub fn select(&self, selectors: &[String]) -> Result<Vec<&'p Model>, EngineError> {
        if selectors.is_empty() {
            return Ok(self.order.clone());
        }
        let mut picked: BTreeSet<&str> = BTreeSet::new();
        for selector in selectors.iter().flat_map(|s| s.split([',', ' '])) {
            if selector.is_empty() {
                continue;
            }
            let up = selector.starts_with('+');
            let down = selector.ends_with('+');
            let name = selector.trim_matches('+');
            let Some((&node, _)) = self.upstream.get_key_value(name) else {
                let names: Vec<&str> = self.upstream.keys().copied().collect();
                let hint = ebb_core::diagnostic::closest(name, names.iter().copied())
                    .map(|c| format!(" (did you mean \"{c}\"?)"))
                    .unwrap_or_default();
                return Err(EngineError::UnknownModel(format!("{name}{hint}")));
            };
            picked.insert(node);
            if up {
                self.walk(node, &self.upstream, &mut picked);
            }
            if down {
                self.walk(node, &self.downstream, &mut picked);
            }
        }
        Ok(self
            .order
            .iter()
            .filter(|m| picked.contains(m.name.as_str()))
            .copied()
            .collect())
    }

    fn walk(
        &self,
        from: &'p str,
        edges: &BTreeMap<&'p str, BTreeSet<&'p str>>,
        into: &mut BTreeSet<&'p str>,
    ) {
        for next in edges.get(from).into_iter().flatten() {
            if into.insert(next) {
                self.walk(next, edges, into);
            }
        }
    }
}
