//! The oracle test: pgoutput, decoded by ebb, against PostgreSQL's own `test_decoding` for the
//! same WAL. The workload covers every mapped type (with NULLs and special values), unchanged
//! TOAST, multi-row transactions, a transaction streamed in protocol v2 with an aborted
//! subtransaction, TRUNCATE and `pg_logical_emit_message`.
//!
//! Three readings of the pgoutput slot must give the changes test_decoding reports:
//! `pg_logical_slot_peek_binary_changes` in text mode, the same in binary mode, and the live
//! stream of ebb's replication connection. Text and binary tuples must also give identical
//! Arrow batches.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use ebb_postgres::Lsn;
use ebb_postgres::pgoutput::{Column, Decoder, LogicalMessage, Relation, TupleData};
use ebb_postgres::replication::{PgOutputOptions, ReplicationConnection};
use ebb_postgres::types::{RowBatchBuilder, TypeRegistry};
use ebb_testkit::PgCluster;

use crate::support::config;

/// A cluster where a transaction over 64 kB of changes is streamed while in progress.
fn streaming_cluster() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        PgCluster::builder()
            .setting("logical_decoding_work_mem", "64kB")
            .start()
            .expect("start the streaming test cluster")
    })
}

/// Settings both decoders' text output depends on (FIELD-NOTES: pin them).
const SESSION: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
    SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 3; SET bytea_output = 'hex';";

pub(crate) const SCHEMA: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE all_types (
    id int8 PRIMARY KEY,
    c_bool bool, c_int2 int2, c_int4 int4, c_int8 int8, c_float4 float4, c_float8 float8,
    c_numeric numeric(12,3), c_numeric_any numeric, c_text text, c_varchar varchar(20),
    c_bpchar char(5), c_name name, c_bytea bytea, c_uuid uuid, c_date date, c_time time,
    c_timestamp timestamp, c_timestamptz timestamptz, c_interval interval, c_json json,
    c_jsonb jsonb, c_mood mood, c_int4s int4[], c_texts text[], c_numerics numeric(6,2)[],
    c_inet inet, c_cidr cidr, c_oid oid, c_moods mood[], c_tstzs timestamptz[], c_big text
);
CREATE TABLE full_ident (id int PRIMARY KEY, v text, n int);
ALTER TABLE full_ident REPLICA IDENTITY FULL;
CREATE TABLE other (k int PRIMARY KEY);
CREATE PUBLICATION oracle_pub FOR ALL TABLES;
";

pub(crate) const WORKLOAD: &[&str] = &[
    // A multi-row transaction: every type, all NULLs, special values.
    "BEGIN;
     INSERT INTO all_types VALUES
     (1, true, -32768, 2147483647, -9223372036854775808, 1.5, 3.141592653589793,
      123456789.123, 12.5000, 'héllo ''quoted'' \"dq\" \\back', 'varchar', 'ab', 'nm',
      '\\x00ff10'::bytea, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29',
      '23:59:59.999999', '2024-01-02 03:04:05.678901', '2024-01-02 03:04:05.678901+05:30',
      '1 year 2 mons 3 days 04:05:06.5', '{\"a\": [1, 2]}', '{\"b\": {\"c\": null}}', 'happy',
      '{1,NULL,3}', '{\"a b\",\"q\\\"x\",NULL,\"\",\"NULL\"}', '{1.50,-2.25}', '192.168.1.5/24',
      '10.0.0.0/8', 4000000000, '{sad,NULL,happy}', '{\"2020-01-01 00:00:00+00\",infinity}',
      (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 300) g));
     INSERT INTO all_types (id) VALUES (2);
     INSERT INTO all_types VALUES
     (3, false, 0, 0, 0, 'NaN', '-Infinity', -0.001, 'NaN', '', '', '', '', ''::bytea,
      '00000000-0000-0000-0000-000000000000', 'infinity', '00:00:00',
      '0044-03-15 12:00:00 BC', '-infinity', '-1 days -00:00:01', '[]', '[]', 'sad', '{}', '{}',
      '{}', '::1', '2001:db8::/32', 0, '{}', '{}', 'short');
     COMMIT;",
    // Unchanged TOAST: the big value is not in the new tuple.
    "UPDATE all_types SET c_int4 = 42 WHERE id = 1",
    // Key change: the old key travels.
    "UPDATE all_types SET id = 10 WHERE id = 2",
    "DELETE FROM all_types WHERE id = 3",
    // REPLICA IDENTITY FULL: whole old rows.
    "INSERT INTO full_ident VALUES (1, 'x', 1), (2, NULL, 2)",
    "UPDATE full_ident SET v = 'y' WHERE id = 1",
    "DELETE FROM full_ident WHERE id = 2",
    // Messages, transactional and not.
    "BEGIN; INSERT INTO other VALUES (1);
     SELECT pg_logical_emit_message(true, 'ebb', 'tx message');
     COMMIT;",
    "SELECT pg_logical_emit_message(false, 'ebb', 'non-tx message')",
    // Over logical_decoding_work_mem: streamed in v2, with an aborted subtransaction.
    "BEGIN;
     INSERT INTO other SELECT g FROM generate_series(100, 1099) g;
     SAVEPOINT s1;
     INSERT INTO other SELECT g FROM generate_series(2000, 2999) g;
     ROLLBACK TO s1;
     INSERT INTO other SELECT g FROM generate_series(3000, 3999) g;
     UPDATE full_ident SET n = 5;
     COMMIT;",
    "TRUNCATE full_ident, other RESTART IDENTITY",
    "SELECT pg_logical_emit_message(true, 'ebb-oracle', 'end')",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Null,
    UnchangedToast,
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Col {
    name: String,
    ty: String,
    value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Insert {
        table: String,
        new: Vec<Col>,
    },
    Update {
        table: String,
        old: Option<Vec<Col>>,
        new: Vec<Col>,
    },
    Delete {
        table: String,
        old: Vec<Col>,
    },
    Truncate {
        tables: Vec<String>,
        cascade: bool,
        restart_identity: bool,
    },
    Message {
        transactional: bool,
        prefix: String,
        content: String,
    },
}

// ---------------------------------------------------------------- test_decoding's side

fn parse_test_decoding(lines: &[String]) -> Vec<Change> {
    let mut out = Vec::new();
    for line in lines {
        if line == "BEGIN" || line == "COMMIT" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("message: transactional: ") {
            let (flag, rest) = rest.split_once(" prefix: ").unwrap();
            let (prefix, rest) = rest.split_once(", sz: ").unwrap();
            let (size, content) = rest.split_once(" content:").unwrap();
            let size: usize = size.parse().unwrap();
            assert_eq!(content.len(), size, "message content length in {line:?}");
            out.push(Change::Message {
                transactional: flag == "1",
                prefix: prefix.to_owned(),
                content: content.to_owned(),
            });
            continue;
        }
        let rest = line
            .strip_prefix("table ")
            .unwrap_or_else(|| panic!("line {line:?}"));
        if let Some((tables, flags)) = rest.split_once(": TRUNCATE: ") {
            out.push(Change::Truncate {
                tables: tables.split(", ").map(str::to_owned).collect(),
                cascade: flags.contains("cascade"),
                restart_identity: flags.contains("restart_seqs"),
            });
            continue;
        }
        let (table, rest) = rest.split_once(": ").unwrap();
        let table = table.to_owned();
        let (action, rest) = rest
            .split_once(": ")
            .unwrap_or((rest.trim_end_matches(':'), ""));
        match action {
            "INSERT" => out.push(Change::Insert {
                table,
                new: parse_td_columns(rest),
            }),
            "UPDATE" => {
                if let Some(rest) = rest.strip_prefix("old-key: ") {
                    let (old, new) = rest.split_once(" new-tuple: ").unwrap();
                    out.push(Change::Update {
                        table,
                        old: Some(parse_td_columns(old)),
                        new: parse_td_columns(new),
                    });
                } else {
                    out.push(Change::Update {
                        table,
                        old: None,
                        new: parse_td_columns(rest),
                    });
                }
            }
            "DELETE" => out.push(Change::Delete {
                table,
                old: if rest == "(no-tuple-data)" {
                    Vec::new()
                } else {
                    parse_td_columns(rest)
                },
            }),
            other => panic!("unknown test_decoding action {other:?} in {line:?}"),
        }
    }
    out
}

/// `name[type]:value name[type]:'quoted ''value'''` …
fn parse_td_columns(s: &str) -> Vec<Col> {
    let mut cols = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let open = rest.find('[').unwrap();
        let name = rest[..open].to_owned();
        let close = rest.find("]:").unwrap();
        let ty = rest[open + 1..close].to_owned();
        rest = &rest[close + 2..];
        let value;
        if let Some(quoted) = rest.strip_prefix('\'') {
            let mut text = String::new();
            let mut chars = quoted.char_indices().peekable();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().map(|(_, c)| *c) == Some('\'') {
                        chars.next();
                        text.push('\'');
                    } else {
                        end = i + 1;
                        break;
                    }
                } else {
                    text.push(c);
                }
            }
            value = Value::Text(text);
            rest = &quoted[end..];
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            value = match &rest[..end] {
                "null" => Value::Null,
                "unchanged-toast-datum" => Value::UnchangedToast,
                // test_decoding prints booleans as true/false, pgoutput as t/f.
                "true" if ty == "boolean" => Value::Text("t".into()),
                "false" if ty == "boolean" => Value::Text("f".into()),
                v => Value::Text(v.to_owned()),
            };
            rest = &rest[end..];
        }
        cols.push(Col { name, ty, value });
        rest = rest.strip_prefix(' ').unwrap_or(rest);
    }
    cols
}

// ---------------------------------------------------------------- pgoutput's side

/// Turns pgoutput messages into committed changes, replaying streamed transactions at
/// their commit and dropping aborted subtransactions.
#[derive(Default)]
struct Assembler {
    relations: HashMap<u32, Relation>,
    type_names: HashMap<u32, String>,
    out: Vec<Change>,
    stream: Option<u32>,
    streamed: HashMap<u32, Vec<(u32, Change)>>,
    stream_starts: usize,
    subxact_aborts: usize,
    done: bool,
}

impl Assembler {
    fn columns(&self, rel: &Relation, tuple: &TupleData, skip_nulls: bool) -> Vec<Col> {
        assert_eq!(tuple.len(), rel.columns.len());
        rel.columns
            .iter()
            .zip(tuple.iter())
            .filter(|(_, v)| !(skip_nulls && *v == Column::Null))
            .map(|(c, v)| Col {
                name: c.name.clone(),
                ty: self.type_names[&c.type_oid].clone(),
                value: match v {
                    Column::Null => Value::Null,
                    Column::UnchangedToast => Value::UnchangedToast,
                    Column::Text(t) => Value::Text(String::from_utf8(t.to_vec()).unwrap()),
                    Column::Binary(_) => panic!("binary value in a text-mode stream"),
                },
            })
            .collect()
    }

    fn table(rel: &Relation) -> String {
        format!("{}.{}", rel.namespace, rel.name)
    }

    fn push(&mut self, xid: Option<u32>, change: Change) {
        match (self.stream, xid) {
            (Some(top), Some(xid)) => self.streamed.entry(top).or_default().push((xid, change)),
            _ => self.out.push(change),
        }
    }

    fn feed(&mut self, message: LogicalMessage) {
        match message {
            LogicalMessage::Relation(r) => {
                self.relations.insert(r.oid, r);
            }
            LogicalMessage::Insert(m) => {
                let rel = &self.relations[&m.relation_id];
                let change = Change::Insert {
                    table: Self::table(rel),
                    new: self.columns(rel, &m.new, false),
                };
                self.push(m.xid, change);
            }
            LogicalMessage::Update(m) => {
                let rel = &self.relations[&m.relation_id];
                let change = Change::Update {
                    table: Self::table(rel),
                    old: m.old.as_ref().map(|o| self.columns(rel, &o.tuple, true)),
                    new: self.columns(rel, &m.new, false),
                };
                self.push(m.xid, change);
            }
            LogicalMessage::Delete(m) => {
                let rel = &self.relations[&m.relation_id];
                let change = Change::Delete {
                    table: Self::table(rel),
                    old: self.columns(rel, &m.old.tuple, true),
                };
                self.push(m.xid, change);
            }
            LogicalMessage::Truncate(m) => {
                let change = Change::Truncate {
                    tables: m
                        .relation_ids
                        .iter()
                        .map(|id| Self::table(&self.relations[id]))
                        .collect(),
                    cascade: m.cascade,
                    restart_identity: m.restart_identity,
                };
                self.push(m.xid, change);
            }
            LogicalMessage::Message(m) => {
                let content = String::from_utf8(m.content.to_vec()).unwrap();
                if m.prefix == "ebb-oracle" && content == "end" {
                    self.done = true;
                }
                let change = Change::Message {
                    transactional: m.transactional,
                    prefix: m.prefix,
                    content,
                };
                self.push(m.xid.filter(|_| m.transactional), change);
            }
            LogicalMessage::StreamStart(s) => {
                self.stream_starts += 1;
                self.stream = Some(s.xid);
            }
            LogicalMessage::StreamStop => self.stream = None,
            LogicalMessage::StreamAbort(a) => {
                if a.xid == a.subxid {
                    self.streamed.remove(&a.xid);
                } else {
                    self.subxact_aborts += 1;
                    if let Some(changes) = self.streamed.get_mut(&a.xid) {
                        changes.retain(|(xid, _)| *xid != a.subxid);
                    }
                }
            }
            LogicalMessage::StreamCommit(c) => {
                let changes = self.streamed.remove(&c.xid).unwrap_or_default();
                self.out.extend(changes.into_iter().map(|(_, c)| c));
            }
            LogicalMessage::Begin(_)
            | LogicalMessage::Commit(_)
            | LogicalMessage::Origin(_)
            | LogicalMessage::Type(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Arrow batches, per relation, of every tuple in a pgoutput reading (text or binary).
#[derive(Default)]
struct ArrowSink {
    registry: TypeRegistry,
    relations: HashMap<u32, Relation>,
    builders: BTreeMap<String, RowBatchBuilder>,
}

impl ArrowSink {
    fn feed(&mut self, message: &LogicalMessage) {
        let tuples: Vec<(&u32, &TupleData)> = match message {
            LogicalMessage::Relation(r) => {
                self.relations.insert(r.oid, r.clone());
                return;
            }
            LogicalMessage::Insert(m) => vec![(&m.relation_id, &m.new)],
            LogicalMessage::Update(m) => m
                .old
                .iter()
                .map(|o| (&m.relation_id, &o.tuple))
                .chain([(&m.relation_id, &m.new)])
                .collect(),
            LogicalMessage::Delete(m) => vec![(&m.relation_id, &m.old.tuple)],
            _ => return,
        };
        for (id, tuple) in tuples {
            let rel = &self.relations[id];
            let builder = self
                .builders
                .entry(rel.name.clone())
                .or_insert_with(|| RowBatchBuilder::for_relation(rel, &self.registry));
            builder
                .append_tuple(tuple)
                .unwrap_or_else(|e| panic!("{}: {e}", rel.name));
        }
    }

    fn finish(mut self) -> BTreeMap<String, ebb_postgres::types::RowBatch> {
        self.builders
            .iter_mut()
            .map(|(name, b)| (name.clone(), b.finish().unwrap()))
            .collect()
    }
}

async fn peek_pgoutput(client: &tokio_postgres::Client, binary: bool) -> Vec<Bytes> {
    let rows = client
        .query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes('oracle_pg', NULL, NULL, \
             'proto_version', '2', 'publication_names', 'oracle_pub', 'streaming', 'on', \
             'messages', 'true', 'binary', $1)",
            &[&(if binary { "true" } else { "false" })],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| Bytes::from(r.get::<_, Vec<u8>>(0)))
        .collect()
}

#[tokio::test]
async fn pgoutput_matches_test_decoding() {
    let db = streaming_cluster().fresh_database().await;
    let client = db.connect().await;
    client.batch_execute(SESSION).await.unwrap();
    client.batch_execute(SCHEMA).await.unwrap();
    client
        .batch_execute(
            "SELECT pg_create_logical_replication_slot('oracle_td', 'test_decoding');
             SELECT pg_create_logical_replication_slot('oracle_pg', 'pgoutput');",
        )
        .await
        .unwrap();
    for statement in WORKLOAD {
        client.batch_execute(statement).await.unwrap();
    }
    let mood_oid: u32 = client
        .query_one("SELECT 'mood'::regtype::oid", &[])
        .await
        .unwrap()
        .get(0);
    let moods_oid: u32 = client
        .query_one("SELECT '_mood'::regtype::oid", &[])
        .await
        .unwrap()
        .get(0);

    // The oracle.
    let lines: Vec<String> = client
        .query(
            "SELECT data FROM pg_logical_slot_peek_changes('oracle_td', NULL, NULL, \
             'include-xids', '0', 'skip-empty-xacts', '1')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected = parse_test_decoding(&lines);
    assert!(
        expected.len() > 2000,
        "workload decoded to {} changes",
        expected.len()
    );

    let type_names: HashMap<u32, String> = client
        .query(
            "SELECT oid, format_type(oid, NULL) FROM pg_type WHERE oid IN \
             (SELECT atttypid FROM pg_attribute WHERE attrelid IN \
              ('all_types'::regclass, 'full_ident'::regclass, 'other'::regclass))",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();

    // 1. Raw pgoutput bytes from the SQL interface, text mode.
    let text_messages = peek_pgoutput(&client, false).await;
    let mut decoder = Decoder::new(2);
    let mut assembler = Assembler {
        type_names: type_names.clone(),
        ..Assembler::default()
    };
    for m in &text_messages {
        assembler.feed(decoder.decode(m).unwrap());
    }
    assert!(
        assembler.stream_starts > 0,
        "the big transaction was not streamed"
    );
    assert_eq!(assembler.subxact_aborts, 1, "one aborted subtransaction");
    assert!(assembler.done);
    assert_changes_eq(&assembler.out, &expected, "peeked pgoutput (text)");

    // 2. Binary mode: the same tuples give the same Arrow batches as text mode.
    let mut registry = TypeRegistry::new();
    registry.insert(
        mood_oid,
        ebb_postgres::types::CustomType::Enum {
            name: "mood".into(),
        },
    );
    registry.insert(
        moods_oid,
        ebb_postgres::types::CustomType::Array {
            name: "_mood".into(),
            element: mood_oid,
        },
    );
    let text_batches = {
        let mut sink = ArrowSink {
            registry: registry.clone(),
            ..ArrowSink::default()
        };
        let mut d = Decoder::new(2);
        for m in &text_messages {
            sink.feed(&d.decode(m).unwrap());
        }
        sink.finish()
    };
    let binary_messages = peek_pgoutput(&client, true).await;
    let mut d = Decoder::new(2);
    let mut binary_arrow = ArrowSink {
        registry,
        ..ArrowSink::default()
    };
    let mut binary_columns = 0;
    for m in &binary_messages {
        let message = d.decode(m).unwrap();
        if let LogicalMessage::Insert(i) = &message {
            binary_columns += i
                .new
                .iter()
                .filter(|c| matches!(c, Column::Binary(_)))
                .count();
        }
        binary_arrow.feed(&message);
    }
    assert!(binary_columns > 0, "binary mode sent no binary values");
    let binary_batches = binary_arrow.finish();
    assert_eq!(
        text_batches.keys().collect::<Vec<_>>(),
        ["all_types", "full_ident", "other"]
    );
    for (name, text) in &text_batches {
        let binary = &binary_batches[name];
        assert_eq!(text.unchanged_toast, binary.unchanged_toast, "{name}");
        assert_eq!(text.batch.schema(), binary.batch.schema(), "{name}");
        for (i, field) in text.batch.schema().fields().iter().enumerate() {
            assert_eq!(
                text.batch.column(i).to_data(),
                binary.batch.column(i).to_data(),
                "{name}.{}: text and binary values differ",
                field.name()
            );
        }
    }
    let all_types = &text_batches["all_types"];
    assert_eq!(all_types.unchanged_toast, vec![(3, 31)]);

    // 3. The live stream of ebb's replication connection.
    let conn = ReplicationConnection::connect(&config(&db)).await.unwrap();
    let mut stream = conn
        .start_replication(
            "oracle_pg",
            Lsn::ZERO,
            &PgOutputOptions::new(["oracle_pub"]),
        )
        .await
        .unwrap();
    let mut live = Assembler {
        type_names,
        ..Assembler::default()
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        while !live.done {
            let m = stream.next_message().await.unwrap().expect("stream open");
            live.feed(m.message);
        }
    })
    .await
    .expect("the live stream reached the end marker within 60 s");
    assert!(live.stream_starts > 0);
    assert_changes_eq(&live.out, &expected, "live stream");
    stream.stop().await.unwrap().close().await.unwrap();
}

fn assert_changes_eq(actual: &[Change], expected: &[Change], what: &str) {
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a, e, "{what}: change {i} differs from test_decoding");
    }
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: number of changes differs from test_decoding"
    );
}
