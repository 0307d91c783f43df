//! `pipelines/NAME.yml`: a CDC pipeline from a PostgreSQL database's logical replication
//! stream to sinks.
//!
//! ```yaml
//! source:
//!   url: ${ORDERS_DB_URL}          # a secret: never printed
//! publication:
//!   name: ebb_orders
//!   create: true                   # create it (FOR TABLE <tables>) when it does not exist
//! tables: [public.orders, public.customers]
//! slot: ebb_orders                 # default: ebb_<pipeline name>
//! snapshot: initial                # initial | never | initial_only
//! sinks:
//!   - ndjson: {path: out/orders.ndjson}      # no path: stdout
//!   - parquet: {path: lake/orders, roll_bytes: 64MiB, roll_interval: 1m}
//! batch: {max_rows: 10000, max_bytes: 8MiB, max_latency: 100ms}
//! ```

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::Duration;
use crate::{Secret, Spanned};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default)]
    pub description: Option<String>,
    pub source: PipelineSource,
    pub publication: PublicationConfig,
    /// Tables to capture, `schema.table` or `table` (schema `public`). With an existing
    /// publication and no tables, every table of the publication.
    #[serde(default)]
    pub tables: Spanned<Vec<Spanned<String>>>,
    /// The replication slot; default `ebb_<pipeline name>`.
    #[serde(default)]
    pub slot: Option<Spanned<String>>,
    #[serde(default)]
    pub snapshot: SnapshotMode,
    pub sinks: Spanned<Vec<Spanned<SinkConfig>>>,
    #[serde(default)]
    pub batch: BatchLimits,
    #[serde(default)]
    pub streaming: StreamingConfig,
    /// How often an idle pipeline emits a heartbeat message so that the slot keeps advancing
    /// while the published tables are idle and others are busy. Default 10s; `0s` turns it off.
    #[serde(default)]
    pub heartbeat: Option<Duration>,
    /// Warn when the slot holds more WAL than this. Default 1GiB.
    #[serde(default)]
    pub lag_warn_bytes: Option<ByteSize>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl PipelineConfig {
    /// The slot's name: the configured one, or `ebb_<pipeline name>`.
    pub fn slot_name(&self, pipeline: &str) -> String {
        match &self.slot {
            Some(s) => s.value.clone(),
            None => format!("ebb_{pipeline}"),
        }
    }

    /// Problems this file has on its own (no I/O): `(position, field, message, help)`.
    pub fn validate(&self) -> Vec<(Option<crate::yaml::Pos>, &'static str, String, String)> {
        let mut problems = Vec::new();
        if self.sinks.value.is_empty() {
            problems.push((
                Some(self.sinks.pos),
                "sinks",
                "a pipeline needs at least one sink".to_string(),
                "add e.g. `sinks: [{ndjson: {path: changes.ndjson}}]`".to_string(),
            ));
        }
        if self.publication.create && self.tables.value.is_empty() {
            problems.push((
                Some(self.publication.name.pos),
                "publication.create",
                "ebb can only create a publication for the tables you list".to_string(),
                "list them under `tables:`, or set `create: false` and name an existing publication"
                    .to_string(),
            ));
        }
        for t in &self.tables.value {
            if t.value.split('.').count() > 2 || t.value.split('.').any(str::is_empty) {
                problems.push((
                    Some(t.pos),
                    "tables",
                    format!("\"{}\" is not a table name", t.value),
                    "write `schema.table` or `table`".to_string(),
                ));
            }
        }
        if let Some(slot) = &self.slot {
            let ok = !slot.value.is_empty()
                && slot.value.len() <= 63
                && slot
                    .value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                problems.push((
                    Some(slot.pos),
                    "slot",
                    format!("slot name \"{}\" is not valid", slot.value),
                    "PostgreSQL slot names are 1-63 lowercase letters, digits and _".to_string(),
                ));
            }
        }
        let b = &self.batch;
        if b.max_rows == Some(0) {
            problems.push((
                None,
                "batch.max_rows",
                "`max_rows` must be at least 1".to_string(),
                "leave it out for the default (10000)".to_string(),
            ));
        }
        problems
    }
}

/// Where changes come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSource {
    /// `postgres://user:password@host:port/db`; the role needs `REPLICATION`.
    pub url: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicationConfig {
    pub name: Spanned<String>,
    /// Create the publication (for the listed tables) when it does not exist.
    #[serde(default)]
    pub create: bool,
}

/// Whether the tables' current rows are copied before streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Copy the tables, then stream from the copy's consistent point.
    #[default]
    Initial,
    /// Stream changes only, from the slot's creation on.
    Never,
    /// Copy the tables and stop.
    InitialOnly,
}

/// Where changes go.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// One JSON object a change, to a file (relative to the project) or to stdout.
    Ndjson {
        /// No path, or `-`: stdout (at-least-once: stdout cannot be rolled back).
        #[serde(default)]
        path: Option<String>,
    },
    /// Parquet files on object_store (a local folder or `s3://bucket/prefix`), committed with
    /// a manifest recording each file's LSN range.
    Parquet {
        path: String,
        #[serde(default)]
        roll_bytes: Option<ByteSize>,
        #[serde(default)]
        roll_interval: Option<Duration>,
    },
    /// Discards everything (for benchmarks).
    Discard {},
}

impl SinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Ndjson { .. } => "ndjson",
            SinkConfig::Parquet { .. } => "parquet",
            SinkConfig::Discard {} => "discard",
        }
    }
}

/// When a batch of changes is handed to the sinks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchLimits {
    /// Default 10000.
    #[serde(default)]
    pub max_rows: Option<usize>,
    /// Default 8MiB.
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
    /// Default 100ms.
    #[serde(default)]
    pub max_latency: Option<Duration>,
}

/// Large transactions that PostgreSQL streams before they commit (pgoutput v2).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamingConfig {
    /// Memory held for in-progress transactions before they spill to disk. Default 64MiB.
    #[serde(default)]
    pub memory_budget: Option<ByteSize>,
    /// Where spilled transactions go; default the project's `.ebb/spill/`.
    #[serde(default)]
    pub spill_dir: Option<String>,
}

/// A size in bytes: `1048576`, `64KB`, `64KiB`, `8MB`, `8MiB`, `1GB`, `1GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("\"{s}\" is not a size; write e.g. `64MiB` or `1048576`"))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown unit \"{other}\" in \"{s}\"; use B, KB, KiB, MB, MiB, GB or GiB"
                ));
            }
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("\"{s}\" is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size such as 64MiB")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    struct NoEnv;
    impl yaml::Env for NoEnv {
        fn var(&self, name: &str) -> Option<String> {
            (name == "DB").then(|| "postgres://u:pw@h/db".to_string())
        }
    }

    fn parse(text: &str) -> yaml::Parsed<PipelineConfig> {
        yaml::from_node(&yaml::parse(text).unwrap(), &NoEnv)
    }

    #[test]
    fn a_full_pipeline_parses() {
        let p = parse(
            "source: {url: '${DB}'}\n\
             publication: {name: pub, create: true}\n\
             tables: [public.orders, customers]\n\
             snapshot: initial_only\n\
             sinks:\n  - ndjson: {path: out.ndjson}\n  - parquet: {path: lake, roll_bytes: 1MiB, roll_interval: 30s}\n  - discard: {}\n\
             batch: {max_rows: 5, max_bytes: 64KiB, max_latency: 50ms}\n\
             streaming: {memory_budget: 1MB}\n",
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let c = p.value.unwrap();
        assert_eq!(c.source.url.expose(), "postgres://u:pw@h/db");
        assert_eq!(format!("{:?}", c.source.url), "[REDACTED]");
        assert_eq!(c.snapshot, SnapshotMode::InitialOnly);
        assert_eq!(c.sinks.value.len(), 3);
        assert!(matches!(
            &c.sinks.value[1].value,
            SinkConfig::Parquet {
                roll_bytes: Some(ByteSize(1_048_576)),
                ..
            }
        ));
        assert_eq!(c.batch.max_bytes, Some(ByteSize(65_536)));
        assert_eq!(c.slot_name("orders"), "ebb_orders");
        assert!(c.validate().is_empty());
    }

    #[test]
    fn unknown_fields_and_bad_values_are_problems() {
        let p = parse(
            "source: {url: x}\npublication: {name: p}\nsinks: [{ndjson: {}}]\nslots: a\nsnapshot: sometimes\n",
        );
        let messages: Vec<&str> = p.problems.iter().map(|p| p.message.as_str()).collect();
        assert!(messages.iter().any(|m| m.contains("slots")), "{messages:?}");
        assert!(
            messages.iter().any(|m| m.contains("sometimes")),
            "{messages:?}"
        );
    }

    #[test]
    fn validate_needs_sinks_and_tables_to_create() {
        let c = parse(
            "source: {url: x}\npublication: {name: p, create: true}\nsinks: []\nslot: Bad-Slot\n",
        )
        .value
        .unwrap();
        let fields: Vec<&str> = c.validate().iter().map(|p| p.1).collect();
        assert_eq!(fields, ["sinks", "publication.create", "slot"]);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!("8MiB".parse::<ByteSize>().unwrap(), ByteSize(8 << 20));
        assert_eq!("100".parse::<ByteSize>().unwrap(), ByteSize(100));
        assert!("3 parsecs".parse::<ByteSize>().is_err());
    }
}
