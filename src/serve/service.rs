//! The Flight SQL service: statements, prepared statements with parameters, and catalog metadata
//! over the lake's tables and detection views, each query under its own memory pool and deadline.
//!
//! Statement handles are stateless ([`Handle`]): the client holds the SQL and its bound parameters,
//! sealed with the server's key, and each execution plans them again against the lake as it is
//! then. Planning and running both take one of the `--max-queries` slots, and a panic in either is
//! an error for its client only.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementSubstraitPlan, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::{Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket};
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::execution::context::SessionState;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::SessionContext;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{Auth, Principal};
use super::ipc::IpcError;
use super::statement::{self, Handle, HandleError, HandleKey, StatementError};
use crate::detect::Catalog;
use crate::engine::{self, Engine, EngineOptions};
use crate::lake::{Lake, LakeError};

/// Per-query limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Each query's own memory pool, in bytes; over it, sorts and aggregations spill and
    /// anything else fails the query.
    pub memory: Option<usize>,
    /// Whether `memory` was given (`--memory-limit`) rather than defaulted. Only a given limit
    /// tunes the session for small pools (see [`engine::session_with`]); a default one, a
    /// fraction of the machine's memory, leaves the session as it is without a limit.
    pub explicit_memory: bool,
    /// From the start of planning to the last batch sent.
    pub timeout: Duration,
    /// Queries that may run at once; others wait for a slot (within their timeout).
    pub max_queries: usize,
}

type DoGetStream = <LakeService as FlightService>::DoGetStream;

/// Serves one lake.
pub struct LakeService {
    lake: Lake,
    catalog: Catalog,
    limits: Limits,
    auth: Arc<Auth>,
    /// The session over the lake as of a [`Lake::version`]; rebuilt when the lake has new commits or runs.
    snapshot: tokio::sync::Mutex<Option<((i64, i64), SessionContext)>>,
    queries: AtomicU64,
    /// One permit per query being planned or run.
    slots: Arc<tokio::sync::Semaphore>,
    /// Seals the statement handles clients hold.
    handle_key: HandleKey,
}

impl LakeService {
    pub fn new(lake: Lake, catalog: Catalog, limits: Limits, auth: Arc<Auth>) -> Self {
        let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_queries.max(1)));
        LakeService {
            lake,
            catalog,
            limits,
            auth,
            snapshot: tokio::sync::Mutex::new(None),
            queries: AtomicU64::new(0),
            slots,
            handle_key: HandleKey::random(),
        }
    }

    /// The handle in a client's bytes, if this server sealed it.
    fn handle(&self, bytes: &[u8]) -> Result<Handle, Status> {
        Ok(Handle::decode(bytes, &self.handle_key)?)
    }

    /// A query slot, waited for until `deadline`.
    async fn slot(&self, deadline: tokio::time::Instant) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        let slot = self.by(deadline, "waiting for a query slot (--max-queries)", async { Ok(self.slots.clone().acquire_owned().await) }).await?;
        Ok(slot.expect("the semaphore is never closed"))
    }

    /// The deadline of work starting now.
    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.limits.timeout
    }

    /// Builds the session once before serving, so a detection that does not load (not a query,
    /// a bad table) stops the server at start instead of failing every client's query.
    pub async fn warm_up(&self) -> Result<(), SessionError> {
        self.session().await.map(drop)
    }

    /// The session over the lake as it is now.
    async fn session(&self) -> Result<SessionContext, SessionError> {
        let version = self.lake.version()?;
        let mut cached = self.snapshot.lock().await;
        if let Some((v, ctx)) = cached.as_ref()
            && *v == version
        {
            return Ok(ctx.clone());
        }
        let memory_limit = if self.limits.explicit_memory { self.limits.memory } else { None };
        let opts = EngineOptions { memory_limit, engine: Engine::InProcess, as_of: None };
        let ctx = crate::detect::runner::session(&self.lake, &self.catalog, &opts).await?;
        *cached = Some((version, ctx.clone()));
        Ok(ctx)
    }

    /// A session state for one query: the lake's tables, with a memory pool of its own.
    async fn query_state(&self) -> Result<SessionState, Status> {
        let ctx = self.session().await?;
        let state = ctx.state();
        let Some(limit) = self.limits.memory else { return Ok(state) };
        let runtime = RuntimeEnvBuilder::from_runtime_env(&ctx.runtime_env())
            .with_memory_pool(engine::memory_pool(limit))
            .build_arc()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(SessionStateBuilder::new_from_existing(state).with_runtime_env(runtime).build())
    }

    /// The logical plan of a client's statement, refused unless it only reads.
    async fn logical_plan(&self, state: &SessionState, sql: &str) -> Result<datafusion::logical_expr::LogicalPlan, Status> {
        let sql = statement::number_placeholders(sql)?;
        let plan = state.create_logical_plan(&sql).await.map_err(|e| status_of(&e))?;
        statement::check_read_only(&plan)?;
        Ok(plan)
    }

    /// Plans a statement with its bound parameters, by `deadline` (the caller holds a slot).
    async fn plan(&self, handle: &Handle, deadline: tokio::time::Instant) -> Result<Planned, Status> {
        let work = async {
            let state = self.query_state().await?;
            let mut plan = self.logical_plan(&state, &handle.sql).await?;
            if let Some(values) = handle.values()? {
                plan = statement::bind(plan, values)?;
            }
            let physical = state.create_physical_plan(&plan).await.map_err(|e| status_of(&e))?;
            // What the client is told and sent: views as plain types, dictionaries hydrated.
            let plain = Arc::new(statement::client_schema(&physical.schema()));
            let schema = FlightDataEncoderBuilder::new().with_schema(plain.clone()).build(futures::stream::empty()).known_schema().unwrap_or(plain);
            Ok(Planned { state, physical, schema })
        };
        self.by(deadline, "planning", caught(work)).await
    }

    /// `work`, unless `deadline` comes first.
    async fn by<T>(&self, deadline: tokio::time::Instant, what: &str, work: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
        match tokio::time::timeout_at(deadline, work).await {
            Ok(done) => done,
            Err(_) => Err(Status::deadline_exceeded(format!("{what} took longer than the query timeout ({})", human(self.limits.timeout)))),
        }
    }

    /// The log of a new query.
    fn query_log<T>(&self, sql: &str, request: &Request<T>) -> QueryLog {
        let id = self.queries.fetch_add(1, Ordering::Relaxed) + 1;
        QueryLog { id, who: who(request), sql: sql.to_string(), started: Instant::now() }
    }

    /// The flight of a statement: its schema and one endpoint whose ticket runs it.
    async fn statement_info(&self, handle: &Handle, ticket: Vec<u8>, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let deadline = self.deadline();
        let planned = async {
            let _slot = self.slot(deadline).await?;
            self.plan(handle, deadline).await
        };
        let planned = planned.await.inspect_err(|status| self.query_log(&handle.sql, &request).refused(status))?;
        flight_info(&planned.schema, ticket, request.into_inner())
    }

    /// Runs a statement and streams its results, logging how it ended. The query runs in a task of
    /// its own that stops it at the deadline whether or not the client is reading, and when the
    /// client goes away; the client reads from a channel of two batches.
    async fn execute<T>(&self, handle: Handle, request: &Request<T>) -> Result<Response<DoGetStream>, Status> {
        // Logs the query if the client goes away before it runs (this future is then dropped).
        let mut pending = Pending(Some(self.query_log(&handle.sql, request)));
        let log = pending.0.as_ref().expect("set");
        let deadline = tokio::time::Instant::from_std(log.started + self.limits.timeout);
        let slot = self.slot(deadline).await.inspect_err(|status| pending.refused(status))?;
        let planned = self.plan(&handle, deadline).await.inspect_err(|status| pending.refused(status))?;
        let task = Arc::new(TaskContext::from(&planned.state));
        let batches = datafusion::physical_plan::execute_stream(planned.physical, task).map_err(|e| status_of(&e)).inspect_err(|status| pending.refused(status))?;
        let log = pending.0.take().expect("set until here");
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        // Until the run says how it ended: a run that never says (it panicked) must not look complete.
        let ending = Arc::new(std::sync::Mutex::new(Some(Status::internal("the query stopped unexpectedly; see the server's log"))));
        let run = Run { schema: planned.schema.clone(), deadline, timeout: self.limits.timeout, log, ending: ending.clone(), _slot: slot };
        tokio::spawn(run.drive(batches, tx));
        let results = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|batch| (Ok(batch), rx)) });
        // After the last batch: the error that ended the query early, if one did.
        let ending = futures::stream::once(async move { ending.lock().expect("no panics while held").take() })
            .filter_map(|e: Option<Status>| async move { e.map(|s| Err(FlightError::Tonic(Box::new(s)))) });
        let flight = FlightDataEncoderBuilder::new().with_schema(planned.schema).build(results.chain(ending)).map_err(Status::from);
        Ok(Response::new(Box::pin(flight)))
    }

    /// The lake's catalog, schemas and tables, for the metadata calls.
    async fn tables(&self) -> Result<Vec<(String, String, String, &'static str, SchemaRef)>, Status> {
        let ctx = self.session().await?;
        let mut out = Vec::new();
        for catalog_name in ctx.catalog_names() {
            let Some(catalog) = ctx.catalog(&catalog_name) else { continue };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else { continue };
                for table_name in schema.table_names() {
                    let Some(table) = schema.table(&table_name).await.map_err(|e| status_of(&e))? else { continue };
                    let kind = match table.table_type() {
                        TableType::Base => "TABLE",
                        TableType::View => "VIEW",
                        TableType::Temporary => "LOCAL TEMPORARY",
                    };
                    let plain = Arc::new(statement::client_schema(&table.schema()));
                    out.push((catalog_name.clone(), schema_name.clone(), table_name, kind, plain));
                }
            }
        }
        Ok(out)
    }
}

/// Why the session over the lake cannot be built: the lake's records cannot be read, or a
/// detection does not load.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Detections(#[from] crate::detect::runner::RunError),
}

/// A client's statement refused: `PERMISSION_DENIED` for one that would write, else
/// `INVALID_ARGUMENT`.
impl From<StatementError> for Status {
    fn from(e: StatementError) -> Status {
        match e {
            StatementError::NotReadOnly(_) => Status::permission_denied(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        }
    }
}

impl From<HandleError> for Status {
    fn from(e: HandleError) -> Status {
        Status::invalid_argument(e.to_string())
    }
}

/// The server's own failure: `INTERNAL`.
impl From<SessionError> for Status {
    fn from(e: SessionError) -> Status {
        Status::internal(e.to_string())
    }
}

struct Planned {
    state: SessionState,
    physical: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
}

/// One batch in the schema the client was told: view columns cast to their plain types.
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { arrow::compute::cast(c, f.data_type()) })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// A DataFusion error as the status a client sees. Running out of file descriptors or memory is
/// `RESOURCE_EXHAUSTED` (retryable), never `INTERNAL`.
fn status_of(e: &DataFusionError) -> Status {
    let msg = e.strip_backtrace();
    if let Some(cause) = out_of_files(e) {
        return Status::resource_exhausted(format!(
            "the server has too many files open ({cause}); retry the query when fewer queries are running: {msg}"
        ));
    }
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(format!("the query went over its memory limit (--memory-limit): {msg}")),
        DataFusionError::SQL(..) | DataFusionError::Plan(_) | DataFusionError::SchemaError(..) | DataFusionError::NotImplemented(_) => {
            Status::invalid_argument(msg)
        }
        _ => Status::internal(msg),
    }
}

/// `Some(the OS error)` when `e` comes from running out of file descriptors (EMFILE, ENFILE),
/// however deeply it is wrapped.
fn out_of_files(e: &DataFusionError) -> Option<String> {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(EMFILE | ENFILE))
        {
            return Some(io.to_string());
        }
        cur = err.source();
    }
    let text = e.to_string();
    ["Too many open files", "os error 24", "os error 23"].iter().any(|m| text.contains(m)).then(|| "Too many open files".to_string())
}

/// `work`, with a panic in it turned into an `INTERNAL` error for this client (logged with the
/// panic's message by the panic hook).
async fn caught<T>(work: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(work).catch_unwind().await.unwrap_or_else(|p| Err(panicked(&*p)))
}

fn panicked(payload: &(dyn std::any::Any + Send)) -> Status {
    Status::internal(format!("the query failed inside the query engine ({}); the server goes on", super::ipc::panic_text(payload)))
}

/// What the log says about one query.
struct QueryLog {
    id: u64,
    who: String,
    sql: String,
    started: Instant,
}

impl QueryLog {
    fn line(&self, outcome: &str) {
        let sql: String = self.sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let sql = match sql.char_indices().nth(160) {
            Some((cut, _)) => format!("{}…", &sql[..cut]),
            None => sql,
        };
        let line = format!("query {} ({}): {outcome} after {} ms: {sql}\n", self.id, self.who, self.started.elapsed().as_millis());
        // The SQL and the outcome are a client's words: no control character reaches the log raw.
        let line = format!("{}\n", crate::output::escape_controls(line.trim_end_matches('\n')));
        // One write: stderr is unbuffered, and `eprintln!` writes each piece of its format on its
        // own, so a reader of the log could see half a line.
        use std::io::Write as _;
        std::io::stderr().lock().write_all(line.as_bytes()).ok();
    }

    fn refused(&self, status: &Status) {
        self.line(&format!("refused: {}", status.message()));
    }
}

fn who<T>(request: &Request<T>) -> String {
    let principal = request.extensions().get::<Principal>().map_or_else(|| "anonymous".to_string(), Principal::to_string);
    match request.remote_addr() {
        Some(peer) => format!("{principal} from {peer}"),
        None => principal,
    }
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{} s", d.as_secs()) } else { format!("{} ms", d.as_millis()) }
}

/// A query not yet running: if it is dropped still holding its log, the client left first.
struct Pending(Option<QueryLog>);

impl Pending {
    fn refused(&mut self, status: &Status) {
        if let Some(log) = self.0.take() {
            log.refused(status);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(log) = self.0.take() {
            log.line("abandoned before it ran: the client went away");
        }
    }
}

/// One query being run, from its first batch to how it ended.
struct Run {
    schema: SchemaRef,
    deadline: tokio::time::Instant,
    timeout: Duration,
    log: QueryLog,
    /// Set before the channel closes when the query ends early: the client's last message.
    ending: Arc<std::sync::Mutex<Option<Status>>>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Run {
    /// A run that panics still leaves a line in the log (the client is told to look there).
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.log.line("failed: the query panicked");
        }
    }
}

enum Ending {
    Done,
    Timeout,
    ClientGone,
    Failed(Status),
}

impl Run {
    /// Sends the query's batches to the client until the last one, the deadline, an error, or
    /// the client going away. Dropping the stream at the end stops the query's DataFusion tasks.
    async fn drive(self, mut batches: SendableRecordBatchStream, tx: tokio::sync::mpsc::Sender<RecordBatch>) {
        use futures::FutureExt;
        let mut rows = 0u64;
        let sleep = tokio::time::sleep_until(self.deadline);
        tokio::pin!(sleep);
        let ending = loop {
            let next = tokio::select! {
                _ = &mut sleep => break Ending::Timeout,
                _ = tx.closed() => break Ending::ClientGone,
                next = std::panic::AssertUnwindSafe(batches.next()).catch_unwind() => next,
            };
            let batch = match next {
                Err(panic) => break Ending::Failed(panicked(&*panic)),
                Ok(next) => next,
            };
            let batch = match batch {
                None => break Ending::Done,
                Some(Err(e)) => break Ending::Failed(status_of(&e)),
                Some(Ok(batch)) => match conform(batch, &self.schema) {
                    Ok(batch) => batch,
                    Err(e) => break Ending::Failed(Status::internal(e.to_string())),
                },
            };
            let n = batch.num_rows() as u64;
            tokio::select! {
                _ = &mut sleep => break Ending::Timeout,
                sent = tx.send(batch) => if sent.is_err() { break Ending::ClientGone },
            }
            rows += n;
        };
        drop(batches);
        let (line, status) = match ending {
            Ending::Done => (format!("ok, {rows} rows"), None),
            Ending::Timeout => {
                let msg = format!("the query ran longer than the query timeout ({}) and was cancelled", human(self.timeout));
                (format!("cancelled after {rows} rows: over the query timeout ({})", human(self.timeout)), Some(Status::deadline_exceeded(msg)))
            }
            Ending::ClientGone => (format!("stopped after {rows} rows: the client went away"), None),
            Ending::Failed(status) => (format!("failed after {rows} rows: {}", status.message()), Some(status)),
        };
        *self.ending.lock().expect("no panics while held") = status;
        self.log.line(&line);
    }
}

static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "cimlake");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, SqlSupportedTransaction::None as i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.build().expect("static SQL info")
});

/// A flight of `schema` with one endpoint, whose ticket is `ticket` (a statement's handle, or a
/// metadata command itself).
fn flight_info(schema: &Schema, ticket: Vec<u8>, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

fn one_batch(schema: SchemaRef, batch: Result<RecordBatch, FlightError>) -> Response<DoGetStream> {
    let s = FlightDataEncoderBuilder::new().with_schema(schema).build(futures::stream::once(async { batch })).map_err(Status::from);
    Response::new(Box::pin(s))
}

fn read_only() -> Status {
    Status::permission_denied("the server is read-only: updates, ingestion and Substrait plans are refused")
}

#[tonic::async_trait]
impl FlightSqlService for LakeService {
    type FlightService = LakeService;

    /// Password logins get a session token; a token login gets its own token back.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let token = match request.extensions().get::<Principal>() {
            Some(Principal::User(user)) if header.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("basic ")) => Some(self.auth.start_session(user)),
            Some(Principal::Token | Principal::User(_)) => Some(header[header.find(' ').map_or(0, |i| i + 1)..].trim().to_string()),
            _ => None,
        };
        let payload = token.clone().unwrap_or_default();
        let out = futures::stream::iter([Ok(HandshakeResponse { protocol_version: 0, payload: payload.into_bytes().into() })]);
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> = Response::new(Box::pin(out));
        if let Some(token) = token {
            let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| Status::invalid_argument("the token is not a valid header value"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(&self, query: CommandStatementQuery, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let handle = Handle::new(query.query);
        let ticket = TicketStatementQuery { statement_handle: handle.encode(&self.handle_key).into() }.as_any().encode_to_vec();
        self.statement_info(&handle, ticket, request).await
    }

    async fn do_get_statement(&self, ticket: TicketStatementQuery, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let handle = self.handle(&ticket.statement_handle)?;
        self.execute(handle, &request).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let deadline = self.deadline();
        let work = async {
            let _slot = self.slot(deadline).await?;
            let plan = async {
                let state = self.query_state().await?;
                self.logical_plan(&state, &query.query).await
            };
            self.by(deadline, "planning", caught(plan)).await
        };
        let plan = work.await.inspect_err(|status| self.query_log(&query.query, &request).refused(status))?;
        let dataset = statement::client_schema(plan.schema().as_arrow());
        let params = statement::client_schema(&statement::parameter_schema(&plan)?);
        let ipc = |s: &Schema| -> Result<Vec<u8>, Status> {
            let IpcMessage(bytes) = SchemaAsIpc::new(s, &IpcWriteOptions::default()).try_into().map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
            Ok(bytes.to_vec())
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Handle::new(query.query).encode(&self.handle_key).into(),
            dataset_schema: ipc(&dataset)?.into(),
            parameter_schema: ipc(&params)?.into(),
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = self.handle(&query.prepared_statement_handle)?;
        // One row of parameters: read no further than that, however much the client sends, and
        // check every length each message declares before decoding it.
        let mut stream = request.into_inner();
        let mut decoder = super::ipc::Decoder::default();
        let too_many = || Status::invalid_argument(format!("too many parameter values: bind one row (at most {} KiB) per execution", super::ipc::MAX_BYTES >> 10));
        while let Some(data) = stream.next().await {
            let data = data?;
            if data.data_header.is_empty() {
                continue;
            }
            decoder.push(&data.data_header, &data.data_body).map_err(|e| match e {
                IpcError::TooLarge => too_many(),
                e => Status::invalid_argument(format!("bad parameter data: {e}")),
            })?;
            if decoder.rows() > 1 {
                return Err(too_many());
            }
        }
        let batches = decoder.finish();
        let bound = handle.bind(&batches)?;
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(bound.encode(&self.handle_key).into()) })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = self.handle(&cmd.prepared_statement_handle)?;
        let ticket = cmd.as_any().encode_to_vec();
        self.statement_info(&handle, ticket, request).await
    }

    async fn do_get_prepared_statement(&self, query: CommandPreparedStatementQuery, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let handle = self.handle(&query.prepared_statement_handle)?;
        self.execute(handle, &request).await
    }

    /// Statements are stateless: nothing to release.
    async fn do_action_close_prepared_statement(&self, _query: ActionClosePreparedStatementRequest, _request: Request<Action>) -> Result<(), Status> {
        Ok(())
    }

    async fn get_flight_info_catalogs(&self, query: CommandGetCatalogs, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        flight_info(&query.into_builder().schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_catalogs(&self, query: CommandGetCatalogs, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let mut b = query.into_builder();
        for name in self.session().await?.catalog_names() {
            b.append(name);
        }
        Ok(one_batch(b.schema(), b.build()))
    }

    async fn get_flight_info_schemas(&self, query: CommandGetDbSchemas, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        flight_info(&query.clone().into_builder().schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_schemas(&self, query: CommandGetDbSchemas, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let ctx = self.session().await?;
        let mut b = query.into_builder();
        for catalog_name in ctx.catalog_names() {
            if let Some(catalog) = ctx.catalog(&catalog_name) {
                for schema in catalog.schema_names() {
                    b.append(&catalog_name, schema);
                }
            }
        }
        Ok(one_batch(b.schema(), b.build()))
    }

    async fn get_flight_info_tables(&self, query: CommandGetTables, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        flight_info(&query.clone().into_builder().schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_tables(&self, query: CommandGetTables, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let mut b = query.into_builder();
        for (catalog, schema, table, kind, table_schema) in self.tables().await? {
            b.append(catalog, schema, table, kind, &table_schema).map_err(Status::from)?;
        }
        Ok(one_batch(b.schema(), b.build()))
    }

    async fn get_flight_info_table_types(&self, query: CommandGetTableTypes, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        flight_info(&query.into_builder().schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_table_types(&self, query: CommandGetTableTypes, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let mut b = query.into_builder();
        for kind in ["TABLE", "VIEW"] {
            b.append(kind);
        }
        Ok(one_batch(b.schema(), b.build()))
    }

    async fn get_flight_info_sql_info(&self, query: CommandGetSqlInfo, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        flight_info(&query.clone().into_builder(&SQL_INFO).schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_sql_info(&self, query: CommandGetSqlInfo, _request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let b = query.into_builder(&SQL_INFO);
        Ok(one_batch(b.schema(), b.build()))
    }

    async fn do_put_statement_update(&self, _ticket: CommandStatementUpdate, _request: Request<PeekableFlightDataStream>) -> Result<i64, Status> {
        Err(read_only())
    }

    async fn do_put_statement_ingest(&self, _ticket: CommandStatementIngest, _request: Request<PeekableFlightDataStream>) -> Result<i64, Status> {
        Err(read_only())
    }

    async fn do_put_prepared_statement_update(&self, _query: CommandPreparedStatementUpdate, _request: Request<PeekableFlightDataStream>) -> Result<i64, Status> {
        Err(read_only())
    }

    async fn do_put_substrait_plan(&self, _query: CommandStatementSubstraitPlan, _request: Request<PeekableFlightDataStream>) -> Result<i64, Status> {
        Err(read_only())
    }

    async fn do_action_fallback(&self, request: Request<Action>) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        Err(Status::unimplemented(format!("action {:?} is not supported", request.get_ref().r#type)))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_files_is_resource_exhausted_however_wrapped() {
        let emfile = || std::io::Error::from_raw_os_error(24);
        let direct = DataFusionError::IoError(emfile());
        let wrapped = DataFusionError::Context("reading a lake file".into(), Box::new(DataFusionError::External(Box::new(emfile()))));
        let object_store = DataFusionError::ObjectStore(Box::new(datafusion::object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(emfile()) }));
        for e in [direct, wrapped, object_store] {
            let status = status_of(&e);
            assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{e}");
            assert!(status.message().contains("too many files open"), "{}", status.message());
        }
        assert_eq!(status_of(&DataFusionError::Execution("boom".into())).code(), tonic::Code::Internal);
        assert_eq!(status_of(&DataFusionError::ResourcesExhausted("pool".into())).code(), tonic::Code::ResourceExhausted);
    }
}
