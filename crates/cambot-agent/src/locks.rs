//! Locks that survive a panic elsewhere. A `std` lock is poisoned when a thread panics while
//! holding it; the data behind these locks (caches, run bookkeeping) stays consistent at every
//! await-free step, so the lock is taken back and the event logged instead of silently skipping
//! the work or failing every later caller.

use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::RwLock;
use std::sync::RwLockReadGuard;
use std::sync::RwLockWriteGuard;

fn poisoned(what: &'static str) {
    tracing::error!(
        lock = what,
        "a lock was poisoned by a panic; recovering its data"
    );
}

pub(crate) fn lock<'a, T>(what: &'static str, m: &'a Mutex<T>) -> MutexGuard<'a, T> {
    m.lock().unwrap_or_else(|p| {
        poisoned(what);
        m.clear_poison();
        p.into_inner()
    })
}

pub(crate) fn read<'a, T>(what: &'static str, l: &'a RwLock<T>) -> RwLockReadGuard<'a, T> {
    l.read().unwrap_or_else(|p| {
        poisoned(what);
        l.clear_poison();
        p.into_inner()
    })
}

pub(crate) fn write<'a, T>(what: &'static str, l: &'a RwLock<T>) -> RwLockWriteGuard<'a, T> {
    l.write().unwrap_or_else(|p| {
        poisoned(what);
        l.clear_poison();
        p.into_inner()
    })
}
