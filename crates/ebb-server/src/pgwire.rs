//! `ebb metrics serve`: the project's metrics over the PostgreSQL wire protocol, so `psql`
//! and BI tools can ask for them in SQL.
//!
//! Each metric is a table named after it ([`MetricTable`]): a column per dimension it can be
//! grouped by and a column with its value. A query reads the dimension columns it wants and
//! the metric is grouped by exactly those, by the same compiler (and on the same warehouse)
//! as `ebb metrics query`, so the numbers are the CLI's:
//!
//! ```sql
//! select metric_time__month, account__region, revenue from revenue order by 1, 2;
//! ```
//!
//! SQL runs in DataFusion over those tables. The simple query protocol is served (what psql
//! and most drivers' plain `execute` use); `SET`, `BEGIN`, `COMMIT`, `ROLLBACK` are
//! accepted and do nothing, since metrics are read-only. Connections need no password: bind
//! to a local address, or put the endpoint behind something that authenticates.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::DFParser;
use ebb_core::project::Project;
use ebb_engine::metrics::MetricsLayer;
use ebb_engine::metrics::table::MetricTable;
use ebb_engine::models::Models;
use futures::{Sink, stream};
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use tokio::net::TcpListener;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Engine(#[from] ebb_engine::EngineError),
    #[error("registering metric tables: {0}")]
    Register(String),
}

/// A bound, ready endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    handlers: Arc<Handlers>,
    metrics: Vec<String>,
}

impl MetricsServer {
    /// Opens the project's warehouses, registers a table per metric and binds `listen`.
    /// The project lives as long as the process (the tables hold on to it).
    pub async fn bind(project: Project, listen: &str) -> Result<MetricsServer, ServeError> {
        let project: &'static Project = Box::leak(Box::new(project));
        let models: &'static Models<'static> = Box::leak(Box::new(Models::open(project).await?));
        let layer: &'static MetricsLayer<'static, 'static> =
            Box::leak(Box::new(MetricsLayer::new(models)));
        let ctx =
            SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
        let mut metrics = Vec::new();
        for m in layer.graph().metrics() {
            let name = m.name.value.clone();
            // One metric that cannot be planned (say, a model's SQL fails) leaves the others up.
            let table = match MetricTable::new(layer, &name).await {
                Ok(t) => t,
                Err(err) => {
                    tracing::warn!(metric = %name, error = %err, "metric not served");
                    continue;
                }
            };
            ctx.register_table(name.as_str(), Arc::new(table))
                .map_err(|e| ServeError::Register(format!("{name}: {e}")))?;
            metrics.push(name);
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: listen.to_string(),
                source,
            })?;
        Ok(MetricsServer {
            listener,
            handlers: Arc::new(Handlers {
                query: Arc::new(QueryHandler { ctx }),
            }),
            metrics,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The metric tables served.
    pub fn metrics(&self) -> &[String] {
        &self.metrics
    }

    /// Accepts connections until the task is dropped.
    pub async fn run(self) {
        loop {
            let (socket, peer) = match self.listener.accept().await {
                Ok(s) => s,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a connection failed");
                    continue;
                }
            };
            let handlers = Arc::clone(&self.handlers);
            tokio::spawn(async move {
                if let Err(err) = pgwire::tokio::process_socket(socket, None, handlers).await {
                    tracing::info!(peer = %peer, error = %err, "connection ended with an error");
                }
            });
        }
    }
}

/// Serves the project's metrics on `listen` until Ctrl-C.
pub async fn serve(project: &Project, listen: &str) -> Result<(), ServeError> {
    let server = MetricsServer::bind(project.clone(), listen).await?;
    let addr = server
        .local_addr()
        .map_or_else(|_| listen.to_string(), |a| a.to_string());
    let (host, port) = addr.rsplit_once(':').unwrap_or((&addr, "5433"));
    println!(
        "Serving {} metric tables on {addr}\n  psql -h {host} -p {port} -c 'select * from {} limit 5'",
        server.metrics().len(),
        server.metrics().first().map_or("revenue", String::as_str)
    );
    tokio::select! {
        () = server.run() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

#[derive(Debug)]
struct Handlers {
    query: Arc<QueryHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.query)
    }
}

struct QueryHandler {
    ctx: SessionContext,
}

impl Debug for QueryHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryHandler").finish_non_exhaustive()
    }
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message,
    )))
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: pgwire::api::store::PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = DFParser::parse_sql(query)
            .map_err(|e| user_error("42601", format!("syntax error: {e}")))?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut out = Vec::new();
        for statement in statements {
            let sql = statement.to_string();
            let first = sql
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            // Session settings and transactions: accepted, nothing to do for read-only metrics.
            if matches!(
                first.as_str(),
                "SET" | "BEGIN" | "START" | "COMMIT" | "ROLLBACK" | "DISCARD" | "RESET"
            ) {
                out.push(Response::Execution(Tag::new(&first)));
                continue;
            }
            let df = self
                .ctx
                .sql(&sql)
                .await
                .map_err(|e| user_error("42000", e.strip_backtrace()))?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            let batches = df
                .collect()
                .await
                .map_err(|e| user_error("XX000", e.strip_backtrace()))?;
            out.push(Response::Query(encode(&schema, &batches)?));
        }
        Ok(out)
    }
}

/// Arrow batches as text-format data rows.
fn encode(schema: &Arc<Schema>, batches: &[RecordBatch]) -> PgWireResult<QueryResponse> {
    let fields: Vec<FieldInfo> = schema
        .fields()
        .iter()
        .map(|f| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                FieldFormat::Text,
            )
        })
        .collect();
    let fields = Arc::new(fields);
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| user_error("XX000", e.to_string()))?;
        for row in 0..batch.num_rows() {
            for (col, formatter) in batch.columns().iter().zip(&formatters) {
                let value = if col.is_null(row) {
                    None
                } else {
                    Some(text(col.data_type(), formatter.value(row).to_string()))
                };
                encoder.encode_field(&value)?;
            }
            rows.push(Ok(encoder.take_row()));
        }
    }
    Ok(QueryResponse::new(fields, stream::iter(rows)))
}

/// A value's text as PostgreSQL prints it.
fn text(ty: &DataType, value: String) -> String {
    match ty {
        DataType::Boolean => if value == "true" { "t" } else { "f" }.into(),
        DataType::Timestamp(..) => value.replacen('T', " ", 1),
        _ => value,
    }
}

fn pg_type(ty: &DataType) -> Type {
    match ty {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal128(..) | DataType::Decimal256(..) => Type::NUMERIC,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        _ => Type::TEXT,
    }
}
