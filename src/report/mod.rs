//! `cimlake report`: one self-contained HTML page of a window's detections, for an analyst.
//!
//! ```text
//! detections.results ─┐                      ┌ summary: hits per detection / level / host / user
//! risk.all_risk ──────┤  window's rows       │ timeline: risk per host over time, hits as marks
//! risk.incidents ─────┼─────────────────────▶┤ hits: sortable, filterable, searchable table
//! endpoint.processes ─┤  on the hits' hosts  │ each hit: process tree, connections, rule,
//! all_traffic ────────┘  (trees, [`tree`])   └          ATT&CK names, provenance
//! ```
//!
//! The page carries its data inline as JSON (strings stored once, in a dictionary), its styles
//! and its script: it opens without a network. The hits are capped ([`ReportOptions::max_hits`]),
//! and so are the hits with a process tree ([`ReportOptions::max_detailed`]); the page says so
//! when a cap is reached, and the counts in the summary are always those of every hit.

pub mod tree;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, Duration, Utc};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use serde_json::{Value, json};

use crate::detect::Catalog;
use tree::{Flow, Forest, Proc};

/// The page, with `/*REPORT-DATA*/null` where the data goes.
const PAGE: &str = include_str!("page.html");
/// MITRE ATT&CK technique names (`data/attack/techniques.tsv`).
const TECHNIQUES: &str = include_str!("../../data/attack/techniques.tsv");

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The window; `None`: the day before the latest event in the lake.
    pub earliest: Option<DateTime<Utc>>,
    pub latest: Option<DateTime<Utc>>,
    /// Only these detections (directory names); empty: all.
    pub detections: Vec<String>,
    /// How far before the window a hit's ancestors are looked for.
    pub lookback: Duration,
    /// The most hits listed in the page.
    pub max_hits: usize,
    /// The most hits with a process tree and connections.
    pub max_detailed: usize,
    /// The most connections shown per hit.
    pub max_flows_per_hit: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            earliest: None,
            latest: None,
            detections: Vec::new(),
            lookback: Duration::hours(24),
            max_hits: 50_000,
            max_detailed: 5_000,
            max_flows_per_hit: 50,
        }
    }
}

/// A report, and what went into it.
#[derive(Debug)]
pub struct Report {
    pub html: String,
    pub earliest: DateTime<Utc>,
    pub latest: DateTime<Utc>,
    /// Every hit in the window.
    pub hits: u64,
    /// Hits listed in the page.
    pub listed: usize,
    /// Hits with a process tree.
    pub detailed: usize,
    pub incidents: usize,
    /// What the reader should know (caps reached, no runs in the window).
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("--earliest ({0}) must be before --latest ({1})")]
    EmptyWindow(DateTime<Utc>, DateTime<Utc>),
    #[error("the lake has no events: nothing to report (ingest logs first, or give --earliest and --latest)")]
    NoData,
}

/// Strings stored once; a cell is its index, `-1` for null.
#[derive(Default)]
struct Dict {
    index: HashMap<String, i64>,
    list: Vec<String>,
}

impl Dict {
    fn code(&mut self, s: Option<&str>) -> i64 {
        let Some(s) = s else { return -1 };
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as i64;
        self.list.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// Rows as text, by column name.
#[derive(Default)]
struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    fn from_batches(batches: &[RecordBatch]) -> Result<Rows, arrow::error::ArrowError> {
        let columns = batches.first().map(|b| b.schema().fields().iter().map(|f| f.name().clone()).collect()).unwrap_or_default();
        let opts = FormatOptions::default();
        let mut rows = Vec::new();
        for b in batches {
            let lists = crate::output::lists_as_text(b)?;
            let shown: Vec<(ArrayFormatter<'_>, &ArrayRef)> =
                lists.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).map(|f| (f, c))).collect::<Result<_, _>>()?;
            for r in 0..b.num_rows() {
                rows.push(shown.iter().map(|(f, c)| if c.is_null(r) { None } else { Some(f.value(r).to_string()) }).collect());
            }
        }
        Ok(Rows { columns, rows })
    }

    fn col(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    fn get<'a>(&'a self, row: &'a [Option<String>], name: &str) -> Option<&'a str> {
        self.col(name).and_then(|i| row[i].as_deref())
    }

    /// The host of a result row: `dvc` (a rule over connections, whose `dest` is the remote
    /// end), else `dest`.
    fn host<'a>(&'a self, row: &'a [Option<String>]) -> Option<&'a str> {
        self.get(row, "dvc").or_else(|| self.get(row, "dest"))
    }

    /// The rows `which` (indexes, in that order) as the page reads them: column names, and each
    /// cell as its string's code in `dict`.
    fn encode(&self, which: impl IntoIterator<Item = usize>, dict: &mut Dict) -> Value {
        let rows: Vec<Value> = which.into_iter().map(|i| Value::from(self.rows[i].iter().map(|c| dict.code(c.as_deref())).collect::<Vec<i64>>())).collect();
        json!({ "cols": self.columns, "rows": rows })
    }
}

async fn rows(ctx: &SessionContext, sql: &str) -> Result<Rows, ReportError> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(Rows::from_batches(&batches)?)
}

/// `TIMESTAMP '…'` of a time, for SQL.
fn ts(t: DateTime<Utc>) -> String {
    format!("TIMESTAMP '{}'", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn micros(s: Option<&str>) -> i64 {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map_or(i64::MIN, |t| t.timestamp_micros())
}

/// Severity order of a level, most severe first.
fn level_rank(level: &str) -> u8 {
    match level {
        "critical" => 0,
        "high" => 1,
        "medium" => 2,
        "low" => 3,
        "informational" => 4,
        _ => 5,
    }
}

/// The technique names: id → (name, tactics).
fn techniques() -> HashMap<&'static str, (&'static str, &'static str)> {
    TECHNIQUES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?, (f.next()?, f.next().unwrap_or(""))))
        })
        .collect()
}

/// The name of a technique as ATT&CK writes it: `System Binary Proxy Execution: Msiexec`.
fn technique_name(id: &str, table: &HashMap<&str, (&str, &str)>) -> Option<String> {
    let (name, _) = table.get(id)?;
    match id.split_once('.') {
        Some((parent, _)) => Some(match table.get(parent) {
            Some((p, _)) => format!("{p}: {name}"),
            None => name.to_string(),
        }),
        None => Some(name.to_string()),
    }
}

/// The catalog's description of each detection, for the page.
fn detections_meta(catalog: &Catalog) -> Value {
    let table = techniques();
    let mut out = serde_json::Map::new();
    for d in &catalog.detections {
        let attack: Vec<String> = match &d.sigma {
            Some(s) => s.tags.iter().filter_map(|t| t.strip_prefix("attack.")).filter(|t| t.starts_with('t')).map(|t| t.to_uppercase()).collect(),
            None => d.meta.mitre_attack_id.clone(),
        };
        let attack: Vec<Value> = attack
            .iter()
            .map(|id| {
                let tactics = table.get(id.as_str()).map_or("", |(_, t)| *t);
                json!({ "id": id, "name": technique_name(id, &table), "tactics": tactics })
            })
            .collect();
        let level = d.sigma.as_ref().map_or(String::new(), |s| s.level.clone());
        out.insert(
            d.name.clone(),
            json!({
                "title": d.meta.name,
                "search_name": d.meta.search_name,
                "kind": d.meta.kind,
                "level": level,
                "description": d.meta.description,
                "attack": attack,
                "tactics": d.meta.mitre_tactic,
                "stories": d.meta.analytic_story,
                "origin": d.origin,
                "id": d.meta.id,
            }),
        );
    }
    Value::Object(out)
}

/// The window: as given, or the day before the latest event in the lake.
async fn window(ctx: &SessionContext, opts: &ReportOptions) -> Result<(DateTime<Utc>, DateTime<Utc>), ReportError> {
    let latest = match opts.latest {
        Some(l) => l,
        None => {
            let r = rows(ctx, "SELECT max(t) AS t FROM (SELECT max(_time) AS t FROM endpoint.processes UNION ALL SELECT max(_time) AS t FROM network_traffic.all_traffic)").await?;
            let last = r.rows.first().and_then(|row| r.get(row, "t")).map(|s| micros(Some(s))).filter(|&t| t != i64::MIN);
            match last {
                // Exclusive: one microsecond after the latest event.
                Some(t) => DateTime::from_timestamp_micros(t + 1).expect("a time the lake holds"),
                None if opts.earliest.is_some() => Utc::now(),
                None => return Err(ReportError::NoData),
            }
        }
    };
    let earliest = opts.earliest.unwrap_or(latest - Duration::hours(24));
    if earliest >= latest {
        return Err(ReportError::EmptyWindow(earliest, latest));
    }
    Ok((earliest, latest))
}

/// Builds the report of `ctx`'s lake (a session from [`crate::detect::runner::session`]).
pub async fn build(ctx: &SessionContext, catalog: &Catalog, lake: &str, opts: &ReportOptions) -> Result<Report, ReportError> {
    let (earliest, latest) = window(ctx, opts).await?;
    let mut notes = Vec::new();
    let in_window = format!("_time >= {} AND _time < {}", ts(earliest), ts(latest));
    // A hit is the window's when its event time is in it, or when the run that found it searched
    // a window inside it (a process that started before its run's window, found by the
    // look-back, belongs to that run's report).
    let hit_in_window = format!("(({in_window}) OR (window_earliest >= {} AND window_latest <= {}))", ts(earliest), ts(latest));
    let only = if opts.detections.is_empty() {
        String::new()
    } else {
        format!(" AND detection IN ({})", opts.detections.iter().map(|d| quote(d)).collect::<Vec<_>>().join(", "))
    };
    let has = |t: &str| ctx.table_exist(t).unwrap_or(false);
    let (hits, total, counts) = if has("detections.results") { hits_in(ctx, &hit_in_window, &only, opts.max_hits).await? } else { (Rows::default(), 0, json!({})) };
    if !has("detections.results") || hits.rows.is_empty() {
        notes.push(format!(
            "No scheduled run wrote results in this window. `cimlake schedule` writes them as it runs; for past data, `cimlake schedule --backfill {} {}`.",
            earliest.format("%Y-%m-%dT%H:%M:%SZ"),
            latest.format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    if total as usize > hits.rows.len() {
        notes.push(format!(
            "{} hits in the window; the first {} by time are listed. The counts by detection, host and user are of every hit. Narrow the window or choose detections (--detection) to list the rest.",
            total,
            hits.rows.len()
        ));
    }

    // Risk over time per object (hourly), and the incidents whose events fall in the window.
    let mut timeline = Vec::new();
    if has("risk.all_risk") {
        let r = rows(
            ctx,
            &format!(
                "SELECT risk_object, risk_object_type, CAST(date_trunc('hour', _time) AS BIGINT) AS hour, sum(risk_score) AS score, count(*) AS events \
                 FROM risk.all_risk WHERE {in_window}{only} GROUP BY 1, 2, 3 ORDER BY 1, 3"
            ),
        )
        .await?;
        timeline = r.rows.iter().map(|row| json!([row[0], row[1], row[2].as_deref().and_then(|v| v.parse::<i64>().ok()), row[3].as_deref().and_then(|v| v.parse::<f64>().ok()), row[4].as_deref().and_then(|v| v.parse::<i64>().ok())])).collect();
    }
    let mut incidents = Rows::default();
    if has("risk.incidents") {
        // Each run of the incident rule reports the 24 hours before its window's end: the same
        // object appears once per run. One row per object: its highest score.
        incidents = rows(
            ctx,
            &format!(
                "SELECT risk_object, risk_object_type, max(risk_score) AS risk_score, max(risk_events) AS risk_events, max(searches) AS searches, \
                 max(tactics) AS tactics, min(\"firstTime\") AS first_time, max(\"lastTime\") AS last_time \
                 FROM risk.incidents WHERE \"lastTime\" >= {} AND \"firstTime\" < {} GROUP BY 1, 2 ORDER BY 3 DESC, 1",
                ts(earliest),
                ts(latest)
            ),
        )
        .await?;
    }

    // The hits with a tree: the most severe first, then by time.
    let meta = detections_meta(catalog);
    let level_of = |row: &[Option<String>]| -> String {
        hits.get(row, "rule_level").map(str::to_string).or_else(|| hits.get(row, "detection").and_then(|d| meta.get(d)).and_then(|m| m["level"].as_str()).map(str::to_string)).unwrap_or_default()
    };
    let mut order: Vec<usize> = (0..hits.rows.len()).collect();
    order.sort_by_cached_key(|&i| (level_rank(&level_of(&hits.rows[i])), micros(hits.get(&hits.rows[i], "_time")), i));
    let detailed: Vec<usize> = order.into_iter().take(opts.max_detailed).collect();
    if hits.rows.len() > detailed.len() {
        notes.push(format!(
            "Process trees and connections are shown for {} of the {} listed hits (the most severe, then the earliest).",
            detailed.len(),
            hits.rows.len()
        ));
    }
    let hosts: HashSet<String> = detailed.iter().filter_map(|&i| hits.host(&hits.rows[i]).map(str::to_string)).collect();

    let mut dict = Dict::default();
    let trees = if !hosts.is_empty() && has("endpoint.processes") && has("network_traffic.all_traffic") {
        trees(ctx, &hits, &detailed, &hosts, opts, earliest, latest, &mut dict).await?
    } else {
        Trees::default()
    };
    let hits_json = hits.encode(0..hits.rows.len(), &mut dict);
    let incidents_json = incidents.encode(0..incidents.rows.len(), &mut dict);
    let data = json!({
        "lake": lake,
        "generated": Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "earliest": earliest.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "latest": latest.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "total_hits": total,
        "notes": notes,
        "detections": meta,
        "counts": counts,
        "dict": dict.list,
        "hits": hits_json,
        "details": trees.details,
        "procs": trees.procs,
        "flows": trees.flows,
        "timeline": timeline,
        "incidents": incidents_json,
    });
    Ok(Report {
        html: render(&data),
        earliest,
        latest,
        hits: total,
        listed: hits.rows.len(),
        detailed: trees.details.len(),
        incidents: incidents.rows.len(),
        notes,
    })
}

/// The hits of the window (at most `max_hits`, by time), how many there are in all, and the
/// counts by detection, host and user of all of them.
async fn hits_in(ctx: &SessionContext, filter: &str, only: &str, max_hits: usize) -> Result<(Rows, u64, Value), ReportError> {
    let agg = rows(ctx, &format!("SELECT count(*) AS n FROM detections.results WHERE {filter}{only}")).await?;
    let total = agg.rows.first().and_then(|r| agg.get(r, "n")).and_then(|n| n.parse().ok()).unwrap_or(0);
    let hits = rows(ctx, &format!("SELECT * FROM detections.results WHERE {filter}{only} ORDER BY _time, detection LIMIT {}", max_hits)).await?;
    let schema = ctx.table("detections.results").await?.schema().clone();
    let has_column = |c: &str| schema.field_with_unqualified_name(c).is_ok();
    let host = if has_column("dvc") { "coalesce(dvc, dest)" } else { "dest" };
    let mut c = serde_json::Map::new();
    for (key, expr) in [("detection", "detection"), ("host", host), ("user", "user")] {
        if key == "user" && !has_column("user") || key == "host" && !has_column("dest") {
            continue;
        }
        let r = rows(ctx, &format!("SELECT {expr} AS k, count(*) AS n FROM detections.results WHERE {filter}{only} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1000")).await?;
        c.insert(key.into(), Value::from(r.rows.iter().map(|row| json!([row[0], row[1].as_deref().and_then(|n| n.parse::<u64>().ok())])).collect::<Vec<_>>()));
    }
    Ok((hits, total, Value::Object(c)))
}

/// Rows a page names, each given its place in the page's table on first use.
#[derive(Default)]
struct Named {
    place: HashMap<usize, usize>,
    /// The rows, in the order of their places.
    order: Vec<usize>,
}

impl Named {
    fn id(&mut self, row: usize) -> usize {
        *self.place.entry(row).or_insert_with(|| {
            self.order.push(row);
            self.order.len() - 1
        })
    }

    fn ids(&mut self, rows: impl IntoIterator<Item = usize>) -> Vec<usize> {
        rows.into_iter().map(|r| self.id(r)).collect()
    }
}

/// The process trees and connections of the hits with details, as the page reads them.
struct Trees {
    /// The process rows the trees name, and the flow rows.
    procs: Value,
    flows: Value,
    /// Hit index → its tree (indexes into `procs`) and connections (into `flows`).
    details: serde_json::Map<String, Value>,
}

impl Default for Trees {
    fn default() -> Self {
        Trees { procs: json!({"cols": [], "rows": []}), flows: json!({"cols": [], "rows": []}), details: serde_json::Map::new() }
    }
}

/// Reads the processes and connections of `hosts` from the window (and the look-back before it)
/// and builds the tree of each hit in `detailed`.
#[allow(clippy::too_many_arguments)]
async fn trees(
    ctx: &SessionContext,
    hits: &Rows,
    detailed: &[usize],
    hosts: &HashSet<String>,
    opts: &ReportOptions,
    earliest: DateTime<Utc>,
    latest: DateTime<Utc>,
    dict: &mut Dict,
) -> Result<Trees, ReportError> {
    let mut details = serde_json::Map::new();
    let schema = Arc::new(Schema::new(vec![Field::new("host", DataType::Utf8, false)]));
    let list: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(list))])?;
    ctx.register_table("report_hosts", Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))?;
    let from = ts(earliest - opts.lookback);
    let to = ts(latest);
    let p = rows(
        ctx,
        &format!(
            "SELECT _time, CAST(_time AS BIGINT) AS t_us, dest, user, process_name, process, process_id, process_guid, parent_process_name, parent_process, \
             parent_process_id, parent_process_guid, process_path, source, source_record \
             FROM endpoint.processes WHERE _time >= {from} AND _time < {to} AND dest IN (SELECT host FROM report_hosts) ORDER BY _time"
        ),
    )
    .await?;
    let f = rows(
        ctx,
        &format!(
            "SELECT _time, CAST(_time AS BIGINT) AS t_us, dvc, process_name, process_id, process_guid, src_ip, src_port, dest_ip, dest_port, dest_hostname, \
             transport, action, bytes, source, source_record \
             FROM network_traffic.all_traffic WHERE _time >= {from} AND _time < {to} AND dvc IN (SELECT host FROM report_hosts) ORDER BY _time"
        ),
    )
    .await?;
    ctx.deregister_table("report_hosts")?;
    let num = |r: &Rows, row: &[Option<String>]| r.get(row, "t_us").and_then(|v| v.parse::<i64>().ok()).unwrap_or(i64::MIN);
    let own = |r: &Rows, row: &[Option<String>], c: &str| r.get(row, c).filter(|s| !s.is_empty()).map(str::to_string);
    let procs: Vec<Proc> = p
        .rows
        .iter()
        .map(|row| Proc {
            time_us: num(&p, row),
            host: own(&p, row, "dest").unwrap_or_default(),
            guid: own(&p, row, "process_guid"),
            pid: own(&p, row, "process_id"),
            parent_guid: own(&p, row, "parent_process_guid"),
            parent_pid: own(&p, row, "parent_process_id"),
            name: own(&p, row, "process_name").unwrap_or_default(),
            command: own(&p, row, "process").unwrap_or_default(),
        })
        .collect();
    let flows: Vec<Flow> = f
        .rows
        .iter()
        .map(|row| Flow { time_us: num(&f, row), host: own(&f, row, "dvc").unwrap_or_default(), guid: own(&f, row, "process_guid"), pid: own(&f, row, "process_id") })
        .collect();
    let forest = Forest::new(&procs);
    let owners = forest.owners(&flows);
    let mut flows_of: HashMap<usize, Vec<usize>> = HashMap::new();
    for (fi, o) in owners.iter().enumerate() {
        if let Some(o) = o {
            flows_of.entry(*o).or_default().push(fi);
        }
    }
    // The process and flow rows the trees name, each once, in the order first named.
    let (mut procs_named, mut flows_named) = (Named::default(), Named::default());
    for &h in detailed {
        let row = &hits.rows[h];
        let Some(host) = hits.host(row) else { continue };
        let at = micros(hits.get(row, "_time"));
        let Some(me) = forest.find(host, hits.get(row, "process_guid").filter(|s| !s.is_empty()), hits.get(row, "process_id").filter(|s| !s.is_empty()), at) else {
            continue;
        };
        let kids: Vec<usize> = forest.children(me).iter().take(100).copied().collect();
        let servers = forest.msi_servers(me);
        let mut flows_here: Vec<usize> = flows_of.get(&me).cloned().unwrap_or_default();
        for s in servers {
            flows_here.extend(flows_of.get(s).into_iter().flatten());
        }
        flows_here.sort_by_key(|&fi| (flows[fi].time_us, fi));
        let flows_total = flows_here.len();
        flows_here.truncate(opts.max_flows_per_hit);
        let mut tree = serde_json::Map::new();
        tree.insert("self".into(), procs_named.id(me).into());
        tree.insert("anc".into(), procs_named.ids(forest.ancestors(me, 8)).into());
        tree.insert("kids".into(), procs_named.ids(kids.iter().copied()).into());
        // Each child's own children count, so the page can say there are more.
        tree.insert("kid_kids".into(), kids.iter().map(|&k| forest.children(k).len()).collect::<Vec<_>>().into());
        tree.insert("msi_servers".into(), procs_named.ids(servers.iter().copied()).into());
        if let Some(c) = forest.msi_client(me) {
            tree.insert("msi_client_anc".into(), procs_named.ids(forest.ancestors(c, 8)).into());
            tree.insert("msi_client".into(), procs_named.id(c).into());
        }
        tree.insert("flows".into(), flows_named.ids(flows_here).into());
        tree.insert("flows_total".into(), flows_total.into());
        details.insert(h.to_string(), Value::Object(tree));
    }
    Ok(Trees { procs: p.encode(procs_named.order, dict), flows: f.encode(flows_named.order, dict), details })
}

/// The page with `data` inline. In a `<script>` element only `</script` (and `<!--`) could end
/// or change it early: every `<` in the JSON is written `\u003c`, which JSON reads back as `<`.
pub fn render(data: &Value) -> String {
    let json = data.to_string().replace('<', "\\u003c").replace('\u{2028}', "\\u2028").replace('\u{2029}', "\\u2029");
    PAGE.replacen("/*REPORT-DATA*/null", &json, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_cannot_close_the_script_element() {
        let page = render(&json!({ "dict": ["</script><script>alert(1)</script>", "<!-- x", "a\u{2028}b"] }));
        let script_start = page.find("/*REPORT-DATA-START*/").expect("marker");
        let rest = &page[script_start..];
        let end = rest.find("</script>").expect("the data script ends");
        assert!(!rest[..end].contains('<'), "a raw < in the data: {}", &rest[..end]);
        assert!(rest[..end].contains("\\u003c/script>"));
    }

    #[test]
    fn technique_names_as_attack_writes_them() {
        let t = techniques();
        assert!(t.len() > 600, "{}", t.len());
        assert_eq!(technique_name("T1218.007", &t).as_deref(), Some("System Binary Proxy Execution: Msiexec"));
        assert_eq!(technique_name("T1059", &t).as_deref(), Some("Command and Scripting Interpreter"));
        assert_eq!(t["T1218.007"].1, "Defense Evasion");
        assert_eq!(technique_name("T9999", &t), None);
    }

    #[test]
    fn strings_are_stored_once() {
        let mut d = Dict::default();
        assert_eq!((d.code(Some("a")), d.code(Some("b")), d.code(Some("a")), d.code(None)), (0, 1, 0, -1));
        assert_eq!(d.list, vec!["a", "b"]);
    }
}
