use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::lsn::{Lsn, PgTimestamp};

fn decode(version: u32, bytes: &[u8]) -> Result<LogicalMessage, DecodeError> {
    Decoder::new(version).decode(&Bytes::copy_from_slice(bytes))
}

fn round_trip(decoder: &mut Decoder, message: &LogicalMessage) {
    let mut buf = BytesMut::new();
    message.encode(&mut buf);
    let decoded = decoder.decode(&buf.freeze()).unwrap();
    assert_eq!(&decoded, message);
}

#[test]
fn begin_from_hand_built_bytes() {
    let mut b = vec![b'B'];
    b.extend_from_slice(&0x0000_0001_0000_0010u64.to_be_bytes());
    b.extend_from_slice(&1_000_000i64.to_be_bytes());
    b.extend_from_slice(&734u32.to_be_bytes());
    assert_eq!(
        decode(1, &b).unwrap(),
        LogicalMessage::Begin(Begin {
            final_lsn: Lsn(0x1_0000_0010),
            commit_time: PgTimestamp(1_000_000),
            xid: 734,
        })
    );
}

#[test]
fn insert_from_hand_built_bytes_slices_the_input() {
    #[rustfmt::skip]
    let b: &[u8] = &[
        b'I', 0, 0, 0x40, 0x00, // relation 16384
        b'N', 0, 4,
        b't', 0, 0, 0, 2, b'4', b'2',
        b'n',
        b'u',
        b'b', 0, 0, 0, 3, 1, 2, 3,
    ];
    let bytes = Bytes::copy_from_slice(b);
    let LogicalMessage::Insert(insert) = Decoder::new(1).decode(&bytes).unwrap() else {
        panic!("not an insert");
    };
    assert_eq!(insert.relation_id, 16384);
    assert_eq!(insert.xid, None);
    let columns: Vec<_> = insert.new.iter().collect();
    assert_eq!(
        columns,
        [
            Column::Text(b"42"),
            Column::Null,
            Column::UnchangedToast,
            Column::Binary(&[1, 2, 3])
        ]
    );
    // Zero-copy: the tuple points into the message buffer.
    let tuple = insert.new.raw();
    let start = tuple.as_ptr() as usize - bytes.as_ptr() as usize;
    assert_eq!(start, 8);
}

#[test]
fn relation_from_hand_built_bytes() {
    let mut b = vec![b'R'];
    b.extend_from_slice(&16384u32.to_be_bytes());
    b.extend_from_slice(b"public\0items\0");
    b.push(b'f');
    b.extend_from_slice(&2i16.to_be_bytes());
    b.push(1);
    b.extend_from_slice(b"id\0");
    b.extend_from_slice(&20u32.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(0);
    b.extend_from_slice(b"price\0");
    b.extend_from_slice(&1700u32.to_be_bytes());
    b.extend_from_slice(&(((12 << 16) | 2) + 4i32).to_be_bytes());
    let LogicalMessage::Relation(rel) = decode(1, &b).unwrap() else {
        panic!("not a relation");
    };
    assert_eq!(rel.namespace, "public");
    assert_eq!(rel.name, "items");
    assert_eq!(rel.replica_identity, ReplicaIdentity::Full);
    assert_eq!(rel.columns.len(), 2);
    assert!(rel.columns[0].is_key);
    assert_eq!(rel.columns[1].name, "price");
    assert_eq!(rel.columns[1].type_modifier, (12 << 16 | 2) + 4);
}

#[test]
fn update_with_old_key_and_delete_with_full_row() {
    let t = |cols: &[Column<'_>]| TupleData::from_columns(cols.iter().copied());
    let mut d = Decoder::new(1);
    round_trip(
        &mut d,
        &LogicalMessage::Update(Update {
            xid: None,
            relation_id: 7,
            old: Some(OldTuple {
                kind: OldTupleKind::Key,
                tuple: t(&[Column::Text(b"1"), Column::Null]),
            }),
            new: t(&[Column::Text(b"2"), Column::UnchangedToast]),
        }),
    );
    round_trip(
        &mut d,
        &LogicalMessage::Update(Update {
            xid: None,
            relation_id: 7,
            old: None,
            new: t(&[Column::Text(b"2"), Column::Text(b"")]),
        }),
    );
    round_trip(
        &mut d,
        &LogicalMessage::Delete(Delete {
            xid: None,
            relation_id: 7,
            old: OldTuple {
                kind: OldTupleKind::Full,
                tuple: t(&[Column::Text(b"2"), Column::Text(b"x")]),
            },
        }),
    );
}

#[test]
fn streamed_block_carries_xids() {
    let mut d = Decoder::new(2);
    let t = TupleData::from_columns([Column::Text(b"1")]);
    round_trip(
        &mut d,
        &LogicalMessage::StreamStart(StreamStart {
            xid: 900,
            first_segment: true,
        }),
    );
    assert!(d.in_stream());
    for m in [
        LogicalMessage::Relation(Relation {
            xid: Some(900),
            oid: 5,
            namespace: String::new(),
            name: "t".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![],
        }),
        LogicalMessage::Type(TypeMessage {
            xid: Some(900),
            oid: 99_999,
            namespace: "public".into(),
            name: "mood".into(),
        }),
        LogicalMessage::Insert(Insert {
            xid: Some(901),
            relation_id: 5,
            new: t.clone(),
        }),
        LogicalMessage::Truncate(Truncate {
            xid: Some(900),
            cascade: true,
            restart_identity: false,
            relation_ids: vec![5, 6],
        }),
        LogicalMessage::Message(Message {
            xid: Some(900),
            transactional: true,
            lsn: Lsn(77),
            prefix: "ebb".into(),
            content: Bytes::from_static(b"\x00hello"),
        }),
    ] {
        round_trip(&mut d, &m);
    }
    round_trip(&mut d, &LogicalMessage::StreamStop);
    assert!(!d.in_stream());
    // Outside the block the same Insert has no xid.
    round_trip(
        &mut d,
        &LogicalMessage::Insert(Insert {
            xid: None,
            relation_id: 5,
            new: t,
        }),
    );
    round_trip(
        &mut d,
        &LogicalMessage::StreamAbort(StreamAbort {
            xid: 900,
            subxid: 901,
            abort: None,
        }),
    );
    round_trip(
        &mut d,
        &LogicalMessage::StreamCommit(StreamCommit {
            xid: 900,
            flags: 0,
            commit_lsn: Lsn(100),
            end_lsn: Lsn(200),
            commit_time: PgTimestamp(5),
        }),
    );
}

#[test]
fn two_phase_messages_need_version_3() {
    let p = LogicalMessage::Prepare(Prepare {
        flags: 0,
        prepare_lsn: Lsn(1),
        end_lsn: Lsn(2),
        prepare_time: PgTimestamp(3),
        xid: 4,
        gid: "tx-1".into(),
    });
    let mut buf = BytesMut::new();
    p.encode(&mut buf);
    let err = decode(2, &buf).unwrap_err();
    assert_eq!(
        err.kind,
        DecodeErrorKind::ProtocolVersion {
            required: 3,
            negotiated: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "pgoutput Prepare ('P') message, byte 1: this message type needs pgoutput protocol \
         version 3, the session uses 2"
    );
    let mut d = Decoder::new(3);
    round_trip(&mut d, &p);
    for m in [
        LogicalMessage::BeginPrepare(BeginPrepare {
            prepare_lsn: Lsn(1),
            end_lsn: Lsn(2),
            prepare_time: PgTimestamp(3),
            xid: 4,
            gid: "g".into(),
        }),
        LogicalMessage::CommitPrepared(CommitPrepared {
            flags: 0,
            commit_lsn: Lsn(1),
            end_lsn: Lsn(2),
            commit_time: PgTimestamp(3),
            xid: 4,
            gid: "g".into(),
        }),
        LogicalMessage::RollbackPrepared(RollbackPrepared {
            flags: 0,
            prepare_end_lsn: Lsn(1),
            rollback_end_lsn: Lsn(2),
            prepare_time: PgTimestamp(3),
            rollback_time: PgTimestamp(4),
            xid: 5,
            gid: "g".into(),
        }),
    ] {
        round_trip(&mut d, &m);
    }
}

#[test]
fn stream_messages_need_version_2() {
    let err = decode(1, b"E").unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::ProtocolVersion { required: 2, .. }
    ));
    let err = decode(2, b"E").unwrap_err();
    assert!(matches!(err.kind, DecodeErrorKind::StreamState(_)));
}

#[test]
fn origin_and_commit_round_trip() {
    let mut d = Decoder::new(1);
    round_trip(
        &mut d,
        &LogicalMessage::Origin(Origin {
            commit_lsn: Lsn(9),
            name: "node_a".into(),
        }),
    );
    round_trip(
        &mut d,
        &LogicalMessage::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(10),
            end_lsn: Lsn(11),
            commit_time: PgTimestamp(-5),
        }),
    );
}

#[test]
fn errors_name_the_message_and_offset() {
    let err = decode(1, b"").unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::Empty);

    let err = decode(1, b"Z").unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::UnknownMessageType);
    assert_eq!(
        err.to_string(),
        "pgoutput unknown ('Z') message, byte 0: unknown message type"
    );

    let err = decode(1, &[b'I', 0, 0, 0, 1, b'N', 0, 1, b't', 0, 0, 0, 9, b'x']).unwrap_err();
    assert_eq!(err.offset, 13);
    assert_eq!(
        err.kind,
        DecodeErrorKind::Truncated {
            field: "column value",
            needed: 9,
            available: 1
        }
    );

    let err = decode(1, &[b'I', 0, 0, 0, 1, b'N', 0, 1, b'q']).unwrap_err();
    assert_eq!(err.offset, 8);
    assert_eq!(
        err.kind,
        DecodeErrorKind::InvalidValue {
            field: "column kind",
            value: i64::from(b'q')
        }
    );

    let err = decode(1, &[b'I', 0, 0, 0, 1, b'N', 0xff, 0xff]).unwrap_err();
    assert!(matches!(
        err.kind,
        DecodeErrorKind::InvalidValue {
            field: "tuple column count",
            value: -1
        }
    ));

    let err = decode(1, &[b'O', 0, 0, 0, 0, 0, 0, 0, 1, b'a']).unwrap_err();
    assert_eq!(
        err.kind,
        DecodeErrorKind::Unterminated {
            field: "origin name"
        }
    );

    let mut b = vec![b'C', 0];
    b.extend_from_slice(&[0; 24]);
    b.push(1);
    let err = decode(1, &b).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::TrailingBytes(1));
    assert_eq!(err.offset, 26);
}

#[test]
fn failed_decode_leaves_state_unchanged() {
    let mut d = Decoder::new(2);
    assert!(d.decode(&Bytes::from_static(b"S\x00\x00")).is_err());
    assert!(!d.in_stream());
}

fn arb_column() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (0u8..4, proptest::collection::vec(any::<u8>(), 0..16))
}

fn arb_tuple() -> impl Strategy<Value = TupleData> {
    proptest::collection::vec(arb_column(), 0..8).prop_map(|cols| {
        TupleData::from_columns(cols.iter().map(|(k, v)| match k {
            0 => Column::Null,
            1 => Column::UnchangedToast,
            2 => Column::Text(v),
            _ => Column::Binary(v),
        }))
    })
}

fn arb_data_message(xid: Option<u32>) -> impl Strategy<Value = LogicalMessage> {
    prop_oneof![
        (any::<u32>(), arb_tuple()).prop_map(move |(relation_id, new)| {
            LogicalMessage::Insert(Insert {
                xid,
                relation_id,
                new,
            })
        }),
        (
            any::<u32>(),
            proptest::option::of((any::<bool>(), arb_tuple())),
            arb_tuple()
        )
            .prop_map(move |(relation_id, old, new)| {
                LogicalMessage::Update(Update {
                    xid,
                    relation_id,
                    old: old.map(|(key, tuple)| OldTuple {
                        kind: if key {
                            OldTupleKind::Key
                        } else {
                            OldTupleKind::Full
                        },
                        tuple,
                    }),
                    new,
                })
            }),
        (any::<u32>(), any::<bool>(), arb_tuple()).prop_map(move |(relation_id, key, tuple)| {
            LogicalMessage::Delete(Delete {
                xid,
                relation_id,
                old: OldTuple {
                    kind: if key {
                        OldTupleKind::Key
                    } else {
                        OldTupleKind::Full
                    },
                    tuple,
                },
            })
        }),
        (
            any::<bool>(),
            any::<u64>(),
            "[a-z]{0,8}",
            proptest::collection::vec(any::<u8>(), 0..32)
        )
            .prop_map(move |(transactional, lsn, prefix, content)| {
                LogicalMessage::Message(Message {
                    xid,
                    transactional,
                    lsn: Lsn(lsn),
                    prefix,
                    content: content.into(),
                })
            }),
        (
            any::<u32>(),
            "[a-z_]{0,8}",
            proptest::collection::vec(
                ("[a-z]{1,6}", any::<bool>(), any::<u32>(), any::<i32>()),
                0..6
            )
        )
            .prop_map(move |(oid, name, cols)| {
                LogicalMessage::Relation(Relation {
                    xid,
                    oid,
                    namespace: "public".into(),
                    name,
                    replica_identity: ReplicaIdentity::Index,
                    columns: cols
                        .into_iter()
                        .map(|(name, is_key, type_oid, type_modifier)| RelationColumn {
                            is_key,
                            name,
                            type_oid,
                            type_modifier,
                        })
                        .collect(),
                })
            }),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(
        version in 1u32..=4,
        in_stream in any::<bool>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut d = Decoder::new(version);
        if in_stream {
            let _ = d.decode(&Bytes::from_static(b"S\x00\x00\x00\x01\x01"));
        }
        if let Ok(LogicalMessage::Insert(i)) = d.decode(&Bytes::from(bytes)) {
            // Iteration over a decoded tuple yields exactly its column count.
            prop_assert_eq!(i.new.iter().count(), i.new.len());
        }
    }

    #[test]
    fn corrupted_messages_never_panic(
        message in arb_data_message(None),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = BytesMut::new();
        message.encode(&mut buf);
        let mut bytes = buf.to_vec();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let cut = cut.index(bytes.len() + 1);
        let _ = Decoder::new(2).decode(&Bytes::from(bytes[..cut].to_vec()));
        let _ = Decoder::new(2).decode(&Bytes::from(bytes));
    }

    #[test]
    fn data_messages_round_trip(
        plain in arb_data_message(None),
        streamed in arb_data_message(Some(4242)),
    ) {
        let mut d = Decoder::new(2);
        let mut buf = BytesMut::new();
        plain.encode(&mut buf);
        prop_assert_eq!(&d.decode(&buf.freeze()).unwrap(), &plain);
        d.decode(&Bytes::from_static(b"S\x00\x00\x10\x92\x01")).unwrap();
        let mut buf = BytesMut::new();
        streamed.encode(&mut buf);
        prop_assert_eq!(&d.decode(&buf.freeze()).unwrap(), &streamed);
    }
}
