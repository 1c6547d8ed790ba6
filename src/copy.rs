//! CopyImage and DistributeImage: copying an image between registries,
//! server side, with progress.
//!
//! A copy goes in three steps:
//! 1. The plan, once per call: the source manifest and, for an index, every
//!    manifest below it, each checked against its digest; the distinct
//!    blobs (configs and layers) of every platform.
//! 2. Blobs, at most [`MAX_PARALLEL_BLOBS`] at a time per call: skipped
//!    when the target has them (HEAD); within one registry mounted from the
//!    source repository when the registry agrees; else streamed from the
//!    source's GET into the target's PUT (see
//!    [`crate::registry_client::BlobTransfer`]: bounded memory, digest and
//!    size verified) and retried in a fresh upload session when the
//!    transfer breaks, [`MAX_ATTEMPTS`] attempts in all.
//! 3. Manifests, byte for byte: those below an index by digest, children
//!    first, then the root, by its tag, last. A copy that fails leaves no
//!    tag pointing at a partial image.
//!
//! Copying reads and writes with the stored logins, so it needs the
//! `credentials` role on the source's project and on every target's. Each
//! target's outcome is written to the audit log (`image.copy`).

use std::cmp::Reverse;
use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::auth::{Caller, Role};
use crate::domain::{RegistrySpec, layout};
use crate::error::{Error, FieldViolation, Result};
use crate::images::{self, Images};
use crate::registry_client::{
    BlobFault, BlobTransfer, ClientError, ClientOptions, Mount, RegistryClient, UploadSession,
    budget, digest_like, sha256_digest, valid_digest,
};
use crate::store::AuditEntry;

/// Blob transfers running at once in one call (over all its targets).
pub const MAX_PARALLEL_BLOBS: usize = 4;
/// Attempts per blob transfer, each in a fresh upload session.
pub const MAX_ATTEMPTS: u32 = 3;
/// Targets of one DistributeImage.
pub const MAX_TARGETS: usize = 16;
/// CopyImage and DistributeImage calls running at once in this process;
/// one more is RESOURCE_EXHAUSTED.
pub const MAX_COPIES: usize = 16;
/// Manifests in one image (an index and its platforms).
const MAX_MANIFESTS: usize = 256;
/// Distinct blobs in one image.
const MAX_BLOBS: usize = 4096;
/// Levels below the root manifest (an index of indexes of images).
const MAX_DEPTH: usize = 2;
/// How often a running transfer reports its bytes.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// The slowest transfer berth waits for: a blob's deadline is the registry
/// timeout plus one second per this many bytes.
const MIN_BYTES_PER_SECOND: u64 = 1024 * 1024;
/// Progress messages buffered for a slow reader; running transfers drop
/// their byte counts (never a state change) while it is full.
const EVENT_BUFFER: usize = 64;

static COPIES: Semaphore = Semaphore::const_new(MAX_COPIES);

/// The image to copy.
#[derive(Debug, Clone, Default)]
pub struct SourceSpec {
    /// Registry id, or empty for the project's default.
    pub registry_id: String,
    /// The project the registry serves.
    pub project: String,
    /// Service name or path below the namespace.
    pub image: String,
    /// Tag (also the target's, by default).
    pub tag: String,
    /// Digest; copied instead of what the tag names when given.
    pub digest: String,
}

/// Where to copy it; empty fields take the source's.
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    /// Registry id, or empty for the project's default.
    pub registry_id: String,
    /// The project the registry serves.
    pub project: String,
    /// Service name or path below the namespace.
    pub image: String,
    /// Tag to push last.
    pub tag: String,
}

/// Where a blob's transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    /// Bytes are flowing.
    Transferring,
    /// Copied and verified.
    Done,
    /// The target had it.
    Skipped,
    /// Mounted from the source repository.
    Mounted,
    /// An attempt failed; another follows.
    Retrying,
}

/// What a copy will copy.
#[derive(Debug, Clone)]
pub struct PlanSummary {
    /// `host/path[:tag]@digest` of the source.
    pub source_reference: String,
    /// The root manifest's digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Manifests to push.
    pub manifests: usize,
    /// Distinct blobs.
    pub blobs: usize,
    /// Their bytes.
    pub total_bytes: u64,
}

/// Progress of one blob.
#[derive(Debug, Clone)]
pub struct BlobEvent {
    /// The blob.
    pub digest: String,
    /// Bytes through in this attempt.
    pub bytes_done: u64,
    /// Its size.
    pub bytes_total: u64,
    /// Where it stands.
    pub state: BlobState,
    /// From 1.
    pub attempt: u32,
    /// A note for people.
    pub message: String,
}

/// What a successful copy to one target did.
#[derive(Debug, Clone, Default)]
pub struct Copied {
    /// `host/path[:tag]@digest` on the target.
    pub reference: String,
    /// The digest (the source's).
    pub digest: String,
    /// Bytes streamed through berth.
    pub bytes_copied: u64,
    /// Blobs copied.
    pub blobs_copied: u32,
    /// Blobs the target had.
    pub blobs_skipped: u32,
    /// Blobs mounted.
    pub blobs_mounted: u32,
}

/// The outcome of one target.
#[derive(Debug)]
pub struct TargetResult {
    /// The target registry, when known.
    pub registry_id: String,
    /// What happened.
    pub outcome: Result<Copied>,
}

/// One step of a copy.
#[derive(Debug)]
pub enum Event {
    /// First: the plan.
    Plan(PlanSummary),
    /// A blob's progress.
    Blob(BlobEvent),
    /// A manifest pushed, as `reference` (tag or digest).
    Manifest {
        /// Its digest.
        digest: String,
        /// Its media type.
        media_type: String,
        /// The tag or digest it was pushed as.
        reference: String,
    },
    /// Last: the outcome.
    Result(TargetResult),
}

/// An event of the target at `target` (its index in the request).
#[derive(Debug)]
pub struct Update {
    /// Index of the target.
    pub target: usize,
    /// What happened.
    pub event: Event,
}

/// The stream of a copy. Dropping it (the caller went away) stops the copy.
pub struct CopyStream {
    rx: mpsc::Receiver<Result<Update>>,
    task: tokio::task::AbortHandle,
}

impl tokio_stream::Stream for CopyStream {
    type Item = Result<Update>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for CopyStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The copy use cases, over the image use cases' registries and clients.
#[derive(Clone)]
pub struct Copier {
    images: Images,
}

/// One end of a copy, loaded and authorized.
struct Side {
    registry_id: String,
    project: String,
    spec: RegistrySpec,
    client: Arc<RegistryClient>,
    /// Repository path.
    repo: String,
    /// Tag to read (source) or to push last (target).
    tag: Option<String>,
}

impl Side {
    /// Same registry: same entry, or the same address.
    fn same_registry(&self, other: &Side) -> bool {
        self.registry_id == other.registry_id
            || (self.spec.address.host_port() == other.spec.address.host_port()
                && self.spec.address.scheme() == other.spec.address.scheme())
    }

    /// `host/path[:tag]@digest`.
    fn reference(&self, digest: &str) -> String {
        match layout::reference(&self.spec, &self.repo, self.tag.as_deref(), Some(digest)) {
            Ok(r) => r.fully_qualified(),
            Err(_) => format!("{}/{}@{digest}", self.spec.address.host_port(), self.repo),
        }
    }

    /// `host/path`, for messages about a copy that did not finish.
    fn name(&self) -> String {
        format!("{}/{}", self.spec.address.host_port(), self.repo)
    }
}

/// A target as the request gave it, with the source's values filled in.
struct Wanted {
    registry_id: String,
    project: String,
    image: String,
    tag: String,
    /// Where errors point: `target` or `targets[i]`.
    field: String,
}

impl Copier {
    /// Copies with `images`' registries, clients and store.
    pub fn new(images: Images) -> Self {
        Copier { images }
    }

    /// CopyImage: one target; a failure ends the stream with its status.
    pub async fn copy_image(
        &self,
        caller: &Caller,
        source: SourceSpec,
        target: TargetSpec,
    ) -> Result<CopyStream> {
        self.start(caller, source, vec![target], false).await
    }

    /// DistributeImage: every target gets its own result.
    pub async fn distribute(
        &self,
        caller: &Caller,
        source: SourceSpec,
        targets: Vec<TargetSpec>,
    ) -> Result<CopyStream> {
        if targets.is_empty() || targets.len() > MAX_TARGETS {
            return Err(Error::invalid(
                "targets",
                format!("give 1 to {MAX_TARGETS} targets"),
            ));
        }
        self.start(caller, source, targets, true).await
    }

    /// Checks and loads everything a copy needs, then starts it. Invalid
    /// fields, a missing source registry or a refused role answer at once;
    /// with several targets, a target whose registry cannot be used gets a
    /// failed result instead.
    async fn start(
        &self,
        caller: &Caller,
        source: SourceSpec,
        targets: Vec<TargetSpec>,
        many: bool,
    ) -> Result<CopyStream> {
        let wanted: Vec<Wanted> = targets
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let field = if many {
                    format!("targets[{i}]")
                } else {
                    "target".to_string()
                };
                Wanted {
                    registry_id: t.registry_id.trim().to_string(),
                    project: or(&t.project, &source.project),
                    image: or(&t.image, &source.image),
                    tag: or(&t.tag, &source.tag),
                    field,
                }
            })
            .collect();
        if let Err(e) = check_request(&source, &wanted) {
            return Err(self.refuse(caller, &wanted, e).await);
        }
        let src = match self.load_source(caller, &source).await {
            Ok(s) => Arc::new(s),
            Err(e) => return Err(self.refuse(caller, &wanted, e).await),
        };
        let digest = source.digest.trim();
        let reference = if digest.is_empty() {
            source.tag.trim().to_string()
        } else {
            digest.to_string()
        };
        let mut sides = Vec::with_capacity(wanted.len());
        for w in &wanted {
            match self.load_target(caller, w).await {
                Ok(side) => sides.push(Ok(Arc::new(side))),
                Err(e) => {
                    self.audit_refusal(caller, w, &e).await;
                    if !many {
                        return Err(e);
                    }
                    sides.push(Err(e));
                }
            }
        }
        let permit = COPIES.try_acquire().map_err(|_| {
            Error::ResourceExhausted(format!(
                "berth is running its limit of {MAX_COPIES} copies; retry shortly"
            ))
        })?;
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let run = Run {
            copier: self.clone(),
            caller: caller.clone(),
            source: src,
            reference,
            many,
            _permit: permit,
        };
        let span = tracing::info_span!(
            "copy",
            source = %run.source.name(),
            reference = %run.reference,
            targets = sides.len()
        );
        let task = tokio::spawn(run.go(sides, tx).instrument(span));
        Ok(CopyStream {
            rx,
            task: task.abort_handle(),
        })
    }

    async fn load_source(&self, caller: &Caller, s: &SourceSpec) -> Result<Side> {
        let tag = s.tag.trim();
        let digest = s.digest.trim();
        self.load(
            caller,
            &s.registry_id,
            &s.project,
            &s.image,
            (!tag.is_empty()).then_some(tag),
            (!digest.is_empty()).then_some(digest),
            "source",
        )
        .await
    }

    async fn load_target(&self, caller: &Caller, w: &Wanted) -> Result<Side> {
        let tag = (!w.tag.is_empty()).then_some(w.tag.as_str());
        self.load(
            caller,
            &w.registry_id,
            &w.project,
            &w.image,
            tag,
            None,
            &w.field,
        )
        .await
    }

    /// The registry (the caller must hold `credentials` on the project),
    /// the repository path and a client with fresh credentials.
    #[allow(clippy::too_many_arguments)]
    async fn load(
        &self,
        caller: &Caller,
        registry_id: &str,
        project: &str,
        image: &str,
        tag: Option<&str>,
        digest: Option<&str>,
        field: &str,
    ) -> Result<Side> {
        let target = self
            .images
            .target(&caller.principal, Role::Credentials, registry_id, project)
            .await
            .map_err(|e| within(field, e))?;
        let spec = target.record.spec.clone();
        let repo = layout::repository_path(&spec, image, &format!("{field}.image"))?;
        layout::reference(&spec, &repo, tag, digest).map_err(|e| within(field, e))?;
        let client = self.images.client(&target).await?;
        Ok(Side {
            registry_id: target.record.id,
            project: project.trim().to_string(),
            spec,
            client,
            repo,
            tag: tag.map(str::to_string),
        })
    }

    /// `e`, once every target has its audit record of the refusal.
    async fn refuse(&self, caller: &Caller, wanted: &[Wanted], e: Error) -> Error {
        for w in wanted {
            self.audit_refusal(caller, w, &e).await;
        }
        e
    }

    /// The audit record of a target refused before its copy started.
    async fn audit_refusal(&self, caller: &Caller, w: &Wanted, e: &Error) {
        let registry = images::registry_id_of(&w.registry_id).ok();
        let detail = format!("copy to {} refused: {e}", w.image.trim());
        self.audit(caller, registry, &w.project, outcome_of(e), detail)
            .await;
    }

    async fn audit(
        &self,
        caller: &Caller,
        registry_id: Option<String>,
        project: &str,
        outcome: &'static str,
        detail: String,
    ) {
        let entry = AuditEntry {
            actor: caller.principal.name.clone(),
            action: "image.copy",
            registry_id,
            project: images::check_project(project).ok().map(str::to_owned),
            outcome,
            request_id: caller.request_id.clone(),
            detail,
        };
        if let Err(e) = self.images.store().record(entry).await {
            // The copy's outcome stands; the missing record is logged.
            tracing::error!(error = %e, "could not write the audit record of an image copy");
        }
    }
}

/// A running copy.
struct Run {
    copier: Copier,
    caller: Caller,
    source: Arc<Side>,
    /// Tag or digest to read.
    reference: String,
    many: bool,
    _permit: tokio::sync::SemaphorePermit<'static>,
}

impl Run {
    async fn go(self, targets: Vec<Result<Arc<Side>>>, tx: mpsc::Sender<Result<Update>>) {
        let plan = match plan(&self.source, &self.reference).await {
            Ok(p) => Arc::new(p),
            Err(e) => {
                tracing::info!(error = %e, "the source could not be read");
                for t in targets.iter().flatten() {
                    self.record(t, Err(&e)).await;
                }
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        tracing::info!(
            digest = %plan.root.digest,
            manifests = plan.children.len() + 1,
            blobs = plan.blobs.len(),
            bytes = plan.total_bytes,
            "copy planned"
        );
        let slots = Arc::new(Semaphore::new(MAX_PARALLEL_BLOBS));
        let options = self.copier.images.client_options().clone();
        let mut copies = JoinSet::new();
        for (index, target) in targets.into_iter().enumerate() {
            let events = Events {
                tx: tx.clone(),
                target: index,
            };
            match target {
                Err(e) => {
                    // Already audited when it was refused.
                    events
                        .send(Event::Result(TargetResult {
                            registry_id: String::new(),
                            outcome: Err(e),
                        }))
                        .await;
                }
                Ok(side) => {
                    let job = Job {
                        plan: plan.clone(),
                        source: self.source.clone(),
                        target: side.clone(),
                        events: events.clone(),
                        slots: slots.clone(),
                        options: options.clone(),
                    };
                    let span = tracing::info_span!("target", index, to = %side.name());
                    copies.spawn(
                        async move { (index, side, events, job.run().await) }.instrument(span),
                    );
                }
            }
        }
        while let Some(joined) = copies.join_next().await {
            let (index, side, events, outcome) = match joined {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(error = %e, "a copy task stopped");
                    let _ = tx
                        .send(Err(Error::Internal("a copy task stopped".into())))
                        .await;
                    return;
                }
            };
            self.record(&side, outcome.as_ref()).await;
            match outcome {
                Err(e) if !self.many => {
                    tracing::info!(index, error = %e, "copy failed");
                    let _ = tx.send(Err(e)).await;
                }
                outcome => {
                    if let Err(e) = &outcome {
                        tracing::info!(index, error = %e, "copy to this target failed");
                    } else {
                        tracing::info!(index, "copy done");
                    }
                    events
                        .send(Event::Result(TargetResult {
                            registry_id: side.registry_id.clone(),
                            outcome,
                        }))
                        .await;
                }
            }
        }
    }

    /// The audit record of a copy to `target`.
    async fn record(&self, target: &Side, outcome: std::result::Result<&Copied, &Error>) {
        let from = &self.source;
        let (result, detail) = match outcome {
            Ok(c) => (
                "ok",
                format!(
                    "copied {} to {}: {} bytes in {} blobs copied, {} skipped, {} mounted",
                    from.reference(&c.digest),
                    c.reference,
                    c.bytes_copied,
                    c.blobs_copied,
                    c.blobs_skipped,
                    c.blobs_mounted
                ),
            ),
            Err(e) => (
                outcome_of(e),
                format!(
                    "copy of {}:{} to {} failed: {e}",
                    from.name(),
                    self.reference,
                    target.name()
                ),
            ),
        };
        self.copier
            .audit(
                &self.caller,
                Some(target.registry_id.clone()),
                &target.project,
                result,
                detail,
            )
            .await;
    }
}

/// How the progress of one target reaches the stream.
#[derive(Clone)]
struct Events {
    tx: mpsc::Sender<Result<Update>>,
    target: usize,
}

impl Events {
    /// A step that must arrive (waits for room).
    async fn send(&self, event: Event) {
        let _ = self
            .tx
            .send(Ok(Update {
                target: self.target,
                event,
            }))
            .await;
    }

    /// A byte count that may be dropped when the reader is behind.
    fn offer(&self, event: Event) {
        let _ = self.tx.try_send(Ok(Update {
            target: self.target,
            event,
        }));
    }

    async fn blob(&self, blob: &BlobRef, state: BlobState, done: u64, attempt: u32, msg: String) {
        self.send(Event::Blob(BlobEvent {
            digest: blob.digest.clone(),
            bytes_done: done,
            bytes_total: blob.size,
            state,
            attempt,
            message: msg,
        }))
        .await;
    }
}

// ---------------------------------------------------------------------------
// The plan

/// A manifest, as the source stores it.
struct Doc {
    digest: String,
    media_type: String,
    bytes: Bytes,
    depth: usize,
}

/// A blob to copy.
#[derive(Clone)]
struct BlobRef {
    digest: String,
    size: u64,
}

/// Everything a copy pushes.
struct Plan {
    root: Doc,
    /// Manifests below the root, deepest first.
    children: Vec<Doc>,
    blobs: Vec<BlobRef>,
    total_bytes: u64,
}

#[derive(serde::Deserialize)]
struct Manifest {
    #[serde(rename = "schemaVersion", default)]
    schema_version: i64,
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(serde::Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    urls: Vec<String>,
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

impl Manifest {
    fn is_index(&self) -> bool {
        !self.manifests.is_empty() || self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }
}

/// Reads the source's manifests and lists their blobs.
async fn plan(source: &Side, reference: &str) -> Result<Plan> {
    let client = &source.client;
    let repo = &source.repo;
    let (bytes, header_type) = client.manifest(repo, reference).await?;
    let digest = if reference.contains(':') {
        checked_digest(reference, &bytes)?
    } else {
        sha256_digest(&bytes)
    };
    let root = parse(&bytes, &digest)?;
    let media_type = media_type_of(&root, "", &header_type);
    let mut seen_manifests = HashSet::from([digest.clone()]);
    let mut blobs = Blobs::default();
    // (digest, media type the parent declares, depth), breadth first.
    let mut pending: VecDeque<(String, String, usize)> = VecDeque::new();
    if root.is_index() {
        pending.extend(
            root.manifests
                .iter()
                .map(|d| (d.digest.clone(), d.media_type.clone(), 1)),
        );
    } else {
        blobs.add(&root, &digest)?;
    }
    let mut children = Vec::new();
    while let Some((child, declared, depth)) = pending.pop_front() {
        if !valid_digest(&child) {
            return Err(Error::FailedPrecondition(format!(
                "manifest {digest} names a manifest by `{child}`, which is not a digest berth can copy"
            )));
        }
        if !seen_manifests.insert(child.clone()) {
            continue;
        }
        if seen_manifests.len() > MAX_MANIFESTS {
            return Err(Error::FailedPrecondition(format!(
                "the image has more than {MAX_MANIFESTS} manifests"
            )));
        }
        let (bytes, header_type) = client.manifest(repo, &child).await?;
        checked_digest(&child, &bytes)?;
        let m = parse(&bytes, &child)?;
        if m.is_index() {
            if depth >= MAX_DEPTH {
                return Err(Error::FailedPrecondition(format!(
                    "indexes are nested deeper than {MAX_DEPTH} levels below {digest}"
                )));
            }
            pending.extend(
                m.manifests
                    .iter()
                    .map(|d| (d.digest.clone(), d.media_type.clone(), depth + 1)),
            );
        } else {
            blobs.add(&m, &child)?;
        }
        children.push(Doc {
            media_type: media_type_of(&m, &declared, &header_type),
            digest: child,
            bytes: Bytes::from(bytes),
            depth,
        });
    }
    // Children before their parents: deeper levels first, in index order.
    children.sort_by_key(|d| Reverse(d.depth));
    // Sizes come from the source's manifests: add without overflowing.
    let total_bytes = blobs
        .list
        .iter()
        .fold(0u64, |sum, b| sum.saturating_add(b.size));
    Ok(Plan {
        root: Doc {
            digest,
            media_type,
            bytes: Bytes::from(bytes),
            depth: 0,
        },
        children,
        blobs: blobs.list,
        total_bytes,
    })
}

/// The distinct blobs of a plan.
#[derive(Default)]
struct Blobs {
    seen: HashSet<String>,
    list: Vec<BlobRef>,
}

impl Blobs {
    /// The config and layers of image manifest `m` (digest `of`).
    fn add(&mut self, m: &Manifest, of: &str) -> Result<()> {
        for d in m.config.iter().chain(m.layers.iter()) {
            if !valid_digest(&d.digest) {
                return Err(Error::FailedPrecondition(format!(
                    "manifest {of} names a blob by `{}`, which is not a digest berth can copy",
                    d.digest
                )));
            }
            let size = u64::try_from(d.size).map_err(|_| {
                Error::FailedPrecondition(format!(
                    "manifest {of} gives blob {} a negative size",
                    d.digest
                ))
            })?;
            // Foreign (non-distributable) layers stay where their URLs
            // point; registries do not hold them.
            let foreign =
                d.media_type.contains("foreign") || d.media_type.contains("nondistributable");
            if foreign && !d.urls.is_empty() {
                continue;
            }
            if self.seen.insert(d.digest.clone()) {
                if self.list.len() >= MAX_BLOBS {
                    return Err(Error::FailedPrecondition(format!(
                        "the image has more than {MAX_BLOBS} blobs"
                    )));
                }
                self.list.push(BlobRef {
                    digest: d.digest.clone(),
                    size,
                });
            }
        }
        Ok(())
    }
}

/// The digest of `bytes`, which must be `expected`.
fn checked_digest(expected: &str, bytes: &[u8]) -> Result<String> {
    match digest_like(expected, bytes) {
        Some(d) if d == expected => Ok(d),
        Some(d) => Err(Error::FailedPrecondition(format!(
            "the source registry sent a manifest hashing to {d} for {expected}"
        ))),
        None => Err(Error::invalid(
            "source.digest",
            "berth copies sha256, sha384 and sha512 digests only",
        )),
    }
}

fn parse(bytes: &[u8], digest: &str) -> Result<Manifest> {
    let m: Manifest = serde_json::from_slice(bytes).map_err(|_| {
        Error::FailedPrecondition(format!(
            "manifest {digest} is not a manifest berth can read"
        ))
    })?;
    if m.schema_version == 1 {
        return Err(Error::FailedPrecondition(format!(
            "manifest {digest} is a Docker schema 1 manifest, which berth does not copy"
        )));
    }
    Ok(m)
}

/// The media type to push a manifest with: its own `mediaType`, else what
/// the index said of it, else what the registry sent, else by its shape.
fn media_type_of(m: &Manifest, declared: &str, header: &str) -> String {
    let header = header.split(';').next().unwrap_or_default().trim();
    [m.media_type.as_str(), declared, header]
        .into_iter()
        .find(|t| !t.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| {
            if m.is_index() {
                OCI_INDEX.to_string()
            } else {
                OCI_MANIFEST.to_string()
            }
        })
}

// ---------------------------------------------------------------------------
// Copying to one target

/// A copy to one target.
struct Job {
    plan: Arc<Plan>,
    source: Arc<Side>,
    target: Arc<Side>,
    events: Events,
    slots: Arc<Semaphore>,
    options: ClientOptions,
}

/// What happened to one blob.
enum BlobOutcome {
    Copied(u64),
    Skipped,
    Mounted,
}

impl Job {
    async fn run(self) -> Result<Copied> {
        let plan = &self.plan;
        self.events
            .send(Event::Plan(PlanSummary {
                source_reference: self.source.reference(&plan.root.digest),
                digest: plan.root.digest.clone(),
                media_type: plan.root.media_type.clone(),
                manifests: plan.children.len() + 1,
                blobs: plan.blobs.len(),
                total_bytes: plan.total_bytes,
            }))
            .await;
        let mount = self.target.same_registry(&self.source) && self.target.repo != self.source.repo;
        let mut copied = Copied {
            digest: plan.root.digest.clone(),
            reference: self.target.reference(&plan.root.digest),
            ..Copied::default()
        };
        let mut blobs = JoinSet::new();
        for blob in plan.blobs.iter().cloned() {
            let blob_job = BlobJob {
                source: self.source.clone(),
                target: self.target.clone(),
                events: self.events.clone(),
                mount,
                options: self.options.clone(),
            };
            let slots = self.slots.clone();
            let span = tracing::debug_span!("blob", digest = %blob.digest, size = blob.size);
            blobs.spawn(
                async move {
                    let permit: OwnedSemaphorePermit = slots
                        .acquire_owned()
                        .await
                        .map_err(|_| Error::Internal("the blob slots closed".into()))?;
                    let outcome = blob_job.copy(&blob).await;
                    drop(permit);
                    outcome
                }
                .instrument(span),
            );
        }
        while let Some(joined) = blobs.join_next().await {
            match joined {
                Ok(Ok(BlobOutcome::Copied(n))) => {
                    copied.bytes_copied += n;
                    copied.blobs_copied += 1;
                }
                Ok(Ok(BlobOutcome::Skipped)) => copied.blobs_skipped += 1,
                Ok(Ok(BlobOutcome::Mounted)) => copied.blobs_mounted += 1,
                Ok(Err(e)) => {
                    blobs.abort_all();
                    return Err(e);
                }
                Err(e) => {
                    blobs.abort_all();
                    tracing::error!(error = %e, "a blob task stopped");
                    return Err(Error::Internal("a blob transfer stopped".into()));
                }
            }
        }
        // Every blob is there: manifests, children first, the tag last.
        let target = &self.target;
        for doc in &plan.children {
            self.push(doc, &doc.digest).await?;
        }
        let root_reference = target.tag.as_deref().unwrap_or(&plan.root.digest);
        self.push(&plan.root, root_reference).await?;
        Ok(copied)
    }

    async fn push(&self, doc: &Doc, reference: &str) -> Result<()> {
        self.target
            .client
            .put_manifest(
                &self.target.repo,
                reference,
                &doc.media_type,
                &doc.digest,
                doc.bytes.clone(),
            )
            .await?;
        self.events
            .send(Event::Manifest {
                digest: doc.digest.clone(),
                media_type: doc.media_type.clone(),
                reference: reference.to_string(),
            })
            .await;
        Ok(())
    }
}

/// A copy of one blob.
struct BlobJob {
    source: Arc<Side>,
    target: Arc<Side>,
    events: Events,
    mount: bool,
    options: ClientOptions,
}

/// Why one transfer attempt failed.
enum Broken {
    /// A registry call failed.
    Client(ClientError),
    /// The bytes were not the blob.
    Fault(BlobFault),
}

impl Broken {
    /// Whether a fresh attempt can help.
    fn transient(&self) -> bool {
        match self {
            Broken::Fault(_) => true,
            Broken::Client(e) => matches!(e, ClientError::Unreachable(_) | ClientError::Timeout(_)),
        }
    }

    /// Whether attempt `attempt`, which failed this way, is followed by
    /// another: transient failures up to [`MAX_ATTEMPTS`]; a 401 once (the
    /// registry dropped our token before its stated expiry: the upload
    /// forgot it, and the next session's POST authenticates afresh), since
    /// a second 401 means the credentials themselves are refused.
    fn worth_retrying(&self, attempt: u32) -> bool {
        if attempt >= MAX_ATTEMPTS {
            return false;
        }
        self.transient()
            || (attempt == 1 && matches!(self, Broken::Client(ClientError::Unauthorized(_))))
    }
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Client(e) => e.fmt(f),
            Broken::Fault(e) => e.fmt(f),
        }
    }
}

impl From<Broken> for Error {
    fn from(b: Broken) -> Self {
        match b {
            Broken::Client(e) => e.into(),
            Broken::Fault(f @ BlobFault::Source { .. }) => Error::Unavailable(f.to_string()),
            Broken::Fault(f) => Error::FailedPrecondition(f.to_string()),
        }
    }
}

impl BlobJob {
    async fn copy(&self, blob: &BlobRef) -> Result<BlobOutcome> {
        let target = &self.target;
        if target
            .client
            .blob_exists(&target.repo, &blob.digest)
            .await?
        {
            self.events
                .blob(
                    blob,
                    BlobState::Skipped,
                    0,
                    1,
                    "the target already has it".into(),
                )
                .await;
            return Ok(BlobOutcome::Skipped);
        }
        let mut session = None;
        if self.mount {
            let from = &self.source.repo;
            match target
                .client
                .mount_blob(&target.repo, &blob.digest, from)
                .await
            {
                Ok(Mount::Mounted) => {
                    self.events
                        .blob(
                            blob,
                            BlobState::Mounted,
                            0,
                            1,
                            format!("mounted from {from}"),
                        )
                        .await;
                    return Ok(BlobOutcome::Mounted);
                }
                Ok(Mount::Upload(s)) => {
                    tracing::debug!("the registry did not mount; copying");
                    session = Some(s);
                }
                Err(e @ (ClientError::Unreachable(_) | ClientError::Timeout(_))) => {
                    return Err(e.into());
                }
                Err(e) => tracing::debug!(error = %e, "mount refused; copying"),
            }
        }
        let timeout = self.options.request_timeout
            + Duration::from_secs(blob.size.div_ceil(MIN_BYTES_PER_SECOND));
        let mut attempt = 1;
        loop {
            let s = match session.take() {
                Some(s) => s,
                None => target.client.start_upload(&target.repo).await?,
            };
            match self.transfer(blob, &s, attempt, timeout).await {
                Ok(()) => {
                    self.events
                        .blob(blob, BlobState::Done, blob.size, attempt, String::new())
                        .await;
                    return Ok(BlobOutcome::Copied(blob.size));
                }
                Err(broken) => {
                    target.client.cancel_upload(&target.repo, &s).await;
                    if !broken.worth_retrying(attempt) {
                        let tries = if attempt > 1 {
                            format!(" (after {attempt} attempts)")
                        } else {
                            String::new()
                        };
                        return Err(with_suffix(broken.into(), &tries));
                    }
                    tracing::warn!(attempt, error = %broken, "blob transfer failed; retrying");
                    self.events
                        .blob(
                            blob,
                            BlobState::Retrying,
                            0,
                            attempt,
                            format!("attempt {attempt} failed: {broken}"),
                        )
                        .await;
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// One attempt: the source's GET streamed into `session`'s PUT, with
    /// a slot of each registry's budget held from before the GET until the
    /// PUT ends: the GET's body is read all that time.
    async fn transfer(
        &self,
        blob: &BlobRef,
        session: &UploadSession,
        attempt: u32,
        timeout: Duration,
    ) -> std::result::Result<(), Broken> {
        let limiters = [self.source.client.limiter(), self.target.client.limiter()];
        budget::hold(limiters.into_iter().flatten())
            .await
            .scope(self.stream(blob, session, attempt, timeout))
            .await
    }

    /// [`BlobJob::transfer`] once its slots are held.
    async fn stream(
        &self,
        blob: &BlobRef,
        session: &UploadSession,
        attempt: u32,
        timeout: Duration,
    ) -> std::result::Result<(), Broken> {
        let (source, target) = (&self.source, &self.target);
        let resp = source
            .client
            .get_blob(&source.repo, &blob.digest, timeout)
            .await
            .map_err(Broken::Client)?;
        let body = BlobTransfer::new(resp, &blob.digest, blob.size).map_err(Broken::Client)?;
        let progress = body.progress();
        self.events
            .blob(blob, BlobState::Transferring, 0, attempt, String::new())
            .await;
        let put = target.client.put_blob(
            &target.repo,
            session,
            &blob.digest,
            blob.size,
            body,
            timeout,
        );
        tokio::pin!(put);
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tick.tick().await;
        let report = || {
            self.events.offer(Event::Blob(BlobEvent {
                digest: blob.digest.clone(),
                bytes_done: progress.bytes(),
                bytes_total: blob.size,
                state: BlobState::Transferring,
                attempt,
                message: String::new(),
            }))
        };
        // Byte counts every PROGRESS_STEP bytes, and twice a second.
        let sent = loop {
            tokio::select! {
                sent = &mut put => break sent,
                _ = progress.stepped() => report(),
                _ = tick.tick() => report(),
            }
        };
        match (sent, progress.fault()) {
            (Ok(()), _) => Ok(()),
            // The body's own reason beats the transport's "body error".
            (Err(_), Some(fault)) => Err(Broken::Fault(fault)),
            (Err(e), None) => Err(Broken::Client(e)),
        }
    }
}

// ---------------------------------------------------------------------------
// Small helpers

/// `value` trimmed, or `default` trimmed when it is empty.
fn or(value: &str, default: &str) -> String {
    match value.trim() {
        "" => default.trim().to_string(),
        v => v.to_string(),
    }
}

/// Field-level checks of the whole request, before anything is loaded.
fn check_request(source: &SourceSpec, targets: &[Wanted]) -> Result<()> {
    images::check_project(&source.project).map_err(|e| within("source", e))?;
    if !source.registry_id.trim().is_empty() {
        images::registry_id_of(source.registry_id.trim()).map_err(|e| within("source", e))?;
    }
    layout::check_image(&source.image, "source.image")?;
    let tag = source.tag.trim();
    let digest = source.digest.trim();
    if tag.is_empty() && digest.is_empty() {
        return Err(Error::invalid(
            "source.tag",
            "a tag or a digest is required",
        ));
    }
    if !tag.is_empty() {
        images::check_tag(tag).map_err(|e| within("source", e))?;
    }
    if !digest.is_empty() {
        images::check_digest(digest).map_err(|e| within("source", e))?;
        if !valid_digest(digest) {
            return Err(Error::invalid(
                "source.digest",
                "berth copies sha256, sha384 and sha512 digests only",
            ));
        }
    }
    for t in targets {
        images::check_project(&t.project).map_err(|e| within(&t.field, e))?;
        if !t.registry_id.is_empty() {
            images::registry_id_of(&t.registry_id).map_err(|e| within(&t.field, e))?;
        }
        layout::check_image(&t.image, &format!("{}.image", t.field))?;
        if !t.tag.is_empty() {
            images::check_tag(&t.tag).map_err(|e| within(&t.field, e))?;
        }
    }
    Ok(())
}

/// `e` with its field violations moved under `prefix` (`tag` becomes
/// `source.tag`); other errors unchanged.
fn within(prefix: &str, e: Error) -> Error {
    match e {
        Error::InvalidArgument(v) => Error::InvalidArgument(
            v.into_iter()
                .map(|f| {
                    if f.field.starts_with(&format!("{prefix}.")) {
                        f
                    } else {
                        FieldViolation::new(format!("{prefix}.{}", f.field), f.description)
                    }
                })
                .collect(),
        ),
        other => other,
    }
}

/// `e` with `suffix` added to its message.
fn with_suffix(e: Error, suffix: &str) -> Error {
    if suffix.is_empty() {
        return e;
    }
    match e {
        Error::Unavailable(m) => Error::Unavailable(format!("{m}{suffix}")),
        Error::DeadlineExceeded(m) => Error::DeadlineExceeded(format!("{m}{suffix}")),
        Error::FailedPrecondition(m) => Error::FailedPrecondition(format!("{m}{suffix}")),
        other => other,
    }
}

/// The audit outcome of an error.
fn outcome_of(e: &Error) -> &'static str {
    if matches!(e, Error::PermissionDenied(_)) {
        "denied"
    } else {
        "failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_upload_is_retried_once_and_breaks_up_to_the_limit() {
        let unauthorized = || Broken::Client(ClientError::Unauthorized("401".into()));
        assert!(unauthorized().worth_retrying(1));
        assert!(!unauthorized().worth_retrying(2));
        let cut = || Broken::Client(ClientError::Unreachable("reset".into()));
        assert!(cut().worth_retrying(1));
        assert!(cut().worth_retrying(MAX_ATTEMPTS - 1));
        assert!(!cut().worth_retrying(MAX_ATTEMPTS));
        let refused = Broken::Client(ClientError::Protocol("bad manifest".into()));
        assert!(!refused.worth_retrying(1));
    }

    fn parsed(json: &str) -> Manifest {
        parse(json.as_bytes(), "sha256:x").expect("manifest")
    }

    #[test]
    fn field_violations_move_under_their_side() {
        let e = within("targets[1]", Error::invalid("tag", "bad"));
        let Error::InvalidArgument(v) = e else {
            panic!("still invalid argument");
        };
        assert_eq!(v[0].field, "targets[1].tag");
        let e = within("source", Error::invalid("source.image", "bad"));
        let Error::InvalidArgument(v) = e else {
            panic!("still invalid argument");
        };
        assert_eq!(v[0].field, "source.image", "not prefixed twice");
        assert!(matches!(
            within("source", Error::NotFound("x".into())),
            Error::NotFound(_)
        ));
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let source = SourceSpec {
            project: "web".into(),
            image: "app".into(),
            tag: "1.0".into(),
            ..Default::default()
        };
        let target = |tag: &str| Wanted {
            registry_id: String::new(),
            project: "web".into(),
            image: "app".into(),
            tag: tag.into(),
            field: "targets[2]".into(),
        };
        assert!(check_request(&source, &[target("2.0")]).is_ok());
        let field = |r: Result<()>| match r {
            Err(Error::InvalidArgument(v)) => v[0].field.clone(),
            other => panic!("wanted INVALID_ARGUMENT, got {other:?}"),
        };
        assert_eq!(
            field(check_request(&source, &[target("no spaces")])),
            "targets[2].tag"
        );
        let no_ref = SourceSpec {
            tag: String::new(),
            ..source.clone()
        };
        assert_eq!(field(check_request(&no_ref, &[])), "source.tag");
        let bad_digest = SourceSpec {
            digest: "sha256:abc".into(),
            ..source.clone()
        };
        assert_eq!(field(check_request(&bad_digest, &[])), "source.digest");
        let bad_image = SourceSpec {
            image: "App:1".into(),
            ..source.clone()
        };
        assert_eq!(field(check_request(&bad_image, &[])), "source.image");
        let bad_id = SourceSpec {
            registry_id: "nope".into(),
            ..source.clone()
        };
        assert_eq!(field(check_request(&bad_id, &[])), "source.registry_id");
        let no_project = SourceSpec {
            project: " ".into(),
            ..source
        };
        assert_eq!(field(check_request(&no_project, &[])), "source.project");
    }

    #[test]
    fn blobs_are_listed_once_and_checked() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let image = parsed(&format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":10}},
               "layers":[{{"digest":"{}","size":20}},{{"digest":"{}","size":20}},
                         {{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                           "digest":"{}","size":30,"urls":["https://example.com/l"]}}]}}"#,
            d('a'),
            d('b'),
            d('b'),
            d('c')
        ));
        let mut blobs = Blobs::default();
        blobs.add(&image, "m").expect("blobs");
        blobs.add(&image, "m").expect("blobs again");
        let listed: Vec<(&str, u64)> = blobs
            .list
            .iter()
            .map(|b| (b.digest.as_str(), b.size))
            .collect();
        assert_eq!(listed, [(d('a').as_str(), 10), (d('b').as_str(), 20)]);

        let sneaky =
            parsed(r#"{"schemaVersion":2,"layers":[{"digest":"sha256:../../x","size":1}]}"#);
        assert!(Blobs::default().add(&sneaky, "m").is_err());
        let negative = parsed(&format!(
            r#"{{"schemaVersion":2,"layers":[{{"digest":"{}","size":-1}}]}}"#,
            d('a')
        ));
        assert!(Blobs::default().add(&negative, "m").is_err());
    }

    #[test]
    fn media_types_and_schema_one() {
        let index = parsed(r#"{"schemaVersion":2,"manifests":[]}"#);
        assert!(!index.is_index(), "an empty list without a media type");
        let index = parsed(&format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}"}}"#
        ));
        assert!(index.is_index());
        assert_eq!(media_type_of(&index, "", ""), DOCKER_LIST);
        let bare = parsed(r#"{"schemaVersion":2,"layers":[]}"#);
        assert_eq!(media_type_of(&bare, "", ""), OCI_MANIFEST);
        assert_eq!(
            media_type_of(&bare, "", "application/x; charset=utf-8"),
            "application/x"
        );
        assert_eq!(media_type_of(&bare, "declared", "header"), "declared");
        assert!(matches!(
            parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, "sha256:x"),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(parse(b"not json", "sha256:x").is_err());
    }

    #[test]
    fn manifests_must_match_their_digest() {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(checked_digest(empty, b"").ok().as_deref(), Some(empty));
        assert!(matches!(
            checked_digest(empty, b"x"),
            Err(Error::FailedPrecondition(_))
        ));
    }
}
