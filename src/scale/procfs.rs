//! CPU and memory of an instance's whole process tree, read from `/proc`.
//!
//! The process orchestrator starts every instance in its own process group, so
//! "the tree" is every process whose group id is the instance's pid: the
//! `sh -c` wrapper, the server and whatever it forks.
//!
//! - CPU is the growth of `utime + stime` over the group between two reads,
//!   divided by the wall time between them, **per core** as `top` shows it:
//!   100% is one core kept busy, and a process using two cores reads 200%.
//!   Per core rather than per host because a policy's 80% should mean "this
//!   instance is near one core's worth", whatever the host's size. A process
//!   that exited between reads takes its ticks with it, so an interval in which
//!   a child died may read low; that is a sampling error, never a negative.
//! - Memory is the summed resident set (`VmRSS`) as a share of the instance's
//!   `memory_limit_mb`, or of the host's `MemTotal` without one.

use std::fs;
use std::path::Path;
use std::time::Instant;

/// Clock ticks per second of `utime`/`stime` in `/proc/PID/stat`.
///
/// Linux fixes `USER_HZ` at 100 on every architecture it exports to user space,
/// whatever the kernel's internal tick rate.
const TICKS_PER_SECOND: f64 = 100.0;

/// Usage of one process group over the last interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU over the interval, percent of one core; `None` on the first read.
    pub cpu_percent: Option<f64>,
    /// Resident memory now, percent of the limit (or of host memory).
    pub memory_percent: f64,
}

/// Reads one instance's process group repeatedly, keeping the previous read.
#[derive(Debug)]
pub struct TreeSampler {
    group: u32,
    memory_base_kb: Option<u64>,
    last: Option<(Instant, u64)>,
}

/// What one pass over `/proc` found for a process group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct GroupTotals {
    processes: u32,
    ticks: u64,
    rss_kb: u64,
}

impl TreeSampler {
    /// A sampler of the group led by `group`, with memory measured against `memory_limit_mb`.
    pub fn new(group: u32, memory_limit_mb: Option<u64>) -> Self {
        Self {
            group,
            memory_base_kb: memory_limit_mb.map(|mb| mb * 1024).or_else(host_memory_kb),
            last: None,
        }
    }

    /// Reads the group now; `None` when no process of the group is left.
    pub fn sample(&mut self) -> Option<Usage> {
        let now = Instant::now();
        let totals = read_group(Path::new("/proc"), self.group);
        if totals.processes == 0 {
            return None;
        }
        let cpu_percent = self.last.map(|(at, ticks)| {
            let wall = now.duration_since(at).as_secs_f64();
            let used = totals.ticks.saturating_sub(ticks) as f64 / TICKS_PER_SECOND;
            if wall > 0.0 {
                used / wall * 100.0
            } else {
                0.0
            }
        });
        self.last = Some((now, totals.ticks));
        let memory_percent = match self.memory_base_kb {
            Some(base) if base > 0 => totals.rss_kb as f64 / base as f64 * 100.0,
            _ => 0.0,
        };
        Some(Usage {
            cpu_percent,
            memory_percent,
        })
    }
}

/// Sums every process of group `group` under `proc_root`.
fn read_group(proc_root: &Path, group: u32) -> GroupTotals {
    let Ok(entries) = fs::read_dir(proc_root) else {
        return GroupTotals::default();
    };
    let mut totals = GroupTotals::default();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let dir = proc_root.join(pid.to_string());
        let Some(stat) = fs::read_to_string(dir.join("stat")).ok() else {
            continue;
        };
        let Some((_, pgrp, ticks)) = parse_stat(&stat) else {
            continue;
        };
        if pgrp != group {
            continue;
        }
        totals.processes += 1;
        totals.ticks += ticks;
        totals.rss_kb += fs::read_to_string(dir.join("status"))
            .ok()
            .and_then(|s| field_kb(&s, "VmRSS:"))
            .unwrap_or(0);
    }
    totals
}

/// The state, process group and `utime + stime` of a `/proc/PID/stat` line.
///
/// The command name (field 2) may hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) ... utime(14) stime(15).
    let state = fields.first()?.chars().next()?;
    let pgrp = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((state, pgrp, utime + stime))
}

/// The kB value of a `Key:   1234 kB` line.
fn field_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn host_memory_kb() -> Option<u64> {
    field_kb(&fs::read_to_string("/proc/meminfo").ok()?, "MemTotal:")
}

/// Every pid of process group `group` still running (zombies excluded: they hold no resources).
pub fn group_members(group: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
                .is_some_and(|(state, pgrp, _)| pgrp == group && state != 'Z')
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line =
            "4242 (my (odd) name) S 1 4240 4240 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat(line), Some(('S', 4240, 300)));
    }

    #[test]
    fn reads_this_process_group() {
        let group = nix::unistd::getpgrp().as_raw() as u32;
        let totals = read_group(Path::new("/proc"), group);
        assert!(
            totals.processes >= 1,
            "the test process is in its own group"
        );
        assert!(totals.rss_kb > 0, "a running process has resident memory");
    }

    #[test]
    fn first_sample_has_no_cpu_and_the_second_has_one() {
        let group = nix::unistd::getpgrp().as_raw() as u32;
        let mut sampler = TreeSampler::new(group, Some(1 << 20));
        let first = sampler.sample().expect("our own group exists");
        assert_eq!(first.cpu_percent, None, "CPU needs two reads");
        let second = sampler.sample().expect("our own group exists");
        assert!(second.cpu_percent.is_some_and(|c| c >= 0.0));
        assert!(second.memory_percent > 0.0);
    }
}
