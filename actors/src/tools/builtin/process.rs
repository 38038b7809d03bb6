//! Child processes of tools: each in its own process group, killed as a group when the call
//! ends, times out or is cancelled (its future dropped), and — where the host offers the
//! cgroup `pids` controller — caged in a cgroup whose `pids.max` bounds what a fork bomb can
//! take. `RLIMIT_NPROC` is no answer here: the kernel does not enforce it for root, and for
//! other users it counts every process of the user, not those of one call.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

/// Tasks (processes and threads) one call may run at once.
pub const MAX_TASKS: u32 = 1024;

/// Kills a process group when dropped.
#[derive(Debug)]
pub struct GroupGuard(Option<u32>);

impl GroupGuard {
    /// Guards the group led by `pid` (the child was spawned with `process_group(0)`).
    pub fn new(pid: Option<u32>) -> Self {
        Self(pid)
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(pid_of) {
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

fn pid_of(raw: u32) -> Option<Pid> {
    i32::try_from(raw).ok().and_then(Pid::from_raw)
}

/// The root of the cgroup v1 `pids` hierarchy, or a v2 root that delegates `pids`.
fn pids_root() -> Option<PathBuf> {
    let v1 = Path::new("/sys/fs/cgroup/pids");
    if v1.join("cgroup.procs").exists() {
        return Some(v1.to_path_buf());
    }
    let v2 = Path::new("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.subtree_control")).ok()?;
    controllers
        .split_whitespace()
        .any(|c| c == "pids")
        .then(|| v2.to_path_buf())
}

/// A per-call cgroup with a task limit. Dropping it kills everything still inside and removes
/// it.
#[derive(Debug)]
pub struct PidCage {
    dir: PathBuf,
}

impl PidCage {
    /// Creates a cage allowing `max` tasks, or `None` where cgroups are not writable (the call
    /// then runs with its process group as the only bound).
    pub fn create(max: u32) -> Option<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parent = pids_root()?.join("turnstone");
        std::fs::create_dir_all(&parent).ok()?;
        let name = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = parent.join(name);
        std::fs::create_dir(&dir).ok()?;
        let cage = Self { dir };
        std::fs::write(cage.dir.join("pids.max"), max.to_string()).ok()?;
        Some(cage)
    }

    /// Whether this host can cage tool processes.
    pub fn available() -> bool {
        Self::create(1).is_some()
    }

    /// The file a process writes its pid to in order to enter the cage.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// The processes inside.
    pub fn members(&self) -> Vec<u32> {
        std::fs::read_to_string(self.procs_file())
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// The most tasks that were inside at once (where the kernel reports it).
    pub fn peak(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("pids.peak"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }

    /// Kills until the cage is empty (members may fork while being killed, but never past
    /// the limit), then removes it.
    fn empty_and_remove(dir: &Path) {
        let procs = dir.join("cgroup.procs");
        for round in 0..200 {
            let members: Vec<u32> = std::fs::read_to_string(&procs)
                .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
                .unwrap_or_default();
            if members.is_empty() && std::fs::remove_dir(dir).is_ok() {
                return;
            }
            for pid in members.into_iter().filter_map(pid_of) {
                let _ = kill_process(pid, Signal::KILL);
            }
            std::thread::sleep(Duration::from_millis(if round < 20 { 5 } else { 50 }));
        }
        tracing::warn!(cgroup = %dir.display(), "tool processes outlived their call");
    }
}

impl Drop for PidCage {
    fn drop(&mut self) {
        // Killed processes take a moment to leave; do not block the caller's runtime thread.
        let dir = std::mem::take(&mut self.dir);
        let _ = std::thread::Builder::new()
            .name("pid-cage-reaper".into())
            .spawn(move || Self::empty_and_remove(&dir));
    }
}
