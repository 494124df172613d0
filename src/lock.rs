//! One way to take a `std::sync::Mutex`: a panic while a guard was held
//! must not turn every later `lock()` into a silent no-op (the refresher's
//! state read as "default" forever, a backoff never recorded: a busy
//! loop). The data behind these locks is plain state that stays coherent
//! field by field, so the guard is recovered and the event is logged.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, recovering (and logging) a lock poisoned by a panic.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned: PoisonError<_>| {
        tracing::error!("a lock was poisoned by a panic; recovering its state");
        m.clear_poison();
        poisoned.into_inner()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_recovered() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = std::sync::Arc::clone(&m);
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().expect("lock");
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
        assert!(!m.is_poisoned());
    }
}
