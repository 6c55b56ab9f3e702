//! Small helpers that every layer uses: a poison-tolerant mutex lock and the wall clock in
//! milliseconds. They live here, below everything, so that no layer imports another one just
//! for a helper (which is how import cycles start).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Locks a mutex, recovering the data if a panicking thread poisoned it: the maps behind these
/// locks stay consistent between statements, so a panic elsewhere must not take sessions down.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
