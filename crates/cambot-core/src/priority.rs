//! Background threads of the daemon's store yield the CPU to the ingest path.
//!
//! With the ingest journal, a message's latency no longer waits for SQLite, but the writer,
//! mover and checkpoint threads still compete for the same cores as the runtime's workers, which
//! journal and route the messages. On the 2-core development VM a 500-message move held a core for
//! milliseconds while the router's workers queued behind it.
//!
//! Two settings keep them out of the way (docs/ingest-journal.md, "Priorities", has the runs):
//! - the lowest nice level, 19, so that under contention they get the smallest fair share;
//! - a short scheduler slice (Linux 6.12+, EEVDF's custom slice): a thread that is picked runs
//!   for at most this long before a woken router thread may take the core back. With the
//!   default slice (1.4 ms here) a woken worker could wait out most of it; a lower nice level
//!   alone did not change that.
//!
//! They are never starved outright: a fair-class thread at nice 19 still gets its share (~1.5 %
//! of a core against one busy nice 0 thread, all idle time otherwise). `SCHED_IDLE` measured
//! slightly better on an idle machine but worse with the CPU capped near the load, where its
//! ~0.3 % share turned lock holders into stalls.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The nice level the background threads run at (the lowest).
const BACKGROUND_NICE: i32 = 19;
/// The scheduler slice the background threads ask for (the kernel's minimum is 0.1 ms).
const BACKGROUND_SLICE: Duration = Duration::from_micros(100);

/// What a thread's priority became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lowered {
    /// Nice level and slice both set (the kernel ignores the slice before 6.12).
    NiceAndSlice,
    /// `sched_setattr` was refused; only the nice level was set.
    NiceOnly,
    /// Neither could be set (logged; the thread keeps running at its priority).
    Unchanged,
}

/// `struct sched_attr`, first version (48 bytes): the libc crate does not define it.
#[repr(C)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
}

/// Lowers the calling thread to [`BACKGROUND_NICE`] with a [`BACKGROUND_SLICE`] slice. A
/// failure is logged and otherwise harmless.
pub(crate) fn lower_this_thread() -> Lowered {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        sched_nice: BACKGROUND_NICE,
        sched_priority: 0,
        sched_runtime: BACKGROUND_SLICE.as_nanos() as u64,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: `attr` is a valid, fully initialised `struct sched_attr` whose `size` field
    // names its length; pid 0 addresses the calling thread; flags 0.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attr, 0) };
    if rc == 0 {
        return Lowered::NiceAndSlice;
    }
    let refused = std::io::Error::last_os_error();
    // SAFETY: setpriority takes plain integers; on Linux, PRIO_PROCESS with who = 0 addresses
    // the calling thread only.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) } == 0 {
        tracing::debug!(error = %refused, "no custom scheduler slice for a background thread");
        return Lowered::NiceOnly;
    }
    tracing::debug!(
        error = %std::io::Error::last_os_error(),
        "lowering a background thread's priority failed"
    );
    Lowered::Unchanged
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A field of `/proc/thread-self/sched` (present with the kernel's scheduler debug info).
    fn sched_field(name: &str) -> Option<u64> {
        let text = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        text.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.rsplit(':').next())
            .and_then(|v| v.trim().parse().ok())
    }

    /// Linux 6.12 added custom slices for the fair class; older kernels accept and ignore them.
    fn kernel_has_custom_slices() -> bool {
        let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
            return false;
        };
        let mut parts = release.trim().split(['.', '-']);
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (major, minor) >= (6, 12)
    }

    #[test]
    fn a_lowered_thread_runs_at_nice_19_with_a_short_slice() {
        std::thread::spawn(|| {
            let lowered = lower_this_thread();
            assert_ne!(lowered, Lowered::Unchanged);
            // SAFETY: plain integers; who = 0 is this thread.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            assert_eq!(nice, BACKGROUND_NICE);
            if lowered == Lowered::NiceAndSlice
                && kernel_has_custom_slices()
                && let Some(slice) = sched_field("se.slice")
            {
                assert_eq!(slice, BACKGROUND_SLICE.as_nanos() as u64);
            }
        })
        .join()
        .expect("the lowered thread");
    }

    #[test]
    fn a_requested_lowering_happens_once_on_the_thread_that_applies_it() {
        let background = Background::default();
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: as above.
                let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
                background.apply_if_requested();
                // SAFETY: as above.
                let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
                assert_eq!(nice, before, "nothing was requested yet");
                background.request();
                background.apply_if_requested();
                // SAFETY: as above.
                let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
                assert_eq!(nice, BACKGROUND_NICE);
            });
        });
    }
}
