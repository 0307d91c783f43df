//! The initial copy of a table, inside a snapshot exported by `CREATE_REPLICATION_SLOT`, so
//! that it meets the stream at the slot's consistent point: no gap, no change twice.
//!
//! A table is read with binary `COPY` in ctid ranges (page ranges) by several connections at
//! once, each importing the same snapshot (`SET TRANSACTION SNAPSHOT`). Each row becomes an
//! insert whose commit LSN is the snapshot's; its key is read as text beside it so that it
//! is the same `_ebb_key` the stream gives the row.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{AsArray, UInt64Array};
use ebb_core::change::{ChangeBatch, Key, Op};
use ebb_postgres::Lsn;
use ebb_postgres::copy::BinaryCopyReader;
use ebb_postgres::replication::{ReplicationConfig, ReplicationConnection};
use ebb_postgres::types::PgType;
use tokio::sync::mpsc;

use crate::changes::{Delivery, key_from_text};
use crate::error::CdcError;
use crate::position::seq;
use crate::source::{TableInfo, ident, literal, qualified};

/// Pages a ctid range covers at least (8 MiB of heap with 8 KiB pages).
pub const CHUNK_PAGES: u64 = 1024;

/// How a table is copied.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    /// The exported snapshot's name.
    pub snapshot: String,
    /// The slot's consistent point: the copy holds every change that committed before it.
    pub lsn: Lsn,
    /// Connections that read at once.
    pub workers: usize,
    /// Rows per batch.
    pub batch_rows: usize,
}

/// Page ranges `[start, end)` of a table of `pages` pages; the last is open-ended (the table
/// may have grown since it was measured, and rows past the end of the snapshot are invisible).
pub fn chunks(pages: u64, workers: usize) -> Vec<(u64, Option<u64>)> {
    if workers <= 1 || pages <= CHUNK_PAGES {
        return vec![(0, None)];
    }
    let n = (pages / CHUNK_PAGES).clamp(1, workers as u64 * 4);
    let step = pages.div_ceil(n);
    (0..n)
        .map(|i| (i * step, (i + 1 < n).then_some((i + 1) * step)))
        .collect()
}

/// Copies `table`, sending its rows as deliveries; returns the number of rows.
pub async fn copy_table(
    config: &ReplicationConfig,
    table: &TableInfo,
    plan: &CopyPlan,
    out: mpsc::Sender<Delivery>,
) -> Result<u64, CdcError> {
    let ranges = Arc::new(chunks(table.pages, plan.workers));
    let next = Arc::new(AtomicUsize::new(0));
    let workers = plan.workers.clamp(1, ranges.len());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (config, table, plan, out) = (config.clone(), table.clone(), plan.clone(), out.clone());
        let (ranges, next) = (ranges.clone(), next.clone());
        tasks.spawn(async move {
            let mut conn = ReplicationConnection::connect(&config).await?;
            conn.simple_query(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                literal(&plan.snapshot)
            ))
            .await?;
            let mut rows = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(range) = ranges.get(i) else { break };
                rows += copy_range(&mut conn, &table, &plan, *range, &out).await?;
            }
            conn.simple_query("COMMIT").await?;
            conn.close().await?;
            Ok::<u64, CdcError>(rows)
        });
    }
    let mut total = 0;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(rows)) => total += rows,
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(CdcError::Data(format!("a copy worker failed: {e}"))),
        }
    }
    Ok(total)
}

async fn copy_range(
    conn: &mut ReplicationConnection,
    table: &TableInfo,
    plan: &CopyPlan,
    (start, end): (u64, Option<u64>),
    out: &mpsc::Sender<Delivery>,
) -> Result<u64, CdcError> {
    let key: Vec<usize> = {
        let k: Vec<usize> = (0..table.columns.len())
            .filter(|i| table.columns[*i].is_key)
            .collect();
        if k.is_empty() {
            (0..table.columns.len()).collect()
        } else {
            k
        }
    };
    let mut select: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
    select.extend(
        key.iter()
            .map(|i| format!("{}::text", ident(&table.columns[*i].name))),
    );
    let mut sql = format!(
        "COPY (SELECT {} FROM ONLY {}",
        select.join(", "),
        qualified(&table.name)
    );
    if start > 0 || end.is_some() {
        sql.push_str(&format!(" WHERE ctid >= '({start},0)'::tid"));
        if let Some(end) = end {
            sql.push_str(&format!(" AND ctid < '({end},0)'::tid"));
        }
    }
    sql.push_str(") TO STDOUT (FORMAT binary)");
    let n = table.columns.len();
    let mut columns: Vec<(String, PgType)> = table
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.ty.clone()))
        .collect();
    columns.extend(key.iter().map(|i| (format!("_key{i}"), PgType::Text)));
    let key_types: Vec<&PgType> = key.iter().map(|i| &table.columns[*i].ty).collect();
    let mut reader = BinaryCopyReader::new(columns, plan.batch_rows);
    let mut copy = conn.copy_out(&sql).await?;
    let mut rows = 0u64;
    let name: Arc<str> = table.name.as_str().into();
    let send = |batch: ebb_postgres::types::RowBatch| {
        let batch = batch.batch;
        let m = batch.num_rows();
        let keys: Vec<Key> = (0..m)
            .map(|r| {
                let parts: Vec<Option<&[u8]>> = (n..batch.num_columns())
                    .map(|c| {
                        let col = batch.column(c).as_string::<i32>();
                        (!arrow::array::Array::is_null(col, r)).then(|| col.value(r).as_bytes())
                    })
                    .collect();
                key_from_text(&parts, &key_types)
            })
            .collect();
        let entity = batch.project(&(0..n).collect::<Vec<_>>())?;
        let changes = ChangeBatch::from_parts(
            &vec![Op::Insert; m],
            &keys,
            &vec![seq(plan.lsn, 0); m],
            &vec![None; m],
            &entity,
        )?;
        Ok::<Delivery, arrow::error::ArrowError>(Delivery {
            table: name.clone(),
            changes,
            lsns: Arc::new(UInt64Array::from(vec![plan.lsn.0; m])),
            unchanged_toast: None,
        })
    };
    let arrow_err =
        |e: arrow::error::ArrowError| CdcError::Data(format!("copying {}: {e}", table.name));
    let closed = || CdcError::Data("the pipeline stopped during the copy".into());
    while let Some(chunk) = copy.next_chunk().await? {
        reader
            .push(&chunk)
            .map_err(|e| CdcError::Data(format!("copying {}: {e}", table.name)))?;
        for e in reader.take_rejected() {
            tracing::warn!(table = %table.name, error = %e, "row of the initial copy rejected: a value did not convert");
        }
        while let Some(batch) = reader.next_batch() {
            let d = send(batch).map_err(arrow_err)?;
            rows += d.len() as u64;
            out.send(d).await.map_err(|_| closed())?;
        }
    }
    for batch in reader
        .finish()
        .map_err(|e| CdcError::Data(format!("copying {}: {e}", table.name)))?
    {
        let d = send(batch).map_err(arrow_err)?;
        rows += d.len() as u64;
        out.send(d).await.map_err(|_| closed())?;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_table() {
        assert_eq!(chunks(10, 4), vec![(0, None)]);
        assert_eq!(chunks(100_000, 1), vec![(0, None)]);
        let c = chunks(10_000, 2);
        assert_eq!(c.len(), 8);
        assert_eq!(c[0].0, 0);
        assert_eq!(c.last().unwrap().1, None);
        for w in c.windows(2) {
            assert_eq!(w[0].1, Some(w[1].0));
        }
    }
}
