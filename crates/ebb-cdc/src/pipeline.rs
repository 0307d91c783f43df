//! Running a pipeline: slot and publication, the initial copy, the stream into ChangeBatches,
//! delivery to every sink, checkpoints, heartbeats, lag, clean shutdown.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ebb_core::config::pipeline::{PipelineConfig, SnapshotMode};
use ebb_postgres::Lsn;
use ebb_postgres::pgoutput::{Decoder, LogicalMessage};
use ebb_postgres::replication::{
    PgOutputOptions, ReplicationConfig, ReplicationConnection, ReplicationEvent, ReplicationStream,
    SnapshotAction,
};
use ebb_postgres::types::TypeRegistry;
use tokio::sync::{mpsc, watch};

use crate::changes::{Delivery, TableChanges, Truncation};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::error::CdcError;
use crate::metrics;
use crate::position::{Position, seq};
use crate::sink::DynSink;
use crate::snapshot::{CopyPlan, copy_table};
use crate::source::{self, TableInfo, literal};
use crate::txbuf::StreamedTransactions;

/// Prefix of the heartbeat messages ebb emits with `pg_logical_emit_message`.
pub const HEARTBEAT_PREFIX: &str = "ebb.heartbeat";

/// A pipeline's settings, resolved from its config.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// The pipeline's name.
    pub name: String,
    /// The source database.
    pub source: ReplicationConfig,
    /// The publication.
    pub publication: String,
    /// Create it when missing.
    pub create_publication: bool,
    /// `schema.table`, or empty: every table of the publication.
    pub tables: Vec<String>,
    /// The slot.
    pub slot: String,
    /// Initial copy or not.
    pub snapshot: SnapshotMode,
    /// Batch limits.
    pub max_rows: usize,
    /// See `max_rows`.
    pub max_bytes: usize,
    /// See `max_rows`.
    pub max_latency: Duration,
    /// Memory for in-progress streamed transactions.
    pub memory_budget: usize,
    /// Where they spill.
    pub spill_dir: PathBuf,
    /// Heartbeat period; `None`: off.
    pub heartbeat: Option<Duration>,
    /// Warn above this slot lag.
    pub lag_warn_bytes: u64,
    /// Connections that copy a table at once.
    pub snapshot_workers: usize,
    /// How often lag is measured.
    pub lag_interval: Duration,
}

impl PipelineSpec {
    /// Resolves `config` of pipeline `name` in the project at `root`.
    pub fn from_config(name: &str, config: &PipelineConfig, root: &Path) -> Result<Self, CdcError> {
        let source = ReplicationConfig::parse(config.source.url.expose())
            .map_err(|e| CdcError::Config(format!("pipeline {name}: source.url: {e}")))?;
        let b = &config.batch;
        Ok(PipelineSpec {
            name: name.to_string(),
            source,
            publication: config.publication.name.value.clone(),
            create_publication: config.publication.create,
            tables: config
                .tables
                .value
                .iter()
                .map(|t| source::normalize(&t.value))
                .collect(),
            slot: config.slot_name(name),
            snapshot: config.snapshot,
            max_rows: b.max_rows.unwrap_or(10_000).max(1),
            max_bytes: b
                .max_bytes
                .map_or(8 << 20, |s| usize::try_from(s.0).unwrap_or(usize::MAX)),
            max_latency: b.max_latency.map_or(Duration::from_millis(100), |d| d.0),
            memory_budget: config
                .streaming
                .memory_budget
                .map_or(64 << 20, |s| usize::try_from(s.0).unwrap_or(usize::MAX)),
            spill_dir: config
                .streaming
                .spill_dir
                .as_ref()
                .map_or_else(|| root.join(".ebb/spill").join(name), |d| root.join(d)),
            heartbeat: match config.heartbeat {
                Some(d) if d.0.is_zero() => None,
                Some(d) => Some(d.0),
                None => Some(Duration::from_secs(10)),
            },
            lag_warn_bytes: config.lag_warn_bytes.map_or(1 << 30, |s| s.0),
            snapshot_workers: 2,
            lag_interval: Duration::from_secs(5),
        })
    }
}

/// What a running pipeline reports (the CLI's status line).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// `connecting`, `snapshot <table>`, `streaming`, `stopped`.
    pub phase: String,
    /// Changes delivered (copy and stream).
    pub rows: u64,
    /// Commit LSN of the last transaction processed.
    pub last_lsn: Lsn,
    /// What every sink durably holds (confirmed to PostgreSQL).
    pub flush_lsn: Lsn,
    /// WAL the slot holds, when measured.
    pub lag_bytes: Option<u64>,
    /// The last measured lag is above the configured `lag_warn_bytes`.
    pub lag_warning: bool,
    /// Bytes of streamed transactions spilled to disk.
    pub spilled_bytes: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Changes delivered.
    pub rows: u64,
    /// The last durable position.
    pub flush_lsn: Lsn,
}

struct SinkState {
    sink: Box<dyn DynSink>,
    /// What it held when opened (changes it already has are not sent again).
    resume: Position,
    /// What it durably holds now.
    durable: Position,
}

impl SinkState {
    fn position_for(&self, processed: &Position) -> Position {
        Position {
            commit_lsn: processed.commit_lsn.max(self.resume.commit_lsn),
            flush_lsn: processed.flush_lsn.max(self.resume.flush_lsn),
            tables: self.resume.tables.clone(),
        }
    }

    /// Whether some rows of `d` may already be held (so it must be filtered).
    fn may_hold(&self, d: &Delivery) -> bool {
        let min = d.lsns.values().iter().copied().min().unwrap_or(0);
        min <= self.resume.commit_lsn || self.resume.tables.get(&*d.table).is_some_and(|s| min < *s)
    }
}

/// Messages from the side task (heartbeats and lag).
enum SideReport {
    Lag(u64),
    Error(CdcError),
}

/// A pipeline run: one slot, its sinks and its checkpoint store.
pub struct Pipeline<S> {
    spec: PipelineSpec,
    store: S,
    sinks: Vec<SinkState>,
    status: watch::Sender<Status>,
    /// The last transaction boundary seen.
    processed: Position,
    /// The last boundary whose changes are all handed to the sinks: what a commit covers.
    ready: Position,
    durable: Position,
    rows: u64,
    uncommitted: bool,
}

impl<S> std::fmt::Debug for Pipeline<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.spec.name)
            .field("slot", &self.spec.slot)
            .finish_non_exhaustive()
    }
}

/// Drops the slot, the checkpoint and nothing else (sinks keep their data).
pub async fn drop_pipeline<S: CheckpointStore>(
    spec: &PipelineSpec,
    store: &S,
) -> Result<bool, CdcError> {
    let mut conn = ReplicationConnection::connect(&spec.source).await?;
    let existed = conn.slot_state(&spec.slot).await?.is_some();
    if existed {
        conn.drop_slot(&spec.slot, false).await?;
    }
    conn.close().await?;
    store.remove(&spec.name).await?;
    Ok(existed)
}

impl<S: CheckpointStore> Pipeline<S> {
    /// A pipeline delivering to `sinks`, keeping checkpoints in `store`.
    pub fn new(spec: PipelineSpec, store: S, sinks: Vec<Box<dyn DynSink>>) -> Pipeline<S> {
        Pipeline {
            spec,
            store,
            sinks: sinks
                .into_iter()
                .map(|sink| SinkState {
                    sink,
                    resume: Position::default(),
                    durable: Position::default(),
                })
                .collect(),
            status: watch::Sender::new(Status::default()),
            processed: Position::default(),
            ready: Position::default(),
            durable: Position::default(),
            rows: 0,
            uncommitted: false,
        }
    }

    /// Live status of the run.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    fn set_phase(&self, phase: &str) {
        self.status.send_modify(|s| s.phase = phase.to_string());
    }

    /// Runs until `shutdown` completes (then drains and checkpoints) or an error.
    pub async fn run(
        &mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<RunSummary, CdcError> {
        let span =
            tracing::info_span!("pipeline", pipeline = %self.spec.name, slot = %self.spec.slot);
        let _ = &span;
        tokio::pin!(shutdown);
        self.set_phase("connecting");
        let spec = self.spec.clone();
        let mut conn = ReplicationConnection::connect(&spec.source).await?;
        conn.check_wal_level().await?;
        let tables = source::ensure_publication(
            &mut conn,
            &spec.publication,
            &spec.tables,
            spec.create_publication,
        )
        .await?;
        let registry = source::type_registry(&mut conn).await?;
        let infos = source::describe_tables(&mut conn, &tables, &registry).await?;
        let keys = source::key_columns(&infos);

        let checkpoint = self.store.load(&spec.name).await?;
        if let Some(c) = &checkpoint
            && c.slot != spec.slot
        {
            return Err(CdcError::Config(format!(
                "pipeline {:?} was checkpointed on slot {:?}, and is now configured with slot {:?}: run `ebb cdc drop {}` to start over",
                spec.name, c.slot, spec.slot, spec.name
            )));
        }
        let base = checkpoint
            .as_ref()
            .map(|c| c.position.clone())
            .unwrap_or_default();
        for s in &mut self.sinks {
            let held = s.sink.open().await?;
            s.resume = held.unwrap_or_else(|| base.clone());
            s.durable = s.resume.clone();
        }

        // The slot, and the tables each sink still needs a copy of.
        let slot = conn.slot_state(&spec.slot).await?;
        match &slot {
            Some(s) if s.wal_status.as_deref() == Some("lost") => {
                return Err(CdcError::SlotInvalidated {
                    slot: spec.slot.clone(),
                    pipeline: spec.name.clone(),
                });
            }
            None if checkpoint.is_some() => {
                return Err(CdcError::SlotLost {
                    slot: spec.slot.clone(),
                    pipeline: spec.name.clone(),
                });
            }
            _ => {}
        }
        // After a crash the old walsender may hold the slot for a moment.
        if let Some(s) = &slot
            && s.active
        {
            let deadline = Instant::now() + Duration::from_secs(15);
            while conn.slot_state(&spec.slot).await?.is_some_and(|s| s.active) {
                if Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let copy_wanted = spec.snapshot != SnapshotMode::Never;
        if slot.is_none() {
            // A new slot (first run, or after `ebb cdc drop`): what a sink holds from an
            // earlier slot is history; the copy and the stream start over and are appended.
            // (`initial_only` uses a temporary slot each run: its tables copied so far stay.)
            let earlier = spec.snapshot != SnapshotMode::InitialOnly;
            for s in self.sinks.iter_mut().filter(|_| earlier) {
                if s.resume != Position::default() {
                    tracing::info!(sink = %s.sink.name(), "the sink holds changes of an earlier slot: a new copy is appended");
                    s.resume = Position::default();
                    s.durable = Position::default();
                }
            }
            if copy_wanted {
                // The slot's exported snapshot is where the copy and the stream meet.
                let mut exporter = ReplicationConnection::connect(&spec.source).await?;
                let temporary = spec.snapshot == SnapshotMode::InitialOnly;
                let created = exporter
                    .create_slot(&spec.slot, temporary, SnapshotAction::Export)
                    .await?;
                tracing::info!(slot = %spec.slot, consistent_point = %created.consistent_point, "slot created");
                let name = created.snapshot_name.clone().ok_or_else(|| {
                    CdcError::Data("CREATE_REPLICATION_SLOT exported no snapshot".into())
                })?;
                self.copy_tables(&infos, &name, created.consistent_point, &mut shutdown)
                    .await?;
                exporter.close().await?;
            } else {
                let created = conn
                    .create_slot(&spec.slot, false, SnapshotAction::NoExport)
                    .await?;
                tracing::info!(slot = %spec.slot, consistent_point = %created.consistent_point, "slot created");
            }
        } else if copy_wanted {
            let missing: Vec<TableInfo> = infos
                .iter()
                .filter(|t| {
                    self.sinks
                        .iter()
                        .any(|s| !s.resume.tables.contains_key(&t.name))
                })
                .cloned()
                .collect();
            if !missing.is_empty() {
                // An interrupted (or newly added) copy: a temporary slot exports a new
                // snapshot; the stream skips these tables' changes committed before it.
                let mut exporter = ReplicationConnection::connect(&spec.source).await?;
                let tmp = format!("{}_copy_{}", truncate(&spec.slot, 40), std::process::id());
                let created = exporter
                    .create_slot(&tmp, true, SnapshotAction::Export)
                    .await?;
                let name = created.snapshot_name.clone().ok_or_else(|| {
                    CdcError::Data("CREATE_REPLICATION_SLOT exported no snapshot".into())
                })?;
                self.copy_tables(&missing, &name, created.consistent_point, &mut shutdown)
                    .await?;
                exporter.close().await?;
            }
        }
        if !copy_wanted {
            for s in &mut self.sinks {
                for t in &infos {
                    s.resume.tables.entry(t.name.clone()).or_insert(0);
                }
            }
        }
        self.processed = self.min_position();
        self.ready = self.processed.clone();
        self.durable = self.processed.clone();
        self.save_checkpoint(true).await?;
        if spec.snapshot == SnapshotMode::InitialOnly {
            conn.close().await?;
            self.set_phase("stopped");
            return Ok(self.summary());
        }
        self.stream(conn, registry, keys, &mut shutdown).await
    }

    fn summary(&self) -> RunSummary {
        RunSummary {
            rows: self.rows,
            flush_lsn: Lsn(self.durable.flush_lsn),
        }
    }

    /// The position every sink holds: the smallest LSNs, the tables all have.
    fn min_position(&self) -> Position {
        let mut it = self.sinks.iter().map(|s| &s.durable);
        let Some(first) = it.next() else {
            return Position::default();
        };
        let mut p = first.clone();
        for d in it {
            p.commit_lsn = p.commit_lsn.min(d.commit_lsn);
            p.flush_lsn = p.flush_lsn.min(d.flush_lsn);
            p.tables.retain(|t, _| d.tables.contains_key(t));
        }
        p
    }

    async fn save_checkpoint(&mut self, snapshot_done: bool) -> Result<(), CdcError> {
        let position = self.min_position();
        self.store
            .save(
                &self.spec.name,
                &Checkpoint {
                    slot: self.spec.slot.clone(),
                    position: position.clone(),
                    snapshot_done,
                    updated_at_ms: 0,
                },
            )
            .await?;
        self.durable = position;
        let flush = Lsn(self.durable.flush_lsn);
        self.status.send_modify(|s| s.flush_lsn = flush);
        Ok(())
    }

    async fn copy_tables(
        &mut self,
        tables: &[TableInfo],
        snapshot: &str,
        lsn: Lsn,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), CdcError> {
        let plan = CopyPlan {
            snapshot: snapshot.to_string(),
            lsn,
            workers: self.spec.snapshot_workers,
            batch_rows: self.spec.max_rows,
        };
        for table in tables {
            let wanting: Vec<usize> = (0..self.sinks.len())
                .filter(|i| !self.sinks[*i].resume.tables.contains_key(&table.name))
                .collect();
            if wanting.is_empty() {
                continue;
            }
            self.set_phase(&format!("snapshot {}", table.name));
            tracing::info!(table = %table.name, %lsn, pages = table.pages, "copying table");
            let (tx, mut rx) = mpsc::channel::<Delivery>(4);
            let config = self.spec.source.clone();
            let (t, p) = (table.clone(), plan.clone());
            let copy = tokio::spawn(async move { copy_table(&config, &t, &p, tx).await });
            let mut failed = None;
            loop {
                tokio::select! {
                    d = rx.recv() => {
                        let Some(d) = d else { break };
                        self.rows += d.len() as u64;
                        let rows = self.rows;
                        self.status.send_modify(|s| s.rows = rows);
                        for i in &wanting {
                            if let Err(e) = self.sinks[*i].sink.write(&d).await {
                                failed = Some(e);
                                break;
                            }
                        }
                        if failed.is_some() {
                            break;
                        }
                    }
                    () = &mut *shutdown => {
                        failed = Some(CdcError::Data("stopped during the initial copy; the next run copies the unfinished tables again".into()));
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                copy.abort();
                return Err(e);
            }
            copy.await
                .map_err(|e| CdcError::Data(format!("copy task: {e}")))??;
            for i in wanting {
                let s = &mut self.sinks[i];
                s.resume.tables.insert(table.name.clone(), lsn.0);
                let pos = s.resume.clone();
                s.durable = s.sink.commit(&pos, true).await?;
                s.resume = s.durable.clone();
            }
            self.save_checkpoint(false).await?;
        }
        Ok(())
    }

    async fn stream(
        &mut self,
        conn: ReplicationConnection,
        registry: TypeRegistry,
        keys: HashMap<String, Vec<String>>,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<RunSummary, CdcError> {
        let spec = self.spec.clone();
        let start = Lsn(self
            .sinks
            .iter()
            .map(|s| s.resume.flush_lsn)
            .min()
            .unwrap_or(0));
        let options = PgOutputOptions::new([spec.publication.clone()]);
        let mut stream = conn.start_replication(&spec.slot, start, &options).await?;
        stream.set_status_interval(Duration::from_secs(5));
        self.set_phase("streaming");
        tracing::info!(%start, "streaming");

        let (side_tx, mut side_rx) = mpsc::channel(4);
        let side = tokio::spawn(side_task(spec.clone(), side_tx));
        let result = self
            .stream_loop(&mut stream, registry, keys, shutdown, &mut side_rx)
            .await;
        side.abort();
        let result = match result {
            Err(e @ (CdcError::Replication(_) | CdcError::Data(_))) => {
                // A walsender whose slot is invalidated is terminated: say so, not "the
                // connection closed".
                Err(explain_stream_end(&spec, e).await)
            }
            Ok(()) => {
                // Clean stop: deliver what is complete, checkpoint, end the stream.
                self.commit_sinks(&mut stream, true).await?;
                stream.stop().await?.close().await?;
                Ok(self.summary())
            }
            Err(e) => Err(e),
        };
        self.set_phase("stopped");
        result
    }

    async fn stream_loop(
        &mut self,
        stream: &mut ReplicationStream,
        registry: TypeRegistry,
        keys: HashMap<String, Vec<String>>,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        side: &mut mpsc::Receiver<SideReport>,
    ) -> Result<(), CdcError> {
        let spec = self.spec.clone();
        let mut state = StreamState {
            decoder: Decoder::new(2),
            registry,
            keys,
            tables: HashMap::new(),
            open_tx: None,
            in_stream: None,
            txs: StreamedTransactions::new(spec.memory_budget, spec.spill_dir.clone()),
            pending_rows: 0,
            pending_bytes: 0,
            pending_since: None,
            received: Lsn::ZERO,
        };
        let tick = (spec.max_latency / 2).max(Duration::from_millis(10));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_lag_warn = Instant::now() - Duration::from_secs(3600);
        loop {
            tokio::select! {
                biased;
                () = &mut *shutdown => {
                    tracing::info!("shutting down");
                    if state.open_tx.is_none() {
                        self.write_pending(&mut state).await?;
                    }
                    state.txs.clear();
                    return Ok(());
                }
                report = side.recv() => match report {
                    Some(SideReport::Lag(bytes)) => {
                        let high = bytes > spec.lag_warn_bytes;
                        self.status.send_modify(|s| {
                            s.lag_bytes = Some(bytes);
                            s.lag_warning = high;
                        });
                        metrics::gauge(metrics::SLOT_LAG_BYTES, &spec.name, bytes);
                        if high && last_lag_warn.elapsed() > Duration::from_secs(60) {
                            last_lag_warn = Instant::now();
                            tracing::warn!(slot = %spec.slot, lag_bytes = bytes, threshold = spec.lag_warn_bytes, "replication slot lag is high: PostgreSQL keeps this much WAL for ebb");
                        }
                    }
                    Some(SideReport::Error(e)) => return Err(e),
                    None => {}
                },
                event = stream.next_event() => {
                    let Some(event) = event? else {
                        return Err(CdcError::Data("the server ended the replication stream".into()));
                    };
                    match event {
                        ReplicationEvent::XLogData(x) => {
                            state.received = state.received.max(x.wal_end);
                            self.handle(&mut state, stream, &x.data).await?;
                        }
                        ReplicationEvent::Keepalive { wal_end, .. } => {
                            state.received = state.received.max(wal_end);
                            self.idle_advance(&mut state, stream, wal_end).await?;
                        }
                    }
                }
                _ = ticker.tick() => {
                    if state.open_tx.is_none() {
                        let late = state.pending_since.is_some_and(|t| t.elapsed() >= spec.max_latency);
                        if late {
                            self.write_pending(&mut state).await?;
                        }
                        if self.uncommitted || self.durable.flush_lsn < self.ready.flush_lsn {
                            self.commit_sinks(stream, false).await?;
                        }
                    }
                    let spilled = state.txs.spilled_bytes;
                    self.status.send_modify(|s| s.spilled_bytes = spilled);
                }
            }
        }
    }

    /// With nothing in flight, positions where nothing of the published tables happened
    /// (keepalives, heartbeats) can be confirmed: the slot keeps advancing.
    async fn idle_advance(
        &mut self,
        state: &mut StreamState,
        stream: &mut ReplicationStream,
        lsn: Lsn,
    ) -> Result<(), CdcError> {
        let idle = state.open_tx.is_none()
            && state.pending_rows == 0
            && !self.uncommitted
            && self.durable.flush_lsn >= self.processed.flush_lsn;
        if idle && lsn.0 > self.processed.flush_lsn {
            self.processed.flush_lsn = lsn.0;
            self.ready = self.processed.clone();
            self.commit_sinks(stream, false).await?;
        }
        Ok(())
    }

    async fn handle(
        &mut self,
        state: &mut StreamState,
        stream: &mut ReplicationStream,
        data: &Bytes,
    ) -> Result<(), CdcError> {
        if let Some(xid) = state.in_stream {
            // Data of an in-progress transaction is held as received and decoded once, at
            // its replay (Insert, Update, Delete, Truncate, Relation, Type, Message).
            if matches!(
                data.first(),
                Some(b'I' | b'U' | b'D' | b'T' | b'R' | b'Y' | b'M')
            ) {
                return state.txs.push(xid, data);
            }
        }
        let message = state
            .decoder
            .decode(data)
            .map_err(|e| CdcError::Data(format!("decoding the stream: {e}")))?;
        if let Some(xid) = state.in_stream {
            match &message {
                LogicalMessage::StreamStop => {
                    state.in_stream = None;
                    let spilled = state.txs.spilled_bytes;
                    self.status.send_modify(|s| s.spilled_bytes = spilled);
                }
                LogicalMessage::Insert(_)
                | LogicalMessage::Update(_)
                | LogicalMessage::Delete(_)
                | LogicalMessage::Truncate(_)
                | LogicalMessage::Relation(_)
                | LogicalMessage::Type(_)
                | LogicalMessage::Message(_) => state.txs.push(xid, data)?,
                _ => {}
            }
            return Ok(());
        }
        match message {
            LogicalMessage::StreamStart(s) => state.in_stream = Some(s.xid),
            LogicalMessage::StreamAbort(a) => state.txs.abort(a.xid, a.subxid),
            LogicalMessage::StreamCommit(c) => {
                let mut replay = state.txs.take(c.xid)?;
                state.open_tx = Some((c.commit_lsn, 0));
                // A replay of millions of changes takes longer than the server's
                // `wal_sender_timeout`: keep telling it we are alive.
                let mut last_reply = Instant::now();
                let mut n = 0u64;
                while let Some(m) = replay.next_message()? {
                    self.apply(state, m).await?;
                    n += 1;
                    if n % 4096 == 0 && last_reply.elapsed() >= Duration::from_secs(5) {
                        stream.send_status_update(false).await?;
                        last_reply = Instant::now();
                    }
                }
                drop(replay);
                self.committed(state, stream, c.commit_lsn, c.end_lsn)
                    .await?;
            }
            LogicalMessage::Commit(c) => {
                self.committed(state, stream, c.commit_lsn, c.end_lsn)
                    .await?;
            }
            LogicalMessage::Message(m) if !m.transactional && m.prefix == HEARTBEAT_PREFIX => {
                self.idle_advance(state, stream, m.lsn).await?;
            }
            other => self.apply(state, other).await?,
        }
        Ok(())
    }

    /// One message of a committed (or committing) transaction.
    async fn apply(
        &mut self,
        state: &mut StreamState,
        message: LogicalMessage,
    ) -> Result<(), CdcError> {
        match message {
            LogicalMessage::Begin(b) => state.open_tx = Some((b.final_lsn, 0)),
            LogicalMessage::Relation(r) => {
                let name = format!(
                    "{}.{}",
                    if r.namespace.is_empty() {
                        "pg_catalog"
                    } else {
                        &r.namespace
                    },
                    r.name
                );
                let keys = state.keys.get(&name).map(Vec::as_slice);
                let changes = TableChanges::from_relation(&r, &state.registry, keys);
                if let Some(old) = state.tables.get(&r.oid)
                    && old.columns() != changes.columns()
                {
                    tracing::info!(table = %changes.name, columns = changes.columns().len(), "table schema changed");
                    // Rows of the old shape go out first.
                    self.write_pending(state).await?;
                }
                if state
                    .tables
                    .get(&r.oid)
                    .is_none_or(|old| old.columns() != changes.columns())
                {
                    state.tables.insert(r.oid, changes);
                }
            }
            LogicalMessage::Type(t) if state.registry.get(t.oid).is_none() => {
                state.registry.insert(
                    t.oid,
                    ebb_postgres::types::CustomType::Other { name: t.name },
                );
            }
            LogicalMessage::Insert(m) => {
                let (lsn, index) = next_index(state)?;
                let table = table_for(state, m.relation_id)?;
                table.insert(&m.new, lsn, index);
                self.after_change(state).await?;
            }
            LogicalMessage::Update(m) => {
                let (lsn, index) = next_index(state)?;
                let table = table_for(state, m.relation_id)?;
                table.update(m.old.as_ref(), &m.new, lsn, index);
                self.after_change(state).await?;
            }
            LogicalMessage::Delete(m) => {
                let (lsn, index) = next_index(state)?;
                let table = table_for(state, m.relation_id)?;
                table.delete(&m.old, lsn, index);
                self.after_change(state).await?;
            }
            LogicalMessage::Truncate(t) => {
                // Rows gathered before it go out first: sinks see them in order.
                self.write_pending(state).await?;
                for id in &t.relation_ids {
                    let Some(table) = state.tables.get(id).map(|t| t.name.to_string()) else {
                        continue;
                    };
                    let (lsn, index) = next_index(state)?;
                    let truncation = Truncation {
                        table,
                        lsn: lsn.0,
                        seq: seq(lsn, index),
                        cascade: t.cascade,
                        restart_identity: t.restart_identity,
                    };
                    tracing::info!(table = %truncation.table, %lsn, "table truncated");
                    for s in &mut self.sinks {
                        if !s.resume.holds(&truncation.table, lsn.0) {
                            s.sink.truncate(&truncation).await?;
                        }
                    }
                }
                self.uncommitted = true;
            }
            _ => {}
        }
        Ok(())
    }

    async fn after_change(&mut self, state: &mut StreamState) -> Result<(), CdcError> {
        state.pending_rows += 1;
        state.pending_since.get_or_insert_with(Instant::now);
        if state.pending_rows >= self.spec.max_rows
            || state
                .tables
                .values()
                .map(TableChanges::bytes)
                .sum::<usize>()
                >= self.spec.max_bytes
        {
            self.write_pending(state).await?;
        }
        Ok(())
    }

    async fn committed(
        &mut self,
        state: &mut StreamState,
        stream: &mut ReplicationStream,
        commit_lsn: Lsn,
        end_lsn: Lsn,
    ) -> Result<(), CdcError> {
        state.open_tx = None;
        self.processed.commit_lsn = self.processed.commit_lsn.max(commit_lsn.0);
        self.processed.flush_lsn = self.processed.flush_lsn.max(end_lsn.0);
        self.status.send_modify(|s| s.last_lsn = commit_lsn);
        if state.pending_rows == 0 {
            // Nothing of this transaction waits: its boundary is complete.
            self.ready = self.processed.clone();
        }
        let due = state.pending_rows >= self.spec.max_rows
            || state
                .pending_since
                .is_some_and(|t| t.elapsed() >= self.spec.max_latency)
            || self.uncommitted;
        if due {
            self.write_pending(state).await?;
            self.commit_sinks(stream, false).await?;
        }
        Ok(())
    }

    /// Hands every gathered change to the sinks (not yet durable).
    async fn write_pending(&mut self, state: &mut StreamState) -> Result<(), CdcError> {
        if state.pending_rows == 0 {
            if state.open_tx.is_none() {
                self.ready = self.processed.clone();
            }
            return Ok(());
        }
        for table in state.tables.values_mut() {
            let Some(d) = table.finish()? else { continue };
            self.rows += d.len() as u64;
            for s in &mut self.sinks {
                if s.may_hold(&d) {
                    let resume = s.resume.clone();
                    if let Some(kept) = d.filtered(|t, lsn| !resume.holds(t, lsn)) {
                        s.sink.write(&kept).await?;
                    }
                } else {
                    s.sink.write(&d).await?;
                }
            }
        }
        metrics::counter(
            metrics::CHANGES_DELIVERED,
            &self.spec.name,
            state.pending_rows as u64,
        );
        state.pending_rows = 0;
        state.pending_bytes = 0;
        state.pending_since = None;
        // Every transaction up to the last commit seen is now written (the open one, if
        // any, is only partly written and not covered).
        self.ready = self.processed.clone();
        self.uncommitted = true;
        let rows = self.rows;
        self.status.send_modify(|s| s.rows = rows);
        Ok(())
    }

    /// Commits every sink at the last boundary whose changes are all written, then
    /// checkpoints and confirms what all of them hold.
    async fn commit_sinks(
        &mut self,
        stream: &mut ReplicationStream,
        force: bool,
    ) -> Result<(), CdcError> {
        let processed = self.ready.clone();
        for s in &mut self.sinks {
            let pos = s.position_for(&processed);
            s.durable = s.sink.commit(&pos, force).await?;
        }
        self.uncommitted = false;
        let before = self.durable.flush_lsn;
        let now = self.min_position();
        if now.flush_lsn > before || now.commit_lsn > self.durable.commit_lsn {
            self.save_checkpoint(true).await?;
            let flush = Lsn(self.durable.flush_lsn);
            let (write, _, _) = stream.positions();
            stream.set_positions(write.max(flush), flush, flush);
            stream.send_status_update(false).await?;
        }
        Ok(())
    }
}

struct StreamState {
    decoder: Decoder,
    registry: TypeRegistry,
    keys: HashMap<String, Vec<String>>,
    tables: HashMap<u32, TableChanges>,
    /// Commit LSN and next change index of the transaction being applied.
    open_tx: Option<(Lsn, u64)>,
    /// The streamed transaction whose block is open.
    in_stream: Option<u32>,
    txs: StreamedTransactions,
    pending_rows: usize,
    pending_bytes: usize,
    pending_since: Option<Instant>,
    received: Lsn,
}

fn next_index(state: &mut StreamState) -> Result<(Lsn, u64), CdcError> {
    let (lsn, index) = state
        .open_tx
        .as_mut()
        .ok_or_else(|| CdcError::Data("a change outside a transaction".into()))?;
    let i = *index;
    *index += 1;
    Ok((*lsn, i))
}

fn table_for(state: &mut StreamState, oid: u32) -> Result<&mut TableChanges, CdcError> {
    state.tables.get_mut(&oid).ok_or_else(|| {
        CdcError::Data(format!(
            "a change of relation {oid} before its Relation message"
        ))
    })
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The error to report when the stream failed with `e`: the slot's invalidation when
/// that is what ended it.
async fn explain_stream_end(spec: &PipelineSpec, e: CdcError) -> CdcError {
    let lost = async {
        let mut conn = ReplicationConnection::connect(&spec.source).await.ok()?;
        // The checkpointer marks the slot lost right after it ends the walsender.
        for _ in 0..20 {
            let state = conn.slot_state(&spec.slot).await.ok()?;
            if state.as_ref().and_then(|s| s.wal_status.as_deref()) == Some("lost") {
                return Some(true);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(false)
    };
    match tokio::time::timeout(Duration::from_secs(10), lost).await {
        Ok(Some(true)) => CdcError::SlotInvalidated {
            slot: spec.slot.clone(),
            pipeline: spec.name.clone(),
        },
        _ => e,
    }
}

/// Heartbeats and lag, on a connection of their own.
async fn side_task(spec: PipelineSpec, out: mpsc::Sender<SideReport>) {
    let mut conn = match ReplicationConnection::connect(&spec.source).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no side connection: no heartbeats or lag");
            return;
        }
    };
    let mut next_lag = Instant::now();
    let mut next_heartbeat = Instant::now() + spec.heartbeat.unwrap_or(Duration::MAX / 4);
    loop {
        let now = Instant::now();
        if now >= next_lag {
            next_lag = now + spec.lag_interval;
            match source::slot_lag(&mut conn, &spec.slot).await {
                Ok(Some(lag)) if lag.wal_status.as_deref() == Some("lost") => {
                    let _ = out
                        .send(SideReport::Error(CdcError::SlotInvalidated {
                            slot: spec.slot.clone(),
                            pipeline: spec.name.clone(),
                        }))
                        .await;
                    return;
                }
                Ok(Some(lag)) => {
                    if let Some(bytes) = lag.lag_bytes
                        && out.send(SideReport::Lag(bytes)).await.is_err()
                    {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "measuring slot lag failed"),
            }
        }
        if let Some(every) = spec.heartbeat
            && now >= next_heartbeat
        {
            next_heartbeat = now + every;
            let sql = format!(
                "SELECT pg_catalog.pg_logical_emit_message(false, {}, '')",
                literal(HEARTBEAT_PREFIX)
            );
            if let Err(e) = conn.simple_query(&sql).await {
                tracing::debug!(error = %e, "heartbeat failed");
            }
        }
        let wake = next_lag.min(next_heartbeat);
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
    }
}

/// What `ebb cdc status` shows of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStatus {
    /// The slot's state and lag; `None` when there is no slot.
    pub slot: Option<source::SlotLag>,
    /// The last checkpoint.
    pub checkpoint: Option<Checkpoint>,
}

/// The slot's state and the checkpoint of a pipeline.
pub async fn pipeline_status<S: CheckpointStore>(
    spec: &PipelineSpec,
    store: &S,
) -> Result<PipelineStatus, CdcError> {
    let checkpoint = store.load(&spec.name).await?;
    let mut conn = ReplicationConnection::connect(&spec.source).await?;
    let slot = source::slot_lag(&mut conn, &spec.slot).await?;
    conn.close().await?;
    Ok(PipelineStatus { slot, checkpoint })
}

/// The tables each sink holds copies of, for tests and status.
pub fn copied_tables(position: &Position) -> BTreeMap<String, Lsn> {
    position
        .tables
        .iter()
        .map(|(t, l)| (t.clone(), Lsn(*l)))
        .collect()
}
