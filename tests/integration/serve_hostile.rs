//! `cimlake serve` under attack: forged and altered statement handles, Arrow IPC whose declared
//! lengths lie, panics inside queries, password guessing, and many clients over a lake of
//! thousands of files. Each request gets a clean error, the server answers the next query, and its
//! memory and open files stay bounded.
//!
//! Requests a well-behaved driver never sends are made with arrow-flight's own gRPC client, so
//! each byte of a ticket or a parameter message is the test's to choose.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch};
use arrow::ipc::writer::{IpcDataGenerator, IpcWriteOptions, StreamWriter};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any, CommandPreparedStatementQuery, CommandStatementQuery,
    ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::{Action, FlightData, FlightDescriptor, Ticket};
use prost::Message;
use tempfile::TempDir;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::common::*;
use crate::serve::{Server, TOKEN};

type Client = FlightServiceClient<InterceptedService<Channel, fn(Request<()>) -> Result<Request<()>, Status>>>;

fn with_token(mut request: Request<()>) -> Result<Request<()>, Status> {
    request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    Ok(request)
}

async fn connect(server: &Server) -> Client {
    let url = server.url.replace("grpc://", "http://");
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    FlightServiceClient::with_interceptor(channel, with_token as fn(Request<()>) -> Result<Request<()>, Status>)
}

/// GetFlightInfo for a Flight SQL command.
async fn flight_info(client: &mut Client, command: Vec<u8>) -> Result<arrow_flight::FlightInfo, Status> {
    client.get_flight_info(FlightDescriptor::new_cmd(command)).await.map(|r| r.into_inner())
}

/// DoGet of a ticket, read to the end: the number of rows.
async fn do_get(client: &mut Client, ticket: Vec<u8>) -> Result<usize, Status> {
    use futures::{StreamExt, TryStreamExt};
    let stream = client.do_get(Ticket { ticket: ticket.into() }).await?.into_inner();
    let mut batches = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(stream.map_err(Into::into));
    let mut rows = 0;
    while let Some(batch) = batches.next().await {
        rows += batch.map_err(Status::from)?.num_rows();
    }
    Ok(rows)
}

/// A statement run the way drivers run it: GetFlightInfo, then DoGet of its ticket.
async fn run(client: &mut Client, sql: &str) -> Result<usize, Status> {
    let info = flight_info(client, CommandStatementQuery { query: sql.into(), transaction_id: None }.as_any().encode_to_vec()).await?;
    let ticket = info.endpoint[0].ticket.clone().unwrap().ticket.to_vec();
    do_get(client, ticket).await
}

/// A prepared statement's handle (CreatePreparedStatement).
async fn prepare(client: &mut Client, sql: &str) -> Vec<u8> {
    let body = ActionCreatePreparedStatementRequest { query: sql.into(), transaction_id: None }.as_any().encode_to_vec();
    let mut results = client.do_action(Action { r#type: "CreatePreparedStatement".into(), body: body.into() }).await.unwrap().into_inner();
    let result = results.message().await.unwrap().unwrap();
    let any = Any::decode(result.body).unwrap();
    any.unpack::<ActionCreatePreparedStatementResult>().unwrap().unwrap().prepared_statement_handle.to_vec()
}

/// DoPut of parameter messages for a prepared statement: the new handle, or the error.
async fn bind(client: &mut Client, handle: &[u8], messages: Vec<FlightData>) -> Result<Vec<u8>, Status> {
    let cmd = CommandPreparedStatementQuery { prepared_statement_handle: handle.to_vec().into() };
    let mut messages = messages;
    messages[0].flight_descriptor = Some(FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec()));
    let mut results = client.do_put(futures::stream::iter(messages)).await?.into_inner();
    let put = results.message().await?.unwrap_or_default();
    let result = arrow_flight::sql::DoPutPreparedStatementResult::decode(put.app_metadata).unwrap();
    Ok(result.prepared_statement_handle.unwrap_or_default().to_vec())
}

fn one_row() -> RecordBatch {
    RecordBatch::try_from_iter([("$1", Arc::new(Int64Array::from(vec![7])) as _)]).unwrap()
}

/// The schema and batch messages of `batch`, as a driver sends them in a DoPut.
fn parameter_messages(batch: &RecordBatch) -> (FlightData, FlightData) {
    let options = IpcWriteOptions::default();
    let schema = arrow_flight::SchemaAsIpc::new(&batch.schema(), &options).into();
    let mut tracker = arrow::ipc::writer::DictionaryTracker::new(false);
    let mut compression = Default::default();
    let (_, encoded) = IpcDataGenerator::default().encode(batch, &mut tracker, &options, &mut compression).unwrap();
    (schema, encoded.into())
}

/// A one-row Arrow IPC stream, as a handle carries bound parameters.
fn ipc_stream(batch: &RecordBatch) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = StreamWriter::try_new(&mut buf, &batch.schema()).unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
    drop(w);
    buf
}

/// Where the little-endian `value` sits in `bytes` (a field of a flatbuffer, to rewrite).
fn find_le(bytes: &[u8], value: i64) -> usize {
    let le = value.to_le_bytes();
    bytes.windows(8).position(|w| w == le).expect("value present")
}

/// The server's peak resident memory so far, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_handles_and_lying_ipc_get_clean_errors_and_the_server_goes_on() {
    let lake = sample_lake();
    let server = Server::start(lake, &[], &[("CIMLAKE_TOKEN", TOKEN)]);
    let mut client = connect(&server).await;
    assert_eq!(run(&mut client, "SELECT 1").await.unwrap(), 1);

    // A handle made by the client, carrying parameters whose IPC declares a 64 GiB body, and one
    // whose metadata length is 0x7ffffff0: each once crashed the server or made it touch 2 GB.
    // Without the server's key they are refused before anything in them is decoded.
    let stream = ipc_stream(&one_row());
    let schema_len = u32::from_le_bytes(stream[4..8].try_into().unwrap()) as usize;
    let batch_meta_at = 8 + schema_len + 8;
    let batch_meta_len = u32::from_le_bytes(stream[batch_meta_at - 4..batch_meta_at].try_into().unwrap()) as usize;
    let batch_meta = &stream[batch_meta_at..batch_meta_at + batch_meta_len];
    let at = batch_meta_at + find_le(batch_meta, arrow::ipc::root_as_message(batch_meta).unwrap().bodyLength());
    let mut huge_body = stream.clone();
    huge_body[at..at + 8].copy_from_slice(&(64i64 << 30).to_le_bytes());
    let mut huge_meta = stream.clone();
    huge_meta[4..8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    use base64::Engine as _;
    let forge = |params: &[u8], mac: [u8; 32]| -> Vec<u8> {
        let json = serde_json::json!({"sql": "SELECT $1 AS x", "params": base64::engine::general_purpose::STANDARD.encode(params)});
        let mut h = b"cimlake-statement-2:".to_vec();
        h.extend_from_slice(&mac);
        h.extend_from_slice(json.to_string().as_bytes());
        h
    };
    for (what, params) in [("64 GiB body", &huge_body), ("2 GiB metadata", &huge_meta), ("truncated IPC", &stream[..stream.len() / 2].to_vec())] {
        let forged = forge(params, [7; 32]);
        let ticket = TicketStatementQuery { statement_handle: forged.clone().into() }.as_any().encode_to_vec();
        let err = do_get(&mut client, ticket).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains("not issued by this server, or was altered"), "{what}: {}", err.message());
        let cmd = CommandPreparedStatementQuery { prepared_statement_handle: forged.into() }.as_any().encode_to_vec();
        let err = flight_info(&mut client, cmd).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert_eq!(run(&mut client, "SELECT 1").await.unwrap(), 1, "after {what}");
    }
    // The handle format before handles were sealed.
    let old = br#"cimlake-statement-1:{"sql":"SELECT 1"}"#.to_vec();
    let err = do_get(&mut client, TicketStatementQuery { statement_handle: old.into() }.as_any().encode_to_vec()).await.unwrap_err();
    assert!(err.message().contains("not a statement handle from this server"), "{}", err.message());

    // A genuine handle altered: another statement, the same seal.
    let info = flight_info(&mut client, CommandStatementQuery { query: "SELECT 1 AS one".into(), transaction_id: None }.as_any().encode_to_vec()).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap().ticket;
    let genuine = Any::decode(ticket.clone()).unwrap().unpack::<TicketStatementQuery>().unwrap().unwrap().statement_handle.to_vec();
    let mut altered = genuine.clone();
    let at = altered.windows(9).position(|w| w == b"SELECT 1 ").unwrap();
    altered[at + 7] = b'2';
    let err = do_get(&mut client, TicketStatementQuery { statement_handle: altered.into() }.as_any().encode_to_vec()).await.unwrap_err();
    assert!(err.message().contains("not issued by this server, or was altered"), "{}", err.message());
    assert_eq!(do_get(&mut client, ticket.to_vec()).await.unwrap(), 1, "the genuine ticket runs");

    // Parameters sent with DoPut whose IPC lies: a body declared 64 GiB, a buffer past the body,
    // metadata that is not a message, a header over the size limit, a cut body, a compressed
    // buffer declaring 1 TiB once decompressed. Each is a clean INVALID_ARGUMENT.
    let handle = prepare(&mut client, "SELECT $1 AS x").await;
    let (schema, batch) = parameter_messages(&one_row());
    let bound = bind(&mut client, &handle, vec![schema.clone(), batch.clone()]).await.unwrap();
    let cmd = CommandPreparedStatementQuery { prepared_statement_handle: bound.into() }.as_any().encode_to_vec();
    let info = flight_info(&mut client, cmd).await.unwrap();
    assert_eq!(do_get(&mut client, info.endpoint[0].ticket.clone().unwrap().ticket.to_vec()).await.unwrap(), 1, "a bound statement runs");

    let declared = arrow::ipc::root_as_message(&batch.data_header).unwrap().bodyLength();
    let mut huge = batch.clone();
    let mut header = huge.data_header.to_vec();
    let at = find_le(&header, declared);
    header[at..at + 8].copy_from_slice(&(64i64 << 30).to_le_bytes());
    huge.data_header = header.into();
    let mut past = batch.clone();
    past.data_body = past.data_body.slice(..past.data_body.len() / 2);
    let mut garbage = batch.clone();
    garbage.data_header = vec![0xff; 64].into();
    let mut oversized = batch.clone();
    oversized.data_header = vec![0; 2 << 20].into();
    let compressed = {
        let options = IpcWriteOptions::default().try_with_compression(Some(arrow::ipc::CompressionType::ZSTD)).unwrap();
        let mut tracker = arrow::ipc::writer::DictionaryTracker::new(false);
        let mut compression = Default::default();
        let (_, encoded) = IpcDataGenerator::default().encode(&one_row(), &mut tracker, &options, &mut compression).unwrap();
        let mut data: FlightData = encoded.into();
        // Each compressed buffer starts with its decompressed length: claim 1 TiB.
        let mut body = data.data_body.to_vec();
        body[..8].copy_from_slice(&(1i64 << 40).to_le_bytes());
        data.data_body = body.into();
        data
    };
    for (what, bad, says) in [
        ("a 64 GiB body", huge, "declares a body of 68719476736 bytes"),
        ("a body cut short", past, "declares a body of"),
        ("metadata that is not a message", garbage, "not an Arrow IPC message"),
        ("2 MiB of metadata", oversized, "at most"),
        ("a compressed buffer", compressed, "compressed parameter batches are not supported"),
    ] {
        let err = bind(&mut client, &handle, vec![schema.clone(), bad]).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains(says), "{what}: {}", err.message());
        assert_eq!(run(&mut client, "SELECT 1").await.unwrap(), 1, "after {what}");
    }
    // Nothing above made the server allocate much: its peak stays far below the 2 GB one request
    // once cost.
    let peak = peak_rss_kib(server.pid());
    assert!(peak < 600 * 1024, "the server's peak RSS is {peak} KiB");
    assert!(alive(server.pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_query_fails_that_query_only() {
    let lake = sample_lake();
    let server = Server::start(lake, &[], &[("CIMLAKE_TOKEN", TOKEN), ("CIMLAKE_FAULT", "query:panic")]);
    let mut client = connect(&server).await;
    // Folded while planning (a literal argument), and called while running (a column).
    for sql in ["SELECT cimlake_fault_panic(1)", "SELECT cimlake_fault_panic(value) FROM generate_series(1, 3)"] {
        let err = run(&mut client, sql).await.unwrap_err();
        assert_eq!(err.code(), Code::Internal, "{sql}: {err:?}");
        assert!(err.message().contains("the query failed inside the query engine (cimlake_fault_panic was called"), "{sql}: {}", err.message());
        assert_eq!(run(&mut client, "SELECT 1").await.unwrap(), 1, "after {sql}");
    }
    // Through the driver too, and the slot the panicking query held is free again.
    let err = server.client_err(&["--token", TOKEN], &["query", "SELECT cimlake_fault_panic(value) FROM generate_series(1, 3)", "/dev/null"]);
    assert!(err.contains("the query failed inside the query engine"), "{err}");
    assert!(alive(server.pid()));
    let rows = server.query_rows(&["--token", TOKEN], "SELECT count(*) AS n FROM endpoint.processes");
    assert_eq!(rows, cimlake_ok(lake, &["query", "SELECT count(*) AS n FROM endpoint.processes", "--format", "json"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_waits_for_a_query_slot() {
    let lake = sample_lake();
    let server = Server::start(lake, &["--max-queries", "1", "--query-timeout", "4s"], &[("CIMLAKE_TOKEN", TOKEN)]);
    // A query that holds the only slot: the client reads one batch, then stops reading.
    let stalled = "SELECT value AS held FROM generate_series(1, 1000000000000)";
    let mut stall = server.stall(&["--token", TOKEN], stalled, 30);
    // Planning another statement (GetFlightInfo) must wait for that slot: it returns only once the
    // held query was cancelled at its timeout, or fails waiting.
    let mut client = connect(&server).await;
    let cmd = CommandStatementQuery { query: "SELECT 2 AS planned".into(), transaction_id: None }.as_any().encode_to_vec();
    let planned = flight_info(&mut client, cmd).await;
    let log = server.log();
    match planned {
        Ok(_) => assert!(
            log.lines().any(|l| l.contains(stalled) && l.contains("cancelled after")),
            "GetFlightInfo planned while the only slot was held:\n{log}"
        ),
        Err(e) => assert!(e.message().contains("waiting for a query slot"), "{e:?}"),
    }
    stall.kill().ok();
    stall.wait().ok();
}

#[test]
fn credentials_are_required_and_guessing_is_held_off() {
    let lake = sample_lake();
    // Without credentials or --no-auth, the server does not start; with --no-auth it serves
    // loopback, and says so.
    let out = command(lake, &["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no credentials"), "{}", String::from_utf8_lossy(&out.stderr));
    let open = Server::start(lake, &["--no-auth"], &[]);
    assert!(open.banner.contains("authentication off (--no-auth), loopback only"), "{}", open.banner);
    assert_eq!(open.query_rows(&[], "SELECT 1 AS one"), "{\"one\":1}\n");
    drop(open);

    // The default memory limit is half the machine's memory over the query slots, and --help says so.
    let server = Server::start(lake, &["--max-queries", "4"], &[("CIMLAKE_TOKEN", TOKEN)]);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kib: u64 = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap();
    let want = format!("memory limit {} MiB", (total_kib * 1024 / 2 / 4) >> 20);
    assert!(server.banner.contains(&want), "want {want:?} in {}", server.banner);
    let help = cimlake_ok(lake, &["serve", "--help"]);
    assert!(help.contains("half the machine's memory"), "{help}");

    // Wrong tokens from one address: after five failed calls (a driver makes more than one call
    // per connection) the address is held off, and then even the right token is refused,
    // unchecked, until the hold ends.
    let first = server.client_err(&["--token", "wrong-token-0123456789abcdef"], &["info"]);
    assert!(first.contains("wrong or expired token"), "{first}");
    let mut attempts = 1;
    while !server.log().contains("auth: 127.0.0.1 held off for") {
        attempts += 1;
        assert!(attempts <= 5, "no hold after {attempts} connections of wrong tokens:\n{}", server.log());
        server.client_err(&["--token", "wrong-token-0123456789abcdef"], &["info"]);
    }
    assert!(server.log().contains("held off for 1 s after 5 failed logins in a row (wrong or expired token)"), "{}", server.log());
    let err = server.client_err(&["--token", TOKEN], &["info"]);
    assert!(err.contains("too many failed logins from 127.0.0.1: try again in"), "{err}");
    let wait: u64 = err.split("try again in ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{err}");
    std::thread::sleep(Duration::from_secs(wait) + Duration::from_millis(300));
    server.client_ok(&["--token", TOKEN], &["info"]);
}

/// A lake of thousands of small files: `inputs` small XmlWinEventLog files whose events are
/// spread over 24 hours, so each adds a file per table and hour.
fn many_file_lake(inputs: usize) -> TempDir {
    let out = TempDir::new().unwrap();
    let scratch = TempDir::new().unwrap();
    cimlake_ok(
        scratch.path(),
        &["gen", "--seed", "21", "--hosts", "40", "--processes", "4000", "--flows-per-process", "2", "--hours", "24", "--positives", "6", "--format", "xmlwineventlog", "-o", out.path().to_str().unwrap()],
    );
    let log = std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "log")).unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    // Deal the events round-robin into the inputs: each input spans the whole day.
    let inputs_dir = TempDir::new().unwrap();
    let mut files: Vec<String> = vec![String::new(); inputs];
    for (i, e) in events.iter().enumerate() {
        files[i % inputs].push_str(e);
        files[i % inputs].push('\n');
    }
    for (i, f) in files.iter().enumerate() {
        std::fs::write(inputs_dir.path().join(format!("part-{i:03}.log")), f).unwrap();
    }
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", inputs_dir.path().to_str().unwrap()]);
    lake
}

#[test]
fn many_clients_over_thousands_of_files_are_all_answered_with_descriptors_bounded() {
    let lake = many_file_lake(50);
    let files = parquet_files(lake.path());
    assert!(files >= 2000, "{files} files");
    // A server that may not have more than 1,024 files open, as on many machines.
    let server = Server::start_limited(lake.path(), &["--max-queries", "8"], &[("CIMLAKE_TOKEN", TOKEN)], 1024);
    let pid = server.pid();
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let watching = watching.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    // Six clients, three queries each, over 2,000 files on two cores shared with the rest of the
    // suite: minutes, not seconds. The bound only keeps a hang from stalling the suite.
    let load = server.client_within(&["--token", TOKEN], &["load", "6", "3"], 400);
    assert!(load.status.success(), "load failed:\n{}\nserver log:\n{}", String::from_utf8_lossy(&load.stderr), server.log());
    let out = String::from_utf8(load.stdout).unwrap();
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak_fds = watcher.join().unwrap();
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["failed"], 0, "{report:#}\nserver log:\n{}", server.log());
    assert_eq!(report["total"], 18, "{report:#}");
    // Each answer is the one `cimlake query` gives.
    for (sql, rows) in report["rows"].as_object().unwrap() {
        let want = cimlake_ok(lake.path(), &["query", sql, "--format", "csv"]).lines().count() - 1;
        assert!(rows.as_array().unwrap().iter().all(|r| r.as_u64() == Some(want as u64)), "{sql}: {rows} rows, want {want}");
    }
    assert!(peak_fds < 512, "{peak_fds} descriptors open at the peak");
    let peak = peak_rss_kib(pid);
    assert!(peak < 1536 * 1024, "the server's peak RSS is {peak} KiB");
}
