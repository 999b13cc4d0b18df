//! Single flight: concurrent callers with the same key share one computation.
//!
//! The key includes the tag generations read before computing, so a request that starts after
//! a write has been invalidated never joins a computation that began before it (that result
//! might not include the write).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

pub struct SingleFlight<T> {
    calls: Mutex<HashMap<String, Arc<OnceCell<T>>>>,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        Self {
            calls: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> SingleFlight<T> {
    /// Runs `work` unless a call with this key is already running, in which case it waits for
    /// that call's result. If the running call is cancelled, a waiter takes over.
    pub async fn run<F, Fut>(&self, key: String, work: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let cell = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            calls.entry(key.clone()).or_default().clone()
        };
        let result = cell.get_or_init(work).await.clone();
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        if calls.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            calls.remove(&key);
        }
        result
    }

    /// Calls in progress (for tests and diagnostics).
    pub fn in_flight(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_calls_with_one_key_run_once() {
        let flight = Arc::new(SingleFlight::<usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (flight, runs) = (flight.clone(), runs.clone());
                tokio::spawn(async move {
                    flight
                        .run("k".into(), || async {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            runs.fetch_add(1, Ordering::SeqCst) + 41
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task"), 41);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flight.in_flight(), 0, "finished calls are forgotten");
    }

    #[tokio::test]
    async fn different_keys_run_separately() {
        let flight = SingleFlight::<&'static str>::default();
        let (a, b) = tokio::join!(
            flight.run("a".into(), || async { "a" }),
            flight.run("b".into(), || async { "b" })
        );
        assert_eq!((a, b), ("a", "b"));
    }
}
