//! Single flight: concurrent callers with the same key share one computation.
//!
//! The key includes the tag generations read before computing, so a request that starts after
//! a write has been invalidated never joins a computation that began before it (that result
//! might not include the write).
//!
//! A call's entry leaves the map when the call finishes, and also when every caller waiting on
//! it has gone (clients that disconnect during a slow miss cancel their requests): otherwise
//! each abandoned key would stay forever, since keys with generations never come back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

pub(crate) struct SingleFlight<T> {
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
    pub(crate) async fn run<F, Fut>(&self, key: String, work: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let cell = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            calls.entry(key.clone()).or_default().clone()
        };
        let caller = Caller {
            flight: self,
            key,
            cell,
        };
        caller.cell.get_or_init(work).await.clone()
        // `caller` drops here, or earlier if this future is cancelled.
    }

    /// Calls in progress (the tests check that finished and abandoned calls are forgotten).
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or(0)
    }
}

impl<T> SingleFlight<T> {
    /// Forgets `cell` under `key` once it has its result, or once nobody waits on it any more.
    fn leave(&self, key: &str, cell: &Arc<OnceCell<T>>) {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        // Callers join under this lock, so the count cannot grow while it is read: two
        // references left are the map's and the one leaving.
        if calls.get(key).is_some_and(|c| Arc::ptr_eq(c, cell))
            && (cell.initialized() || Arc::strong_count(cell) <= 2)
        {
            calls.remove(key);
        }
    }
}

/// One caller of a call, however it ends.
struct Caller<'a, T> {
    flight: &'a SingleFlight<T>,
    key: String,
    cell: Arc<OnceCell<T>>,
}

impl<T> Drop for Caller<'_, T> {
    fn drop(&mut self) {
        self.flight.leave(&self.key, &self.cell);
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
    async fn calls_whose_callers_all_went_away_are_forgotten() {
        let flight = Arc::new(SingleFlight::<usize>::default());
        let callers: Vec<_> = (0..1000)
            .map(|i| {
                let flight = flight.clone();
                tokio::spawn(async move {
                    // A few keys shared by many callers, and many keys with one caller each.
                    let key = if i % 2 == 0 {
                        format!("shared-{}", i % 10)
                    } else {
                        format!("own-{i}")
                    };
                    flight
                        .run(key, || async {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            0
                        })
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(flight.in_flight() > 0);
        for caller in &callers {
            caller.abort();
        }
        for caller in callers {
            let _ = caller.await;
        }
        assert_eq!(flight.in_flight(), 0, "abandoned calls stay in the map");
    }

    #[tokio::test]
    async fn a_call_survives_while_one_caller_still_waits() {
        let flight = Arc::new(SingleFlight::<usize>::default());
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            7
        };
        let (a, b) = (flight.clone(), flight.clone());
        let first = tokio::spawn(async move { a.run("k".into(), slow).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = tokio::spawn(async move { b.run("k".into(), || async { 99 }).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.abort();
        assert_eq!(
            flight.in_flight(),
            1,
            "the second caller still waits on the call"
        );
        assert_eq!(second.await.expect("second"), 99, "it takes the call over");
        assert_eq!(flight.in_flight(), 0);
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
