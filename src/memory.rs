//! How much memory the machine (or container) gives us, and how much the process uses.
//!
//! The warm's memory budget is a share of the available memory: the cgroup limit when the
//! process runs under one (containers, systemd units), else the kernel's `MemAvailable`. Usage
//! is the process's resident set. Both come from `/proc` and `/sys/fs/cgroup`; where those do
//! not exist (not Linux) the functions return `None` and the budget is not enforced.

use std::path::{Path, PathBuf};

/// Where the available figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AvailableFrom {
    /// The memory limit of the process's cgroup (v2 `memory.max` or v1 `memory.limit_in_bytes`).
    Cgroup,
    /// `MemAvailable` in `/proc/meminfo`.
    MemAvailable,
}

/// Memory the process may use, and where the figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Available {
    /// Bytes.
    pub bytes: u64,
    /// Its origin.
    pub from: AvailableFrom,
}

/// The memory available to this process, if the platform says.
pub fn available() -> Option<Available> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    if let Some(bytes) = cgroup_limit(Path::new("/sys/fs/cgroup"), &cgroups) {
        return Some(Available { bytes, from: AvailableFrom::Cgroup });
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some(Available { bytes: kib_field(&meminfo, "MemAvailable:")?, from: AvailableFrom::MemAvailable })
}

/// The tightest memory limit on the cgroup path named in `proc_cgroup` (the text of
/// `/proc/self/cgroup`) or its ancestors, under the cgroup mount `root`.
fn cgroup_limit(root: &Path, proc_cgroup: &str) -> Option<u64> {
    let mut tightest: Option<u64> = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (base, file) = if controllers.is_empty() {
            (root.to_path_buf(), "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), "memory.limit_in_bytes")
        } else {
            continue;
        };
        let mut dir: PathBuf = base.join(path.trim_start_matches('/'));
        loop {
            let limit =
                std::fs::read_to_string(dir.join(file)).ok().and_then(|t| t.trim().parse::<u64>().ok());
            // v1 reports "no limit" as a number near u64::MAX.
            if let Some(l) = limit.filter(|l| *l < 1 << 60) {
                tightest = Some(tightest.map_or(l, |t| t.min(l)));
            }
            if dir == base || !dir.pop() {
                break;
            }
        }
    }
    tightest
}

/// The process's resident set size in bytes.
pub fn resident() -> Option<u64> {
    status_field("VmRSS:")
}

/// The process's peak resident set size in bytes.
pub fn peak_resident() -> Option<u64> {
    status_field("VmHWM:")
}

fn status_field(name: &str) -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/self/status").ok()?, name)
}

/// A `Name:   1234 kB` field of a `/proc` file, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// The warm's memory budget (`warm.max_memory`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryLimit {
    /// A share of the available memory, at most [`MAX_MEMORY_SHARE`].
    Share(f64),
    /// Bytes; at run time never more than [`MAX_MEMORY_SHARE`] of the available memory.
    Bytes(u64),
}

/// The largest share of the available memory a warm may use.
pub const MAX_MEMORY_SHARE: f64 = 0.5;

impl MemoryLimit {
    /// The budget in bytes, given the available memory.
    pub fn bytes(self, available: u64) -> u64 {
        let ceiling = (available as f64 * MAX_MEMORY_SHARE) as u64;
        match self {
            MemoryLimit::Share(s) => (available as f64 * s) as u64,
            MemoryLimit::Bytes(b) => b.min(ceiling),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cgroup_v2_limits_up_the_tree() {
        let root = tempfile::tempdir().expect("temp dir");
        let leaf = root.path().join("system.slice/app.service");
        std::fs::create_dir_all(&leaf).expect("dirs");
        std::fs::write(leaf.join("memory.max"), "max\n").expect("write");
        std::fs::write(root.path().join("system.slice/memory.max"), "1073741824\n").expect("write");
        assert_eq!(cgroup_limit(root.path(), "0::/system.slice/app.service\n"), Some(1 << 30));
        std::fs::write(leaf.join("memory.max"), "536870912\n").expect("write");
        assert_eq!(cgroup_limit(root.path(), "0::/system.slice/app.service\n"), Some(1 << 29));
        assert_eq!(cgroup_limit(root.path(), "0::/elsewhere\n"), None);
    }

    #[test]
    fn reads_cgroup_v1_and_ignores_its_no_limit_value() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("memory/docker/abc");
        std::fs::create_dir_all(&dir).expect("dirs");
        std::fs::write(dir.join("memory.limit_in_bytes"), "9223372036854771712\n").expect("write");
        let text = "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n";
        assert_eq!(cgroup_limit(root.path(), text), None);
        std::fs::write(dir.join("memory.limit_in_bytes"), "268435456\n").expect("write");
        assert_eq!(cgroup_limit(root.path(), text), Some(1 << 28));
    }

    #[test]
    fn reads_proc_fields() {
        let meminfo = "MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(kib_field(meminfo, "MemAvailable:"), Some(20_000_000 * 1024));
        assert_eq!(kib_field(meminfo, "SwapTotal:"), None);
        if cfg!(target_os = "linux") {
            let rss = resident().expect("VmRSS on Linux");
            assert!(rss > 0 && peak_resident().expect("VmHWM") >= rss);
            assert!(available().expect("MemAvailable on Linux").bytes > 0);
        }
    }
}
