//! Minted-token cache with one in-flight mint per key.
//!
//! ECR tokens last 12 hours and minting one is a signed network call, so
//! berth keeps them and hands out the same token until shortly before it
//! expires. When many jobs ask at once (a pipeline fan-out), they share one
//! call instead of each hitting the provider.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Mutex;

use super::{CredentialError, Credentials};

/// How long before expiry a cached token is replaced, by default: long
/// enough that a job handed the token can still pull with it.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// One key's entry. The async mutex is held for the whole mint, which is
/// what makes concurrent callers wait for the first one instead of minting.
#[derive(Default)]
struct Slot {
    /// Finished mint attempts; lets a waiter tell that the attempt it
    /// waited for has ended (see `get_or_mint`).
    attempts: AtomicU64,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    creds: Option<Credentials>,
    /// Outcome of the last attempt when it failed; only shared with callers
    /// that were already waiting for that attempt, never served later.
    last_error: Option<CredentialError>,
}

/// Cache of minted credentials keyed by a caller-chosen string (berth uses
/// `"<registry id>:<secret revision>"`, so a changed secret never serves a
/// token minted from the old one).
pub struct TokenCache {
    margin: chrono::TimeDelta,
    slots: StdMutex<HashMap<String, Arc<Slot>>>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(DEFAULT_REFRESH_MARGIN)
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("margin", &self.margin)
            .field("keys", &self.lock_slots().len())
            .finish()
    }
}

impl TokenCache {
    /// A cache that replaces tokens `refresh_margin` before they expire.
    pub fn new(refresh_margin: Duration) -> Self {
        TokenCache {
            // Out-of-range margins (centuries) mean "always refresh".
            margin: chrono::TimeDelta::from_std(refresh_margin).unwrap_or(chrono::TimeDelta::MAX),
            slots: StdMutex::new(HashMap::new()),
        }
    }

    /// The cached credentials for `key` if still fresh, else the result of
    /// `mint`, which is cached on success.
    ///
    /// Concurrent callers for one key share a single mint: the others wait
    /// and get its result, its error included. Errors are not cached: the
    /// next call after a failed mint tries again. Credentials without an
    /// expiry stay cached until [`TokenCache::invalidate_prefix`]. If the
    /// minting caller is cancelled, the next waiter mints instead.
    pub async fn get_or_mint<F, Fut>(
        &self,
        key: &str,
        mint: F,
    ) -> Result<Credentials, CredentialError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Credentials, CredentialError>>,
    {
        let slot = self.slot(key);
        // Read before queueing: if the count has moved once we hold the
        // lock, an attempt ended while we waited, and we take its outcome.
        let seen = slot.attempts.load(Ordering::Acquire);
        let mut state = slot.state.lock().await;
        if let Some(creds) = state.creds.as_ref().filter(|c| self.is_fresh(c)) {
            metrics::counter!("berth_credential_cache_total", "result" => "hit").increment(1);
            return Ok(creds.clone());
        }
        if slot.attempts.load(Ordering::Acquire) != seen
            && let Some(err) = &state.last_error
        {
            return Err(err.clone());
        }
        metrics::counter!("berth_credential_cache_total", "result" => "miss").increment(1);
        let result = mint().await;
        match &result {
            Ok(creds) => {
                state.creds = Some(creds.clone());
                state.last_error = None;
            }
            Err(err) => {
                tracing::debug!(key, error = %err, "credential mint failed");
                state.creds = None;
                state.last_error = Some(err.clone());
            }
        }
        // Still under the lock, so every waiter sees the new count.
        slot.attempts.fetch_add(1, Ordering::Release);
        result
    }

    /// Drops every entry whose key starts with `prefix`, e.g. all tokens of a
    /// registry whose secret changed or that was deleted. Pass
    /// `"<registry id>:"` (with the colon) so that `reg-1` does not also drop
    /// `reg-10`. A mint in flight finishes, but its result is not kept.
    pub fn invalidate_prefix(&self, prefix: &str) {
        self.lock_slots().retain(|key, _| !key.starts_with(prefix));
    }

    fn is_fresh(&self, creds: &Credentials) -> bool {
        match creds.expires_at {
            None => true,
            Some(expires_at) => Utc::now()
                .checked_add_signed(self.margin)
                .is_some_and(|deadline| deadline < expires_at),
        }
    }

    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut slots = self.lock_slots();
        match slots.get(key) {
            Some(slot) => Arc::clone(slot),
            None => {
                let slot = Arc::new(Slot::default());
                slots.insert(key.to_owned(), Arc::clone(&slot));
                slot
            }
        }
    }

    /// The map is only touched in short, panic-free sections, so a poisoned
    /// lock still holds a consistent map.
    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use chrono::DateTime;

    use super::*;
    use crate::secret::Secret;

    fn creds(password: &str, expires_at: Option<DateTime<Utc>>) -> Credentials {
        Credentials {
            username: "AWS".into(),
            password: Secret::new(password),
            server_address: "r.example.com".into(),
            expires_at,
        }
    }

    fn in_minutes(m: i64) -> Option<DateTime<Utc>> {
        Some(Utc::now() + chrono::TimeDelta::minutes(m))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_mint() {
        let cache = Arc::new(TokenCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, calls) = (Arc::clone(&cache), Arc::clone(&calls));
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_mint("reg-1:1", || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(creds("tok", in_minutes(60)))
                    })
                    .await
            }));
        }
        for task in tasks {
            let got = task.await.expect("task").expect("minted");
            assert_eq!(got.password.expose(), "tok");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refreshes_inside_margin_and_after_invalidate() {
        let cache = TokenCache::new(Duration::from_secs(5 * 60));
        let calls = AtomicUsize::new(0);
        let mint = |expiry| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok(creds(&format!("tok{n}"), expiry)) }
        };
        // Expires in 4 minutes: already inside the 5-minute margin.
        let a = cache.get_or_mint("reg-1:1", || mint(in_minutes(4))).await;
        let b = cache.get_or_mint("reg-1:1", || mint(in_minutes(60))).await;
        assert_eq!(a.expect("a").password.expose(), "tok0");
        assert_eq!(b.expect("b").password.expose(), "tok1");
        // Fresh now: served from the cache.
        let c = cache.get_or_mint("reg-1:1", || mint(None)).await;
        assert_eq!(c.expect("c").password.expose(), "tok1");
        // Other registries are untouched by an invalidation.
        let other = cache.get_or_mint("reg-10:1", || mint(None)).await;
        assert_eq!(other.expect("other").password.expose(), "tok2");
        cache.invalidate_prefix("reg-1:");
        let d = cache.get_or_mint("reg-1:1", || mint(None)).await;
        assert_eq!(d.expect("d").password.expose(), "tok3");
        let e = cache.get_or_mint("reg-10:1", || mint(None)).await;
        assert_eq!(e.expect("e").password.expose(), "tok2");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let cache = TokenCache::default();
        let calls = AtomicUsize::new(0);
        let failing = || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(CredentialError::Unavailable("down".into())) }
        };
        let err = cache.get_or_mint("k", failing).await.expect_err("fails");
        assert!(err.is_transient());
        let ok = cache
            .get_or_mint("k", || async { Ok(creds("tok", None)) })
            .await;
        assert_eq!(ok.expect("retried").password.expose(), "tok");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_share_a_failed_attempt() {
        let cache = Arc::new(TokenCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (cache, calls) = (Arc::clone(&cache), Arc::clone(&calls));
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_mint("k", || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err(CredentialError::Rejected("AccessDenied".into()))
                    })
                    .await
            }));
        }
        for task in tasks {
            assert!(task.await.expect("task").is_err());
        }
        // Callers that raced in after the first attempt ended may retry, but
        // nowhere near one attempt per caller.
        assert!(calls.load(Ordering::SeqCst) <= 2, "{calls:?}");
    }
}
