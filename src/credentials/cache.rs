//! Minted-token cache with one in-flight mint per key.
//!
//! ECR tokens last 12 hours and minting one is a signed network call, so
//! berth keeps them and hands out the same token until shortly before it
//! expires. When many jobs ask at once (a pipeline fan-out), they share one
//! call instead of each hitting the provider.
//!
//! Tokens of registries in active use are also replaced *ahead* of the
//! refresh margin: when a cached token is served inside its refresh-ahead
//! window, one background mint starts and callers keep getting the old
//! (still valid) token until it lands, so nobody waits for a mint on the
//! hot path. A registry nobody asks for is never refreshed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use super::{CredentialError, Credentials};

/// How long before expiry a cached token is replaced, by default: long
/// enough that a job handed the token can still pull with it.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The longest refresh-ahead window, by default: a served token is
/// refreshed in the background once it is within the last fifth of its
/// life, or within this long, whichever is shorter, before the margin.
pub const DEFAULT_REFRESH_AHEAD: Duration = Duration::from_secs(15 * 60);

/// After a failed background refresh, served tokens do not start another
/// one for this long (the provider may be down; the token still works).
const AHEAD_RETRY_PAUSE: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// A refused token is dropped at most once per key in this long: a registry
/// that keeps answering 403 for another reason (a repository policy) must
/// not make every read mint a new token.
const REFUSED_DROP_PAUSE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The clock the cache judges freshness by (replaceable in tests).
type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// One key's entry. The async mutex is held for the whole mint, which is
/// what makes concurrent callers wait for the first one instead of minting.
#[derive(Default)]
struct Slot {
    /// Finished mint attempts; lets a waiter tell that the attempt it
    /// waited for has ended (see `get_or_mint`).
    attempts: AtomicU64,
    /// A background (refresh-ahead) mint is running for this key.
    refreshing: AtomicBool,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    creds: Option<Credentials>,
    /// When `creds` were minted: with their expiry, their lifetime.
    minted_at: Option<DateTime<Utc>>,
    /// No background refresh starts before this (after a failed one).
    ahead_not_before: Option<DateTime<Utc>>,
    /// When a refused token was last dropped (`invalidate_if_current`).
    refused_dropped_at: Option<DateTime<Utc>>,
    /// Outcome of the last attempt when it failed; only shared with callers
    /// that were already waiting for that attempt, never served later.
    last_error: Option<CredentialError>,
}

/// Cache of minted credentials keyed by a caller-chosen string (berth uses
/// `"<registry id>:<secret revision>"`, so a changed secret never serves a
/// token minted from the old one).
pub struct TokenCache {
    margin: chrono::TimeDelta,
    /// Longest refresh-ahead window; zero turns refresh-ahead off.
    ahead: chrono::TimeDelta,
    clock: Clock,
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
            .field("ahead", &self.ahead)
            .field("keys", &self.lock_slots().len())
            .finish()
    }
}

impl TokenCache {
    /// A cache that replaces tokens `refresh_margin` before they expire,
    /// and refreshes served tokens ahead of that ([`DEFAULT_REFRESH_AHEAD`]).
    pub fn new(refresh_margin: Duration) -> Self {
        TokenCache {
            // Out-of-range margins (centuries) mean "always refresh".
            margin: chrono::TimeDelta::from_std(refresh_margin).unwrap_or(chrono::TimeDelta::MAX),
            ahead: chrono::TimeDelta::from_std(DEFAULT_REFRESH_AHEAD)
                .unwrap_or(chrono::TimeDelta::zero()),
            clock: Arc::new(Utc::now),
            slots: StdMutex::new(HashMap::new()),
        }
    }

    /// Replaces the longest refresh-ahead window; `Duration::ZERO` turns
    /// refresh-ahead off (tokens are then only replaced inside the margin,
    /// by the caller that finds them stale).
    pub fn with_refresh_ahead(mut self, ahead: Duration) -> Self {
        self.ahead = chrono::TimeDelta::from_std(ahead).unwrap_or(chrono::TimeDelta::zero());
        self
    }

    /// Judges freshness by `clock` instead of the system clock (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The cached credentials for `key` if still fresh, else the result of
    /// `mint`, which is cached on success.
    ///
    /// Concurrent callers for one key share a single mint: the others wait
    /// and get its result, its error included. Errors are not cached: the
    /// next call after a failed mint tries again. Credentials without an
    /// expiry stay cached until [`TokenCache::invalidate_prefix`]. If the
    /// minting caller is cancelled, the next waiter mints instead.
    ///
    /// When the token served is inside its refresh-ahead window, `mint` is
    /// spawned in the background instead (at most one per key at a time)
    /// and its token replaces the cached one when it lands; this caller and
    /// the ones meanwhile get the current token without waiting. A failed
    /// background mint is logged and tried again by a later call, no sooner
    /// than 30 seconds after.
    pub async fn get_or_mint<F, Fut>(
        &self,
        key: &str,
        mint: F,
    ) -> Result<Credentials, CredentialError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Credentials, CredentialError>> + Send + 'static,
    {
        let slot = self.slot(key);
        // Read before queueing: if the count has moved once we hold the
        // lock, an attempt ended while we waited, and we take its outcome.
        let seen = slot.attempts.load(Ordering::Acquire);
        let mut state = slot.state.lock().await;
        let now = (self.clock)();
        if let Some(creds) = state.creds.as_ref().filter(|c| self.is_fresh(c, now)) {
            metrics::counter!("berth_credential_cache_total", "result" => "hit").increment(1);
            let creds = creds.clone();
            if self.due_ahead(&state, &creds, now)
                && slot
                    .refreshing
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                drop(state);
                self.refresh_in_background(key, slot, mint);
            }
            return Ok(creds);
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
                state.minted_at = Some((self.clock)());
                state.ahead_not_before = None;
                state.last_error = None;
            }
            Err(err) => {
                tracing::debug!(key, error = %err, "credential mint failed");
                state.creds = None;
                state.minted_at = None;
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

    /// Drops `key`'s token if it is still the one whose password is `stale`
    /// (a registry refused it), so that the next call mints a new one. If it
    /// was already replaced, by another caller that was refused too or by a
    /// refresh, nothing is dropped: a burst of refusals costs one mint. A
    /// mint in flight is waited for, and its token is kept. At most one
    /// token per key is dropped per minute: if the replacement is refused
    /// too, the refusal is not about the token's age, and it is kept.
    /// Returns whether the token was dropped.
    pub async fn invalidate_if_current(&self, key: &str, stale: &crate::secret::Secret) -> bool {
        let Some(slot) = self.lock_slots().get(key).map(Arc::clone) else {
            return false;
        };
        let mut state = slot.state.lock().await;
        let now = (self.clock)();
        let paused = state
            .refused_dropped_at
            .is_some_and(|t| now < t + REFUSED_DROP_PAUSE);
        if paused || !state.creds.as_ref().is_some_and(|c| c.password == *stale) {
            return false;
        }
        state.creds = None;
        state.minted_at = None;
        state.refused_dropped_at = Some(now);
        true
    }

    fn is_fresh(&self, creds: &Credentials, now: DateTime<Utc>) -> bool {
        match creds.expires_at {
            None => true,
            Some(expires_at) => now
                .checked_add_signed(self.margin)
                .is_some_and(|deadline| deadline < expires_at),
        }
    }

    /// Whether a fresh token is inside its refresh-ahead window: the last
    /// fifth of its life (at most `ahead`) before the refresh margin.
    fn due_ahead(&self, state: &SlotState, creds: &Credentials, now: DateTime<Utc>) -> bool {
        let (Some(expires_at), Some(minted_at)) = (creds.expires_at, state.minted_at) else {
            return false;
        };
        if self.ahead <= chrono::TimeDelta::zero()
            || state.ahead_not_before.is_some_and(|t| now < t)
        {
            return false;
        }
        let window = ((expires_at - minted_at) / 5)
            .min(self.ahead)
            .max(chrono::TimeDelta::zero());
        now.checked_add_signed(self.margin)
            .and_then(|t| t.checked_add_signed(window))
            .is_none_or(|t| t >= expires_at)
    }

    /// Runs `mint` in a task of its own; its token replaces the one in
    /// `slot` (if the key was invalidated meanwhile, the slot is no longer
    /// in the map and the token is dropped with it).
    fn refresh_in_background<F, Fut>(&self, key: &str, slot: Arc<Slot>, mint: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Credentials, CredentialError>> + Send + 'static,
    {
        metrics::counter!("berth_credential_cache_total", "result" => "refresh_ahead").increment(1);
        let clock = Arc::clone(&self.clock);
        let key = key.to_owned();
        tracing::debug!(key, "refreshing a token ahead of its expiry");
        tokio::spawn(async move {
            let result = mint().await;
            let mut state = slot.state.lock().await;
            let now = clock();
            match result {
                Ok(creds) => {
                    state.creds = Some(creds);
                    state.minted_at = Some(now);
                    state.ahead_not_before = None;
                    state.last_error = None;
                }
                Err(err) => {
                    tracing::warn!(key, error = %err, "background token refresh failed; the current token is served until it is due");
                    state.ahead_not_before = now.checked_add_signed(AHEAD_RETRY_PAUSE);
                }
            }
            slot.refreshing.store(false, Ordering::Release);
        });
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
                    .get_or_mint("reg-1:1", move || async move {
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

    /// A mint closure (for `get_or_mint`) that counts into `calls` and
    /// returns `tok<n>` expiring at `expiry`.
    fn counting(
        calls: &Arc<AtomicUsize>,
        expiry: Option<DateTime<Utc>>,
    ) -> impl FnOnce() -> std::future::Ready<Result<Credentials, CredentialError>> + Send + 'static
    {
        let calls = Arc::clone(calls);
        move || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(creds(&format!("tok{n}"), expiry)))
        }
    }

    #[tokio::test]
    async fn refreshes_inside_margin_and_after_invalidate() {
        let cache = TokenCache::new(Duration::from_secs(5 * 60));
        let calls = Arc::new(AtomicUsize::new(0));
        let mint = |expiry| counting(&calls, expiry);
        // Expires in 4 minutes: already inside the 5-minute margin.
        let a = cache.get_or_mint("reg-1:1", mint(in_minutes(4))).await;
        let b = cache.get_or_mint("reg-1:1", mint(in_minutes(60))).await;
        assert_eq!(a.expect("a").password.expose(), "tok0");
        assert_eq!(b.expect("b").password.expose(), "tok1");
        // Fresh now: served from the cache.
        let c = cache.get_or_mint("reg-1:1", mint(None)).await;
        assert_eq!(c.expect("c").password.expose(), "tok1");
        // Other registries are untouched by an invalidation.
        let other = cache.get_or_mint("reg-10:1", mint(None)).await;
        assert_eq!(other.expect("other").password.expose(), "tok2");
        cache.invalidate_prefix("reg-1:");
        let d = cache.get_or_mint("reg-1:1", mint(None)).await;
        assert_eq!(d.expect("d").password.expose(), "tok3");
        let e = cache.get_or_mint("reg-10:1", mint(None)).await;
        assert_eq!(e.expect("e").password.expose(), "tok2");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn invalidate_if_current_only_drops_the_refused_token() {
        let clock = FakeClock::new();
        let cache = fake_cache(&clock);
        let calls = Arc::new(AtomicUsize::new(0));
        let mint = |expiry| counting(&calls, expiry);
        let a = cache.get_or_mint("k", mint(None)).await.expect("a");
        // Someone else's refused token (already replaced): nothing dropped.
        cache
            .invalidate_if_current("k", &Secret::new("not-cached"))
            .await;
        let b = cache.get_or_mint("k", mint(None)).await.expect("b");
        assert_eq!(b.password.expose(), "tok0");
        // The cached one refused, twice (two callers): one new mint.
        assert!(cache.invalidate_if_current("k", &a.password).await);
        assert!(!cache.invalidate_if_current("k", &a.password).await);
        let c = cache.get_or_mint("k", mint(None)).await.expect("c");
        assert_eq!(c.password.expose(), "tok1");
        assert!(!cache.invalidate_if_current("k", &a.password).await);
        let d = cache.get_or_mint("k", mint(None)).await.expect("d");
        assert_eq!(d.password.expose(), "tok1");
        // The new one refused at once too: not the token's fault, kept.
        assert!(!cache.invalidate_if_current("k", &c.password).await);
        let e = cache.get_or_mint("k", mint(None)).await.expect("e");
        assert_eq!(e.password.expose(), "tok1");
        // A minute later a refusal drops it again.
        clock.advance(1);
        assert!(cache.invalidate_if_current("k", &c.password).await);
        let f = cache.get_or_mint("k", mint(None)).await.expect("f");
        assert_eq!(f.password.expose(), "tok2");
        // Unknown keys are fine.
        assert!(!cache.invalidate_if_current("nope", &a.password).await);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    /// A clock the test moves by hand.
    #[derive(Clone)]
    struct FakeClock(Arc<StdMutex<DateTime<Utc>>>);

    impl FakeClock {
        fn new() -> Self {
            FakeClock(Arc::new(StdMutex::new(Utc::now())))
        }
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().expect("clock")
        }
        fn advance(&self, minutes: i64) {
            *self.0.lock().expect("clock") += chrono::TimeDelta::minutes(minutes);
        }
    }

    /// Lets spawned tasks run.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    fn fake_cache(clock: &FakeClock) -> TokenCache {
        let c = clock.clone();
        TokenCache::default().with_clock(move || c.now())
    }

    /// A 60-minute token: margin 5 min, refresh-ahead window min(12, 15)
    /// = 12 min, so background refreshes start 17 minutes before expiry.
    #[tokio::test]
    async fn served_token_is_refreshed_ahead_once_in_the_background() {
        let clock = FakeClock::new();
        let cache = fake_cache(&clock);
        let calls = Arc::new(AtomicUsize::new(0));
        // Mints finish only when the test opens the gate.
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let slow = |expiry: Option<DateTime<Utc>>| {
            let (calls, gate) = (Arc::clone(&calls), Arc::clone(&gate));
            move || async move {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.expect("gate").forget();
                Ok(creds(&format!("tok{n}"), expiry))
            }
        };
        let start = clock.now();
        let at = |m: i64| Some(start + chrono::TimeDelta::minutes(m));
        let first = cache.get_or_mint("k", slow(at(60))).await.expect("first");
        assert_eq!(first.password.expose(), "tok0");
        // 42 minutes in: 18 left, not yet in the window.
        clock.advance(42);
        let got = cache.get_or_mint("k", slow(at(120))).await.expect("hit");
        assert_eq!(got.password.expose(), "tok0");
        settle().await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "no refresh before the window"
        );
        // 44 minutes in: 16 left, inside. Callers keep getting tok0 at once
        // while exactly one refresh runs.
        clock.advance(2);
        for _ in 0..20 {
            let got = cache.get_or_mint("k", slow(at(120))).await.expect("hit");
            assert_eq!(got.password.expose(), "tok0");
            settle().await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "exactly one refresh");
        // The refresh lands: its token replaces the old one.
        gate.add_permits(1);
        settle().await;
        let got = cache.get_or_mint("k", slow(at(180))).await.expect("new");
        assert_eq!(got.password.expose(), "tok1");
        assert_eq!(got.expires_at, at(120));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn idle_tokens_are_not_refreshed_and_failures_pause() {
        let clock = FakeClock::new();
        let cache = fake_cache(&clock);
        let calls = Arc::new(AtomicUsize::new(0));
        let start = clock.now();
        let at = |m: i64| Some(start + chrono::TimeDelta::minutes(m));
        cache
            .get_or_mint("k", counting(&calls, at(60)))
            .await
            .expect("first");
        // Nobody asks: no refresh.
        clock.advance(50);
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A failing background refresh keeps the old token and is not
        // retried by every call.
        let failing = {
            let calls = Arc::clone(&calls);
            move || {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Err(CredentialError::Unavailable("down".into())))
            }
        };
        let got = cache.get_or_mint("k", failing.clone()).await.expect("hit");
        assert_eq!(got.password.expose(), "tok0");
        settle().await;
        for _ in 0..5 {
            let got = cache.get_or_mint("k", failing.clone()).await.expect("hit");
            assert_eq!(got.password.expose(), "tok0");
            settle().await;
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one failed refresh, then a pause"
        );
        clock.advance(1);
        cache
            .get_or_mint("k", counting(&calls, at(120)))
            .await
            .expect("hit");
        settle().await;
        let got = cache.get_or_mint("k", failing).await.expect("new");
        assert_eq!(got.password.expose(), "tok2");
        // Refresh-ahead off: only the margin applies.
        let off = TokenCache::default()
            .with_refresh_ahead(Duration::ZERO)
            .with_clock({
                let c = clock.clone();
                move || c.now()
            });
        let later = clock.now() + chrono::TimeDelta::minutes(8);
        off.get_or_mint("k", counting(&calls, Some(later)))
            .await
            .expect("minted");
        off.get_or_mint("k", counting(&calls, None))
            .await
            .expect("hit");
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let cache = TokenCache::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let failing = {
            let calls = Arc::clone(&calls);
            move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(CredentialError::Unavailable("down".into())) }
            }
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
                    .get_or_mint("k", move || async move {
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
