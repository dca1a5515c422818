//! Locks that survive a panic elsewhere. A `std` lock is poisoned when a thread panics while
//! holding it (here: a failing test thread); the data behind these locks (recorded sends,
//! prompts, requests, scripts) is only ever pushed to or read, so the lock is taken back and the
//! event logged instead of silently dropping a record the test then misses.

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
