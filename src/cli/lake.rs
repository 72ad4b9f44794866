//! `cimlake lake upgrade` and `cimlake lake history`: the lake's Delta logs.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
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
    /// Give every ingested table a Delta log up to date with the lake's commits (a lake made
    /// before they had one, or after a killed ingest); ingest does this itself.
    Upgrade,
    /// A table's Delta versions, newest first: when, what, and which lake commits each took in.
    History {
        /// endpoint.processes, network_traffic.all_traffic or quarantine.records.
        #[arg(value_name = "TABLE")]
        table: String,
    },
}

pub fn run(lake_dir: &Path, args: LakeArgs) -> anyhow::Result<ExitCode> {
    let lake = Lake::new(lake_dir);
    match args.command {
        LakeCommand::Upgrade => {
            if !lake.exists() {
                bail!("{}: no lake here (nothing has been ingested)", lake_dir.display());
            }
            for p in lake.publish_tables()? {
                println!(
                    "{}: Delta version {}, through lake commit {} ({} file{} added now)",
                    p.table.qualified_name(),
                    p.version,
                    p.through_commit,
                    p.added,
                    if p.added == 1 { "" } else { "s" }
                );
            }
        }
        LakeCommand::History { table } => {
            let Some(t) = Table::STORED.into_iter().find(|t| t.qualified_name() == table) else {
                let names: Vec<&str> = Table::STORED.iter().map(|t| t.qualified_name()).collect();
                bail!("{table}: not a table with a Delta log (those are: {})", names.join(", "));
            };
            let versions = delta::history(&lake, t)?;
            if versions.is_empty() {
                bail!("{}: no Delta log yet (run `cimlake lake upgrade`)", delta::table_root(&lake, t).display());
            }
            println!("version\tcommitted_at\toperation\tlake_commits\tfiles");
            for v in versions {
                let at = v
                    .timestamp
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map_or_else(String::new, |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                let commits = v.commits.map_or_else(String::new, |(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") });
                let files = v.files.map_or_else(String::new, |n| n.to_string());
                println!("{}\t{at}\t{}\t{commits}\t{files}", v.version, v.operation);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
