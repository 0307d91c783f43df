//! [`ReplicationConnection`]: startup, authentication, simple queries and the replication
//! commands that do not stream.

use std::fmt::Write as _;

use bytes::Bytes;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::frontend;
use secrecy::ExposeSecret;

use super::config::ReplicationConfig;
use super::error::{DbError, ReplicationError};
use super::stream::ReplicationStream;
use super::wire::{self, Wire};
use crate::lsn::Lsn;

/// Server settings pinned at startup so that text values have the shape the type mapping
/// parses, whatever the database's or role's defaults are.
const SESSION_SETTINGS: [(&str, &str); 6] = [
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, YMD"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "iso_8601"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
];

/// A connection in replication mode (`replication=database`): it runs replication commands
/// and plain SQL, and turns into a [`ReplicationStream`] with
/// [`start_replication`](Self::start_replication).
#[derive(Debug)]
pub struct ReplicationConnection {
    pub(super) wire: Wire,
    user: String,
    server_version: String,
    backend_pid: i32,
}

/// The rows one statement of a simple query returned, all values as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows; `None` is NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// The command tag (`SELECT 1`, `CREATE_REPLICATION_SLOT` …).
    pub tag: String,
}

impl QueryResult {
    /// The value of `column` in row `row`, if both exist and it is not NULL.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(i)?.as_deref()
    }
}

/// The answer to `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIdentity {
    /// The cluster's system identifier.
    pub system_id: String,
    /// Current timeline.
    pub timeline: u32,
    /// Current WAL flush position.
    pub xlogpos: Lsn,
    /// The connected database.
    pub dbname: Option<String>,
}

/// What `CREATE_REPLICATION_SLOT` does with the snapshot of the slot's starting point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotAction {
    /// `EXPORT_SNAPSHOT`: export it under a name other sessions can import with
    /// `SET TRANSACTION SNAPSHOT`, until this connection runs its next command.
    Export,
    /// `USE_SNAPSHOT`: make it this connection's transaction snapshot. The connection must be
    /// inside `BEGIN ISOLATION LEVEL REPEATABLE READ` (use [`ReplicationConnection::simple_query`]).
    Use,
    /// `NOEXPORT_SNAPSHOT`: no snapshot.
    #[default]
    NoExport,
}

/// The answer to `CREATE_REPLICATION_SLOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    /// Slot name.
    pub slot_name: String,
    /// The LSN from which the slot streams: changes committed after the snapshot.
    pub consistent_point: Lsn,
    /// The exported snapshot, with [`SnapshotAction::Export`].
    pub snapshot_name: Option<String>,
    /// `pgoutput`.
    pub output_plugin: Option<String>,
}

/// A slot's row in `pg_replication_slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    /// Whether a walsender is streaming from it.
    pub active: bool,
    /// That walsender's process id.
    pub active_pid: Option<i32>,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// The output plugin.
    pub plugin: Option<String>,
    /// The last position the consumer confirmed.
    pub confirmed_flush_lsn: Option<Lsn>,
}

/// The pgoutput options of `START_REPLICATION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOutputOptions {
    /// `proto_version`: 1, 2 (streaming of in-progress transactions) or higher.
    pub proto_version: u32,
    /// `publication_names`.
    pub publications: Vec<String>,
    /// `streaming`: stream large in-progress transactions (needs version 2).
    pub streaming: bool,
    /// `binary`: send values in binary format.
    pub binary: bool,
    /// `messages`: send `pg_logical_emit_message` messages.
    pub messages: bool,
}

impl PgOutputOptions {
    /// Version 2 with streaming, text values and messages, for these publications.
    pub fn new(publications: impl IntoIterator<Item = impl Into<String>>) -> PgOutputOptions {
        PgOutputOptions {
            proto_version: 2,
            publications: publications.into_iter().map(Into::into).collect(),
            streaming: true,
            binary: false,
            messages: true,
        }
    }
}

/// `"name"`, with quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with quotes doubled.
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl ReplicationConnection {
    /// Connects, negotiates TLS, authenticates and waits until the server is ready.
    pub async fn connect(config: &ReplicationConfig) -> Result<Self, ReplicationError> {
        let connecting = Self::connect_inner(config);
        match config.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, connecting)
                .await
                .map_err(|_| ReplicationError::ConnectTimeout(limit))?,
            None => connecting.await,
        }
    }

    async fn connect_inner(config: &ReplicationConfig) -> Result<Self, ReplicationError> {
        let socket = wire::open(config).await?;
        let mut wire = Wire::new(socket);
        let mut params = vec![
            ("user", config.user.as_str()),
            ("database", config.dbname.as_str()),
            ("replication", "database"),
            ("application_name", config.application_name.as_str()),
        ];
        params.extend(SESSION_SETTINGS);
        frontend::startup_message(params, &mut wire.write)?;
        wire.flush().await?;

        let user = config.user.clone();
        let startup_error = |e: DbError| match e.code.as_str() {
            "28P01" => ReplicationError::BadCredentials {
                user: user.clone(),
                source: Box::new(e),
            },
            "28000" => ReplicationError::AccessDenied {
                user: user.clone(),
                source: Box::new(e),
            },
            "42501" => ReplicationError::NoReplicationPrivilege {
                user: user.clone(),
                source: Box::new(e),
            },
            _ => e.into(),
        };
        let password = || {
            config
                .password
                .as_ref()
                .map(|p| p.expose_secret().as_bytes())
                .ok_or_else(|| ReplicationError::PasswordRequired { user: user.clone() })
        };

        let mut scram: Option<sasl::ScramSha256> = None;
        let mut server_version = String::new();
        let mut backend_pid = 0;
        loop {
            let frame = wire.read_frame().await?;
            match frame.tag {
                b'R' => {
                    let (code, data) = frame
                        .body
                        .split_first_chunk::<4>()
                        .ok_or_else(|| ReplicationError::Protocol("short Authentication".into()))?;
                    match i32::from_be_bytes(*code) {
                        0 => {}
                        3 => {
                            frontend::password_message(password()?, &mut wire.write)?;
                            wire.flush().await?;
                        }
                        5 => {
                            let salt = data.first_chunk::<4>().ok_or_else(|| {
                                ReplicationError::Protocol("short MD5 salt".into())
                            })?;
                            let hash = md5_hash(config.user.as_bytes(), password()?, *salt);
                            frontend::password_message(hash.as_bytes(), &mut wire.write)?;
                            wire.flush().await?;
                        }
                        10 => {
                            let offered = data
                                .split(|&b| b == 0)
                                .any(|m| m == sasl::SCRAM_SHA_256.as_bytes());
                            if !offered {
                                return Err(ReplicationError::UnsupportedAuthentication(
                                    String::from_utf8_lossy(data).replace('\0', " "),
                                ));
                            }
                            let s = sasl::ScramSha256::new(
                                password()?,
                                sasl::ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response(
                                sasl::SCRAM_SHA_256,
                                s.message(),
                                &mut wire.write,
                            )?;
                            wire.flush().await?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().ok_or_else(|| {
                                ReplicationError::Protocol("SASLContinue without SASL".into())
                            })?;
                            s.update(data)
                                .map_err(|e| ReplicationError::Protocol(format!("SCRAM: {e}")))?;
                            frontend::sasl_response(s.message(), &mut wire.write)?;
                            wire.flush().await?;
                        }
                        12 => {
                            let s = scram.as_mut().ok_or_else(|| {
                                ReplicationError::Protocol("SASLFinal without SASL".into())
                            })?;
                            s.finish(data).map_err(|e| {
                                ReplicationError::Protocol(format!("SCRAM server signature: {e}"))
                            })?;
                        }
                        other => {
                            return Err(ReplicationError::UnsupportedAuthentication(format!(
                                "code {other}"
                            )));
                        }
                    }
                }
                b'S' => {
                    let mut parts = frame.body.split(|&b| b == 0);
                    if parts.next() == Some(b"server_version") {
                        server_version =
                            String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                    }
                }
                b'K' => {
                    if let Some(pid) = frame.body.first_chunk::<4>() {
                        backend_pid = i32::from_be_bytes(*pid);
                    }
                }
                b'N' => {}
                b'E' => return Err(startup_error(DbError::parse(&frame.body))),
                b'Z' => break,
                other => {
                    return Err(ReplicationError::Protocol(format!(
                        "message {:?} during startup",
                        char::from(other)
                    )));
                }
            }
        }
        tracing::debug!(user = %config.user, server_version = %server_version, "replication connection ready");
        Ok(ReplicationConnection {
            wire,
            user: config.user.clone(),
            server_version,
            backend_pid,
        })
    }

    /// The server's `server_version`.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The process id of the server backend (walsender) of this connection.
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// The role this connection logged in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Runs one or more statements (or a replication command) with the simple query protocol
    /// and returns the rows of each that returned any, all values as text. For small results.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<QueryResult>, ReplicationError> {
        frontend::query(sql, &mut self.wire.write)?;
        self.wire.flush().await?;
        let mut results = Vec::new();
        let mut current = QueryResult::default();
        let mut error = None;
        loop {
            let frame = self.wire.read_frame().await?;
            match frame.tag {
                b'T' => {
                    current = QueryResult {
                        columns: parse_row_description(&frame.body)?,
                        ..QueryResult::default()
                    }
                }
                b'D' => current.rows.push(parse_data_row(&frame.body)?),
                b'C' => {
                    current.tag = cstr(&frame.body);
                    results.push(std::mem::take(&mut current));
                }
                b'I' | b'N' | b'S' => {}
                b'E' => error = Some(DbError::parse(&frame.body)),
                b'G' => {
                    frontend::copy_fail("ebb does not send COPY data", &mut self.wire.write)?;
                    self.wire.flush().await?;
                }
                b'H' | b'd' | b'c' => {
                    // A COPY TO STDOUT inside a simple query: its data is not ours to keep.
                }
                b'Z' => break,
                other => {
                    return Err(ReplicationError::Protocol(format!(
                        "message {:?} in a simple query",
                        char::from(other)
                    )));
                }
            }
        }
        match error {
            Some(e) => Err(e.into()),
            None => Ok(results),
        }
    }

    async fn single_result(&mut self, sql: &str) -> Result<QueryResult, ReplicationError> {
        self.simple_query(sql)
            .await?
            .into_iter()
            .rev()
            .find(|r| !r.columns.is_empty())
            .ok_or_else(|| ReplicationError::Protocol(format!("no rows from {sql}")))
    }

    /// `SHOW name`.
    pub async fn show(&mut self, name: &str) -> Result<String, ReplicationError> {
        let r = self
            .single_result(&format!("SHOW {}", quote_ident(name)))
            .await?;
        r.rows
            .first()
            .and_then(|row| row.first().cloned().flatten())
            .ok_or_else(|| ReplicationError::Protocol(format!("SHOW {name} returned nothing")))
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity, ReplicationError> {
        let r = self.single_result("IDENTIFY_SYSTEM").await?;
        let bad = |what: &str| ReplicationError::Protocol(format!("IDENTIFY_SYSTEM {what}"));
        Ok(SystemIdentity {
            system_id: r
                .get(0, "systemid")
                .ok_or_else(|| bad("systemid"))?
                .to_owned(),
            timeline: r
                .get(0, "timeline")
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad("timeline"))?,
            xlogpos: r
                .get(0, "xlogpos")
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad("xlogpos"))?,
            dbname: r.get(0, "dbname").map(str::to_owned),
        })
    }

    /// Fails with [`ReplicationError::WalLevelNotLogical`] unless `wal_level = logical`.
    pub async fn check_wal_level(&mut self) -> Result<(), ReplicationError> {
        let actual = self.show("wal_level").await?;
        if actual != "logical" {
            return Err(ReplicationError::WalLevelNotLogical { actual });
        }
        Ok(())
    }

    /// `CREATE_REPLICATION_SLOT name [TEMPORARY] LOGICAL pgoutput <snapshot>`.
    pub async fn create_slot(
        &mut self,
        name: &str,
        temporary: bool,
        snapshot: SnapshotAction,
    ) -> Result<CreatedSlot, ReplicationError> {
        self.check_wal_level().await?;
        let mut sql = format!("CREATE_REPLICATION_SLOT {}", quote_ident(name));
        if temporary {
            sql.push_str(" TEMPORARY");
        }
        let _ = write!(
            sql,
            " LOGICAL pgoutput {}",
            match snapshot {
                SnapshotAction::Export => "EXPORT_SNAPSHOT",
                SnapshotAction::Use => "USE_SNAPSHOT",
                SnapshotAction::NoExport => "NOEXPORT_SNAPSHOT",
            }
        );
        let r = match self.single_result(&sql).await {
            Err(ReplicationError::Server(e)) if e.code == "42710" => {
                return Err(ReplicationError::SlotAlreadyExists {
                    slot: name.to_owned(),
                });
            }
            other => other?,
        };
        Ok(CreatedSlot {
            slot_name: r.get(0, "slot_name").unwrap_or(name).to_owned(),
            consistent_point: r
                .get(0, "consistent_point")
                .and_then(|l| l.parse().ok())
                .ok_or_else(|| {
                    ReplicationError::Protocol("CREATE_REPLICATION_SLOT consistent_point".into())
                })?,
            snapshot_name: r.get(0, "snapshot_name").map(str::to_owned),
            output_plugin: r.get(0, "output_plugin").map(str::to_owned),
        })
    }

    /// `DROP_REPLICATION_SLOT name [WAIT]`.
    pub async fn drop_slot(&mut self, name: &str, wait: bool) -> Result<(), ReplicationError> {
        let sql = format!(
            "DROP_REPLICATION_SLOT {}{}",
            quote_ident(name),
            if wait { " WAIT" } else { "" }
        );
        match self.simple_query(&sql).await {
            Ok(_) => Ok(()),
            Err(ReplicationError::Server(e)) => Err(match e.code.as_str() {
                "55006" => ReplicationError::SlotActive {
                    slot: name.to_owned(),
                    pid: None,
                },
                "42704" => ReplicationError::SlotMissing {
                    slot: name.to_owned(),
                },
                _ => ReplicationError::Server(e),
            }),
            Err(e) => Err(e),
        }
    }

    /// The slot's row in `pg_replication_slots`, `None` if there is no such slot.
    pub async fn slot_state(&mut self, name: &str) -> Result<Option<SlotState>, ReplicationError> {
        let r = self
            .single_result(&format!(
                "SELECT active, active_pid, wal_status, plugin, confirmed_flush_lsn \
                 FROM pg_catalog.pg_replication_slots WHERE slot_name = {}",
                quote_literal(name)
            ))
            .await?;
        if r.rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(SlotState {
            active: r.get(0, "active") == Some("t"),
            active_pid: r.get(0, "active_pid").and_then(|p| p.parse().ok()),
            wal_status: r.get(0, "wal_status").map(str::to_owned),
            plugin: r.get(0, "plugin").map(str::to_owned),
            confirmed_flush_lsn: r.get(0, "confirmed_flush_lsn").and_then(|l| l.parse().ok()),
        }))
    }

    /// Checks that the slot exists, is not invalidated and is not in use, and that the
    /// publications exist, so that each problem gets its own error before streaming.
    pub async fn check_stream_preconditions(
        &mut self,
        slot: &str,
        publications: &[String],
    ) -> Result<(), ReplicationError> {
        match self.slot_state(slot).await? {
            None => {
                return Err(ReplicationError::SlotMissing {
                    slot: slot.to_owned(),
                });
            }
            Some(s) if s.wal_status.as_deref() == Some("lost") => {
                return Err(ReplicationError::SlotInvalidated {
                    slot: slot.to_owned(),
                });
            }
            // A temporary slot is active for the connection that created it.
            Some(s) if s.active && s.active_pid != Some(self.backend_pid) => {
                return Err(ReplicationError::SlotActive {
                    slot: slot.to_owned(),
                    pid: s.active_pid,
                });
            }
            Some(_) => {}
        }
        if !publications.is_empty() {
            let list: Vec<String> = publications.iter().map(|p| quote_literal(p)).collect();
            let r = self
                .single_result(&format!(
                    "SELECT pubname FROM pg_catalog.pg_publication WHERE pubname IN ({})",
                    list.join(", ")
                ))
                .await?;
            for p in publications {
                if !r
                    .rows
                    .iter()
                    .any(|row| row.first().and_then(Option::as_deref) == Some(p))
                {
                    return Err(ReplicationError::PublicationMissing {
                        publication: p.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// `START_REPLICATION SLOT slot LOGICAL start (options)`: the connection becomes a stream.
    ///
    /// Checks the slot and publications first (see
    /// [`check_stream_preconditions`](Self::check_stream_preconditions)). `start` is usually
    /// the last flushed position the caller confirmed, or [`Lsn::ZERO`] for the slot's own.
    pub async fn start_replication(
        mut self,
        slot: &str,
        start: Lsn,
        options: &PgOutputOptions,
    ) -> Result<ReplicationStream, ReplicationError> {
        self.check_stream_preconditions(slot, &options.publications)
            .await?;
        let publications: Vec<String> = options
            .publications
            .iter()
            .map(|p| quote_ident(p))
            .collect();
        let mut opts = vec![
            format!("\"proto_version\" '{}'", options.proto_version),
            format!(
                "\"publication_names\" {}",
                quote_literal(&publications.join(","))
            ),
        ];
        if options.streaming {
            opts.push("\"streaming\" 'on'".into());
        }
        if options.binary {
            opts.push("\"binary\" 'true'".into());
        }
        if options.messages {
            opts.push("\"messages\" 'true'".into());
        }
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {start} ({})",
            quote_ident(slot),
            opts.join(", ")
        );
        frontend::query(&sql, &mut self.wire.write)?;
        self.wire.flush().await?;
        match self.wire.read_significant().await {
            Ok(frame) if frame.tag == b'W' => {
                tracing::info!(slot, %start, proto_version = options.proto_version, "streaming started");
                Ok(ReplicationStream::new(self, options.proto_version))
            }
            Ok(frame) => Err(ReplicationError::Protocol(format!(
                "message {:?} instead of CopyBothResponse",
                char::from(frame.tag)
            ))),
            Err(ReplicationError::Server(e)) => Err(match e.code.as_str() {
                "55006" => ReplicationError::SlotActive {
                    slot: slot.to_owned(),
                    pid: None,
                },
                "42704" => ReplicationError::SlotMissing {
                    slot: slot.to_owned(),
                },
                _ => ReplicationError::Server(e),
            }),
            Err(e) => Err(e),
        }
    }

    /// Runs `sql`, which must be a `COPY ... TO STDOUT`, and returns a reader of its data.
    pub async fn copy_out(&mut self, sql: &str) -> Result<CopyOut<'_>, ReplicationError> {
        frontend::query(sql, &mut self.wire.write)?;
        self.wire.flush().await?;
        let frame = self.wire.read_significant().await;
        match frame {
            Ok(f) if f.tag == b'H' => Ok(CopyOut {
                conn: self,
                done: false,
            }),
            Ok(f) => Err(ReplicationError::Protocol(format!(
                "message {:?} instead of CopyOutResponse",
                char::from(f.tag)
            ))),
            Err(e) => {
                self.drain_until_ready().await?;
                Err(e)
            }
        }
    }

    async fn drain_until_ready(&mut self) -> Result<(), ReplicationError> {
        loop {
            if self.wire.read_frame().await?.tag == b'Z' {
                return Ok(());
            }
        }
    }

    /// Sends `Terminate` and closes the socket.
    pub async fn close(mut self) -> Result<(), ReplicationError> {
        frontend::terminate(&mut self.wire.write);
        self.wire.flush().await
    }
}

/// The data of a `COPY ... TO STDOUT`, chunk by chunk.
#[derive(Debug)]
pub struct CopyOut<'a> {
    conn: &'a mut ReplicationConnection,
    done: bool,
}

impl CopyOut<'_> {
    /// The next CopyData payload, or `None` once the copy is complete (the connection is
    /// then ready for the next command).
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ReplicationError> {
        if self.done {
            return Ok(None);
        }
        loop {
            let frame = self.conn.wire.read_significant().await;
            let frame = match frame {
                Ok(f) => f,
                Err(ReplicationError::Server(e)) => {
                    self.done = true;
                    self.conn.drain_until_ready().await?;
                    return Err(ReplicationError::Server(e));
                }
                Err(e) => return Err(e),
            };
            match frame.tag {
                b'd' => return Ok(Some(frame.body)),
                b'c' | b'C' => {}
                b'Z' => {
                    self.done = true;
                    return Ok(None);
                }
                other => {
                    return Err(ReplicationError::Protocol(format!(
                        "message {:?} during COPY",
                        char::from(other)
                    )));
                }
            }
        }
    }
}

fn cstr(body: &[u8]) -> String {
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).into_owned()
}

fn parse_row_description(body: &[u8]) -> Result<Vec<String>, ReplicationError> {
    let bad = || ReplicationError::Protocol("malformed RowDescription".into());
    let (n, mut rest) = body.split_first_chunk::<2>().ok_or_else(bad)?;
    let n = u16::from_be_bytes(*n);
    let mut names = Vec::with_capacity(usize::from(n).min(rest.len()));
    for _ in 0..n {
        let end = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
        names.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        rest = rest.get(end + 1 + 18..).ok_or_else(bad)?;
    }
    Ok(names)
}

fn parse_data_row(body: &[u8]) -> Result<Vec<Option<String>>, ReplicationError> {
    let bad = || ReplicationError::Protocol("malformed DataRow".into());
    let (n, mut rest) = body.split_first_chunk::<2>().ok_or_else(bad)?;
    let n = u16::from_be_bytes(*n);
    let mut values = Vec::with_capacity(usize::from(n).min(rest.len()));
    for _ in 0..n {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = i32::from_be_bytes(*len);
        if len < 0 {
            values.push(None);
            rest = tail;
            continue;
        }
        let len = usize::try_from(len).map_err(|_| bad())?;
        let (value, tail) = tail.split_at_checked(len).ok_or_else(bad)?;
        values.push(Some(String::from_utf8_lossy(value).into_owned()));
        rest = tail;
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn malformed_rows_are_errors() {
        assert!(parse_data_row(&[0, 1, 0, 0, 0, 5, b'a']).is_err());
        assert_eq!(
            parse_data_row(&[0, 2, 255, 255, 255, 255, 0, 0, 0, 1, b'x']).unwrap(),
            vec![None, Some("x".into())]
        );
        assert!(parse_row_description(&[0, 1, b'a', 0, 1]).is_err());
    }
}
