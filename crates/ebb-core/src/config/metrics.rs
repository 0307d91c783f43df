//! `metrics/*.yml`: semantic models and metrics, shaped like dbt MetricFlow's so its users
//! feel at home.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::Spanned;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    #[serde(default)]
    pub semantic_models: Vec<SemanticModel>,
    #[serde(default)]
    pub metrics: Vec<MetricDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticModel {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The model it describes: `fct_invoices` or `ref('fct_invoices')`.
    pub model: Spanned<String>,
    #[serde(default)]
    pub defaults: Option<SemanticDefaults>,
    #[serde(default)]
    pub primary_entity: Option<Spanned<String>>,
    #[serde(default)]
    pub entities: Vec<Entity>,
    #[serde(default)]
    pub dimensions: Vec<Dimension>,
    #[serde(default)]
    pub measures: Vec<Measure>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticDefaults {
    pub agg_time_dimension: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: EntityType,
    /// The column or SQL expression; default: the entity's name.
    #[serde(default)]
    pub expr: Option<Spanned<String>>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityType {
    Primary,
    Unique,
    Foreign,
    Natural,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: DimensionType,
    #[serde(default)]
    pub expr: Option<Spanned<String>>,
    #[serde(default)]
    pub type_params: Option<DimensionTypeParams>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DimensionType {
    Categorical,
    Time,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionTypeParams {
    pub time_granularity: Grain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grain {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    pub name: Spanned<String>,
    pub agg: Spanned<Agg>,
    /// The column or SQL expression aggregated; default: the measure's name.
    #[serde(default)]
    pub expr: Option<Spanned<String>>,
    #[serde(default)]
    pub agg_params: Option<AggParams>,
    #[serde(default)]
    pub agg_time_dimension: Option<Spanned<String>>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agg {
    Sum,
    Count,
    CountDistinct,
    Average,
    Min,
    Max,
    Median,
    Percentile,
    SumBoolean,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggParams {
    #[serde(default)]
    pub percentile: Option<Spanned<f64>>,
    #[serde(default)]
    pub use_discrete_percentile: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricDef {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<MetricType>,
    #[serde(default)]
    pub type_params: Spanned<MetricTypeParams>,
    /// A filter on dimensions, e.g. `{{ Dimension('invoice__status') }} = 'paid'`.
    #[serde(default)]
    pub filter: Option<Spanned<String>>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricType {
    Simple,
    Ratio,
    Derived,
    Cumulative,
}

/// Parameters of a metric; which ones are needed depends on its type (see `validate`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricTypeParams {
    /// simple, cumulative
    #[serde(default)]
    pub measure: Option<Spanned<MetricInput>>,
    /// ratio
    #[serde(default)]
    pub numerator: Option<Spanned<MetricInput>>,
    #[serde(default)]
    pub denominator: Option<Spanned<MetricInput>>,
    /// derived
    #[serde(default)]
    pub expr: Option<Spanned<String>>,
    #[serde(default)]
    pub metrics: Vec<Spanned<MetricInput>>,
    /// cumulative: a rolling window (`7 days`, `3 months`) ...
    #[serde(default)]
    pub window: Option<Spanned<String>>,
    /// ... or to-date within a grain.
    #[serde(default)]
    pub grain_to_date: Option<Grain>,
}

impl MetricTypeParams {
    /// Problems with the parameters for a metric of type `kind`, with the field at fault.
    pub fn validate(&self, kind: MetricType) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut need = |present: bool, field: &'static str| {
            if !present {
                out.push((
                    field,
                    format!("a {kind:?} metric needs `type_params.{field}`").to_lowercase(),
                ));
            }
        };
        match kind {
            MetricType::Simple => need(self.measure.is_some(), "measure"),
            MetricType::Ratio => {
                need(self.numerator.is_some(), "numerator");
                need(self.denominator.is_some(), "denominator");
            }
            MetricType::Derived => {
                need(self.expr.is_some(), "expr");
                need(!self.metrics.is_empty(), "metrics");
            }
            MetricType::Cumulative => need(self.measure.is_some(), "measure"),
        }
        let allowed: &[&str] = match kind {
            MetricType::Simple => &["measure"],
            MetricType::Ratio => &["numerator", "denominator"],
            MetricType::Derived => &["expr", "metrics"],
            MetricType::Cumulative => &["measure", "window", "grain_to_date"],
        };
        let present = [
            ("measure", self.measure.is_some()),
            ("numerator", self.numerator.is_some()),
            ("denominator", self.denominator.is_some()),
            ("expr", self.expr.is_some()),
            ("metrics", !self.metrics.is_empty()),
            ("window", self.window.is_some()),
            ("grain_to_date", self.grain_to_date.is_some()),
        ];
        for (field, is) in present {
            if is && !allowed.contains(&field) {
                out.push((
                    field,
                    format!(
                        "`{field}` does not apply to a {} metric; it takes: {}",
                        format!("{kind:?}").to_lowercase(),
                        allowed.join(", ")
                    ),
                ));
            }
        }
        if self.window.is_some() && self.grain_to_date.is_some() {
            out.push((
                "window",
                "give a cumulative metric either `window` or `grain_to_date`, not both".into(),
            ));
        }
        if let Some(w) = &self.window
            && let Err(e) = parse_window(&w.value)
        {
            out.push(("window", e));
        }
        for m in &self.metrics {
            if let Some(offset) = &m.value.offset_window
                && let Err(e) = parse_window(offset)
            {
                out.push(("metrics", e));
            }
        }
        out
    }
}

/// `7 days`, `1 month`, `3 months`, `1 year` → (count, grain).
pub fn parse_window(text: &str) -> Result<(u32, Grain), String> {
    let bad = || {
        format!("\"{text}\" is not a window; write a count and a grain, e.g. `7 days`, `3 months`")
    };
    let (n, unit) = text
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(bad)?;
    let n: u32 = n.parse().map_err(|_| bad())?;
    let grain = match unit.trim().trim_end_matches('s') {
        "day" => Grain::Day,
        "week" => Grain::Week,
        "month" => Grain::Month,
        "quarter" => Grain::Quarter,
        "year" => Grain::Year,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(bad());
    }
    Ok((n, grain))
}

/// A metric or measure used by another metric: a name, or a mapping with options.
#[derive(Debug, Clone, Default)]
pub struct MetricInput {
    pub name: String,
    pub filter: Option<String>,
    /// The name this input goes by in a derived metric's `expr`.
    pub alias: Option<String>,
    /// Shift the input back in time, e.g. `1 month` for month-over-month growth.
    pub offset_window: Option<String>,
    pub offset_to_grain: Option<Grain>,
}

impl MetricInput {
    /// The name this input goes by inside a derived metric's `expr`.
    pub fn alias_or_name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricInputFields {
    name: String,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    offset_window: Option<String>,
    #[serde(default)]
    offset_to_grain: Option<Grain>,
}

/// Accepts `revenue` as well as `{name: revenue, alias: ...}`.
impl<'de> Deserialize<'de> for MetricInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MetricInput, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetricInput;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name, or a mapping with `name`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MetricInput, E> {
                Ok(MetricInput {
                    name: v.to_string(),
                    ..MetricInput::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MetricInput, A::Error> {
                let f = MetricInputFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(MetricInput {
                    name: f.name,
                    filter: f.filter,
                    alias: f.alias,
                    offset_window: f.offset_window,
                    offset_to_grain: f.offset_to_grain,
                })
            }
        }
        d.deserialize_any(V)
    }
}
