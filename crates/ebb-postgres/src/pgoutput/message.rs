//! The messages of the pgoutput logical replication protocol, versions 1 to 4.
//!
//! Row data ([`TupleData`]) stays in the received buffer: a tuple is a slice of the message's
//! [`Bytes`], and its columns are read by an iterator that borrows from it.

use bytes::Bytes;

use crate::lsn::{Lsn, PgTimestamp};

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq)]
pub enum LogicalMessage {
    /// `B`: a transaction starts.
    Begin(Begin),
    /// `C`: the transaction started by the last Begin commits.
    Commit(Commit),
    /// `O`: the transaction came from another node.
    Origin(Origin),
    /// `R`: the shape of a table, sent before its first change (and after it changes).
    Relation(Relation),
    /// `Y`: the name of a non-built-in type used by a following Relation.
    Type(TypeMessage),
    /// `I`
    Insert(Insert),
    /// `U`
    Update(Update),
    /// `D`
    Delete(Delete),
    /// `T`
    Truncate(Truncate),
    /// `M`: a message from `pg_logical_emit_message`.
    Message(Message),
    /// `S` (v2): a block of an in-progress transaction's changes follows.
    StreamStart(StreamStart),
    /// `E` (v2): the streamed block ends.
    StreamStop,
    /// `c` (v2): a streamed transaction commits.
    StreamCommit(StreamCommit),
    /// `A` (v2): a streamed transaction, or one of its subtransactions, aborts.
    StreamAbort(StreamAbort),
    /// `b` (v3): a prepared transaction starts.
    BeginPrepare(BeginPrepare),
    /// `P` (v3): `PREPARE TRANSACTION`.
    Prepare(Prepare),
    /// `K` (v3): `COMMIT PREPARED`.
    CommitPrepared(CommitPrepared),
    /// `r` (v3): `ROLLBACK PREPARED`.
    RollbackPrepared(RollbackPrepared),
    /// `p` (v3): a streamed transaction is prepared.
    StreamPrepare(Prepare),
}

/// `B`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begin {
    /// The LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    /// Commit time.
    pub commit_time: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
}

/// `C`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// Unused by PostgreSQL so far.
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end of the commit record: the position to confirm once the transaction is durable.
    pub end_lsn: Lsn,
    /// Commit time.
    pub commit_time: PgTimestamp,
}

/// `O`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The commit LSN on the origin server.
    pub commit_lsn: Lsn,
    /// Origin name.
    pub name: String,
}

/// The table's `REPLICA IDENTITY`, which decides what old values Update and Delete carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// `d`: the primary key.
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: all columns.
    Full,
    /// `i`: the columns of a chosen unique index.
    Index,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Whether the column is part of the replica identity key.
    pub is_key: bool,
    /// Column name.
    pub name: String,
    /// Type oid.
    pub type_oid: u32,
    /// Type modifier (`atttypmod`), -1 when there is none.
    pub type_modifier: i32,
}

/// `R`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Transaction id, inside a streamed block only.
    pub xid: Option<u32>,
    /// Relation oid.
    pub oid: u32,
    /// Schema name (empty for `pg_catalog`).
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// Replica identity setting.
    pub replica_identity: ReplicaIdentity,
    /// The published columns, in tuple order.
    pub columns: Vec<RelationColumn>,
}

/// `Y`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMessage {
    /// Transaction id, inside a streamed block only.
    pub xid: Option<u32>,
    /// Type oid.
    pub oid: u32,
    /// Schema name (empty for `pg_catalog`).
    pub namespace: String,
    /// Type name.
    pub name: String,
}

/// `I`
#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    /// Transaction id, inside a streamed block only.
    pub xid: Option<u32>,
    /// The [`Relation`] the row belongs to.
    pub relation_id: u32,
    /// The new row.
    pub new: TupleData,
}

/// Which old values an Update or Delete carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldTupleKind {
    /// `K`: the replica identity key columns only (others are null).
    Key,
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full,
}

/// The old values of an Update or Delete.
#[derive(Debug, Clone, PartialEq)]
pub struct OldTuple {
    /// Key columns or the whole row.
    pub kind: OldTupleKind,
    /// The values.
    pub tuple: TupleData,
}

/// `U`
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// Transaction id, inside a streamed block only.
    pub xid: Option<u32>,
    /// The [`Relation`] the row belongs to.
    pub relation_id: u32,
    /// Old values, when the key changed or the table is `REPLICA IDENTITY FULL`.
    pub old: Option<OldTuple>,
    /// The new row. Columns are [`Column::UnchangedToast`] where a TOASTed value did not change.
    pub new: TupleData,
}

/// `D`
#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    /// Transaction id, inside a streamed block only.
    pub xid: Option<u32>,
    /// The [`Relation`] the row belongs to.
    pub relation_id: u32,
    /// The key or the whole old row.
    pub old: OldTuple,
}

/// `T`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Transaction id, inside a streamed block only.
    pub xid: Option<u32>,
    /// `TRUNCATE ... CASCADE`.
    pub cascade: bool,
    /// `TRUNCATE ... RESTART IDENTITY`.
    pub restart_identity: bool,
    /// The truncated relations.
    pub relation_ids: Vec<u32>,
}

/// `M`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Transaction id, inside a streamed block only.
    pub xid: Option<u32>,
    /// Whether the message was emitted as part of a transaction.
    pub transactional: bool,
    /// The LSN of the message.
    pub lsn: Lsn,
    /// The prefix given to `pg_logical_emit_message`.
    pub prefix: String,
    /// The content, as bytes.
    pub content: Bytes,
}

/// `S`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStart {
    /// The streamed (top-level) transaction.
    pub xid: u32,
    /// Whether this is the transaction's first block.
    pub first_segment: bool,
}

/// `c`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCommit {
    /// The streamed transaction.
    pub xid: u32,
    /// Unused by PostgreSQL so far.
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end of the commit record.
    pub end_lsn: Lsn,
    /// Commit time.
    pub commit_time: PgTimestamp,
}

/// `A`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamAbort {
    /// The top-level streamed transaction.
    pub xid: u32,
    /// The aborted subtransaction; equal to `xid` when the whole transaction aborts.
    pub subxid: u32,
    /// Abort LSN and time, sent by protocol version 4 (parallel streaming) only.
    pub abort: Option<(Lsn, PgTimestamp)>,
}

/// `b`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginPrepare {
    /// The LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// The end of the prepared transaction.
    pub end_lsn: Lsn,
    /// Prepare time.
    pub prepare_time: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
    /// The global transaction identifier.
    pub gid: String,
}

/// `P` and `p`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    /// Unused by PostgreSQL so far.
    pub flags: u8,
    /// The LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// The end of the prepared transaction.
    pub end_lsn: Lsn,
    /// Prepare time.
    pub prepare_time: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
    /// The global transaction identifier.
    pub gid: String,
}

/// `K`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPrepared {
    /// Unused by PostgreSQL so far.
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end of the commit record.
    pub end_lsn: Lsn,
    /// Commit time.
    pub commit_time: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
    /// The global transaction identifier.
    pub gid: String,
}

/// `r`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPrepared {
    /// Unused by PostgreSQL so far.
    pub flags: u8,
    /// The end of the prepared transaction.
    pub prepare_end_lsn: Lsn,
    /// The end of the rollback record.
    pub rollback_end_lsn: Lsn,
    /// Prepare time.
    pub prepare_time: PgTimestamp,
    /// Rollback time.
    pub rollback_time: PgTimestamp,
    /// Transaction id.
    pub xid: u32,
    /// The global transaction identifier.
    pub gid: String,
}

/// The column values of one row, still in the received buffer.
///
/// Built only by the decoder, which has checked that exactly [`len`](Self::len) well-formed
/// columns are present, so iterating never fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleData {
    pub(crate) columns: u16,
    pub(crate) data: Bytes,
}

impl TupleData {
    /// Number of columns.
    pub fn len(&self) -> usize {
        usize::from(self.columns)
    }

    /// Whether the tuple has no columns.
    pub fn is_empty(&self) -> bool {
        self.columns == 0
    }

    /// The columns, in relation order.
    pub fn iter(&self) -> TupleIter<'_> {
        TupleIter {
            rest: &self.data,
            remaining: self.columns,
        }
    }

    /// The encoded column entries (without the leading column count).
    pub fn raw(&self) -> &Bytes {
        &self.data
    }
}

impl<'a> IntoIterator for &'a TupleData {
    type Item = Column<'a>;
    type IntoIter = TupleIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// One column value of a [`TupleData`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column<'a> {
    /// `n`: SQL NULL.
    Null,
    /// `u`: a TOASTed value that the update did not change; its value is not in the stream.
    UnchangedToast,
    /// `t`: the value in the type's text output format.
    Text(&'a [u8]),
    /// `b`: the value in the type's binary send format (`binary = true`).
    Binary(&'a [u8]),
}

/// Iterator over the columns of a [`TupleData`].
#[derive(Debug, Clone)]
pub struct TupleIter<'a> {
    rest: &'a [u8],
    remaining: u16,
}

impl<'a> Iterator for TupleIter<'a> {
    type Item = Column<'a>;

    fn next(&mut self) -> Option<Column<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let (&kind, rest) = self.rest.split_first()?;
        match kind {
            b'n' => {
                self.rest = rest;
                Some(Column::Null)
            }
            b'u' => {
                self.rest = rest;
                Some(Column::UnchangedToast)
            }
            _ => {
                // Checked by the decoder: a 4-byte length then that many bytes.
                let (len, rest) = rest.split_first_chunk::<4>()?;
                let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
                let (value, rest) = rest.split_at_checked(len)?;
                self.rest = rest;
                Some(if kind == b't' {
                    Column::Text(value)
                } else {
                    Column::Binary(value)
                })
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::from(self.remaining);
        (n, Some(n))
    }
}

impl ExactSizeIterator for TupleIter<'_> {}
