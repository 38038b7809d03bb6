//! Child processes of tools: each in its own process group, killed as a group when the call
//! ends, times out or is cancelled (its future dropped).

use std::process::Stdio;

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
        if let Some(pgid) = self.0 {
            // `kill -- -PGID` signals the whole group (no unsafe code needed for killpg).
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
