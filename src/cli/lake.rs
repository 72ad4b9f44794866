//! `cimlake lake upgrade|optimize|vacuum|history`: the lake's Delta logs and its upkeep.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use crate::cim::Table;
use crate::lake::{Lake, delta};

#[derive(Debug, Clone, Args)]
pub struct LakeArgs {
    #[command(subcommand)]
    pub command: LakeCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum LakeCommand {
    /// Give every table a Delta log up to date with the lake's records: the ingested tables with
    /// the commits, the tables scheduled runs write with the run records (a lake made before they
    /// had one, or after a killed ingest); ingest and the scheduler do this themselves. A lake
    /// whose records are JSON files (made by an earlier cimlake) has them moved into the record
    /// tables first.
    Upgrade,
    /// Merge each partition's files (table, date, hour) into one: fewer, larger files with the
    /// same rows, for every reader. The replaced files stay for `--as-of` until `vacuum`.
    Optimize {
        /// Merge a partition only when it has at least this many files.
        #[arg(long, default_value_t = 2, value_name = "N")]
        min_files: usize,
    },
    /// Remove the data files no commit or run record names (left by a killed ingest or a run that
    /// died), once older than the retention period and not of a running ingest.
    Vacuum {
        /// Keep unnamed files younger than this (`0`, `30m`, `24h`, `7d`): a file may be on its
        /// way into a commit.
        #[arg(long, default_value = "7d", value_name = "DURATION")]
        retention: String,
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// A table's Delta versions, newest first: when, what, and which lake commits (or run
    /// records) each took in.
    History {
        /// endpoint.processes, network_traffic.all_traffic, quarantine.records,
        /// detections.results, risk.all_risk, risk.incidents or cimlake.runs.
        #[arg(value_name = "TABLE")]
        table: String,
    },
}

pub fn run(lake_dir: &Path, args: LakeArgs) -> anyhow::Result<ExitCode> {
    let lake = Lake::open(lake_dir)?;
    // A closed stdout (`| head`) ends the listing quietly (see main).
    let mut out = std::io::stdout().lock();
    let require_lake = || -> anyhow::Result<()> {
        if !lake.exists() {
            bail!("{}: no lake here (nothing has been ingested)", lake_dir.display());
        }
        Ok(())
    };
    match args.command {
        LakeCommand::Upgrade => {
            require_lake()?;
            for (dir, moved) in lake.upgrade_records()? {
                writeln!(out, "{dir}: {moved} record(s) moved from JSON files into its Delta table")?;
            }
            for p in lake.publish_tables()? {
                writeln!(
                    out,
                    "{}: Delta version {}, through {} {} ({} file{} added now)",
                    p.table.qualified_name(),
                    p.version,
                    if Table::STORED.contains(&p.table) { "lake commit" } else { "run" },
                    p.through_commit,
                    p.added,
                    if p.added == 1 { "" } else { "s" }
                )?;
            }
        }
        LakeCommand::Optimize { min_files } => {
            require_lake()?;
            let done = lake.optimize(min_files)?;
            match done.compaction {
                None => writeln!(out, "nothing to merge: no partition has {} or more files", min_files.max(2))?,
                Some(id) => {
                    for (table, partitions, before, after) in &done.tables {
                        writeln!(out, "{}: {before} files in {partitions} partition(s) merged into {after}", table.qualified_name())?;
                    }
                    writeln!(out, "compaction {id} published; the replaced files stay until `cimlake lake vacuum` after its retention period")?;
                }
            }
        }
        LakeCommand::Vacuum { retention, dry_run } => {
            let d = crate::time::parse_duration(&retention).with_context(|| format!("--retention {retention:?}"))?;
            let d = d.to_std().map_err(|_| anyhow::anyhow!("--retention {retention:?}: must not be negative"))?;
            require_lake()?;
            let v = lake.vacuum(d, dry_run)?;
            let verb = if dry_run { "would remove" } else { "removed" };
            for (path, _) in &v.removed {
                writeln!(out, "{verb} {}", crate::output::escape_controls(path))?;
            }
            let bytes: u64 = v.removed.iter().map(|r| r.1).sum();
            writeln!(
                out,
                "{verb} {} file(s), {bytes} bytes; kept {} unnamed file(s) younger than {retention} or of a running ingest, \
                 and {} file(s) replaced by compactions younger than {retention}",
                v.removed.len(),
                v.kept,
                v.kept_replaced
            )?;
        }
        LakeCommand::History { table } => {
            let Some(t) = delta::tables().into_iter().find(|t| t.qualified_name() == table) else {
                let names: Vec<&str> = delta::tables().iter().map(|t| t.qualified_name()).collect();
                bail!("{table}: not a table with a Delta log (those are: {})", names.join(", "));
            };
            let versions = delta::history(&lake, t)?;
            if versions.is_empty() {
                bail!("{}: no Delta log yet (run `cimlake lake upgrade`)", delta::table_name(&lake, t).display());
            }
            let records = if Table::STORED.contains(&t) { "lake_commits" } else { "runs" };
            writeln!(out, "version\tcommitted_at\toperation\t{records}\tfiles")?;
            for v in versions {
                let at = v
                    .timestamp
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map_or_else(String::new, |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                let commits = match (v.commits.or(v.runs), v.compaction) {
                    (Some((a, b)), _) if a == b => a.to_string(),
                    (Some((a, b)), _) => format!("{a}-{b}"),
                    (None, Some(k)) => format!("compaction {k}"),
                    (None, None) => String::new(),
                };
                let files = v.files.map_or_else(String::new, |n| n.to_string());
                writeln!(out, "{}\t{at}\t{}\t{commits}\t{files}", v.version, v.operation)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
