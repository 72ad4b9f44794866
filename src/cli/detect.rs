//! `cimlake detect`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use datafusion::physical_plan::displayable;

use super::{AsOfArgs, EngineArgs, SqlArgs};
use crate::detect::runner::Runner;
use crate::detect::{self, Mode, Search, Window};

use crate::engine;
use crate::lake::Lake;
use crate::output::{self, Format};
use crate::time::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct DetectArgs {
    /// Detection to run (directory name or display name), or `all`.
    #[arg(long, default_value = "all")]
    pub detection: String,

    /// Window start, inclusive: Splunk relative time (-70m@m, -1d@d, now) or RFC 3339.
    #[arg(long, allow_hyphen_values = true)]
    pub earliest: Option<String>,

    /// Window end, exclusive: Splunk relative time (-10m@m, now) or RFC 3339.
    #[arg(long, allow_hyphen_values = true)]
    pub latest: Option<String>,

    /// Join semantics.
    #[arg(long, value_enum, default_value_t = Mode::Cimlake)]
    pub mode: Mode,

    /// How far before the window a process may have started (cimlake mode), e.g. 24h, 7d, 0.
    #[arg(long, default_value = "24h")]
    pub lookback: String,

    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Write results to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Print the physical plan instead of running.
    #[arg(long)]
    pub explain: bool,

    /// List the detections (name, id, title, ATT&CK, modes, origin, schedule, kind, level,
    /// status) and exit.
    #[arg(long, conflicts_with_all = ["check", "show_sql"])]
    pub list: bool,

    /// Plan every detection in every mode it has against the lake's schemas (no rows needed) and
    /// report each that fails by file and line, and each Sigma rule that does not compile, grouped
    /// by reason; exit 1 if any fails.
    #[arg(long, conflicts_with = "show_sql")]
    pub check: bool,

    /// Print the SQL the selected detections run (macros expanded, Sigma rules compiled) and exit.
    #[arg(long)]
    pub show_sql: bool,

    /// Memory for joins, aggregations and sorts (e.g. 512M, 2G); beyond it, work spills to disk.
    #[arg(long, value_parser = crate::engine::parse_size, value_name = "SIZE")]
    pub memory_limit: Option<usize>,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub as_of: AsOfArgs,

    #[command(flatten)]
    pub sql: SqlArgs,
}

impl DetectArgs {
    /// All-time defaults, as used by `cimlake run`.
    pub fn all_time(sql: SqlArgs, engine: EngineArgs, mode: Mode, format: Format) -> Self {
        DetectArgs {
            detection: "all".into(),
            earliest: None,
            latest: None,
            mode,
            lookback: "24h".into(),
            format,
            output: None,
            explain: false,
            list: false,
            check: false,
            show_sql: false,
            memory_limit: None,
            engine,
            as_of: AsOfArgs::default(),
            sql,
        }
    }

    pub fn search(&self) -> anyhow::Result<Search> {
        let (earliest, latest) = super::window_args(self.earliest.as_deref(), self.latest.as_deref())?;
        let lookback = parse_duration(&self.lookback).context("--lookback")?;
        Ok(Search { window: Window::between(earliest, latest), lookback })
    }
}

pub async fn run(lake_dir: &Path, args: DetectArgs) -> anyhow::Result<ExitCode> {
    let catalog = args.sql.catalog()?;
    if args.list {
        list(&catalog)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.check {
        return check(lake_dir, &catalog).await;
    }
    let search = args.search()?;
    let selected = catalog.select(&args.detection)?;
    let selected = if args.detection == "all" {
        // Every detection that has the mode; the others are named, not run.
        let (has, lacks): (Vec<_>, Vec<_>) = selected.into_iter().partition(|d| d.has_mode(args.mode));
        const NAMED: usize = 5;
        for d in lacks.iter().take(NAMED) {
            eprintln!("note: {} has no {} mode; not run", crate::output::escape_controls(&d.name), args.mode);
        }
        if lacks.len() > NAMED {
            eprintln!("note: {} more detections have no {} mode; not run", lacks.len() - NAMED, args.mode);
        }
        has
    } else {
        selected
    };
    if args.show_sql {
        let mut out = std::io::stdout().lock();
        for d in selected {
            writeln!(out, "-- {} ({} mode)\n{};", d.name, args.mode, catalog.expanded_sql(d, args.mode)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Several Sigma rules run together: one scan per log source for all of them.
    let single_rule = |d: &detect::Detection| d.sigma.as_ref().is_some_and(|i| !i.correlation);
    let (many, selected): (Vec<_>, Vec<_>) = if selected.iter().filter(|d| single_rule(d)).count() > 1 {
        selected.into_iter().partition(|d| single_rule(d))
    } else {
        (Vec::new(), selected)
    };
    let sources: std::collections::BTreeSet<_> = many.iter().filter_map(|d| d.sigma.as_ref().map(|i| i.logsource)).collect();
    anyhow::ensure!(
        selected.len() + sources.len() <= 1 || (args.format == Format::Table && args.output.is_none()) || args.explain,
        "{} detections selected: --format {:?} and -o take one (use --detection NAME, or sigma:CATEGORY for the Sigma rules of one log source)",
        selected.len() + many.len(),
        args.format
    );
    let lake = Lake::open(lake_dir)?;
    if !lake.exists() {
        eprintln!("warning: {} holds no lake yet (run `cimlake ingest` first)", lake_dir.display());
    }
    let opts = engine::EngineOptions { memory_limit: args.memory_limit, engine: args.engine.engine.clone(), as_of: args.as_of.resolve()? };
    // Only --explain plans here; a run makes its own session (per pass, under a memory limit).
    let explain_ctx = if args.explain { Some(engine::session_with(&lake, &opts).await?) } else { None };
    let runner = Runner::new(&lake, &catalog, opts.clone());
    for d in &selected {
        let d = *d;
        if let Some(ctx) = &explain_ctx {
            let df = detect::plan(ctx, &catalog, d, args.mode, &search).await?;
            let plan = df.create_physical_plan().await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "-- {} ({} mode)", d.name, args.mode)?;
            writeln!(out, "{}", displayable(plan.as_ref()).indent(true))?;
            continue;
        }
        let run = runner.run(d, args.mode, &search).await.with_context(|| format!("running {}", d.name))?;
        if run.passes > 1 {
            eprintln!(
                "note: {}: the join did not fit in --memory-limit; ran in {} passes over hash buckets of {}",
                d.name,
                run.passes,
                d.meta.partition_by.get(args.mode.name()).map(|k| k.values().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default()
            );
        }
        if run.spill_count > 0 {
            eprintln!("note: {}: spilled {} times, {} bytes, to stay within --memory-limit", d.name, run.spill_count, run.spilled_bytes);
        }
        let (schema, batches) = (run.schema, run.batches);
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if args.format == Format::Table && args.output.is_none() {
            println!("{} — {} mode — {} results", crate::output::escape_controls(&d.meta.search_name), args.mode, rows);
        }
        output::write(&batches, schema, args.format, args.output.as_deref())?;
    }
    if !many.is_empty() {
        let ctx = match explain_ctx {
            Some(ctx) => ctx,
            None => engine::session_with(&lake, &opts).await?,
        };
        if args.explain {
            let unguarded: Vec<&str> = many.iter().filter(|d| d.sigma.as_ref().is_some_and(|i| i.guard.is_none())).map(|d| d.name.as_str()).collect();
            println!("-- {} of {} Sigma rules have a guard; these run on every row: {}", many.len() - unguarded.len(), many.len(), unguarded.join(", "));
            for source in detect::sigma::fields::Logsource::ALL {
                if let Some(df) = detect::sigma::many::plan(&ctx, source, &many, &search).await? {
                    let mut out = std::io::stdout().lock();
                    if engine::is_cluster(&ctx) {
                        // What the cluster is sent: the rules' node over the scan.
                        let plan = df.into_optimized_plan()?;
                        writeln!(out, "-- Sigma {} rules: one scan, every rule's condition on each batch, on the executors ({} mode)", source.category(), args.mode)?;
                        writeln!(out, "{}", plan.display_indent())?;
                    } else {
                        let plan = df.create_physical_plan().await?;
                        writeln!(out, "-- Sigma {} rules: one scan, every rule's condition on each batch ({} mode)", source.category(), args.mode)?;
                        writeln!(out, "{}", displayable(plan.as_ref()).indent(true))?;
                    }
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        for m in detect::sigma::many::run(&ctx, &many, &search).await.context("running the Sigma rules")? {
            if args.format == Format::Table && args.output.is_none() {
                let fired: std::collections::BTreeSet<String> = m
                    .batches
                    .iter()
                    .flat_map(|b| arrow::array::AsArray::as_string::<i32>(b.column(b.schema().index_of("rule_id").expect("rule_id"))).iter().flatten().map(str::to_string).collect::<Vec<_>>())
                    .collect();
                println!("Sigma {} — {} rules — {} matches of {} rules", m.logsource.category(), m.rules, m.rows(), fired.len());
            }
            output::write(&m.batches, m.schema.clone(), args.format, args.output.as_deref())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--list`: one tab-separated line per detection under a header.
fn list(catalog: &detect::Catalog) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let shown = |s: &str| crate::output::escape_controls(s).into_owned();
    writeln!(out, "name\tid\ttitle\tattack\tmodes\torigin\tschedule\tkind\tlevel\tstatus\tstories\trisk")?;
    for d in &catalog.detections {
        let modes: Vec<&str> = d.modes().iter().map(|m| m.name()).collect();
        let s = &d.meta.schedule;
        let (level, status) = match (&d.sigma, &d.escu) {
            (Some(i), _) => (i.level.as_str(), if i.status.is_empty() { "-" } else { i.status.as_str() }),
            (None, Some(e)) if !e.status.is_empty() => ("-", e.status.as_str()),
            _ => ("-", "-"),
        };
        let stories = if d.meta.analytic_story.is_empty() { "-".to_string() } else { d.meta.analytic_story.join(",") };
        // Risk objects as field:type:score, threat objects as field:type.
        let risk: Vec<String> = d
            .meta
            .risk
            .objects
            .iter()
            .map(|o| format!("{}:{}:{}", o.field, o.kind, o.score))
            .chain(d.meta.risk.threat_objects.iter().map(|t| format!("{}:{}", t.field, t.kind)))
            .collect();
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{} ({} to {})\t{}\t{}\t{}\t{}\t{}",
            shown(&d.name),
            shown(&d.meta.id),
            shown(&d.meta.name),
            shown(&d.meta.mitre_attack_id.join(",")),
            modes.join(","),
            shown(&d.origin),
            shown(&s.cron),
            shown(&s.earliest),
            shown(&s.latest),
            shown(&d.meta.kind),
            level,
            shown(status),
            shown(&stories),
            shown(&if risk.is_empty() { "-".to_string() } else { risk.join(",") })
        )?;
    }
    if !catalog.rejected.is_empty() {
        eprintln!("note: {} Sigma rules do not compile and are not listed (`detect --check` says why)", catalog.rejected.len());
    }
    Ok(())
}

/// `items` by `key`, the largest group first (then by key).
fn grouped<T>(items: &[T], key: impl Fn(&T) -> String) -> Vec<(String, Vec<&T>)> {
    let mut groups: std::collections::BTreeMap<String, Vec<&T>> = Default::default();
    for r in items {
        groups.entry(key(r)).or_default().push(r);
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    groups
}

/// Each group as a `# PREFIXgroup (N nouns)` line, then one line per item.
fn write_groups<T>(out: &mut impl Write, prefix: &str, noun: &str, groups: &[(String, Vec<&T>)], line: impl Fn(&T) -> String) -> std::io::Result<()> {
    for (group, items) in groups {
        writeln!(out, "# {prefix}{} ({} {noun}{})", crate::output::escape_controls(group), items.len(), if items.len() == 1 { "" } else { "s" })?;
        for r in items {
            writeln!(out, "{}", crate::output::escape_controls(&line(r)))?;
        }
    }
    Ok(())
}

/// `WHAT: OK of ALL VERB (P%); N do not, in G groups above` on stderr, when there are any.
fn summarise(what: &str, verb: &str, ok: usize, rejected: usize, groups: usize) {
    let all = ok + rejected;
    if all > 0 {
        eprintln!(
            "{what}: {ok} of {all} {verb} ({:.1}%){}",
            100.0 * ok as f64 / all as f64,
            if groups == 0 { String::new() } else { format!("; {rejected} do not, in {groups} groups above") }
        );
    }
}

/// `--check`: failures on stdout, one per line; a summary on stderr; exit 1 if any failed.
async fn check(lake_dir: &Path, catalog: &detect::Catalog) -> anyhow::Result<ExitCode> {
    let lake = Lake::open(lake_dir)?;
    let checked = detect::check::check(&lake, catalog).await?;
    let mut out = std::io::stdout().lock();
    for failure in &checked.failures {
        writeln!(out, "{}", crate::output::escape_controls(&failure.to_string()))?;
    }
    let failed = checked.failures.len();
    eprintln!(
        "checked {} detections ({} plans) against {}: {}",
        catalog.detections.len(),
        checked.planned,
        if lake.exists() { format!("the lake at {}", lake_dir.display()) } else { "the lake's schemas (no lake yet)".to_string() },
        if failed == 0 { "all plan".to_string() } else { format!("{failed} failed") }
    );
    // Sigma rules that do not compile, then ESCU detections that do not translate, grouped by
    // reason, the largest group first.
    let sigma_groups = grouped(&catalog.rejected, |r| r.reason.group());
    write_groups(&mut out, "", "rule", &sigma_groups, |r| format!("{}: {} ({}): {}", r.file, r.id, r.title, r.reason))?;
    let escu_groups = grouped(&catalog.escu_rejected, |r| r.reason.group());
    write_groups(&mut out, "ESCU: ", "detection", &escu_groups, |r| format!("{}: {} ({}): {}", r.file, r.id, r.name, r.reason))?;
    let escu = catalog.detections.iter().filter(|d| d.escu.is_some()).count();
    summarise("ESCU detections over the lake's data models", "translate", escu, catalog.escu_rejected.len(), escu_groups.len());
    let sigma = catalog.detections.iter().filter(|d| d.sigma.is_some()).count();
    summarise("Sigma rules", "compile", sigma, catalog.rejected.len(), sigma_groups.len());
    Ok(if failed == 0 && catalog.rejected.is_empty() && catalog.escu_rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
