//! `identity/NAME.yml`: which records describe the same customer, and what the golden
//! record says.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::NamedMap;
use crate::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    #[serde(default)]
    pub description: Option<String>,
    pub sources: Spanned<Vec<IdentitySource>>,
    /// The identity attributes and how each is normalized and compared.
    pub attributes: NamedMap<AttributeConfig>,
    pub rules: Spanned<Vec<MatchRule>>,
    /// A cluster never grows beyond this; the weakest links are cut first.
    #[serde(default)]
    pub max_cluster_size: Option<Spanned<u32>>,
    #[serde(default)]
    pub survivorship: NamedMap<Spanned<Survivorship>>,
    /// A blocking key shared by more records than this is skipped (with a warning): such a
    /// value (a shared inbox, a placeholder phone) says nothing about identity, and comparing
    /// all its pairs would make the work quadratic.
    #[serde(default)]
    pub max_block_size: Option<Spanned<u32>>,
    /// `link_only`: only records of different sources are compared (record linkage without
    /// deduplication inside a source). Default `dedupe_and_link`.
    #[serde(default)]
    pub mode: IdentityMode,
    /// A table of known identities (`source`, `record_id`, `person_id` columns) to measure
    /// precision and recall against on every run.
    #[serde(default)]
    pub truth: Option<TruthConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityMode {
    #[default]
    DedupeAndLink,
    LinkOnly,
}

/// Where the ground truth is: a model, or a `source.table`, with three columns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruthConfig {
    /// A model name or `source_name.table_name`.
    pub relation: Spanned<String>,
    #[serde(default = "default_truth_source")]
    pub source_column: String,
    #[serde(default = "default_truth_record")]
    pub record_column: String,
    #[serde(default = "default_truth_entity")]
    pub entity_column: String,
}

fn default_truth_source() -> String {
    "source".into()
}
fn default_truth_record() -> String {
    "record_id".into()
}
fn default_truth_entity() -> String {
    "person_id".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySource {
    pub model: Spanned<String>,
    /// The model's record id column.
    pub key: Spanned<String>,
    /// A timestamp column, for `most_recent` survivorship.
    #[serde(default)]
    pub updated_at: Option<Spanned<String>>,
    /// Identity attribute → the model's column.
    pub attributes: NamedMap<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeConfig {
    pub kind: AttributeKind,
    /// Two records with different values of a strong attribute never merge.
    #[serde(default)]
    pub strong: bool,
    /// For phones without a country code (ISO 3166 alpha-2, e.g. `US`).
    #[serde(default)]
    pub default_region: Option<String>,
    /// Emails only: treat `first.last+tag@gmail.com` as `firstlast@gmail.com` (Gmail ignores
    /// dots and `+tags`). Off by default: other providers treat them as different inboxes.
    #[serde(default)]
    pub gmail_canonical: bool,
}

/// Decides the normalizer: emails are trimmed and lowercased, phones become E.164, names are
/// unicode-folded, ids are compared as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeKind {
    Email,
    Phone,
    Name,
    Address,
    Date,
    Id,
    Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    pub name: Spanned<String>,
    /// Records match when all these attributes are equal after normalization.
    #[serde(default)]
    pub exact: Vec<Spanned<String>>,
    /// Only pairs that share these attributes are compared (keeps the work near-linear).
    #[serde(default)]
    pub blocking: Vec<Spanned<String>>,
    /// Records match when every comparison reaches its threshold.
    #[serde(default)]
    pub fuzzy: Vec<FuzzyComparison>,
    /// More blocking passes: a pair is a candidate when it shares every attribute of
    /// `blocking` or of any one of these lists (the union of the passes).
    #[serde(default)]
    pub blocking_passes: Vec<Vec<Spanned<String>>>,
    /// A probabilistic (Fellegi-Sunter) rule: weights per comparison level, a match when the
    /// match probability reaches `threshold`.
    #[serde(default)]
    pub fellegi_sunter: Option<FellegiSunter>,
    #[serde(default)]
    pub description: Option<String>,
}

impl MatchRule {
    /// Every blocking pass of the rule, `blocking` first. Empty: the rule blocks on its
    /// `exact` attributes (or compares all pairs when it has none).
    pub fn passes(&self) -> Vec<Vec<&str>> {
        let mut passes = Vec::new();
        if !self.blocking.is_empty() {
            passes.push(self.blocking.iter().map(|a| a.value.as_str()).collect());
        }
        for p in &self.blocking_passes {
            passes.push(p.iter().map(|a| a.value.as_str()).collect());
        }
        passes
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FellegiSunter {
    /// Minimum match probability (0..1) for a pair to match.
    pub threshold: Spanned<f64>,
    /// Probability that a candidate pair is a match before looking at it; estimated by EM
    /// when absent.
    #[serde(default)]
    pub prior: Option<Spanned<f64>>,
    /// EM iterations at most (default 25).
    #[serde(default)]
    pub max_iterations: Option<u32>,
    pub comparisons: Spanned<Vec<FsComparison>>,
}

/// One attribute's comparison: level 0 is "exact after normalization", then one level per
/// similarity in `levels` (descending), then "different". A missing value is neutral.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsComparison {
    pub attribute: Spanned<String>,
    #[serde(default = "default_fs_method")]
    pub method: FuzzyMethod,
    #[serde(default)]
    pub levels: Vec<Spanned<f64>>,
    /// P(level | match) per level (exact, each of `levels`, different); estimated when absent.
    #[serde(default)]
    pub m: Option<Spanned<Vec<f64>>>,
    /// P(level | non-match) per level; estimated when absent.
    #[serde(default)]
    pub u: Option<Spanned<Vec<f64>>>,
}

fn default_fs_method() -> FuzzyMethod {
    FuzzyMethod::JaroWinkler
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuzzyComparison {
    pub attribute: Spanned<String>,
    pub method: FuzzyMethod,
    pub threshold: Spanned<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FuzzyMethod {
    JaroWinkler,
    Levenshtein,
    Exact,
}

/// Which value of an attribute the golden record keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Survivorship {
    MostRecent,
    MostFrequent,
    FirstNonNull,
    /// The first source (model name) in `order` that has a value.
    SourcePriority {
        order: Vec<Spanned<String>>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SurvivorshipFields {
    rule: String,
    #[serde(default)]
    order: Vec<Spanned<String>>,
}

const RULES: &[&str] = &[
    "most_recent",
    "most_frequent",
    "first_non_null",
    "source_priority",
];

fn rule_from(name: &str, order: Vec<Spanned<String>>) -> Result<Survivorship, String> {
    match name {
        "most_recent" => Ok(Survivorship::MostRecent),
        "most_frequent" => Ok(Survivorship::MostFrequent),
        "first_non_null" => Ok(Survivorship::FirstNonNull),
        "source_priority" if order.is_empty() => Err(
            "`source_priority` needs an order: `{ rule: source_priority, order: [model_a, model_b] }`".into(),
        ),
        "source_priority" => Ok(Survivorship::SourcePriority { order }),
        other => Err(format!(
            "unknown survivorship rule \"{other}\" ({})",
            crate::yaml::de::suggest(other, RULES)
        )),
    }
}

impl<'de> Deserialize<'de> for Survivorship {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Survivorship, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Survivorship;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a survivorship rule, or a mapping with `rule` and `order`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Survivorship, E> {
                rule_from(v, Vec::new()).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Survivorship, A::Error> {
                let f =
                    SurvivorshipFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                rule_from(&f.rule, f.order).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}
