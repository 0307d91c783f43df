//! The records of an identity space, column-wise: every source's rows in one index space
//! (`0..len`), each attribute's raw and normalized text in one contiguous buffer.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};

use super::normalize::Normalizer;

/// Strings in one buffer; an empty string is a missing value.
#[derive(Debug, Default, Clone)]
pub struct TextColumn {
    data: String,
    ends: Vec<usize>,
}

impl TextColumn {
    pub fn push(&mut self, value: Option<&str>) {
        if let Some(v) = value {
            self.data.push_str(v);
        }
        self.ends.push(self.data.len());
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        let end = self.ends[i];
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        (end > start).then(|| &self.data[start..end])
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// One source's rows as read from its model.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    /// The source model's name.
    pub source: String,
    pub batches: Vec<RecordBatch>,
    /// The record key column.
    pub key: String,
    pub updated_at: Option<String>,
    /// Identity attribute → the column holding it (attributes the source lacks are absent).
    pub columns: Vec<(String, String)>,
}

/// Every record of an identity space.
#[derive(Debug, Default)]
pub struct Records {
    /// Source model names, in configuration order.
    pub sources: Vec<String>,
    /// Attribute names, in configuration order.
    pub attributes: Vec<String>,
    pub source: Vec<u16>,
    pub key: TextColumn,
    /// Microseconds since the epoch, for `most_recent`.
    pub updated_at: Vec<Option<i64>>,
    /// Per attribute, the value as the source has it (trimmed).
    pub raw: Vec<TextColumn>,
    /// Per attribute, the normalized value.
    pub norm: Vec<TextColumn>,
}

impl Records {
    /// Reads the sources' batches, normalizing each attribute. Errors name the source and
    /// column.
    pub fn load(
        attributes: &[(String, Normalizer)],
        sources: &[SourceBatch],
    ) -> Result<Records, String> {
        let mut r = Records {
            attributes: attributes.iter().map(|(n, _)| n.clone()).collect(),
            raw: vec![TextColumn::default(); attributes.len()],
            norm: vec![TextColumn::default(); attributes.len()],
            ..Records::default()
        };
        for (s, src) in sources.iter().enumerate() {
            r.sources.push(src.source.clone());
            let s = u16::try_from(s).map_err(|_| "more than 65535 sources".to_string())?;
            let mut source_row = 0usize;
            for batch in &src.batches {
                let key = text_column(batch, &src.source, &src.key)?;
                let updated = match &src.updated_at {
                    Some(col) => Some(timestamp_column(batch, &src.source, col)?),
                    None => None,
                };
                let mut cols = Vec::with_capacity(attributes.len());
                for (name, _) in attributes {
                    let col = match src.columns.iter().find(|(a, _)| a == name) {
                        Some((_, column)) => Some(text_column(batch, &src.source, column)?),
                        None => None,
                    };
                    cols.push(col);
                }
                let key = key.as_string::<i32>();
                for row in 0..batch.num_rows() {
                    source_row += 1;
                    if key.is_null(row) || key.value(row).trim().is_empty() {
                        return Err(format!(
                            "model \"{}\": row {source_row} has no value in its key column \"{}\"; every record needs an id (filter such rows out in the model)",
                            src.source, src.key
                        ));
                    }
                    r.source.push(s);
                    r.key.push(Some(key.value(row).trim()));
                    r.updated_at.push(updated.as_ref().and_then(|u| {
                        let u = u.as_primitive::<TimestampMicrosecondType>();
                        u.is_valid(row).then(|| u.value(row))
                    }));
                    for (a, col) in cols.iter().enumerate() {
                        let raw = col.as_ref().and_then(|c| {
                            let c = c.as_string::<i32>();
                            c.is_valid(row).then(|| c.value(row).trim())
                        });
                        r.raw[a].push(raw);
                        let norm = raw.and_then(|v| attributes[a].1.normalize(v));
                        r.norm[a].push(norm.as_deref());
                    }
                }
            }
        }
        Ok(r)
    }

    pub fn len(&self) -> usize {
        self.source.len()
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    pub fn attribute(&self, name: &str) -> Option<usize> {
        self.attributes.iter().position(|a| a == name)
    }

    pub fn source_name(&self, i: usize) -> &str {
        &self.sources[self.source[i] as usize]
    }

    /// `source:key`, how a record is named in output and explanations.
    pub fn label(&self, i: usize) -> String {
        format!("{}:{}", self.source_name(i), self.key.get(i).unwrap_or(""))
    }

    /// The record named `name`: `source:key`, or a bare key when exactly one source has it.
    pub fn find(&self, name: &str) -> Result<usize, String> {
        let (source, key) = match name.split_once(':') {
            Some((s, k)) if self.sources.iter().any(|x| x == s) => (Some(s), k),
            _ => (None, name),
        };
        let hits: Vec<usize> = (0..self.len())
            .filter(|&i| {
                self.key.get(i) == Some(key) && source.is_none_or(|s| self.source_name(i) == s)
            })
            .collect();
        match hits.as_slice() {
            [one] => Ok(*one),
            [] => Err(format!(
                "no record \"{name}\"; name one as SOURCE:KEY (sources: {})",
                self.sources.join(", ")
            )),
            many => Err(format!(
                "\"{name}\" names {} records ({}); write SOURCE:KEY",
                many.len(),
                many.iter()
                    .map(|&i| self.label(i))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

fn column<'b>(batch: &'b RecordBatch, source: &str, name: &str) -> Result<&'b ArrayRef, String> {
    batch
        .schema()
        .index_of(name)
        .map(|i| batch.column(i))
        .map_err(|_| {
            let names: Vec<String> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            format!(
                "model \"{source}\" has no column \"{name}\" (it has: {})",
                names.join(", ")
            )
        })
}

fn text_column(batch: &RecordBatch, source: &str, name: &str) -> Result<ArrayRef, String> {
    let col = column(batch, source, name)?;
    cast_with_options(col, &DataType::Utf8, &CastOptions::default())
        .map_err(|e| format!("model \"{source}\" column \"{name}\": cannot read as text: {e}"))
}

fn timestamp_column(batch: &RecordBatch, source: &str, name: &str) -> Result<ArrayRef, String> {
    let col = column(batch, source, name)?;
    let target = DataType::Timestamp(TimeUnit::Microsecond, None);
    let col = match col.data_type() {
        DataType::Timestamp(_, Some(_)) => cast_with_options(
            col,
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            &CastOptions::default(),
        )
        .and_then(|c| cast_with_options(&c, &target, &CastOptions::default())),
        _ => cast_with_options(col, &target, &CastOptions::default()),
    };
    col.map_err(|e| {
        format!(
            "model \"{source}\" column \"{name}\" (updated_at): cannot read as a timestamp: {e}; cast it in the model"
        )
    })
}
