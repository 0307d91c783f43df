//! A query's result as a stream of Arrow batches, read from binary `COPY ... TO STDOUT`.
//!
//! A task owns the connection for as long as the COPY runs: it feeds the CopyData chunks to
//! `ebb-postgres`'s [`BinaryCopyReader`] and sends each finished batch down a channel of
//! [`CHANNEL_BATCHES`] slots. When the consumer is slower, the task waits, the socket
//! buffer fills and the server pauses: at most a few batches are ever in memory. When the
//! consumer drops the stream, the task cancels the query on the server and closes the
//! connection.

use std::pin::pin;
use std::task::{Poll, ready};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use ebb_postgres::copy::BinaryCopyReader;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{CopyOutStream, NoTls};

use super::error::sql_error;
use super::pool::PooledClient;
use super::schema::OutputColumn;
use crate::WarehouseError;

/// Rows in one batch: large enough that per-batch costs vanish, small enough that a batch
/// of a wide model stays a few MiB.
pub(crate) const BATCH_ROWS: usize = 16 * 1024;
/// Batches waiting for the consumer, at most.
const CHANNEL_BATCHES: usize = 2;

/// What the task sends. The stream ends at [`Message::End`] or after a failure; a channel
/// that closes without either (the task panicked) is an error, never a silently short result.
enum Message {
    Batch(RecordBatch),
    Failed(WarehouseError),
    End,
}

/// Streams the rows `copy` produces, decoded as `columns`.
pub(crate) fn batch_stream(
    conn: PooledClient,
    copy: CopyOutStream,
    columns: &[OutputColumn],
    schema: SchemaRef,
    target: String,
) -> SendableRecordBatchStream {
    let reader = BinaryCopyReader::new(columns.iter().map(|c| (&c.name, c.ty.clone())), BATCH_ROWS);
    let (tx, mut rx) = mpsc::channel::<Message>(CHANNEL_BATCHES);
    tokio::spawn(pump(conn, copy, reader, tx, target));
    let mut ended = false;
    let stream = futures::stream::poll_fn(move |cx| {
        if ended {
            return Poll::Ready(None);
        }
        let item = match ready!(rx.poll_recv(cx)) {
            Some(Message::Batch(batch)) => return Poll::Ready(Some(Ok(batch))),
            Some(Message::End) => None,
            Some(Message::Failed(error)) => Some(Err(external(error))),
            None => Some(Err(external(WarehouseError::Query(
                "the query's result stream stopped before its end (its reader failed)".into(),
            )))),
        };
        ended = true;
        Poll::Ready(item)
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

/// Why the pump stopped early.
enum Stop {
    /// The consumer dropped the stream.
    Abandoned,
    /// An error, already sent to the consumer.
    Failed,
}

async fn pump(
    mut conn: PooledClient,
    copy: CopyOutStream,
    mut reader: BinaryCopyReader,
    tx: mpsc::Sender<Message>,
    target: String,
) {
    match read_all(copy, &mut reader, &tx, &target).await {
        Ok(()) => match reader.finish() {
            Ok(batches) => {
                for batch in batches {
                    if tx.send(Message::Batch(batch.batch)).await.is_err() {
                        return;
                    }
                }
                let _ = tx.send(Message::End).await;
            }
            Err(e) => {
                let _ = tx.send(Message::Failed(copy_error(&e))).await;
            }
        },
        Err(stop) => {
            if matches!(stop, Stop::Abandoned) {
                // Stop the server from producing rows nobody reads.
                let token = conn.client().cancel_token();
                if let Err(error) = token.cancel_query(NoTls).await {
                    tracing::debug!(warehouse = %target, error = %error, "cancelling an abandoned COPY failed");
                }
            }
            conn.discard();
        }
    }
}

async fn read_all(
    copy: CopyOutStream,
    reader: &mut BinaryCopyReader,
    tx: &mpsc::Sender<Message>,
    target: &str,
) -> Result<(), Stop> {
    let mut copy = pin!(copy);
    // Several CopyData messages (one per row) are usually ready at once: take them together.
    let mut chunks = copy.as_mut().ready_chunks(256);
    while let Some(chunks) = chunks.next().await {
        for chunk in chunks {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => return fail(tx, sql_error(target, None, &e)).await,
            };
            if let Err(e) = reader.push(&chunk) {
                return fail(tx, copy_error(&e)).await;
            }
        }
        let rejected = reader.take_rejected();
        if let Some(first) = rejected.first() {
            let message = format!(
                "{} value(s) of the result cannot be represented in Arrow, first: {first}; \
                 cast the column in the query (e.g. to text)",
                rejected.len()
            );
            return fail(tx, WarehouseError::Query(message)).await;
        }
        while let Some(batch) = reader.next_batch() {
            if tx.send(Message::Batch(batch.batch)).await.is_err() {
                return Err(Stop::Abandoned);
            }
        }
    }
    Ok(())
}

async fn fail(tx: &mpsc::Sender<Message>, error: WarehouseError) -> Result<(), Stop> {
    let _ = tx.send(Message::Failed(error)).await;
    Err(Stop::Failed)
}

fn copy_error(e: &ebb_postgres::copy::CopyError) -> WarehouseError {
    WarehouseError::Query(format!("reading the query's binary COPY result: {e}"))
}

fn external(error: WarehouseError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}
