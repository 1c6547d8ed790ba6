//! A registry's request budget on this replica: a token bucket (requests
//! per second, with a burst of one second's worth, at least one) and a
//! semaphore (requests in flight), shared by every client of the registry.
//!
//! A request first takes a concurrency slot, then a token, and is sent at
//! once: so in any window of `t` seconds at most `burst + rate * t`
//! requests leave, and never more than `max_concurrent` at a time.
//!
//! A blob transfer (CopyImage) is a GET on the source whose body streams
//! into a PUT on the target, so the GET is in flight until the PUT ends.
//! It takes its slots for the whole transfer with [`hold`]: one slot of
//! each registry involved, one only when both are the same registry, taken
//! in one fixed order (by the limiter's address), so two transfers in
//! opposite directions between two registries cannot each hold the slot the
//! other waits for. Inside [`Held::scope`] the task's requests to those
//! registries (the GET, the PUT, a token fetch on a 401) take a token but
//! no second slot: a GET and its PUT to one registry with one slot cannot
//! wait for each other.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::domain::Budget;

/// The token bucket. Tokens may go negative: each caller reserves its
/// token and waits until the bucket would have refilled it, so waiters are
/// served in order without polling.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Self {
        let capacity = rate.max(1.0).floor();
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    /// Takes one token at `now`; how long to wait before sending.
    fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// One registry's budget.
#[derive(Debug)]
pub struct Limiter {
    budget: Budget,
    bucket: Option<Mutex<Bucket>>,
    slots: Option<Arc<Semaphore>>,
}

/// Held while a request is in flight.
#[derive(Debug)]
pub struct Admission {
    _slot: Option<OwnedSemaphorePermit>,
}

tokio::task_local! {
    /// The limiters (by address) whose slot the running future already
    /// holds through [`Held::scope`].
    static HELD: Vec<usize>;
}

fn address(l: &Arc<Limiter>) -> usize {
    Arc::as_ptr(l) as usize
}

/// Slots held for a whole blob transfer (see the module's comment).
#[derive(Debug)]
pub struct Held {
    /// Kept alive so that no other limiter can take their addresses.
    limiters: Vec<Arc<Limiter>>,
    _slots: Vec<OwnedSemaphorePermit>,
}

/// Takes one slot of each distinct limiter, in address order.
pub async fn hold(limiters: impl IntoIterator<Item = Arc<Limiter>>) -> Held {
    let mut limiters: Vec<Arc<Limiter>> = limiters.into_iter().collect();
    limiters.sort_by_key(address);
    limiters.dedup_by_key(|l| address(l));
    let mut slots = Vec::with_capacity(limiters.len());
    for l in &limiters {
        if let Some(s) = &l.slots
            // The semaphore is never closed.
            && let Ok(permit) = s.clone().acquire_owned().await
        {
            slots.push(permit);
        }
    }
    Held {
        limiters,
        _slots: slots,
    }
}

impl Held {
    /// Runs `f` with these slots held: its requests to these registries
    /// take no other slot. The slots are given back when `f` ends.
    pub async fn scope<F: std::future::Future>(self, f: F) -> F::Output {
        let held = self.limiters.iter().map(address).collect();
        let out = HELD.scope(held, f).await;
        drop(self);
        out
    }
}

impl Limiter {
    /// A limiter for `budget`; `None` when it limits nothing.
    pub fn new(budget: Budget) -> Option<Arc<Limiter>> {
        if budget.is_unlimited() {
            return None;
        }
        let rate = budget.requests_per_second();
        Some(Arc::new(Limiter {
            budget,
            bucket: (rate > 0.0).then(|| Mutex::new(Bucket::new(rate, Instant::now()))),
            slots: (budget.max_concurrent > 0)
                .then(|| Arc::new(Semaphore::new(budget.max_concurrent as usize))),
        }))
    }

    /// The budget it enforces.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Waits for a concurrency slot (unless the running future holds one,
    /// see [`Held::scope`]), then for a token. Keep the admission until the
    /// response (and body, for an upload) is done.
    pub async fn admit(self: &Arc<Self>) -> Admission {
        let held = HELD
            .try_with(|h| h.contains(&address(self)))
            .unwrap_or(false);
        let slot = match &self.slots {
            // The semaphore is never closed.
            Some(s) if !held => s.clone().acquire_owned().await.ok(),
            _ => None,
        };
        if let Some(bucket) = &self.bucket {
            let wait = bucket
                .lock()
                .map(|mut b| b.reserve(Instant::now()))
                .unwrap_or_default();
            if !wait.is_zero() {
                metrics::counter!("berth_registry_budget_waits_total").increment(1);
                tokio::time::sleep(wait).await;
            }
        }
        Admission { _slot: slot }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    /// `d` is `ms` milliseconds, give or take float rounding.
    fn about(d: Duration, ms: u64) -> bool {
        d.as_secs_f64() * 1000.0 - ms as f64 <= 0.01 && ms as f64 - d.as_secs_f64() * 1000.0 <= 0.01
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(5.0, t0);
        // Five at once (one second's worth), then one every 200 ms.
        for _ in 0..5 {
            assert_eq!(b.reserve(t0), Duration::ZERO);
        }
        assert!(about(b.reserve(t0), 200));
        assert!(about(b.reserve(t0), 400));
        // 400 ms later both reservations are paid; the next waits 200 ms.
        assert!(about(b.reserve(at(t0, 400)), 200));
        // After a long pause the bucket is full again, never fuller.
        let later = at(t0, 60_000);
        for _ in 0..5 {
            assert_eq!(b.reserve(later), Duration::ZERO);
        }
        assert!(b.reserve(later) > Duration::ZERO);
    }

    #[test]
    fn slow_rates_allow_one_at_a_time() {
        let t0 = Instant::now();
        let mut b = Bucket::new(0.5, t0);
        assert_eq!(b.reserve(t0), Duration::ZERO);
        assert!(about(b.reserve(t0), 2000));
        assert!(about(b.reserve(at(t0, 1000)), 3000));
    }

    #[test]
    fn n_requests_take_at_least_n_minus_burst_over_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, t0);
        let mut now = t0;
        for _ in 0..35 {
            now += b.reserve(now);
        }
        // 35 requests, burst 10, 10 per second: at least 2.5 s.
        assert!(now - t0 >= Duration::from_millis(2499), "{:?}", now - t0);
        assert!(now - t0 <= Duration::from_millis(2501), "{:?}", now - t0);
    }

    #[tokio::test]
    async fn concurrency_is_capped() {
        let limiter = Limiter::new(Budget {
            micro_rps: 0,
            max_concurrent: 2,
        })
        .expect("limited");
        let a = limiter.admit().await;
        let _b = limiter.admit().await;
        let third = tokio::time::timeout(Duration::from_millis(50), limiter.admit()).await;
        assert!(third.is_err(), "a third request waits");
        drop(a);
        tokio::time::timeout(Duration::from_secs(5), limiter.admit())
            .await
            .expect("admitted once a slot is free");
        assert!(Limiter::new(Budget::default()).is_none());
    }

    fn one_slot() -> Arc<Limiter> {
        Limiter::new(Budget {
            micro_rps: 0,
            max_concurrent: 1,
        })
        .expect("limited")
    }

    const SOON: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_held_slot_covers_the_transfers_requests_and_no_one_elses() {
        let (source, target) = (one_slot(), one_slot());
        let held = hold([source.clone(), target.clone(), source.clone()]).await;
        assert_eq!(
            source.slots.as_ref().map(|s| s.available_permits()),
            Some(0)
        );
        assert_eq!(
            target.slots.as_ref().map(|s| s.available_permits()),
            Some(0)
        );
        // Another task's request waits for the transfer.
        let (s2, done) = (source.clone(), tokio::sync::oneshot::channel::<()>());
        let other = tokio::spawn(async move {
            let _a = s2.admit().await;
            let _ = done.1.await;
        });
        let (s, t) = (source.clone(), target.clone());
        held.scope(async move {
            // The GET, a token fetch on a 401, and the PUT: all within the
            // one slot each.
            let _get = tokio::time::timeout(SOON, s.admit()).await.expect("GET");
            let _token = tokio::time::timeout(SOON, s.admit()).await.expect("token");
            let _put = tokio::time::timeout(SOON, t.admit()).await.expect("PUT");
        })
        .await;
        // The scope ended: its slots are back and the other request runs.
        let _ = done.0.send(());
        tokio::time::timeout(Duration::from_secs(5), other)
            .await
            .expect("the other request was admitted")
            .expect("task");
        assert_eq!(
            target.slots.as_ref().map(|s| s.available_permits()),
            Some(1)
        );
        // Outside a scope a request takes its slot as before.
        let _a = source.admit().await;
        assert!(tokio::time::timeout(SOON, source.admit()).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transfers_in_opposite_directions_do_not_wait_for_each_other() {
        let (a, b) = (one_slot(), one_slot());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let pair = if i % 2 == 0 {
                [a.clone(), b.clone()]
            } else {
                [b.clone(), a.clone()]
            };
            tasks.push(tokio::spawn(async move {
                let [from, to] = pair;
                hold([from.clone(), to.clone()])
                    .await
                    .scope(async move {
                        let _get = from.admit().await;
                        tokio::task::yield_now().await;
                        let _put = to.admit().await;
                    })
                    .await;
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("no transfer waits forever")
                .expect("task");
        }
    }
}
