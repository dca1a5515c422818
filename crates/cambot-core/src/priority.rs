//! Background threads of the daemon's store yield the CPU to the ingest path.
//!
//! With the ingest journal, a message's latency no longer waits for SQLite, but the writer,
//! mover and checkpoint threads still compete for the same cores as the ingest thread and the
//! runtime's workers. On the 2-core development VM a 500-message move held a core for
//! milliseconds while the router's workers queued behind it. At nice +10 the scheduler runs
//! the latency path first; the writer still gets every idle cycle (router bench, alternating
//! runs: open-loop p99 without the start burst 4.4-9.6 ms against 8.7-18.3 ms at nice 0).

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

/// How far below the process's own priority the background threads run.
const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's priority by [`BACKGROUND_NICE`] (capped at the lowest, 19).
/// A failure is logged and otherwise harmless.
pub(crate) fn lower_this_thread() {
    // SAFETY: getpriority/setpriority take plain integers; on Linux, PRIO_PROCESS with who = 0
    // addresses the calling thread only.
    let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let target = (current + BACKGROUND_NICE).min(19);
    // SAFETY: as above.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, target) } != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "lowering a background thread's priority failed"
        );
    }
}

/// A request for a thread to lower its own priority, which it honours at its next round of
/// work (a thread can only be addressed from inside itself without its kernel id).
#[derive(Debug, Default)]
pub(crate) struct Background {
    requested: AtomicBool,
    applied: AtomicBool,
}

impl Background {
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Release);
    }

    /// Called by the thread itself.
    pub(crate) fn apply_if_requested(&self) {
        if self.requested.load(Ordering::Acquire) && !self.applied.swap(true, Ordering::AcqRel) {
            lower_this_thread();
        }
    }
}
