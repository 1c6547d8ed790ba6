//! The change feed inside one replica, and WatchRegistries on top of it.
//!
//! Every write commits its event in the same transaction (see
//! `store::events`). Each replica runs one poller that reads events after
//! the last one it saw, every [`FeedOptions::poll_interval`] and at once
//! after a write through this replica, and fans them out to the replica's
//! watchers and cache invalidation.
//!
//! Why polling and not PostgreSQL LISTEN/NOTIFY: the feed must work the same
//! on PostgreSQL, MySQL/MariaDB and SQLite; a notification is lost while a
//! replica reconnects, so the table would have to be read anyway to catch
//! up; and the events table is the single source of order either way. The
//! cost is one indexed range query per replica per interval (250 ms by
//! default, whatever the number of watchers), which bounds how late a
//! change made on another replica can arrive.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};
use tokio_stream::Stream;

use crate::auth::{Caller, Principal};
use crate::domain::Scope;
use crate::domain::registry::check_project_key;
use crate::error::{Error, Result};
use crate::store::{ListQuery, RegistryEvent, RegistryRecord, Store};

/// Events read from the database per query.
const BATCH: u64 = 500;

/// Feed tuning.
#[derive(Debug, Clone, Copy)]
pub struct FeedOptions {
    /// How often each replica looks for changes made elsewhere.
    pub poll_interval: Duration,
    /// How often an idle watch is told how far the feed moved.
    pub progress_interval: Duration,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            poll_interval: Duration::from_millis(250),
            progress_interval: Duration::from_secs(10),
        }
    }
}

type Listener = Box<dyn Fn(&RegistryEvent) + Send + Sync>;

/// One replica's view of the feed.
pub struct Feed {
    store: Store,
    options: FeedOptions,
    events: broadcast::Sender<Arc<RegistryEvent>>,
    /// Newest revision fanned out.
    position: AtomicI64,
    wake: Notify,
    listeners: Mutex<Vec<Listener>>,
    /// Turns true at shutdown: watches end so the server can stop.
    stopping: watch::Receiver<bool>,
}

/// Shortest time between two polls started by nudges (local writes): the
/// delay local watchers may see on top of the commit, against one events
/// query per write under a write burst.
const NUDGE_GAP: Duration = Duration::from_millis(5);

impl Feed {
    /// Starts the poller at the feed's current revision; it stops when
    /// `shutdown` turns true (or its sender is dropped).
    pub async fn start(
        store: Store,
        options: FeedOptions,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Feed>> {
        let start = store.feed_position().await?.revision;
        let (events, _) = broadcast::channel(1024);
        let feed = Arc::new(Feed {
            store,
            options,
            events,
            position: AtomicI64::new(start),
            wake: Notify::new(),
            listeners: Mutex::new(Vec::new()),
            stopping: shutdown.clone(),
        });
        let poller = feed.clone();
        tokio::spawn(async move {
            let mut failing = false;
            let mut last_poll = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = poller.wake.notified() => {
                        // Under a stream of local writes every commit
                        // nudges: poll at most once per NUDGE_GAP then, so
                        // one read picks up a run of events instead of one
                        // read per write (nudges in between are one permit).
                        tokio::time::sleep_until(last_poll + NUDGE_GAP).await;
                    }
                    _ = tokio::time::sleep(poller.options.poll_interval) => {}
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            break;
                        }
                    }
                }
                last_poll = tokio::time::Instant::now();
                match poller.poll().await {
                    Ok(()) if failing => {
                        tracing::info!("change feed: reading events again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "change feed: cannot read events; retrying");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
            tracing::debug!("change feed poller stopped");
        });
        Ok(feed)
    }

    /// Reads and fans out everything after the current position.
    async fn poll(&self) -> Result<()> {
        loop {
            let after = self.position.load(Ordering::Acquire);
            let batch = self.store.events_after(after, BATCH).await?;
            let full = batch.len() as u64 == BATCH;
            if let Some(first) = batch.first()
                && first.revision > after + 1
            {
                // Changes were pruned before this replica read them (it
                // could not reach the database for long): what it cached
                // may be stale in ways it cannot tell.
                tracing::warn!(
                    after,
                    next = first.revision,
                    "change feed: missed pruned changes; dropping caches"
                );
                self.store.clear_cache();
            }
            for event in batch {
                let revision = event.revision;
                if let Ok(listeners) = self.listeners.lock() {
                    for l in listeners.iter() {
                        l(&event);
                    }
                }
                // No receivers is fine: nobody is watching.
                let _ = self.events.send(Arc::new(event));
                self.position.store(revision, Ordering::Release);
            }
            metrics::gauge!("berth_feed_revision")
                .set(self.position.load(Ordering::Acquire) as f64);
            if !full {
                return Ok(());
            }
        }
    }

    /// A write through this replica committed: look now rather than at the
    /// next tick, so watchers here see it at once.
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Calls `f` for every event, on the poller, before watchers get it
    /// (cache invalidation). `f` must be quick and must not block.
    pub fn on_event(&self, f: impl Fn(&RegistryEvent) + Send + Sync + 'static) {
        if let Ok(mut l) = self.listeners.lock() {
            l.push(Box::new(f));
        }
    }
}

/// What WatchRegistries asks for.
#[derive(Debug, Default, Clone)]
pub struct WatchRequest {
    /// Resume after this revision; `None` starts from now.
    pub from_revision: Option<i64>,
    /// Send the current registries first.
    pub initial_state: bool,
    /// Only registries serving this project ("" for all).
    pub project: String,
}

/// One message of a watch.
#[derive(Debug, Clone)]
pub enum WatchItem {
    /// A registry as of the snapshot at `revision`.
    Existing {
        /// Snapshot revision.
        revision: i64,
        /// The registry.
        registry: Box<RegistryRecord>,
    },
    /// A change; `left_scope` when an update moved the registry out of
    /// this watch's view.
    Change {
        /// The event.
        event: Arc<RegistryEvent>,
        /// Shown as LEFT_SCOPE.
        left_scope: bool,
    },
    /// Caught up to this revision.
    Synced(i64),
    /// Nothing visible happened up to this revision.
    Progress(i64),
}

/// Who watches what: decides which events a watch shows.
struct View {
    principal: Principal,
    project: Option<String>,
}

impl View {
    fn shows(&self, scope: &Scope) -> bool {
        self.principal.may_see(scope)
            && match (&self.project, scope) {
                (None, _) | (Some(_), Scope::AllProjects) => true,
                (Some(p), Scope::Projects(keys)) => keys.iter().any(|k| k == p),
            }
    }

    /// How `event` appears in this watch, if at all.
    fn item(&self, event: &Arc<RegistryEvent>) -> Option<WatchItem> {
        let now = self.shows(&event.registry.spec.scope);
        let before = event
            .previous_scope
            .as_ref()
            .is_some_and(|scope| self.shows(scope));
        match (now, before) {
            (true, _) => Some(WatchItem::Change {
                event: event.clone(),
                left_scope: false,
            }),
            (false, true) => Some(WatchItem::Change {
                event: event.clone(),
                left_scope: true,
            }),
            (false, false) => None,
        }
    }
}

/// WatchRegistries: checks the request, then returns the stream.
pub async fn watch(
    feed: Arc<Feed>,
    caller: &Caller,
    req: WatchRequest,
) -> Result<impl Stream<Item = Result<WatchItem>> + Send + 'static> {
    let project = match req.project.trim() {
        "" => None,
        p => {
            check_project_key(p).map_err(|why| Error::invalid("project", why))?;
            Some(p.to_owned())
        }
    };
    let principal = caller.principal.clone();
    let visible = principal.visible_projects();
    match (&visible, &project) {
        (Some(v), _) if v.is_empty() => {
            return Err(Error::PermissionDenied(format!(
                "`{}` may not watch registries (needs the `reader` role)",
                principal.name
            )));
        }
        (Some(v), Some(p)) if !v.contains(p) => {
            return Err(Error::PermissionDenied(format!(
                "`{}` may not read project `{p}` (needs the `reader` role on it)",
                principal.name
            )));
        }
        _ => {}
    }
    if req.initial_state && req.from_revision.is_some() {
        return Err(Error::invalid(
            "initial_state",
            "cannot be combined with from_revision: resume, or start over with the initial state",
        ));
    }
    let store = feed.store.clone();
    // Subscribe before reading anything, so nothing committed from here on
    // can fall between the replay and the live events.
    let live = feed.events.subscribe();
    let at = store.feed_position().await?;
    let start = match req.from_revision {
        Some(r) if r < 0 => return Err(Error::invalid("from_revision", "must not be negative")),
        Some(r) if r > at.revision => {
            return Err(Error::invalid(
                "from_revision",
                format!(
                    "{r} is ahead of the newest revision {}; it did not come from this feed",
                    at.revision
                ),
            ));
        }
        Some(r) if r < at.compacted => {
            return Err(Error::RevisionCompacted(format!(
                "revision {r} is too old to resume from: the feed keeps changes after {}; \
                 list the registries again (or watch with initial_state) and watch from the \
                 revision you get",
                at.compacted
            )));
        }
        Some(r) => r,
        None => at.revision,
    };
    let view = View {
        principal,
        project: project.clone(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<WatchItem>>(64);
    let progress_every = feed.options.progress_interval;
    let stopping = feed.stopping.clone();
    tokio::spawn(async move {
        let run = Watcher {
            store,
            view,
            tx,
            sent: start,
            told: start,
            live,
            progress_every,
            stopping,
        };
        run.run(req.initial_state, project, visible).await;
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

struct Watcher {
    store: Store,
    view: View,
    tx: tokio::sync::mpsc::Sender<Result<WatchItem>>,
    /// Everything up to here was sent (or was not visible).
    sent: i64,
    /// The newest revision the client was given (its resume point).
    told: i64,
    live: broadcast::Receiver<Arc<RegistryEvent>>,
    progress_every: Duration,
    stopping: watch::Receiver<bool>,
}

impl Watcher {
    async fn run(
        mut self,
        initial_state: bool,
        project: Option<String>,
        visible: Option<std::collections::BTreeSet<String>>,
    ) {
        if let Err(e) = self.start(initial_state, project, visible).await {
            let _ = self.tx.send(Err(e)).await;
            return;
        }
        if let Err(e) = self.follow().await {
            let _ = self.tx.send(Err(e)).await;
        }
    }

    /// Initial state or replay, then SYNCED.
    async fn start(
        &mut self,
        initial_state: bool,
        project: Option<String>,
        visible: Option<std::collections::BTreeSet<String>>,
    ) -> Result<()> {
        if initial_state {
            // Registries as they are now; a change that lands while we read
            // them has a revision above `sent` and is replayed below (its
            // snapshot is newer, so applying it again is harmless).
            let mut after_id = None;
            loop {
                let page = self
                    .store
                    .list(&ListQuery {
                        project: project.clone(),
                        provider: None,
                        limit: BATCH,
                        after_id: after_id.clone(),
                        visible_to: visible.as_ref().map(|v| v.iter().cloned().collect()),
                    })
                    .await?;
                let done = (page.len() as u64) < BATCH;
                after_id = page.last().map(|r| r.id.clone());
                for registry in page {
                    self.send(WatchItem::Existing {
                        revision: self.sent,
                        registry: Box::new(registry),
                    })
                    .await?;
                }
                if done {
                    break;
                }
            }
        }
        self.replay().await?;
        self.send(WatchItem::Synced(self.sent)).await
    }

    /// Sends every stored event after `sent`.
    async fn replay(&mut self) -> Result<()> {
        loop {
            let batch = self.store.events_after(self.sent, BATCH).await?;
            let full = batch.len() as u64 == BATCH;
            if let Some(first) = batch.first()
                && first.revision > self.sent + 1
            {
                // Pruned while this watch was behind: the gap is lost.
                return Err(Error::RevisionCompacted(format!(
                    "the changes after revision {} were pruned before this watch read \
                     them; list the registries again and watch from the revision you get",
                    self.sent
                )));
            }
            for event in batch {
                self.deliver(Arc::new(event)).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn deliver(&mut self, event: Arc<RegistryEvent>) -> Result<()> {
        if event.revision <= self.sent {
            return Ok(());
        }
        let revision = event.revision;
        if let Some(item) = self.view.item(&event) {
            self.send(item).await?;
        }
        self.sent = revision;
        Ok(())
    }

    /// Live events until the client goes away or the server stops.
    async fn follow(&mut self) -> Result<()> {
        enum Next {
            Event(Arc<RegistryEvent>),
            Lagged(u64),
            Stop,
            Tick,
            Gone,
        }
        let mut tick = tokio::time::interval(self.progress_every);
        tick.tick().await;
        loop {
            let next = tokio::select! {
                got = self.live.recv() => match got {
                    Ok(event) => Next::Event(event),
                    Err(broadcast::error::RecvError::Lagged(n)) => Next::Lagged(n),
                    Err(broadcast::error::RecvError::Closed) => Next::Stop,
                },
                _ = self.stopping.wait_for(|s| *s) => Next::Stop,
                _ = tick.tick() => Next::Tick,
                _ = self.tx.closed() => Next::Gone,
            };
            match next {
                Next::Event(event) => {
                    if event.revision > self.sent + 1 {
                        // Only possible if this watch started on a replica
                        // whose poller is behind the database: read the gap
                        // from the table.
                        self.replay().await?;
                    }
                    self.deliver(event).await?;
                }
                Next::Lagged(n) => {
                    tracing::debug!(missed = n, "watch fell behind; reading from the table");
                    self.replay().await?;
                }
                Next::Tick if self.sent > self.told => {
                    self.send(WatchItem::Progress(self.sent)).await?;
                }
                Next::Tick => {}
                Next::Stop => return Err(self.shutting_down()),
                Next::Gone => return Ok(()),
            }
        }
    }

    fn shutting_down(&self) -> Error {
        Error::Unavailable(format!(
            "berth is shutting down; resume from revision {} on another replica",
            self.told
        ))
    }

    async fn send(&mut self, item: WatchItem) -> Result<()> {
        self.told = match &item {
            WatchItem::Existing { .. } => self.told,
            WatchItem::Change { event, .. } => event.revision,
            WatchItem::Synced(r) | WatchItem::Progress(r) => *r,
        };
        self.tx
            .send(Ok(item))
            .await
            .map_err(|_| Error::Unavailable("the watcher went away".into()))
    }
}
