//! Encoding pgoutput messages: the inverse of the [`Decoder`](super::Decoder).
//!
//! PostgreSQL is the only real producer of these bytes; this encoder exists so that tests,
//! benchmarks and fuzzers (here and in crates above) can build exact messages by hand.

use bytes::{BufMut, BytesMut};

use super::message::*;

impl TupleData {
    /// Builds a tuple from column values.
    ///
    /// # Panics
    /// With more than `i16::MAX` columns, or a value longer than `i32::MAX` bytes; PostgreSQL
    /// allows neither.
    pub fn from_columns<'a>(columns: impl IntoIterator<Item = Column<'a>>) -> TupleData {
        let mut data = BytesMut::new();
        let mut n: u16 = 0;
        for column in columns {
            n += 1;
            match column {
                Column::Null => data.put_u8(b'n'),
                Column::UnchangedToast => data.put_u8(b'u'),
                Column::Text(v) | Column::Binary(v) => {
                    data.put_u8(if matches!(column, Column::Text(_)) {
                        b't'
                    } else {
                        b'b'
                    });
                    data.put_i32(i32::try_from(v.len()).expect("value longer than i32::MAX"));
                    data.put_slice(v);
                }
            }
        }
        assert!(i16::try_from(n).is_ok(), "more than i16::MAX columns");
        TupleData {
            columns: n,
            data: data.freeze(),
        }
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

fn put_xid(buf: &mut BytesMut, xid: Option<u32>) {
    if let Some(xid) = xid {
        buf.put_u32(xid);
    }
}

fn put_tuple(buf: &mut BytesMut, t: &TupleData) {
    buf.put_u16(t.columns);
    buf.put_slice(&t.data);
}

fn put_old(buf: &mut BytesMut, old: &OldTuple) {
    buf.put_u8(match old.kind {
        OldTupleKind::Key => b'K',
        OldTupleKind::Full => b'O',
    });
    put_tuple(buf, &old.tuple);
}

fn put_prepare(buf: &mut BytesMut, tag: u8, p: &Prepare) {
    buf.put_u8(tag);
    buf.put_u8(p.flags);
    buf.put_u64(p.prepare_lsn.0);
    buf.put_u64(p.end_lsn.0);
    buf.put_i64(p.prepare_time.0);
    buf.put_u32(p.xid);
    put_str(buf, &p.gid);
}

impl LogicalMessage {
    /// Appends the message's wire form to `buf`. A data message is written with a
    /// transaction id exactly when its `xid` is `Some` (i.e. inside a streamed block).
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            LogicalMessage::Begin(m) => {
                buf.put_u8(b'B');
                buf.put_u64(m.final_lsn.0);
                buf.put_i64(m.commit_time.0);
                buf.put_u32(m.xid);
            }
            LogicalMessage::Commit(m) => {
                buf.put_u8(b'C');
                buf.put_u8(m.flags);
                buf.put_u64(m.commit_lsn.0);
                buf.put_u64(m.end_lsn.0);
                buf.put_i64(m.commit_time.0);
            }
            LogicalMessage::Origin(m) => {
                buf.put_u8(b'O');
                buf.put_u64(m.commit_lsn.0);
                put_str(buf, &m.name);
            }
            LogicalMessage::Relation(m) => {
                buf.put_u8(b'R');
                put_xid(buf, m.xid);
                buf.put_u32(m.oid);
                put_str(buf, &m.namespace);
                put_str(buf, &m.name);
                buf.put_u8(match m.replica_identity {
                    ReplicaIdentity::Default => b'd',
                    ReplicaIdentity::Nothing => b'n',
                    ReplicaIdentity::Full => b'f',
                    ReplicaIdentity::Index => b'i',
                });
                buf.put_u16(u16::try_from(m.columns.len()).unwrap_or(u16::MAX));
                for c in &m.columns {
                    buf.put_u8(u8::from(c.is_key));
                    put_str(buf, &c.name);
                    buf.put_u32(c.type_oid);
                    buf.put_i32(c.type_modifier);
                }
            }
            LogicalMessage::Type(m) => {
                buf.put_u8(b'Y');
                put_xid(buf, m.xid);
                buf.put_u32(m.oid);
                put_str(buf, &m.namespace);
                put_str(buf, &m.name);
            }
            LogicalMessage::Insert(m) => {
                buf.put_u8(b'I');
                put_xid(buf, m.xid);
                buf.put_u32(m.relation_id);
                buf.put_u8(b'N');
                put_tuple(buf, &m.new);
            }
            LogicalMessage::Update(m) => {
                buf.put_u8(b'U');
                put_xid(buf, m.xid);
                buf.put_u32(m.relation_id);
                if let Some(old) = &m.old {
                    put_old(buf, old);
                }
                buf.put_u8(b'N');
                put_tuple(buf, &m.new);
            }
            LogicalMessage::Delete(m) => {
                buf.put_u8(b'D');
                put_xid(buf, m.xid);
                buf.put_u32(m.relation_id);
                put_old(buf, &m.old);
            }
            LogicalMessage::Truncate(m) => {
                buf.put_u8(b'T');
                put_xid(buf, m.xid);
                buf.put_u32(u32::try_from(m.relation_ids.len()).unwrap_or(u32::MAX));
                buf.put_u8(u8::from(m.cascade) | (u8::from(m.restart_identity) << 1));
                for id in &m.relation_ids {
                    buf.put_u32(*id);
                }
            }
            LogicalMessage::Message(m) => {
                buf.put_u8(b'M');
                put_xid(buf, m.xid);
                buf.put_u8(u8::from(m.transactional));
                buf.put_u64(m.lsn.0);
                put_str(buf, &m.prefix);
                buf.put_u32(u32::try_from(m.content.len()).unwrap_or(u32::MAX));
                buf.put_slice(&m.content);
            }
            LogicalMessage::StreamStart(m) => {
                buf.put_u8(b'S');
                buf.put_u32(m.xid);
                buf.put_u8(u8::from(m.first_segment));
            }
            LogicalMessage::StreamStop => buf.put_u8(b'E'),
            LogicalMessage::StreamCommit(m) => {
                buf.put_u8(b'c');
                buf.put_u32(m.xid);
                buf.put_u8(m.flags);
                buf.put_u64(m.commit_lsn.0);
                buf.put_u64(m.end_lsn.0);
                buf.put_i64(m.commit_time.0);
            }
            LogicalMessage::StreamAbort(m) => {
                buf.put_u8(b'A');
                buf.put_u32(m.xid);
                buf.put_u32(m.subxid);
                if let Some((lsn, time)) = m.abort {
                    buf.put_u64(lsn.0);
                    buf.put_i64(time.0);
                }
            }
            LogicalMessage::BeginPrepare(m) => {
                buf.put_u8(b'b');
                buf.put_u64(m.prepare_lsn.0);
                buf.put_u64(m.end_lsn.0);
                buf.put_i64(m.prepare_time.0);
                buf.put_u32(m.xid);
                put_str(buf, &m.gid);
            }
            LogicalMessage::Prepare(m) => put_prepare(buf, b'P', m),
            LogicalMessage::StreamPrepare(m) => put_prepare(buf, b'p', m),
            LogicalMessage::CommitPrepared(m) => {
                buf.put_u8(b'K');
                buf.put_u8(m.flags);
                buf.put_u64(m.commit_lsn.0);
                buf.put_u64(m.end_lsn.0);
                buf.put_i64(m.commit_time.0);
                buf.put_u32(m.xid);
                put_str(buf, &m.gid);
            }
            LogicalMessage::RollbackPrepared(m) => {
                buf.put_u8(b'r');
                buf.put_u8(m.flags);
                buf.put_u64(m.prepare_end_lsn.0);
                buf.put_u64(m.rollback_end_lsn.0);
                buf.put_i64(m.prepare_time.0);
                buf.put_i64(m.rollback_time.0);
                buf.put_u32(m.xid);
                put_str(buf, &m.gid);
            }
        }
    }
}
