//! `cimlake gen`: generate realistic telemetry with planted MSIExec positives.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::Args;

use crate::generate::{GenConfig, GenFormat, GenOrder, generate_in_order};
use crate::lake::Lake;
use crate::time::parse_time;

#[derive(Debug, Clone, Args)]
pub struct GenArgs {
    /// Random seed: the same seed and options give the same output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 50)]
    pub hosts: u32,
    #[arg(long, default_value_t = 10_000)]
    pub processes: u64,
    /// Average flows per process.
    #[arg(long, default_value_t = 10.0)]
    pub flows_per_process: f64,
    /// Start of the time span (RFC 3339 or Splunk relative).
    #[arg(long, default_value = "2026-11-02T00:00:00Z", allow_hyphen_values = true)]
    pub start: String,
    /// Length of the time span, in hours.
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// Share of processes that are msiexec.exe.
    #[arg(long, default_value_t = 0.005)]
    pub msiexec_share: f64,
    /// Planted true positives (msiexec downloading over 80/443).
    #[arg(long, default_value_t = 20)]
    pub positives: u64,
    /// Write to the lake, or raw logs of one shape.
    #[arg(long, value_enum, default_value_t = GenFormat::Lake)]
    pub format: GenFormat,
    /// The order of the events in raw logs: `hosts` writes host groups one after another, each
    /// over the whole span, as a merged export can be.
    #[arg(long, value_enum, default_value_t = GenOrder::Time)]
    pub order: GenOrder,
    /// Directory for the raw logs and `expected.csv` (the detection rows the positives produce).
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(lake_dir: &Path, args: GenArgs) -> anyhow::Result<ExitCode> {
    let cfg = GenConfig {
        seed: args.seed,
        hosts: args.hosts.max(1),
        processes: args.processes,
        flows_per_process: args.flows_per_process,
        start: parse_time(&args.start, Utc::now()).context("--start")?,
        hours: args.hours.max(1),
        msiexec_share: args.msiexec_share,
        positives: args.positives,
    };
    anyhow::ensure!((0.0..=1.0).contains(&cfg.msiexec_share), "--msiexec-share must be between 0 and 1");
    let bar = if std::io::stderr().is_terminal() { indicatif::ProgressBar::new(cfg.processes) } else { indicatif::ProgressBar::hidden() };
    let report = generate_in_order(&cfg, args.format, args.order, &Lake::open(lake_dir)?, &args.out, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    match (&report.commit, &report.file) {
        (Some(c), _) => println!(
            "generated {} processes and {} flows into {} (commit {})",
            report.processes,
            report.flows,
            lake_dir.display(),
            c.id
        ),
        (None, Some(f)) => println!("generated {} processes and {} flows into {}", report.processes, report.flows, f.display()),
        _ => {}
    }
    println!(
        "{} expected detection rows for {} planted positives in {}",
        report.expected.len(),
        cfg.positives.min(cfg.processes),
        args.out.join("expected.csv").display()
    );
    Ok(ExitCode::SUCCESS)
}
