//! NDJSON: one JSON object a change, to a file or to stdout.
//!
//! Each line holds `_ebb_table`, `_ebb_lsn` (the commit LSN as a number), the ChangeBatch
//! metadata (`_ebb_op` as `insert`/`update`/`delete`) and the entity's columns, nulls written.
//! When PostgreSQL left out unchanged TOASTed values that no old image could fill, the lines
//! of that batch carry `_ebb_unchanged_toast`: the columns whose `null` means "unchanged".
//! A `TRUNCATE` is a line of its own: `{"_ebb_table", "_ebb_lsn", "_ebb_op": "truncate",
//! "_ebb_seq", "cascade", "restart_identity"}`; every earlier row of the table is gone.
//!
//! A file sink records, beside the file (`<file>.commit.json`, replaced atomically), the
//! length the file had at its last commit and that commit's position. `open` truncates the
//! file back to that length: lines written after the last commit (a torn line among them) are
//! gone, and the pipeline sends them again. Stdout cannot be truncated: it is at-least-once.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, UInt8Type};
use ebb_core::change::Op;
use serde::{Deserialize, Serialize};

use super::{LSN_COLUMN, Sink, TABLE_COLUMN, sink_error};
use crate::changes::{Delivery, Truncation, UNCHANGED_TOAST_COLUMN};
use crate::checkpoint::write_atomic;
use crate::error::CdcError;
use crate::position::Position;

#[derive(Debug)]
enum Target {
    Stdout,
    File {
        path: PathBuf,
        file: Option<std::io::BufWriter<std::fs::File>>,
        committed_len: u64,
        written: u64,
    },
}

/// The NDJSON sink.
#[derive(Debug)]
pub struct NdjsonSink {
    target: Target,
    buf: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CommitRecord {
    len: u64,
    position: Position,
}

fn commit_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".commit.json");
    path.with_file_name(name)
}

impl NdjsonSink {
    /// Lines to stdout (at-least-once).
    pub fn stdout() -> NdjsonSink {
        NdjsonSink {
            target: Target::Stdout,
            buf: Vec::new(),
        }
    }

    /// Lines appended to `path`, rolled back to the last commit on open.
    pub fn file(path: PathBuf) -> NdjsonSink {
        NdjsonSink {
            target: Target::File {
                path,
                file: None,
                committed_len: 0,
                written: 0,
            },
            buf: Vec::new(),
        }
    }
}

impl NdjsonSink {
    /// Writes the lines in `buf` to the target.
    fn append(&mut self) -> Result<(), CdcError> {
        let name = self.name();
        match &mut self.target {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&self.buf)
                    .map_err(|e| sink_error(&name, false)(format!("writing stdout: {e}")))?;
            }
            Target::File { file, written, .. } => {
                let f = file
                    .as_mut()
                    .ok_or_else(|| sink_error(&name, false)("written before open".into()))?;
                f.write_all(&self.buf)
                    .map_err(|e| sink_error(&name, true)(format!("writing: {e}")))?;
                *written += self.buf.len() as u64;
            }
        }
        Ok(())
    }
}

/// The delivery as the JSON lines of the sink, appended to `out`.
pub fn to_json_lines(delivery: &Delivery, out: &mut Vec<u8>) -> Result<(), String> {
    let batch = delivery.changes.batch();
    let n = batch.num_rows();
    let ops: StringArray = batch
        .column(0)
        .as_primitive::<UInt8Type>()
        .values()
        .iter()
        .map(|c| Some(Op::from_code(*c).map_or("?", Op::as_str)))
        .collect();
    let mut fields = vec![
        Field::new(TABLE_COLUMN, DataType::Utf8, false),
        Field::new(LSN_COLUMN, DataType::UInt64, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            &*delivery.table,
            n,
        ))),
        delivery.lsns.clone(),
    ];
    for (i, (field, column)) in batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .enumerate()
    {
        if i == 0 {
            fields.push(Field::new(field.name(), DataType::Utf8, false));
            columns.push(Arc::new(ops.clone()));
            continue;
        }
        if i == 4
            && let Some(toast) = &delivery.unchanged_toast
        {
            fields.push(Field::new(
                UNCHANGED_TOAST_COLUMN,
                toast.data_type().clone(),
                true,
            ));
            columns.push(toast.clone());
        }
        // Types JSON has no form for become their text.
        let (field, column) = match field.data_type() {
            DataType::Interval(_) | DataType::FixedSizeBinary(_) => (
                Field::new(field.name(), DataType::Utf8, true),
                arrow::compute::cast(column, &DataType::Utf8).map_err(|e| e.to_string())?,
            ),
            _ => (field.as_ref().clone(), column.clone()),
        };
        fields.push(field);
        columns.push(column);
    }
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())?;
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::LineDelimited>(out);
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(())
}

impl Sink for NdjsonSink {
    fn name(&self) -> String {
        match &self.target {
            Target::Stdout => "ndjson:stdout".into(),
            Target::File { path, .. } => format!("ndjson:{}", path.display()),
        }
    }

    async fn open(&mut self) -> Result<Option<Position>, CdcError> {
        let name = self.name();
        let err = sink_error(&name, true);
        let Target::File {
            path,
            file,
            committed_len,
            written,
        } = &mut self.target
        else {
            return Ok(None);
        };
        let record: Option<CommitRecord> = match std::fs::read(commit_path(path)) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                sink_error(&name, false)(format!("{} is corrupt: {e}", commit_path(path).display()))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(err(format!("reading its commit record: {e}"))),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
        }
        let len = record.as_ref().map_or(0, |r| r.len);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&*path)
            .map_err(|e| err(format!("opening {}: {e}", path.display())))?;
        let actual = f.metadata().map(|m| m.len()).unwrap_or(0);
        if actual > len {
            tracing::info!(sink = %name, discarded_bytes = actual - len, "discarding changes written after the last commit");
        }
        if actual < len {
            return Err(sink_error(&name, false)(format!(
                "{} is shorter ({actual} bytes) than at its last commit ({len} bytes): it was changed by something else",
                path.display()
            )));
        }
        f.set_len(len)
            .map_err(|e| err(format!("truncating {}: {e}", path.display())))?;
        *file = Some(std::io::BufWriter::with_capacity(1 << 20, f));
        *committed_len = len;
        *written = len;
        Ok(Some(record.map(|r| r.position).unwrap_or_default()))
    }

    async fn write(&mut self, delivery: &Delivery) -> Result<(), CdcError> {
        let name = self.name();
        self.buf.clear();
        to_json_lines(delivery, &mut self.buf).map_err(sink_error(&name, false))?;
        self.append()
    }

    async fn truncate(&mut self, t: &Truncation) -> Result<(), CdcError> {
        self.buf.clear();
        let line = serde_json::json!({
            TABLE_COLUMN: t.table,
            LSN_COLUMN: t.lsn,
            "_ebb_op": "truncate",
            "_ebb_seq": t.seq,
            "cascade": t.cascade,
            "restart_identity": t.restart_identity,
        });
        serde_json::to_writer(&mut self.buf, &line)
            .map_err(|e| sink_error(&self.name(), false)(e.to_string()))?;
        self.buf.push(b'\n');
        self.append()
    }

    async fn commit(&mut self, position: &Position, _force: bool) -> Result<Position, CdcError> {
        let name = self.name();
        let err = sink_error(&name, true);
        match &mut self.target {
            Target::Stdout => {
                std::io::stdout()
                    .flush()
                    .map_err(|e| sink_error(&name, false)(format!("writing stdout: {e}")))?;
            }
            Target::File {
                path,
                file,
                committed_len,
                written,
            } => {
                let f = file
                    .as_mut()
                    .ok_or_else(|| sink_error(&name, false)("committed before open".into()))?;
                f.flush().map_err(|e| err(format!("writing: {e}")))?;
                f.get_ref()
                    .sync_data()
                    .map_err(|e| err(format!("fsync: {e}")))?;
                let record = CommitRecord {
                    len: *written,
                    position: position.clone(),
                };
                let bytes = serde_json::to_vec(&record).map_err(|e| err(e.to_string()))?;
                write_atomic(&commit_path(path), &bytes)
                    .map_err(|e| err(format!("writing its commit record: {e}")))?;
                *committed_len = *written;
            }
        }
        Ok(position.clone())
    }
}
