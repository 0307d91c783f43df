//! Golden records: one row per cluster, each attribute chosen among the members' values by
//! its survivorship rule.
//!
//! - `most_recent`: the value of the member with the latest `updated_at` (members without
//!   one count as oldest);
//! - `most_frequent`: the value most members agree on (after normalization), ties to the most
//!   recent;
//! - `source_priority`: the first source in `order` that has a value (its most recent);
//! - `first_non_null`: the first member that has one, in source order then the source's
//!   own row order.
//!
//! Attributes without a rule use `most_frequent`. Emails, phones, dates and ids are written
//! in their normalized form (E.164, lowercase, `YYYY-MM-DD`): that is what a destination
//! should receive. Names, addresses and text keep the chosen record's own spelling.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use ebb_core::config::identity::{AttributeKind, IdentityConfig, Survivorship};

use super::cluster::Clusters;
use super::normalize::Normalizer;
use super::records::Records;
use crate::EngineError;

#[derive(Debug, Clone)]
enum Rule {
    MostRecent,
    MostFrequent,
    FirstNonNull,
    SourcePriority(Vec<u16>),
}

/// Builds `<name>_golden`: `cluster_id`, `records`, `sources`, one column per attribute,
/// and `updated_at` (the latest of the members').
pub fn golden(
    config: &IdentityConfig,
    attributes: &[(String, Normalizer)],
    r: &Records,
    clusters: &Clusters,
    id_of: &HashMap<u32, i64>,
) -> Result<RecordBatch, EngineError> {
    let rules: Vec<Rule> = r
        .attributes
        .iter()
        .map(|a| match config.survivorship.get(a).map(|s| &s.value) {
            Some(Survivorship::MostRecent) => Rule::MostRecent,
            Some(Survivorship::FirstNonNull) => Rule::FirstNonNull,
            Some(Survivorship::SourcePriority { order }) => Rule::SourcePriority(
                order
                    .iter()
                    .filter_map(|s| r.sources.iter().position(|x| *x == s.value))
                    .map(|p| p as u16)
                    .collect(),
            ),
            Some(Survivorship::MostFrequent) | None => Rule::MostFrequent,
        })
        .collect();
    // Members grouped by cluster, in cluster-id order; inside, source then row order.
    let id_per_record: Vec<i64> = clusters.of.iter().map(|l| id_of[l]).collect();
    let mut order: Vec<u32> = (0..r.len() as u32).collect();
    order.sort_unstable_by_key(|&i| (id_per_record[i as usize], r.source[i as usize], i));
    let groups: Vec<&[u32]> = order
        .chunk_by(|&x, &y| clusters.of[x as usize] == clusters.of[y as usize])
        .collect();
    let mut ids = Vec::with_capacity(groups.len());
    let mut counts = Vec::with_capacity(groups.len());
    let mut sources = StringBuilder::new();
    let mut updated = Vec::with_capacity(groups.len());
    let mut values: Vec<StringBuilder> = attributes.iter().map(|_| StringBuilder::new()).collect();
    let recency = |i: u32| {
        (
            r.updated_at[i as usize].unwrap_or(i64::MIN),
            std::cmp::Reverse(i),
        )
    };
    for members in &groups {
        ids.push(id_per_record[members[0] as usize]);
        counts.push(members.len() as u64);
        let mut names: Vec<&str> = members.iter().map(|&i| r.source_name(i as usize)).collect();
        names.dedup();
        sources.append_value(names.join(","));
        updated.push(
            members
                .iter()
                .filter_map(|&i| r.updated_at[i as usize])
                .max(),
        );
        for (a, rule) in rules.iter().enumerate() {
            let has = |i: &&u32| r.norm[a].get(**i as usize).is_some();
            let chosen = match rule {
                Rule::MostRecent => members.iter().filter(has).max_by_key(|&&i| recency(i)),
                Rule::FirstNonNull => members.iter().find(has),
                Rule::SourcePriority(order) => order
                    .iter()
                    .find_map(|s| {
                        members
                            .iter()
                            .filter(has)
                            .filter(|&&i| r.source[i as usize] == *s)
                            .max_by_key(|&&i| recency(i))
                    })
                    .or_else(|| members.iter().filter(has).max_by_key(|&&i| recency(i))),
                Rule::MostFrequent => {
                    let mut tally: HashMap<&str, usize> = HashMap::new();
                    for &i in members.iter() {
                        if let Some(v) = r.norm[a].get(i as usize) {
                            *tally.entry(v).or_insert(0) += 1;
                        }
                    }
                    let top = tally.values().copied().max().unwrap_or(0);
                    members
                        .iter()
                        .filter(|&&i| {
                            r.norm[a]
                                .get(i as usize)
                                .is_some_and(|v| tally.get(v) == Some(&top))
                        })
                        .max_by_key(|&&i| recency(i))
                }
            };
            let value = chosen.and_then(|&i| match attributes[a].1.kind() {
                AttributeKind::Name | AttributeKind::Address | AttributeKind::Text => {
                    r.raw[a].get(i as usize)
                }
                _ => r.norm[a].get(i as usize),
            });
            values[a].append_option(value);
        }
    }
    let mut fields = vec![
        Field::new("cluster_id", DataType::Int64, false),
        Field::new("records", DataType::UInt64, false),
        Field::new("sources", DataType::Utf8, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(UInt64Array::from(counts)),
        Arc::new(sources.finish()),
    ];
    for ((name, _), mut b) in attributes.iter().zip(values) {
        fields.push(Field::new(name, DataType::Utf8, true));
        columns.push(Arc::new(b.finish()));
    }
    fields.push(Field::new(
        "updated_at",
        DataType::Timestamp(TimeUnit::Microsecond, None),
        true,
    ));
    columns.push(Arc::new(TimestampMicrosecondArray::from(updated)));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| EngineError::Identity(format!("golden records: {e}")))
}

/// Builds `<name>_resolved`: `source`, `record_id`, `cluster_id`, one row per record.
pub fn resolved(
    r: &Records,
    clusters: &Clusters,
    id_of: &HashMap<u32, i64>,
) -> Result<RecordBatch, EngineError> {
    let sources = StringArray::from_iter_values((0..r.len()).map(|i| r.source_name(i)));
    let keys = StringArray::from_iter_values((0..r.len()).map(|i| r.key.get(i).unwrap_or("")));
    let ids = Int64Array::from_iter_values(clusters.of.iter().map(|l| id_of[l]));
    let schema = Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("record_id", DataType::Utf8, false),
        Field::new("cluster_id", DataType::Int64, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(sources), Arc::new(keys), Arc::new(ids)],
    )
    .map_err(|e| EngineError::Identity(format!("resolved records: {e}")))
}
