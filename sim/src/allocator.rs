//! The one allocator setting the simulator makes for itself.
//!
//! mimalloc hands memory that has stayed free for a second back to the OS. A simulator run
//! frees and reuses memory all the time (each turn's events, buffers and tasks), so that
//! memory is faulted in again soon after, and with transparent huge pages each fault zeroes
//! 2 MB (the page faults and CPU per turn, before and after: docs/benchmarks.md, 2026-12-08,
//! later). A run is bounded, so the simulator keeps what it has freed instead.

/// mimalloc's option for how long freed memory waits before it goes back to the OS
/// (milliseconds; -1: never). mimalloc reads it once, when the process starts.
pub const PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";

/// Starts this program again in the same process (`exec`, same arguments and pid) with
/// [`PURGE_DELAY_VAR`] set to keep freed memory, unless it is set already (by the caller, to
/// choose otherwise, or by this on the first pass). If the program cannot be started again,
/// it carries on with the allocator's defaults.
pub fn keep_freed_memory() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os(PURGE_DELAY_VAR).is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let mut again = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            again.arg0(arg0);
        }
        // Returns only if the program could not be started again.
        let _ = again.args(args).env(PURGE_DELAY_VAR, "-1").exec();
    }
}
