//! `syncs/NAME.yml`: which rows go where, matched how, mapped to which fields, and when.

use serde::Deserialize;

use super::project::SyncMode;
use super::{Duration, KeyColumns};
use crate::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    #[serde(default)]
    pub description: Option<String>,
    /// The model whose rows are sent. Exactly one of `model` and `metric`.
    #[serde(default)]
    pub model: Option<Spanned<String>>,
    /// A metric per entity (e.g. each account's MRR) instead of a model.
    #[serde(default)]
    pub metric: Option<MetricSource>,
    pub destination: Spanned<String>,
    #[serde(default)]
    pub tenant: Option<Spanned<String>>,
    /// The destination's object: HubSpot object type, Salesforce sObject, table name, ...
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default)]
    pub mode: Option<SyncMode>,
    /// Default: the model's primary key.
    #[serde(default)]
    pub primary_key: Option<Spanned<KeyColumns>>,
    #[serde(default, rename = "match")]
    pub match_on: Option<MatchConfig>,
    /// Only mapped columns are diffed and sent.
    #[serde(default)]
    pub mapping: Spanned<Vec<FieldMapping>>,
    #[serde(default)]
    pub schedule: Option<Spanned<Schedule>>,
    /// On the first run, mark the current rows as synced without sending them.
    #[serde(default)]
    pub skip_initial_backfill: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSource {
    pub name: Spanned<String>,
    /// The entity the metric is grouped by; each row is one entity.
    pub entity: Spanned<String>,
}

/// How a row finds its record in the destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// The model's column.
    pub source: Spanned<String>,
    /// The destination's unique field (HubSpot `idProperty`, Salesforce external id).
    pub destination: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
}

/// When a sync runs by itself; without a schedule it runs only when triggered.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Five-field cron expression, in the project's timezone.
    #[serde(default)]
    pub cron: Option<Spanned<String>>,
    #[serde(default)]
    pub every: Option<Duration>,
    /// Run after this sync succeeds.
    #[serde(default)]
    pub after: Option<Spanned<String>>,
}

impl Schedule {
    /// Problems with the schedule itself: exactly one kind, a cron of five valid fields.
    pub fn validate(&self) -> Vec<(Option<crate::yaml::Pos>, String)> {
        let mut problems = Vec::new();
        let set = [
            self.cron.is_some(),
            self.every.is_some(),
            self.after.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            problems.push((
                None,
                "a schedule needs exactly one of `cron`, `every` or `after`".to_string(),
            ));
        }
        if let Some(cron) = &self.cron
            && let Err(msg) = check_cron(&cron.value)
        {
            problems.push((Some(cron.pos), msg));
        }
        if let Some(every) = &self.every
            && every.0 < std::time::Duration::from_secs(1)
        {
            problems.push((None, "`every` must be at least 1s".to_string()));
        }
        problems
    }
}

/// Checks a five-field cron expression (minute hour day-of-month month day-of-week).
pub fn check_cron(expr: &str) -> Result<(), String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "cron \"{expr}\" has {} fields; write five: minute hour day-of-month month day-of-week, e.g. \"0 * * * *\"",
            fields.len()
        ));
    }
    let ranges = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day-of-month", 1, 31),
        ("month", 1, 12),
        ("day-of-week", 0, 7),
    ];
    for (field, (name, lo, hi)) in fields.iter().zip(ranges) {
        for part in field.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (part, None),
            };
            if let Some(step) = step
                && step.parse::<u32>().map_or(true, |s| s == 0)
            {
                return Err(format!(
                    "cron {name} field \"{field}\": bad step \"{step}\""
                ));
            }
            if range == "*" {
                continue;
            }
            let bounds: Vec<&str> = range.split('-').collect();
            if bounds.len() > 2 {
                return Err(format!("cron {name} field \"{field}\" is not valid"));
            }
            for b in bounds {
                match b.parse::<u32>() {
                    Ok(v) if (lo..=hi).contains(&v) => {}
                    _ => {
                        return Err(format!(
                            "cron {name} field \"{field}\": \"{b}\" is not a number from {lo} to {hi}"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions_are_checked() {
        assert!(check_cron("0 * * * *").is_ok());
        assert!(check_cron("*/15 8-18 * * 1-5").is_ok());
        assert!(check_cron("0 * * *").unwrap_err().contains("4 fields"));
        assert!(check_cron("61 * * * *").unwrap_err().contains("minute"));
        assert!(check_cron("*/0 * * * *").is_err());
    }
}
