//! Process trees and connections around a hit, from the rows of `endpoint.processes` and
//! `network_traffic.all_traffic` on the hit's hosts.
//!
//! A process's parent is the process with its `parent_process_guid` on the same host; without
//! one, the latest process on the host with its `parent_process_id` started no later than it (a
//! pid is reused, a GUID is not). A connection belongs to the process with its `process_guid` on
//! the host, else to the latest process with its `process_id` started no later than the flow.
//!
//! One link is inferred, and marked so: `MsiExec.exe -Embedding` is started by the Windows
//! Installer service (its recorded parent, `msiexec.exe /V`), on behalf of the client
//! `msiexec.exe` that asked for the install; it is linked to the latest other `msiexec.exe` on
//! the host started within [`MSI_CLIENT_WINDOW_US`] before it, so the chain
//! `cmd.exe → msiexec.exe /i … → MsiExec.exe -Embedding` reads as one.

use std::collections::HashMap;

/// How long before an `MsiExec.exe -Embedding` its client `msiexec.exe` may have started.
pub const MSI_CLIENT_WINDOW_US: i64 = 10 * 60 * 1_000_000;

/// The fields of a process row the tree needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proc {
    pub time_us: i64,
    pub host: String,
    pub guid: Option<String>,
    pub pid: Option<String>,
    pub parent_guid: Option<String>,
    pub parent_pid: Option<String>,
    pub name: String,
    pub command: String,
}

/// The fields of a flow row the tree needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flow {
    pub time_us: i64,
    pub host: String,
    pub guid: Option<String>,
    pub pid: Option<String>,
}

/// Processes and flows indexed by host, GUID and pid.
pub struct Forest<'a> {
    procs: &'a [Proc],
    by_guid: HashMap<(&'a str, &'a str), usize>,
    /// (host, pid) → processes, by start time.
    by_pid: HashMap<(&'a str, &'a str), Vec<usize>>,
    parent: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
    /// For an `MsiExec.exe -Embedding`: the client `msiexec.exe` it ran for (inferred).
    msi_client: Vec<Option<usize>>,
    /// The processes an `MsiExec.exe -Embedding` ran for each client.
    msi_servers: Vec<Vec<usize>>,
}

fn is_msi_server(p: &Proc) -> bool {
    p.name.eq_ignore_ascii_case("msiexec.exe") && p.command.to_ascii_lowercase().contains("-embedding")
}

/// The Windows Installer service itself (`msiexec.exe /V`).
fn is_msi_service(p: &Proc) -> bool {
    p.command.trim().to_ascii_lowercase().ends_with("/v")
}

impl<'a> Forest<'a> {
    pub fn new(procs: &'a [Proc]) -> Self {
        let mut by_guid = HashMap::new();
        let mut by_pid: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for (i, p) in procs.iter().enumerate() {
            if let Some(g) = &p.guid {
                // The first observation of a GUID stands for it.
                by_guid.entry((p.host.as_str(), g.as_str())).or_insert(i);
            }
            if let Some(pid) = &p.pid {
                by_pid.entry((p.host.as_str(), pid.as_str())).or_default().push(i);
            }
        }
        for v in by_pid.values_mut() {
            v.sort_by_key(|&i| (procs[i].time_us, procs[i].guid.is_none()));
        }
        let mut forest = Forest {
            procs,
            by_guid,
            by_pid,
            parent: vec![None; procs.len()],
            children: vec![Vec::new(); procs.len()],
            msi_client: vec![None; procs.len()],
            msi_servers: vec![Vec::new(); procs.len()],
        };
        for i in 0..procs.len() {
            let p = &procs[i];
            let parent = match &p.parent_guid {
                Some(g) => forest.by_guid.get(&(p.host.as_str(), g.as_str())).copied(),
                None => p.parent_pid.as_deref().and_then(|pid| forest.by_pid_at(&p.host, pid, p.time_us)),
            };
            if let Some(parent) = parent.filter(|&q| q != i && procs[q].time_us <= p.time_us) {
                forest.parent[i] = Some(parent);
                forest.children[parent].push(i);
            }
            if is_msi_server(p) {
                forest.msi_client[i] = forest.msi_client_of(i);
                if let Some(c) = forest.msi_client[i] {
                    forest.msi_servers[c].push(i);
                }
            }
        }
        for c in forest.children.iter_mut().chain(forest.msi_servers.iter_mut()) {
            c.sort_by_key(|&i| (procs[i].time_us, i));
        }
        forest
    }

    /// The latest process on `host` with `pid` started no later than `at` (a Sysmon row before a
    /// GUID-less row of the same instant).
    pub fn by_pid_at(&self, host: &str, pid: &str, at: i64) -> Option<usize> {
        let v = self.by_pid.get(&(host, pid))?;
        let n = v.partition_point(|&i| self.procs[i].time_us <= at);
        let last = *v.get(n.checked_sub(1)?)?;
        // Of the rows within a second of the latest, the first with a GUID.
        let t = self.procs[last].time_us;
        v[..n].iter().rev().take_while(|&&i| t - self.procs[i].time_us <= 1_000_000).find(|&&i| self.procs[i].guid.is_some()).copied().or(Some(last))
    }

    /// The process of a hit: by GUID on its host, else by pid at its time.
    pub fn find(&self, host: &str, guid: Option<&str>, pid: Option<&str>, at: i64) -> Option<usize> {
        if let Some(i) = guid.and_then(|g| self.by_guid.get(&(host, g))) {
            return Some(*i);
        }
        pid.and_then(|pid| self.by_pid_at(host, pid, at))
    }

    fn msi_client_of(&self, i: usize) -> Option<usize> {
        let p = &self.procs[i];
        let mut best: Option<usize> = None;
        for (j, q) in self.procs.iter().enumerate() {
            if j == i || q.host != p.host || !q.name.eq_ignore_ascii_case("msiexec.exe") || is_msi_server(q) || is_msi_service(q) {
                continue;
            }
            if q.time_us > p.time_us || p.time_us - q.time_us > MSI_CLIENT_WINDOW_US {
                continue;
            }
            let better = match best {
                None => true,
                // The latest; of two within a second, the one with a GUID.
                Some(b) => {
                    let bt = self.procs[b].time_us;
                    if (q.time_us - bt).abs() <= 1_000_000 && q.guid.is_some() != self.procs[b].guid.is_some() {
                        q.guid.is_some()
                    } else {
                        q.time_us > bt
                    }
                }
            };
            if better {
                best = Some(j);
            }
        }
        best
    }

    pub fn parent(&self, i: usize) -> Option<usize> {
        self.parent[i]
    }

    /// Ancestors, nearest first, at most `depth`.
    pub fn ancestors(&self, i: usize, depth: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = i;
        while let Some(p) = self.parent[at] {
            if out.contains(&p) || p == i || out.len() >= depth {
                break;
            }
            out.push(p);
            at = p;
        }
        out
    }

    pub fn children(&self, i: usize) -> &[usize] {
        &self.children[i]
    }

    /// The `MsiExec.exe -Embedding` processes that ran for the client `i` (inferred).
    pub fn msi_servers(&self, i: usize) -> &[usize] {
        &self.msi_servers[i]
    }

    /// For an `MsiExec.exe -Embedding`: the client it ran for (inferred).
    pub fn msi_client(&self, i: usize) -> Option<usize> {
        self.msi_client[i]
    }

    /// The process each flow belongs to.
    pub fn owners(&self, flows: &[Flow]) -> Vec<Option<usize>> {
        flows
            .iter()
            .map(|f| {
                let by_guid = f.guid.as_deref().and_then(|g| self.by_guid.get(&(f.host.as_str(), g)).copied());
                by_guid.or_else(|| f.pid.as_deref().and_then(|pid| self.by_pid_at(&f.host, pid, f.time_us)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    fn p(t: i64, host: &str, guid: Option<&str>, pid: &str, pguid: Option<&str>, ppid: &str, name: &str, cmd: &str) -> Proc {
        Proc {
            time_us: t * 1_000_000,
            host: host.into(),
            guid: guid.map(Into::into),
            pid: Some(pid.into()),
            parent_guid: pguid.map(Into::into),
            parent_pid: Some(ppid.into()),
            name: name.into(),
            command: cmd.into(),
        }
    }

    #[test]
    fn parents_by_guid_then_by_pid_at_the_time_and_the_msi_chain() {
        let procs = vec![
            p(0, "h", Some("C"), "4120", Some("E"), "3456", "cmd.exe", "cmd.exe /c msiexec /i x.msi"),
            p(1, "h", Some("M"), "5312", Some("C"), "4120", "msiexec.exe", "msiexec.exe /q /i x.msi"),
            // The same process from the Security log: no GUID, found by pid.
            p(1, "h", None, "5312", None, "4120", "msiexec.exe", "msiexec.exe /q /i x.msi"),
            p(3, "h", Some("S"), "6044", Some("V"), "1148", "MsiExec.exe", "C:\\Windows\\System32\\MsiExec.exe -Embedding 5C3A C"),
            // pid 4120 reused later by another process on the same host, and on another host.
            p(100, "h", None, "4120", None, "1", "notepad.exe", "notepad"),
            p(101, "h", None, "7", None, "4120", "calc.exe", "calc"),
            p(2, "other", None, "9", None, "4120", "x.exe", "x"),
        ];
        let f = Forest::new(&procs);
        assert_eq!(f.parent(1), Some(0), "by GUID");
        assert_eq!(f.parent(2), Some(0), "by pid at its time");
        assert_eq!(f.parent(5), Some(4), "the reused pid's later process");
        assert_eq!(f.parent(6), None, "never across hosts");
        assert_eq!(f.parent(3), None, "the service is not in the rows");
        assert_eq!(f.children(0), &[1, 2]);
        assert_eq!(f.ancestors(1, 8), vec![0]);
        // The -Embedding process ran for the client with the GUID, not its GUID-less twin.
        assert_eq!(f.msi_client(3), Some(1));
        assert_eq!(f.msi_servers(1), &[3]);
        assert_eq!(f.find("h", Some("M"), None, 0), Some(1));
        assert_eq!(f.find("h", None, Some("5312"), 2_000_000), Some(1), "the GUID row of the same instant");
        let flows = vec![
            Flow { time_us: 2_000_000, host: "h".into(), guid: None, pid: Some("5312".into()) },
            Flow { time_us: 2_000_000, host: "h".into(), guid: Some("S".into()), pid: Some("6044".into()) },
            Flow { time_us: 200_000_000, host: "h".into(), guid: None, pid: Some("4120".into()) },
        ];
        assert_eq!(f.owners(&flows), vec![Some(1), Some(3), Some(4)]);
    }

    #[test]
    fn an_msi_server_without_a_recent_client_has_none() {
        let procs = vec![
            p(0, "h", Some("M"), "5312", None, "1", "msiexec.exe", "msiexec.exe /i x.msi"),
            p(0, "h", Some("V"), "1148", None, "600", "msiexec.exe", "C:\\Windows\\system32\\msiexec.exe /V"),
            p(11 * 60, "h", Some("S"), "6044", Some("V"), "1148", "MsiExec.exe", "MsiExec.exe -Embedding X"),
        ];
        let f = Forest::new(&procs);
        assert_eq!(f.msi_client(2), None, "eleven minutes later");
        assert_eq!(f.parent(2), Some(1), "the service, by GUID");
    }

    #[test]
    fn a_parent_loop_in_crafted_rows_ends() {
        let procs = vec![
            p(0, "h", Some("A"), "1", Some("B"), "2", "a.exe", "a"),
            p(0, "h", Some("B"), "2", Some("A"), "1", "b.exe", "b"),
        ];
        let f = Forest::new(&procs);
        assert!(f.ancestors(0, 8).len() <= 1);
        assert!(f.ancestors(1, 8).len() <= 1);
    }
}
