//! [`ReplicationStream`]: the CopyBoth phase of `START_REPLICATION`.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::message::frontend;
use tokio::time::Instant;

use super::connection::ReplicationConnection;
use super::error::{DbError, ReplicationError};
use crate::lsn::{Lsn, PgTimestamp};
use crate::pgoutput::{Decoder, LogicalMessage};

/// One message of the replication stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicationEvent {
    /// WAL data: one pgoutput message.
    XLogData(XLogData),
    /// The server's keepalive. When it asked for a reply, the stream has already sent one.
    Keepalive {
        /// The server's current end of WAL.
        wal_end: Lsn,
        /// The server's clock.
        server_time: PgTimestamp,
        /// Whether the server asked for an immediate status update.
        reply_requested: bool,
    },
}

/// An `XLogData` message.
#[derive(Debug, Clone, PartialEq)]
pub struct XLogData {
    /// Where the data starts in the WAL.
    pub wal_start: Lsn,
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    /// The server's clock.
    pub server_time: PgTimestamp,
    /// The pgoutput message.
    pub data: Bytes,
}

/// A decoded pgoutput message and where it was in the WAL.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamMessage {
    /// Where the message's record starts in the WAL.
    pub wal_start: Lsn,
    /// The server's end of WAL when it sent the message.
    pub wal_end: Lsn,
    /// The message.
    pub message: LogicalMessage,
}

/// A streaming replication connection.
///
/// The positions reported to the server (write, flush, apply) are the caller's: the stream
/// never advances them by itself, so the slot keeps WAL until the caller says its changes
/// are durable. Status updates are sent when the server asks for one, every
/// `status_interval` (10 s by default), and on [`send_status_update`](Self::send_status_update).
#[derive(Debug)]
pub struct ReplicationStream {
    conn: ReplicationConnection,
    decoder: Decoder,
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
    status_interval: Duration,
    next_status: Instant,
    ended: bool,
}

impl ReplicationStream {
    pub(super) fn new(conn: ReplicationConnection, proto_version: u32) -> ReplicationStream {
        let status_interval = Duration::from_secs(10);
        ReplicationStream {
            conn,
            decoder: Decoder::new(proto_version),
            write: Lsn::ZERO,
            flush: Lsn::ZERO,
            apply: Lsn::ZERO,
            status_interval,
            next_status: Instant::now() + status_interval,
            ended: false,
        }
    }

    /// Sets how often an unsolicited status update is sent (keep it below the server's
    /// `wal_sender_timeout`).
    pub fn set_status_interval(&mut self, interval: Duration) {
        self.status_interval = interval;
        self.next_status = Instant::now() + interval;
    }

    /// Sets the positions the next status update reports: `write` received, `flush` durably
    /// stored (the slot may release WAL before it), `apply` applied.
    pub fn set_positions(&mut self, write: Lsn, flush: Lsn, apply: Lsn) {
        self.write = write;
        self.flush = flush;
        self.apply = apply;
    }

    /// The positions the next status update reports.
    pub fn positions(&self) -> (Lsn, Lsn, Lsn) {
        (self.write, self.flush, self.apply)
    }

    /// Sends a standby status update with the positions set by [`set_positions`](Self::set_positions).
    pub async fn send_status_update(
        &mut self,
        reply_requested: bool,
    ) -> Result<(), ReplicationError> {
        let mut body = BytesMut::with_capacity(34);
        body.put_u8(b'r');
        body.put_u64(self.write.0);
        body.put_u64(self.flush.0);
        body.put_u64(self.apply.0);
        body.put_i64(PgTimestamp::now().0);
        body.put_u8(u8::from(reply_requested));
        frontend::CopyData::new(body.freeze())?.write(&mut self.conn.wire.write);
        self.conn.wire.flush().await?;
        self.next_status = Instant::now() + self.status_interval;
        tracing::trace!(write = %self.write, flush = %self.flush, apply = %self.apply, "standby status update sent");
        Ok(())
    }

    /// The next event, or `None` when the server ended the stream.
    pub async fn next_event(&mut self) -> Result<Option<ReplicationEvent>, ReplicationError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            let frame = match tokio::time::timeout_at(self.next_status, self.conn.wire.read_frame())
                .await
            {
                Ok(frame) => frame?,
                Err(_elapsed) => {
                    self.send_status_update(false).await?;
                    continue;
                }
            };
            match frame.tag {
                b'd' => {}
                b'c' => {
                    // The server ended the stream (e.g. it is shutting down): finish the copy.
                    frontend::copy_done(&mut self.conn.wire.write);
                    self.conn.wire.flush().await?;
                    self.ended = true;
                    continue;
                }
                b'E' => return Err(ReplicationError::from(DbError::parse(&frame.body))),
                b'N' | b'S' | b'C' | b'Z' => continue,
                other => {
                    return Err(ReplicationError::Protocol(format!(
                        "message {:?} in the replication stream",
                        char::from(other)
                    )));
                }
            }
            let mut body = frame.body;
            match body.first() {
                Some(b'w') if body.len() >= 25 => {
                    body.advance(1);
                    let wal_start = Lsn(body.get_u64());
                    let wal_end = Lsn(body.get_u64());
                    let server_time = PgTimestamp(body.get_i64());
                    return Ok(Some(ReplicationEvent::XLogData(XLogData {
                        wal_start,
                        wal_end,
                        server_time,
                        data: body,
                    })));
                }
                Some(b'k') if body.len() >= 18 => {
                    body.advance(1);
                    let wal_end = Lsn(body.get_u64());
                    let server_time = PgTimestamp(body.get_i64());
                    let reply_requested = body.get_u8() != 0;
                    if reply_requested || Instant::now() >= self.next_status {
                        self.send_status_update(false).await?;
                    }
                    return Ok(Some(ReplicationEvent::Keepalive {
                        wal_end,
                        server_time,
                        reply_requested,
                    }));
                }
                _ => {
                    return Err(ReplicationError::Protocol(
                        "malformed CopyData in the replication stream".into(),
                    ));
                }
            }
        }
    }

    /// The next pgoutput message, decoded; keepalives are answered and skipped.
    /// `None` when the server ended the stream.
    pub async fn next_message(&mut self) -> Result<Option<StreamMessage>, ReplicationError> {
        loop {
            match self.next_event().await? {
                None => return Ok(None),
                Some(ReplicationEvent::Keepalive { .. }) => continue,
                Some(ReplicationEvent::XLogData(x)) => {
                    let message = self.decoder.decode(&x.data)?;
                    return Ok(Some(StreamMessage {
                        wal_start: x.wal_start,
                        wal_end: x.wal_end,
                        message,
                    }));
                }
            }
        }
    }

    /// Ends streaming (CopyDone) and returns the connection, ready for the next command.
    /// Changes that arrive meanwhile are discarded.
    pub async fn stop(mut self) -> Result<ReplicationConnection, ReplicationError> {
        if !self.ended {
            frontend::copy_done(&mut self.conn.wire.write);
            self.conn.wire.flush().await?;
        }
        loop {
            let frame = self.conn.wire.read_frame().await?;
            match frame.tag {
                b'Z' => return Ok(self.conn),
                b'E' => {
                    let e = DbError::parse(&frame.body);
                    tracing::debug!(code = %e.code, message = %e.message, "error while stopping the stream");
                }
                _ => {}
            }
        }
    }
}
