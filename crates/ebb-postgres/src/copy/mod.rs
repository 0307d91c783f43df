//! Binary `COPY ... TO STDOUT (FORMAT binary)` into Arrow batches, with the type mapping of
//! [`crate::types`].
//!
//! [`BinaryCopyReader`] is push-based: feed it the CopyData chunks in order (from
//! [`ReplicationConnection::copy_out`](crate::replication::ReplicationConnection::copy_out),
//! or `tokio_postgres::Client::copy_out`) and take finished batches. Chunks need not align
//! with rows. Malformed data is a [`CopyError`]; a value that does not convert only rejects
//! its row (see [`BinaryCopyReader::take_rejected`]).

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};

use crate::pgoutput::Column;
use crate::replication::{ReplicationConnection, ReplicationError};
use crate::retry::RetryClass;
use crate::types::{PgType, RowBatch, RowBatchBuilder, RowError};

/// The 11-byte signature that starts binary COPY data.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Binary COPY data is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// Not binary COPY data, or a header this reader does not know.
    #[error("binary COPY header at byte {offset}: {reason}")]
    Header {
        /// Offset in the stream.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A row is malformed.
    #[error("binary COPY row {row} at byte {offset}: {reason}")]
    Row {
        /// Index of the row in the stream.
        row: u64,
        /// Offset in the stream.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Data after the trailer, or the stream ended before it.
    #[error("binary COPY stream: {0}")]
    Stream(&'static str),
    /// Building the Arrow batch failed.
    #[error("building the Arrow batch: {0}")]
    Arrow(String),
}

impl CopyError {
    /// Malformed COPY data does not become well-formed on a retry.
    pub fn retry_class(&self) -> RetryClass {
        RetryClass::Fatal
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Rows,
    Done,
}

/// Turns binary COPY data into Arrow batches of at most `batch_rows` rows.
#[derive(Debug)]
pub struct BinaryCopyReader {
    builder: RowBatchBuilder,
    columns: usize,
    batch_rows: usize,
    buf: BytesMut,
    /// Bytes consumed before `buf[0]`.
    consumed: u64,
    rows: u64,
    state: State,
    ready: VecDeque<RowBatch>,
    rejected: Vec<RowError>,
}

impl BinaryCopyReader {
    /// A reader for rows with these columns (in COPY order).
    pub fn new<S: AsRef<str>>(
        columns: impl IntoIterator<Item = (S, PgType)>,
        batch_rows: usize,
    ) -> BinaryCopyReader {
        let builder = RowBatchBuilder::new(columns);
        BinaryCopyReader {
            columns: builder.schema().fields().len(),
            builder,
            batch_rows: batch_rows.max(1),
            buf: BytesMut::new(),
            consumed: 0,
            rows: 0,
            state: State::Header,
            ready: VecDeque::new(),
            rejected: Vec::new(),
        }
    }

    /// The schema of the batches.
    pub fn schema(&self) -> &arrow::datatypes::SchemaRef {
        self.builder.schema()
    }

    /// Feeds the next chunk of COPY data.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), CopyError> {
        if self.state == State::Done {
            if chunk.is_empty() {
                return Ok(());
            }
            return Err(CopyError::Stream("data after the trailer"));
        }
        self.buf.extend_from_slice(chunk);
        if self.state == State::Header && !self.read_header()? {
            return Ok(());
        }
        self.read_rows()
    }

    /// A finished batch, if one is ready.
    pub fn next_batch(&mut self) -> Option<RowBatch> {
        self.ready.pop_front()
    }

    /// Rows left out because a value did not convert, since the last call.
    pub fn take_rejected(&mut self) -> Vec<RowError> {
        std::mem::take(&mut self.rejected)
    }

    /// Rows read so far (rejected ones included).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Ends the stream: checks that the trailer arrived, returns the last batches.
    pub fn finish(mut self) -> Result<Vec<RowBatch>, CopyError> {
        if self.state != State::Done {
            return Err(CopyError::Stream("the stream ended before its trailer"));
        }
        self.flush_batch()?;
        Ok(self.ready.into_iter().collect())
    }

    fn advance(&mut self, n: usize) {
        self.buf.advance(n);
        self.consumed += n as u64;
    }

    fn read_header(&mut self) -> Result<bool, CopyError> {
        let header_err = |offset: u64, reason| CopyError::Header { offset, reason };
        if self.buf.len() < 19 {
            if !SIGNATURE.starts_with(&self.buf[..self.buf.len().min(11)]) {
                return Err(header_err(0, "not binary COPY data (bad signature)"));
            }
            return Ok(false);
        }
        if &self.buf[..11] != SIGNATURE {
            return Err(header_err(0, "not binary COPY data (bad signature)"));
        }
        let flags = u32::from_be_bytes([self.buf[11], self.buf[12], self.buf[13], self.buf[14]]);
        if flags & (1 << 16) != 0 {
            return Err(header_err(11, "rows with OIDs are not supported"));
        }
        if flags & 0xffff_0000 & !(1 << 16) != 0 {
            return Err(header_err(11, "unknown critical flag"));
        }
        let ext = u32::from_be_bytes([self.buf[15], self.buf[16], self.buf[17], self.buf[18]]);
        let ext = usize::try_from(ext).map_err(|_| header_err(15, "bad extension length"))?;
        if self.buf.len() < 19 + ext {
            return Ok(false);
        }
        self.advance(19 + ext);
        self.state = State::Rows;
        Ok(true)
    }

    /// Length of the complete row at the start of `buf`, `None` if more data is needed,
    /// `Some(2)` for the trailer.
    fn row_len(&self) -> Result<Option<(usize, bool)>, CopyError> {
        let buf = &self.buf[..];
        let Some(n) = buf.first_chunk::<2>() else {
            return Ok(None);
        };
        let n = i16::from_be_bytes(*n);
        if n == -1 {
            return Ok(Some((2, true)));
        }
        if usize::try_from(n).ok() != Some(self.columns) {
            return Err(self.row_error(format!("{n} fields, the reader expects {}", self.columns)));
        }
        let mut pos = 2;
        for _ in 0..n {
            let Some(len) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            pos += 4;
            if len == -1 {
                continue;
            }
            let len =
                usize::try_from(len).map_err(|_| self.row_error(format!("field length {len}")))?;
            pos += len;
            if pos > buf.len() {
                return Ok(None);
            }
        }
        Ok(Some((pos, false)))
    }

    fn row_error(&self, reason: String) -> CopyError {
        CopyError::Row {
            row: self.rows,
            offset: self.consumed,
            reason,
        }
    }

    fn read_rows(&mut self) -> Result<(), CopyError> {
        loop {
            let Some((len, trailer)) = self.row_len()? else {
                return Ok(());
            };
            if trailer {
                self.advance(len);
                self.state = State::Done;
                if !self.buf.is_empty() {
                    return Err(CopyError::Stream("data after the trailer"));
                }
                return Ok(());
            }
            let row = &self.buf[2..len];
            let fields = FieldIter { rest: row };
            if let Err(e) = self.builder.append_columns(self.columns, fields) {
                self.rejected.push(e);
            }
            self.rows += 1;
            self.advance(len);
            if self.builder.len() >= self.batch_rows {
                self.flush_batch()?;
            }
        }
    }

    fn flush_batch(&mut self) -> Result<(), CopyError> {
        if self.builder.is_empty() {
            return Ok(());
        }
        let batch = self
            .builder
            .finish()
            .map_err(|e| CopyError::Arrow(e.to_string()))?;
        self.ready.push_back(batch);
        Ok(())
    }
}

/// The fields of a row already checked by `row_len`.
struct FieldIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for FieldIter<'a> {
    type Item = Column<'a>;

    fn next(&mut self) -> Option<Column<'a>> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        match usize::try_from(len) {
            Err(_) => {
                self.rest = rest;
                Some(Column::Null)
            }
            Ok(len) => {
                let (value, rest) = rest.split_at_checked(len)?;
                self.rest = rest;
                Some(Column::Binary(value))
            }
        }
    }
}

/// Runs `COPY (query) TO STDOUT (FORMAT binary)` on `conn` and reads the result into batches.
pub async fn copy_query_to_arrow<S: AsRef<str>>(
    conn: &mut ReplicationConnection,
    query: &str,
    columns: impl IntoIterator<Item = (S, PgType)>,
    batch_rows: usize,
) -> Result<(Vec<RowBatch>, Vec<RowError>), CopyQueryError> {
    let mut reader = BinaryCopyReader::new(columns, batch_rows);
    let mut copy = conn
        .copy_out(&format!("COPY ({query}) TO STDOUT (FORMAT binary)"))
        .await?;
    let mut batches = Vec::new();
    let mut rejected = Vec::new();
    while let Some(chunk) = copy.next_chunk().await? {
        reader.push(&chunk)?;
        batches.extend(std::iter::from_fn(|| reader.next_batch()));
        rejected.extend(reader.take_rejected());
    }
    rejected.extend(reader.take_rejected());
    batches.extend(reader.finish()?);
    Ok((batches, rejected))
}

/// [`copy_query_to_arrow`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyQueryError {
    /// The connection or the query failed.
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// The data was malformed.
    #[error(transparent)]
    Copy(#[from] CopyError),
}

#[cfg(test)]
mod tests;
