//! Locks that survive a panic elsewhere. A `std` lock is poisoned when a thread panics while
//! holding it; the data behind these locks (session streams, rate buckets, key caches, task
//! handles) stays consistent at every step a guard is held, so the lock is taken back and the
//! event logged instead of silently skipping the work.

use std::sync::Mutex;
use std::sync::MutexGuard;

pub(crate) fn lock<'a, T>(what: &'static str, m: &'a Mutex<T>) -> MutexGuard<'a, T> {
    m.lock().unwrap_or_else(|p| {
        tracing::error!(
            lock = what,
            "a lock was poisoned by a panic; recovering its data"
        );
        m.clear_poison();
        p.into_inner()
    })
}
