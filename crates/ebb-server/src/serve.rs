//! `ebb serve`: the HTTP API, the scheduler and the workers of one process, and its
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ebb_core::project::Project;
use ebb_engine::metrics::MetricsLayer;
use ebb_engine::models::Models;
use ebb_postgres::replication::ReplicationConnection;
use ebb_state::StateStore;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::api::{self, AppState, prom::Prom};
use crate::worker::{self, Leases};

/// How one `ebb serve` process runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `host:port` of the HTTP API.
    pub listen: String,
    /// Runs this process executes at once.
    pub workers: usize,
    /// The name leases carry; default `HOSTNAME-PID`.
    pub worker_id: Option<String>,
    pub leases: Leases,
    /// Whether this process fires schedules (every process may: each instant fires once).
    pub scheduler: bool,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            listen: "127.0.0.1:8080".into(),
            workers: 2,
            worker_id: None,
            leases: Leases::default(),
            scheduler: true,
        }
    }
}

/// Why `ebb serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}; pass another --listen address")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Engine(#[from] ebb_engine::EngineError),
    #[error("the HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
}

/// A bound server, not yet serving: its address is known (port 0 picks a free one).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    options: ServeOptions,
}

impl Server {
    /// Opens the project's models and binds the API's address. The project lives as long
    /// as the process.
    pub async fn bind(
        project: Project,
        store: StateStore,
        options: ServeOptions,
    ) -> Result<Server, ServeError> {
        let project: &'static Project = Box::leak(Box::new(project));
        let models: &'static Models<'static> = Box::leak(Box::new(Models::open(project).await?));
        let metrics: &'static MetricsLayer<'static, 'static> =
            Box::leak(Box::new(MetricsLayer::new(models)));
        let listener =
            TcpListener::bind(&options.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: options.listen.clone(),
                    source,
                })?;
        let worker_id = options.worker_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "ebb".into());
            format!("{host}-{}", std::process::id())
        });
        let state = Arc::new(AppState {
            store,
            project,
            metrics,
            prom: Prom::default(),
            ready: AtomicBool::new(true),
            wake: Notify::new(),
            worker_id,
        });
        Ok(Server {
            listener,
            state,
            options,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `stop` resolves (`ebb serve` passes SIGTERM or Ctrl-C), then shuts down
    /// gracefully: `/readyz` turns 503, the scheduler stops, workers stop claiming, runs in
    /// flight get the grace period and are released after it, open requests finish.
    pub async fn run(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let (shutdown_tx, shutdown) = watch::channel(false);
        let state = self.state;
        let mut tasks = tokio::task::JoinSet::new();
        for slot in 0..self.options.workers.max(1) {
            tasks.spawn(worker::run(
                state.clone(),
                slot,
                self.options.leases,
                shutdown.clone(),
            ));
        }
        if self.options.scheduler {
            tasks.spawn(crate::schedule::run(state.clone(), shutdown.clone()));
        }
        tasks.spawn(measure_slot_lag(state.clone(), shutdown.clone()));
        tasks.spawn(crate::relay::run(state.clone(), shutdown.clone()));

        let router = api::router(state.clone());
        let signal_state = state.clone();
        let http_shutdown = {
            let mut shutdown = shutdown.clone();
            async move {
                let _ = shutdown.wait_for(|s| *s).await;
            }
        };
        let stopper = tokio::spawn(async move {
            stop.await;
            tracing::info!("shutting down: no new runs; runs in flight get the grace period");
            signal_state.ready.store(false, Ordering::Relaxed);
            let _ = shutdown_tx.send(true);
        });
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(http_shutdown)
            .await;
        while tasks.join_next().await.is_some() {}
        stopper.abort();
        served.map_err(ServeError::Http)
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// How often the replication slots' lag is measured for `/metrics`.
const LAG_EVERY: Duration = Duration::from_secs(15);

/// Measures the WAL each CDC pipeline's slot holds, in the background.
async fn measure_slot_lag(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let specs: Vec<ebb_cdc::pipeline::PipelineSpec> = state
        .project
        .pipelines
        .iter()
        .filter_map(|p| {
            ebb_cdc::pipeline::PipelineSpec::from_config(&p.name, &p.config, &state.project.root)
                .ok()
        })
        .collect();
    if specs.is_empty() {
        return;
    }
    loop {
        for spec in &specs {
            let lag = async {
                let mut conn = ReplicationConnection::connect(&spec.source).await.ok()?;
                let lag = ebb_cdc::source::slot_lag(&mut conn, &spec.slot)
                    .await
                    .ok()?;
                let _ = conn.close().await;
                lag.and_then(|l| l.lag_bytes)
            };
            let lag = tokio::time::timeout(Duration::from_secs(5), lag)
                .await
                .ok()
                .flatten();
            state.prom.set_slot_lag(&spec.name, lag);
        }
        tokio::select! {
            _ = tokio::time::sleep(LAG_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}
