//! Decoding pgoutput messages from the bytes of an XLogData payload.

use bytes::Bytes;

use super::error::{DecodeError, DecodeErrorKind, MessageTag};
use super::message::*;
use crate::lsn::{Lsn, PgTimestamp};

/// Decodes the pgoutput messages of one replication stream.
///
/// pgoutput messages are not self-describing: inside a streamed block (between Stream Start
/// and Stream Stop) data messages carry a transaction id that they lack elsewhere. The decoder
/// tracks that state, so feed it every message of the stream, in order.
#[derive(Debug, Clone)]
pub struct Decoder {
    proto_version: u32,
    in_stream: bool,
}

impl Decoder {
    /// A decoder for the `proto_version` given to `START_REPLICATION` (1 to 4).
    pub fn new(proto_version: u32) -> Decoder {
        Decoder {
            proto_version,
            in_stream: false,
        }
    }

    /// The protocol version this decoder accepts.
    pub fn proto_version(&self) -> u32 {
        self.proto_version
    }

    /// Whether the last message left the stream inside a streamed block.
    pub fn in_stream(&self) -> bool {
        self.in_stream
    }

    /// Decodes one message. Row data is sliced out of `data`, not copied.
    ///
    /// On error the decoder's state is unchanged.
    pub fn decode(&mut self, data: &Bytes) -> Result<LogicalMessage, DecodeError> {
        let mut r = Reader::new(data)?;
        let message = self.decode_body(&mut r)?;
        r.finish()?;
        match &message {
            LogicalMessage::StreamStart(_) => self.in_stream = true,
            LogicalMessage::StreamStop => self.in_stream = false,
            _ => {}
        }
        Ok(message)
    }

    fn require(&self, r: &Reader<'_>, version: u32) -> Result<(), DecodeError> {
        if self.proto_version < version {
            return Err(r.error(DecodeErrorKind::ProtocolVersion {
                required: version,
                negotiated: self.proto_version,
            }));
        }
        Ok(())
    }

    fn stream_xid(&self, r: &mut Reader<'_>) -> Result<Option<u32>, DecodeError> {
        if self.in_stream {
            Ok(Some(r.u32("xid")?))
        } else {
            Ok(None)
        }
    }

    fn decode_body(&self, r: &mut Reader<'_>) -> Result<LogicalMessage, DecodeError> {
        Ok(match r.tag {
            b'B' => LogicalMessage::Begin(Begin {
                final_lsn: r.lsn("final LSN")?,
                commit_time: r.timestamp("commit time")?,
                xid: r.u32("xid")?,
            }),
            b'C' => LogicalMessage::Commit(Commit {
                flags: r.u8("flags")?,
                commit_lsn: r.lsn("commit LSN")?,
                end_lsn: r.lsn("end LSN")?,
                commit_time: r.timestamp("commit time")?,
            }),
            b'O' => LogicalMessage::Origin(Origin {
                commit_lsn: r.lsn("origin commit LSN")?,
                name: r.string("origin name")?,
            }),
            b'R' => {
                let xid = self.stream_xid(r)?;
                let oid = r.u32("relation oid")?;
                let namespace = r.string("namespace")?;
                let name = r.string("relation name")?;
                let replica_identity = match r.u8("replica identity")? {
                    b'd' => ReplicaIdentity::Default,
                    b'n' => ReplicaIdentity::Nothing,
                    b'f' => ReplicaIdentity::Full,
                    b'i' => ReplicaIdentity::Index,
                    other => return Err(r.invalid_back(1, "replica identity", other.into())),
                };
                let ncols = r.count("column count")?;
                // Each column needs at least 10 bytes: cap the allocation by what is there.
                let mut columns = Vec::with_capacity(ncols.min(r.remaining() / 10));
                for _ in 0..ncols {
                    let flags = r.u8("column flags")?;
                    columns.push(RelationColumn {
                        is_key: flags & 1 != 0,
                        name: r.string("column name")?,
                        type_oid: r.u32("column type oid")?,
                        type_modifier: r.i32("column type modifier")?,
                    });
                }
                LogicalMessage::Relation(Relation {
                    xid,
                    oid,
                    namespace,
                    name,
                    replica_identity,
                    columns,
                })
            }
            b'Y' => LogicalMessage::Type(TypeMessage {
                xid: self.stream_xid(r)?,
                oid: r.u32("type oid")?,
                namespace: r.string("namespace")?,
                name: r.string("type name")?,
            }),
            b'I' => {
                let xid = self.stream_xid(r)?;
                let relation_id = r.u32("relation oid")?;
                match r.u8("tuple kind")? {
                    b'N' => {}
                    other => return Err(r.invalid_back(1, "tuple kind", other.into())),
                }
                LogicalMessage::Insert(Insert {
                    xid,
                    relation_id,
                    new: r.tuple()?,
                })
            }
            b'U' => {
                let xid = self.stream_xid(r)?;
                let relation_id = r.u32("relation oid")?;
                let mut old = None;
                let mut kind = r.u8("tuple kind")?;
                if kind == b'K' || kind == b'O' {
                    old = Some(OldTuple {
                        kind: old_kind(kind),
                        tuple: r.tuple()?,
                    });
                    kind = r.u8("tuple kind")?;
                }
                if kind != b'N' {
                    return Err(r.invalid_back(1, "tuple kind", kind.into()));
                }
                LogicalMessage::Update(Update {
                    xid,
                    relation_id,
                    old,
                    new: r.tuple()?,
                })
            }
            b'D' => {
                let xid = self.stream_xid(r)?;
                let relation_id = r.u32("relation oid")?;
                let kind = r.u8("tuple kind")?;
                if kind != b'K' && kind != b'O' {
                    return Err(r.invalid_back(1, "tuple kind", kind.into()));
                }
                LogicalMessage::Delete(Delete {
                    xid,
                    relation_id,
                    old: OldTuple {
                        kind: old_kind(kind),
                        tuple: r.tuple()?,
                    },
                })
            }
            b'T' => {
                let xid = self.stream_xid(r)?;
                let n = r.i32("relation count")?;
                let n = usize::try_from(n)
                    .map_err(|_| r.invalid_back(4, "relation count", n.into()))?;
                let options = r.u8("options")?;
                let mut relation_ids = Vec::with_capacity(n.min(r.remaining() / 4));
                for _ in 0..n {
                    relation_ids.push(r.u32("relation oid")?);
                }
                LogicalMessage::Truncate(Truncate {
                    xid,
                    cascade: options & 1 != 0,
                    restart_identity: options & 2 != 0,
                    relation_ids,
                })
            }
            b'M' => {
                let xid = self.stream_xid(r)?;
                let flags = r.u8("flags")?;
                let lsn = r.lsn("message LSN")?;
                let prefix = r.string("prefix")?;
                let len = r.i32("content length")?;
                let len = usize::try_from(len)
                    .map_err(|_| r.invalid_back(4, "content length", len.into()))?;
                LogicalMessage::Message(Message {
                    xid,
                    transactional: flags & 1 != 0,
                    lsn,
                    prefix,
                    content: r.bytes(len, "content")?,
                })
            }
            b'S' => {
                self.require(r, 2)?;
                if self.in_stream {
                    return Err(r.error(DecodeErrorKind::StreamState(
                        "Stream Start inside a streamed block",
                    )));
                }
                LogicalMessage::StreamStart(StreamStart {
                    xid: r.u32("xid")?,
                    first_segment: r.u8("first segment")? == 1,
                })
            }
            b'E' => {
                self.require(r, 2)?;
                if !self.in_stream {
                    return Err(r.error(DecodeErrorKind::StreamState(
                        "Stream Stop outside a streamed block",
                    )));
                }
                LogicalMessage::StreamStop
            }
            b'c' => {
                self.require(r, 2)?;
                LogicalMessage::StreamCommit(StreamCommit {
                    xid: r.u32("xid")?,
                    flags: r.u8("flags")?,
                    commit_lsn: r.lsn("commit LSN")?,
                    end_lsn: r.lsn("end LSN")?,
                    commit_time: r.timestamp("commit time")?,
                })
            }
            b'A' => {
                self.require(r, 2)?;
                let xid = r.u32("xid")?;
                let subxid = r.u32("subtransaction xid")?;
                let abort = if self.proto_version >= 4 && r.remaining() > 0 {
                    Some((r.lsn("abort LSN")?, r.timestamp("abort time")?))
                } else {
                    None
                };
                LogicalMessage::StreamAbort(StreamAbort { xid, subxid, abort })
            }
            b'b' => {
                self.require(r, 3)?;
                LogicalMessage::BeginPrepare(BeginPrepare {
                    prepare_lsn: r.lsn("prepare LSN")?,
                    end_lsn: r.lsn("end LSN")?,
                    prepare_time: r.timestamp("prepare time")?,
                    xid: r.u32("xid")?,
                    gid: r.string("gid")?,
                })
            }
            b'P' | b'p' => {
                self.require(r, 3)?;
                let prepare = Prepare {
                    flags: r.u8("flags")?,
                    prepare_lsn: r.lsn("prepare LSN")?,
                    end_lsn: r.lsn("end LSN")?,
                    prepare_time: r.timestamp("prepare time")?,
                    xid: r.u32("xid")?,
                    gid: r.string("gid")?,
                };
                if r.tag == b'P' {
                    LogicalMessage::Prepare(prepare)
                } else {
                    LogicalMessage::StreamPrepare(prepare)
                }
            }
            b'K' => {
                self.require(r, 3)?;
                LogicalMessage::CommitPrepared(CommitPrepared {
                    flags: r.u8("flags")?,
                    commit_lsn: r.lsn("commit LSN")?,
                    end_lsn: r.lsn("end LSN")?,
                    commit_time: r.timestamp("commit time")?,
                    xid: r.u32("xid")?,
                    gid: r.string("gid")?,
                })
            }
            b'r' => {
                self.require(r, 3)?;
                LogicalMessage::RollbackPrepared(RollbackPrepared {
                    flags: r.u8("flags")?,
                    prepare_end_lsn: r.lsn("prepare end LSN")?,
                    rollback_end_lsn: r.lsn("rollback end LSN")?,
                    prepare_time: r.timestamp("prepare time")?,
                    rollback_time: r.timestamp("rollback time")?,
                    xid: r.u32("xid")?,
                    gid: r.string("gid")?,
                })
            }
            _ => return Err(r.error_at(0, DecodeErrorKind::UnknownMessageType)),
        })
    }
}

fn old_kind(byte: u8) -> OldTupleKind {
    if byte == b'K' {
        OldTupleKind::Key
    } else {
        OldTupleKind::Full
    }
}

/// A bounds-checked cursor over one message.
struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
    tag: u8,
}

impl<'a> Reader<'a> {
    fn new(data: &'a Bytes) -> Result<Reader<'a>, DecodeError> {
        let Some(&tag) = data.first() else {
            return Err(DecodeError {
                message: MessageTag(0),
                offset: 0,
                kind: DecodeErrorKind::Empty,
            });
        };
        Ok(Reader { data, pos: 1, tag })
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        self.error_at(self.pos, kind)
    }

    fn error_at(&self, offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            message: MessageTag(self.tag),
            offset,
            kind,
        }
    }

    /// An invalid value in the field that ended `width` bytes ago.
    fn invalid_back(&self, width: usize, field: &'static str, value: i64) -> DecodeError {
        self.error_at(
            self.pos - width,
            DecodeErrorKind::InvalidValue { field, value },
        )
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let rest = &self.data[self.pos..];
        match rest.first_chunk::<N>() {
            Some(chunk) => {
                self.pos += N;
                Ok(*chunk)
            }
            None => Err(self.error(DecodeErrorKind::Truncated {
                field,
                needed: N,
                available: rest.len(),
            })),
        }
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take::<1>(field)?[0])
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.take(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(field)?))
    }

    fn lsn(&mut self, field: &'static str) -> Result<Lsn, DecodeError> {
        Ok(Lsn(u64::from_be_bytes(self.take(field)?)))
    }

    fn timestamp(&mut self, field: &'static str) -> Result<PgTimestamp, DecodeError> {
        Ok(PgTimestamp(i64::from_be_bytes(self.take(field)?)))
    }

    /// An Int16 count that must not be negative.
    fn count(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let n = self.i16(field)?;
        usize::try_from(n).map_err(|_| self.invalid_back(2, field, n.into()))
    }

    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let rest = &self.data[self.pos..];
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return Err(self.error(DecodeErrorKind::Unterminated { field }));
        };
        let s = std::str::from_utf8(&rest[..nul])
            .map_err(|_| self.error(DecodeErrorKind::InvalidUtf8 { field }))?;
        let s = s.to_owned();
        self.pos += nul + 1;
        Ok(s)
    }

    fn bytes(&mut self, len: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        if self.remaining() < len {
            return Err(self.error(DecodeErrorKind::Truncated {
                field,
                needed: len,
                available: self.remaining(),
            }));
        }
        let out = self.data.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(out)
    }

    /// TupleData: validates every column so that [`TupleData::iter`] cannot fail.
    fn tuple(&mut self) -> Result<TupleData, DecodeError> {
        let n = self.i16("tuple column count")?;
        let columns =
            u16::try_from(n).map_err(|_| self.invalid_back(2, "tuple column count", n.into()))?;
        let start = self.pos;
        for _ in 0..columns {
            match self.u8("column kind")? {
                b'n' | b'u' => {}
                b't' | b'b' => {
                    let len = self.i32("column length")?;
                    let len = usize::try_from(len)
                        .map_err(|_| self.invalid_back(4, "column length", len.into()))?;
                    if self.remaining() < len {
                        return Err(self.error(DecodeErrorKind::Truncated {
                            field: "column value",
                            needed: len,
                            available: self.remaining(),
                        }));
                    }
                    self.pos += len;
                }
                other => return Err(self.invalid_back(1, "column kind", other.into())),
            }
        }
        Ok(TupleData {
            columns,
            data: self.data.slice(start..self.pos),
        })
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error(DecodeErrorKind::TrailingBytes(n))),
        }
    }
}
