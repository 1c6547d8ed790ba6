//! Writing to a registry, for CopyImage: whether a blob is there (HEAD),
//! cross-repository mounts, upload sessions finished by one streamed PUT,
//! and manifests.
//!
//! A blob never sits in memory whole. [`BlobTransfer`] is the body of the
//! target's `PUT <session>?digest=…`: it pulls the source's `GET` body one
//! chunk at a time (what hyper has read), hashes and counts it, and hands
//! the chunk on. It checks the digest and size before it hands on the last
//! byte, so a blob that does not match its descriptor never completes an
//! upload session (the registry checks the digest too).
//!
//! Scopes: everything on the target asks for `repository:<repo>:pull,push`
//! (one token serves a whole copy); a mount also asks for
//! `repository:<from>:pull`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode};
use sha2::Digest as _;

use super::{ClientError, Extra, RegistryClient, transport_error};

/// The most bytes of a registry's error answer berth reads.
const MAX_ERROR_BODY: usize = 8 * 1024;
/// The most characters of a registry's error message berth repeats.
const MAX_ERROR_TEXT: usize = 200;

/// `repository:<repo>:pull,push`.
pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// Whether `digest` is `algorithm:hex` as berth copies them: `sha256` (64
/// lowercase hex digits), `sha384` (96) or `sha512` (128). Digests from a
/// manifest go into URLs, so nothing else is let through.
pub fn valid_digest(digest: &str) -> bool {
    Hasher::for_digest(digest).is_some()
}

/// An incremental hash of the digest's algorithm.
enum Hasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn for_digest(digest: &str) -> Option<Hasher> {
        let (algorithm, hex) = digest.split_once(':')?;
        let (hasher, len) = match algorithm {
            "sha256" => (Hasher::Sha256(sha2::Sha256::new()), 64),
            "sha384" => (Hasher::Sha384(sha2::Sha384::new()), 96),
            "sha512" => (Hasher::Sha512(sha2::Sha512::new()), 128),
            _ => return None,
        };
        let hex_ok = hex.len() == len
            && hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
        hex_ok.then_some(hasher)
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha384(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha384(h) => format!("sha384:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

/// The digest of `bytes` in the algorithm of `like` (a digest), or `None`
/// if `like` is not a digest berth handles.
pub fn digest_like(like: &str, bytes: &[u8]) -> Option<String> {
    let mut h = Hasher::for_digest(like)?;
    h.update(bytes);
    Some(h.finish())
}

/// Why a blob's bytes did not make it through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobFault {
    /// The bytes hash to another digest than the descriptor's.
    #[error("blob {expected} arrived with the digest {actual}")]
    Digest {
        /// The descriptor's digest.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// The source sent fewer bytes than the descriptor's size.
    #[error("blob {digest} ended after {got} of {size} bytes")]
    Short {
        /// The blob.
        digest: String,
        /// Bytes received.
        got: u64,
        /// The descriptor's size.
        size: u64,
    },
    /// The source failed while sending.
    #[error("reading blob {digest} from the source failed: {why}")]
    Source {
        /// The blob.
        digest: String,
        /// The transport error.
        why: String,
    },
}

/// A transfer signals each time this many more bytes have gone through.
pub const PROGRESS_STEP: u64 = 16 * 1024 * 1024;

/// What a [`BlobTransfer`] reports while it runs: bytes through so far and,
/// if it failed, why.
#[derive(Clone, Default)]
pub struct TransferProgress {
    bytes: Arc<AtomicU64>,
    fault: Arc<Mutex<Option<BlobFault>>>,
    step: Arc<tokio::sync::Notify>,
}

impl TransferProgress {
    /// Bytes handed to the target so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Resolves once another [`PROGRESS_STEP`] bytes have gone through
    /// (at once if that happened since the last call).
    pub async fn stepped(&self) {
        self.step.notified().await;
    }

    /// Why the transfer failed, if it failed on berth's side.
    pub fn fault(&self) -> Option<BlobFault> {
        self.fault.lock().ok().and_then(|f| f.clone())
    }
}

/// The body of a blob's PUT: the source's GET body, checked on the way
/// through. Holds at most the chunk in hand.
pub struct BlobTransfer {
    source: reqwest::Body,
    hasher: Option<Hasher>,
    digest: String,
    size: u64,
    seen: u64,
    finished: bool,
    progress: TransferProgress,
}

impl BlobTransfer {
    /// A transfer of the body of `source` (a blob GET), which must be
    /// `size` bytes hashing to `digest`.
    pub fn new(source: Response, digest: &str, size: u64) -> Result<BlobTransfer, ClientError> {
        let hasher = Hasher::for_digest(digest)
            .ok_or_else(|| ClientError::Protocol(format!("`{digest}` is not a usable digest")))?;
        Ok(BlobTransfer {
            source: reqwest::Body::from(source),
            hasher: Some(hasher),
            digest: digest.to_string(),
            size,
            seen: 0,
            finished: false,
            progress: TransferProgress::default(),
        })
    }

    /// A handle on this transfer's progress, to keep before the body goes
    /// into the request.
    pub fn progress(&self) -> TransferProgress {
        self.progress.clone()
    }

    fn fail(&mut self, fault: BlobFault) -> Poll<Option<Result<Frame<Bytes>, BlobFault>>> {
        self.finished = true;
        if let Ok(mut f) = self.progress.fault.lock() {
            *f = Some(fault.clone());
        }
        Poll::Ready(Some(Err(fault)))
    }

    /// Checks the digest once every byte has been hashed.
    fn verify(&mut self) -> Result<(), BlobFault> {
        let actual = self.hasher.take().map(Hasher::finish).unwrap_or_default();
        if actual == self.digest {
            Ok(())
        } else {
            Err(BlobFault::Digest {
                expected: self.digest.clone(),
                actual,
            })
        }
    }
}

impl HttpBody for BlobTransfer {
    type Data = Bytes;
    type Error = BlobFault;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BlobFault>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.source).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers of the GET are no part of the blob.
                    let Ok(mut data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    let room = this.size - this.seen;
                    if data.len() as u64 > room {
                        // More than the descriptor says: the blob is its
                        // first `size` bytes, or the digest check fails.
                        data.truncate(room as usize);
                    }
                    this.seen += data.len() as u64;
                    if let Some(h) = this.hasher.as_mut() {
                        h.update(&data);
                    }
                    if this.seen == this.size {
                        // The last chunk goes out only if the blob is right.
                        if let Err(f) = this.verify() {
                            return this.fail(f);
                        }
                        this.finished = true;
                    }
                    this.progress.bytes.store(this.seen, Ordering::Relaxed);
                    let before = this.seen - data.len() as u64;
                    if this.seen / PROGRESS_STEP > before / PROGRESS_STEP {
                        this.progress.step.notify_one();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => {
                    let why = transport_error(&e).to_string();
                    let digest = this.digest.clone();
                    return this.fail(BlobFault::Source { digest, why });
                }
                Poll::Ready(None) => {
                    if this.seen < this.size {
                        let fault = BlobFault::Short {
                            digest: this.digest.clone(),
                            got: this.seen,
                            size: this.size,
                        };
                        return this.fail(fault);
                    }
                    // Only an empty blob gets here unchecked.
                    if let Err(f) = this.verify() {
                        return this.fail(f);
                    }
                    this.finished = true;
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.size - self.seen)
    }
}

/// An upload session the target opened: where the blob's bytes go.
pub struct UploadSession {
    url: reqwest::Url,
}

/// What a mount request achieved.
pub enum Mount {
    /// The target now has the blob, linked from the other repository.
    Mounted,
    /// The registry would not mount and opened an upload session instead.
    Upload(UploadSession),
}

impl RegistryClient {
    /// Whether `repo` has blob `digest` (`HEAD /v2/<repo>/blobs/<digest>`).
    pub async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool, ClientError> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let resp = self
            .send_with(
                Method::HEAD,
                &url,
                &push_scope(repo),
                &[],
                &Extra::default(),
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(refused(resp, &format!("checking blob {digest} in {repo}")).await),
        }
    }

    /// Asks the registry to link blob `digest` of repository `from` into
    /// `repo` (`POST /v2/<repo>/blobs/uploads/?mount=…&from=…`).
    pub async fn mount_blob(
        &self,
        repo: &str,
        digest: &str,
        from: &str,
    ) -> Result<Mount, ClientError> {
        let mut url = self.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from);
        let scope = format!("{} {}", push_scope(repo), super::ops::repo_scope(from));
        let resp = self
            .send_with(Method::POST, url.as_str(), &scope, &[], &empty_body())
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Upload(self.session(&resp)?)),
            _ => Err(refused(resp, &format!("mounting blob {digest} into {repo}")).await),
        }
    }

    /// Opens an upload session in `repo` (`POST /v2/<repo>/blobs/uploads/`).
    pub async fn start_upload(&self, repo: &str) -> Result<UploadSession, ClientError> {
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let resp = self
            .send_with(Method::POST, &url, &push_scope(repo), &[], &empty_body())
            .await?;
        if resp.status() == StatusCode::ACCEPTED {
            return self.session(&resp);
        }
        Err(refused(resp, &format!("starting an upload to {repo}")).await)
    }

    /// Starts reading blob `digest` of `repo`; the body is read by a
    /// [`BlobTransfer`]. `timeout` covers the whole read.
    pub async fn get_blob(
        &self,
        repo: &str,
        digest: &str,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let extra = Extra {
            timeout: Some(timeout),
            ..Extra::default()
        };
        let resp = self
            .send_with(
                Method::GET,
                &url,
                &super::ops::repo_scope(repo),
                &[],
                &extra,
            )
            .await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(refused(resp, &format!("reading blob {digest} from {repo}")).await)
    }

    /// Finishes `session` with the whole blob in one streamed `PUT
    /// <session>?digest=…`. Sent once: a body that has been read cannot be
    /// sent again, so a failure is retried by the caller in a fresh session
    /// (a 401 too, once: the token the PUT carried is forgotten here, so the
    /// next session's POST meets the challenge and fetches a new one).
    pub async fn put_blob(
        &self,
        repo: &str,
        session: &UploadSession,
        digest: &str,
        size: u64,
        body: BlobTransfer,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let mut url = session.url.clone();
        url.query_pairs_mut().append_pair("digest", digest);
        let mut req = self
            .http
            .put(url.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .timeout(timeout)
            .body(reqwest::Body::wrap(body));
        // Credentials go only to the registry itself, not to a session URL
        // on another host (blob storage). The body streams from the source,
        // so this request cannot meet a 401 challenge and be sent again:
        // a token forgotten meanwhile (another upload's 401) is fetched now.
        if self.same_origin(&url)
            && let Some(auth) = self.fresh_auth_header(&push_scope(repo)).await
        {
            req = req.header(AUTHORIZATION, auth);
        }
        // Held for the whole upload: the body streams during `send`.
        let admission = self.admit().await;
        let sent = req.send().await;
        drop(admission);
        self.count(&sent);
        let resp = sent.map_err(|e| transport_error(&e))?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            StatusCode::UNAUTHORIZED => {
                if let Ok(mut tokens) = self.tokens.lock() {
                    tokens.remove(&push_scope(repo));
                }
                Err(ClientError::Unauthorized(format!(
                    "{} answered 401 to the upload of blob {digest}",
                    self.base
                )))
            }
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                Err(ClientError::Unreachable(format!(
                    "{} answered {s} to the upload of blob {digest}",
                    self.base
                )))
            }
            _ => Err(refused(resp, &format!("uploading blob {digest} to {repo}")).await),
        }
    }

    /// Abandons `session` (best effort: the registry purges stale sessions
    /// anyway).
    pub async fn cancel_upload(&self, repo: &str, session: &UploadSession) {
        let mut req = self
            .http
            .delete(session.url.clone())
            .timeout(self.options.connect_timeout);
        if self.same_origin(&session.url)
            && let Some(auth) = self.auth_header(&push_scope(repo))
        {
            req = req.header(AUTHORIZATION, auth);
        }
        let admission = self.admit().await;
        let sent = req.send().await;
        drop(admission);
        self.count(&sent);
    }

    /// Pushes a manifest as `reference` (a tag or its digest), byte for
    /// byte. The registry's `Docker-Content-Digest`, when sent, must be
    /// `digest`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        digest: &str,
        bytes: Bytes,
    ) -> Result<(), ClientError> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let extra = Extra {
            body: Some(bytes),
            content_type: Some(media_type.to_string()),
            timeout: None,
        };
        let resp = self
            .send_with(Method::PUT, &url, &push_scope(repo), &[], &extra)
            .await?;
        if !resp.status().is_success() {
            return Err(refused(resp, &format!("pushing manifest {repo}:{reference}")).await);
        }
        if let Some(got) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && got != digest
        {
            return Err(ClientError::Protocol(format!(
                "the registry stored manifest {repo}:{reference} as {got}, not {digest}"
            )));
        }
        Ok(())
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, ClientError> {
        reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// The session a 202 names in `Location` (absolute or relative).
    fn session(&self, resp: &Response) -> Result<UploadSession, ClientError> {
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ClientError::Protocol("an upload was started without a Location".into())
            })?;
        let url = self
            .url("/")?
            .join(location)
            .map_err(|_| ClientError::Protocol("the upload Location is not a usable URL".into()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::Protocol(
                "the upload Location is not an HTTP URL".into(),
            ));
        }
        Ok(UploadSession { url })
    }

    fn same_origin(&self, url: &reqwest::Url) -> bool {
        self.url("/")
            .map(|base| base.origin() == url.origin())
            .unwrap_or(false)
    }
}

/// An empty body (`Content-Length: 0`) for the POSTs that open sessions.
fn empty_body() -> Extra {
    Extra {
        body: Some(Bytes::new()),
        ..Extra::default()
    }
}

/// A refusal in berth's terms, with the registry's own error code and
/// message (the distribution spec's `{"errors": [{"code", "message"}]}`)
/// when it sent one.
async fn refused(mut resp: Response, what: &str) -> ClientError {
    let status = resp.status();
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    let detail = registry_error(&body)
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    match status {
        StatusCode::FORBIDDEN => {
            ClientError::Unauthorized(format!("the registry denied {what} (403){detail}"))
        }
        StatusCode::NOT_FOUND => ClientError::NotFound(format!("{what}: not found{detail}")),
        s => ClientError::Protocol(format!("{what}: HTTP {s}{detail}")),
    }
}

/// `CODE: message` of the first error in a registry's error body.
fn registry_error(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<One>,
    }
    #[derive(serde::Deserialize)]
    struct One {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let e: Errors = serde_json::from_slice(body).ok()?;
    let first = e.errors.into_iter().next()?;
    let text = match (first.code.is_empty(), first.message.is_empty()) {
        (true, true) => return None,
        (false, true) => first.code,
        (true, false) => first.message,
        (false, false) => format!("{}: {}", first.code, first.message),
    };
    let text: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_TEXT)
        .collect();
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    /// A GET response whose body arrives in `chunks`, then fails if `fail`.
    fn response(chunks: &[&'static [u8]], fail: bool) -> Response {
        let mut frames: Vec<Result<Frame<Bytes>, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        if fail {
            frames.push(Err(std::io::Error::other("connection reset")));
        }
        let body = reqwest::Body::wrap(StreamBody::new(futures::stream::iter(frames)));
        Response::from(http::Response::new(body))
    }

    /// Everything the transfer hands on, and how it ended.
    async fn drain(mut t: BlobTransfer) -> (Vec<u8>, Option<BlobFault>) {
        let mut out = Vec::new();
        while let Some(frame) = t.frame().await {
            match frame {
                Ok(f) => out.extend_from_slice(&f.into_data().unwrap_or_default()),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    fn sha(bytes: &[u8]) -> String {
        super::super::sha256_digest(bytes)
    }

    #[tokio::test]
    async fn a_blob_streams_through_checked() {
        let digest = sha(b"hello world");
        let t = BlobTransfer::new(response(&[b"hello ", b"world"], false), &digest, 11)
            .expect("transfer");
        assert_eq!(t.size_hint().exact(), Some(11));
        let progress = t.progress();
        let (out, fault) = drain(t).await;
        assert_eq!((out.as_slice(), fault), (&b"hello world"[..], None));
        assert_eq!(progress.bytes(), 11);
        assert_eq!(progress.fault(), None);
    }

    #[tokio::test]
    async fn the_last_chunk_of_a_wrong_blob_never_goes_out() {
        let digest = sha(b"hello world");
        let t = BlobTransfer::new(response(&[b"hello ", b"WORLD"], false), &digest, 11)
            .expect("transfer");
        let progress = t.progress();
        let (out, fault) = drain(t).await;
        assert_eq!(out, b"hello ", "only what came before the last chunk");
        assert!(matches!(fault, Some(BlobFault::Digest { .. })), "{fault:?}");
        assert_eq!(progress.fault(), fault);
    }

    #[tokio::test]
    async fn short_long_and_broken_sources() {
        let digest = sha(b"hello world");
        let short = BlobTransfer::new(response(&[b"hello "], false), &digest, 11).expect("t");
        let (_, fault) = drain(short).await;
        assert!(
            matches!(
                fault,
                Some(BlobFault::Short {
                    got: 6,
                    size: 11,
                    ..
                })
            ),
            "{fault:?}"
        );
        // Bytes past the descriptor's size are not the blob's.
        let long =
            BlobTransfer::new(response(&[b"hello world!!!"], false), &digest, 11).expect("t");
        let (out, fault) = drain(long).await;
        assert_eq!((out.as_slice(), fault), (&b"hello world"[..], None));
        let broken = BlobTransfer::new(response(&[b"hello "], true), &digest, 11).expect("t");
        let progress = broken.progress();
        let (out, fault) = drain(broken).await;
        assert_eq!(out, b"hello ");
        assert!(matches!(fault, Some(BlobFault::Source { .. })), "{fault:?}");
        assert_eq!(progress.bytes(), 6);
        // An empty blob is checked too.
        let empty = BlobTransfer::new(response(&[], false), &sha(b""), 0).expect("t");
        assert_eq!(drain(empty).await, (Vec::new(), None));
        let not_empty = BlobTransfer::new(response(&[], false), &digest, 0).expect("t");
        assert!(matches!(
            drain(not_empty).await.1,
            Some(BlobFault::Digest { .. })
        ));
        assert!(BlobTransfer::new(response(&[], false), "md5:00", 0).is_err());
    }

    #[test]
    fn digests_berth_copies() {
        let hex64 = "a".repeat(64);
        assert!(valid_digest(&format!("sha256:{hex64}")));
        assert!(valid_digest(&format!("sha512:{}", "0".repeat(128))));
        assert!(!valid_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!valid_digest(&format!("sha256:{}", "a".repeat(63))));
        assert!(!valid_digest(&format!("md5:{hex64}")));
        assert!(!valid_digest(&format!("sha256:../../{}", "a".repeat(58))));
        assert!(!valid_digest("sha256"));
        assert_eq!(
            digest_like(&format!("sha256:{hex64}"), b"").as_deref(),
            Some("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    #[test]
    fn registry_errors_are_short_and_plain() {
        let body = br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#;
        assert_eq!(
            registry_error(body).as_deref(),
            Some("DIGEST_INVALID: provided digest did not match uploaded content")
        );
        let long = format!(
            r#"{{"errors":[{{"code":"X","message":"{}\n"}}]}}"#,
            "m".repeat(500)
        );
        let text = registry_error(long.as_bytes()).unwrap_or_default();
        assert_eq!(text.chars().count(), MAX_ERROR_TEXT);
        assert!(!text.contains('\n'));
        assert_eq!(registry_error(b"<html>"), None);
    }
}
