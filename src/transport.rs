//! The gRPC listener's connection stream: plaintext or TLS, with certificate
//! hot reload, optional mutual TLS, and the client's identity handed to the
//! handlers.
//!
//! [`incoming`] turns a bound [`TcpListener`] into the stream that tonic's
//! `serve_with_incoming_shutdown` takes. Without TLS it yields the accepted TCP
//! connections as they come. With a [`ReloadingTls`] it runs every TLS
//! handshake in its own task, bounded by a timeout, so a client that is slow or
//! that never speaks cannot hold up the accept loop; connections whose
//! handshake fails are logged at debug level and dropped, never yielded as
//! errors (tonic would only log them anyway).
//!
//! [`ReloadingTls`] owns the current [`rustls::ServerConfig`], built from PEM
//! files (server certificate chain, its key and, for mutual TLS, the CA that
//! signs client certificates). A background task polls the files and swaps in
//! a new configuration when they change and still make a valid one, which is
//! what a Kubernetes Secret volume (an atomic symlink swap) or cert-manager
//! needs. New connections use the new configuration; open ones keep theirs.
//!
//! Each connection carries a [`PeerInfo`] (remote address, whether it is TLS,
//! and the identities of a verified client certificate). tonic copies a
//! connection's [`Connected::ConnectInfo`] into every request's extensions,
//! so a handler (or an interceptor, or a tower layer of the server) reads it
//! with `request.extensions().get::<PeerInfo>()`.
//!
//! Note that tonic's own `Request::remote_addr()` then returns `None`: it only
//! knows tonic's `TcpConnectInfo`, which this stream does not produce.

use std::fmt;
use std::future::Future;
use std::hash::{DefaultHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_stream::Stream;
use tonic::transport::server::Connected;
use x509_parser::extensions::GeneralName;

/// How long a client has to complete its TLS handshake by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the accept loop pauses after an accept error that is not about
/// one connection (e.g. `EMFILE`, out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// At most this many TLS handshakes run at once; past it the listener is not
/// polled (connections wait in the kernel's backlog) until some finish.
const MAX_PENDING_HANDSHAKES: usize = 1024;

/// At most this many connections are accepted in one poll before the stream
/// yields to the runtime, so a flood of connects cannot starve the handshakes
/// that already finished.
const ACCEPT_BUDGET: usize = 64;

/// The ALPN protocol offered to clients: gRPC runs over HTTP/2 only.
const ALPN_H2: &[u8] = b"h2";

/// Where the server's TLS material lives, as PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificate(s) that sign client certificates. Setting it turns on
    /// mutual TLS; without it the server does not ask for client certificates.
    pub client_ca: Option<PathBuf>,
    /// Whether a client must present a certificate. Only used with `client_ca`.
    pub client_auth: ClientAuth,
}

/// Whether clients must present a certificate (mutual TLS).
///
/// Only meaningful with [`TlsFiles::client_ca`]. In both modes a certificate
/// that is presented must chain to that CA, or the handshake fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// The handshake fails unless the client presents a valid certificate.
    #[default]
    Required,
    /// Clients may connect without a certificate; [`PeerInfo::cert_identities`]
    /// is then empty.
    Optional,
}

/// A TLS server configuration that follows its files on disk.
///
/// Cheap to clone: clones share the configuration and the watcher task, which
/// stops once the last clone is dropped.
#[derive(Clone)]
pub struct ReloadingTls {
    shared: Arc<Shared>,
    _watcher: Arc<AbortOnDrop>,
}

struct Shared {
    config: RwLock<Arc<ServerConfig>>,
    reloads: AtomicU64,
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Debug for ReloadingTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingTls")
            .field("reloads", &self.reloads())
            .finish_non_exhaustive()
    }
}

impl ReloadingTls {
    /// Reads the files and builds the first configuration, then starts a
    /// background task (on the current tokio runtime) that checks the files
    /// every `poll` and swaps in a new configuration (certificate, key and
    /// client CA) when they change and still make a valid one.
    ///
    /// Fails, naming the file, when a file cannot be read, holds no usable PEM
    /// item (no certificate, no key, no CA certificate), or when the key does
    /// not belong to the certificate; also when `poll` is zero.
    ///
    /// Later, a change that does not make a valid configuration (a half-written
    /// file, a mismatched key) is logged at error level once and the previous
    /// configuration stays in use.
    pub async fn load(files: TlsFiles, poll: Duration) -> anyhow::Result<Self> {
        if poll.is_zero() {
            bail!("the TLS file poll interval must be greater than zero");
        }
        let to_read = files.clone();
        let (snapshot, config) = tokio::task::spawn_blocking(move || {
            let snapshot = read_snapshot(&to_read)?;
            let config = build_config(&to_read, &snapshot)?;
            anyhow::Ok((snapshot, config))
        })
        .await
        .context("the task loading the TLS files failed")??;

        let shared = Arc::new(Shared {
            config: RwLock::new(Arc::new(config)),
            reloads: AtomicU64::new(0),
        });
        let task = tokio::spawn(watch_files(
            Arc::downgrade(&shared),
            files,
            snapshot.stamps,
            poll,
        ));
        Ok(Self {
            shared,
            _watcher: Arc::new(AbortOnDrop(task.abort_handle())),
        })
    }

    /// The configuration that new connections get.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.shared
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many times the configuration has been replaced since [`load`](Self::load).
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }
}

/// What a file looked like when read: a change in any part means "reload".
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    hash: u64,
}

/// The contents of the TLS files, read together.
struct Snapshot {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
    stamps: Vec<Stamp>,
    /// False when a file changed while the set was being read (e.g. a
    /// symlink swap in between): the set may mix old and new files.
    stable: bool,
}

fn read_one(path: &Path, what: &str) -> anyhow::Result<(Vec<u8>, Stamp)> {
    let context = || format!("cannot read TLS {what} {}", path.display());
    let meta = std::fs::metadata(path).with_context(context)?;
    let data = std::fs::read(path).with_context(context)?;
    let mut hasher = DefaultHasher::new();
    hasher.write(&data);
    let stamp = Stamp {
        modified: meta.modified().ok(),
        len: data.len() as u64,
        hash: hasher.finish(),
    };
    Ok((data, stamp))
}

fn read_snapshot(files: &TlsFiles) -> anyhow::Result<Snapshot> {
    let (cert, cert_stamp) = read_one(&files.cert, "certificate")?;
    let (key, key_stamp) = read_one(&files.key, "key")?;
    let mut stamps = vec![cert_stamp, key_stamp];
    let mut paths = vec![files.cert.as_path(), files.key.as_path()];
    let client_ca = match &files.client_ca {
        Some(path) => {
            let (ca, ca_stamp) = read_one(path, "client CA")?;
            stamps.push(ca_stamp);
            paths.push(path);
            Some(ca)
        }
        None => None,
    };
    // Look again: if any file changed under us, this set may be torn.
    let stable = paths.iter().zip(&stamps).all(|(path, stamp)| {
        std::fs::metadata(path)
            .map(|m| m.modified().ok() == stamp.modified && m.len() == stamp.len)
            .unwrap_or(false)
    });
    Ok(Snapshot {
        cert,
        key,
        client_ca,
        stamps,
        stable,
    })
}

fn build_config(files: &TlsFiles, snapshot: &Snapshot) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let certs = CertificateDer::pem_slice_iter(&snapshot.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("TLS certificate {}: bad PEM: {e}", files.cert.display()))?;
    if certs.is_empty() {
        bail!(
            "TLS certificate {}: no CERTIFICATE block found",
            files.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_slice(&snapshot.key).map_err(|e| {
        anyhow!(
            "TLS key {}: no usable private key: {e}",
            files.key.display()
        )
    })?;

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS: the ring provider supports no safe protocol version")?;
    let builder = match (&files.client_ca, &snapshot.client_ca) {
        (Some(path), Some(pem)) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert =
                    cert.map_err(|e| anyhow!("TLS client CA {}: bad PEM: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| anyhow!("TLS client CA {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                bail!(
                    "TLS client CA {}: no CERTIFICATE block found",
                    path.display()
                );
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if files.client_auth == ClientAuth::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| anyhow!("TLS client CA {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    // with_single_cert also checks that the key belongs to the leaf certificate.
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        anyhow!(
            "TLS key {} does not fit certificate {}: {e}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// The watcher task: polls the files until the last [`ReloadingTls`] is gone.
async fn watch_files(shared: Weak<Shared>, files: TlsFiles, mut seen: Vec<Stamp>, poll: Duration) {
    let mut ticker = tokio::time::interval_at(Instant::now() + poll, poll);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_read_error: Option<String> = None;
    loop {
        ticker.tick().await;
        if shared.strong_count() == 0 {
            return;
        }
        let to_read = files.clone();
        let snapshot = match tokio::task::spawn_blocking(move || read_snapshot(&to_read)).await {
            Ok(Ok(snapshot)) => snapshot,
            Ok(Err(e)) => {
                let message = format!("{e:#}");
                if last_read_error.as_deref() != Some(message.as_str()) {
                    tracing::error!(error = %message, "TLS files unreadable; still serving the previous certificate");
                    last_read_error = Some(message);
                }
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "the task reading the TLS files failed");
                continue;
            }
        };
        last_read_error = None;
        if snapshot.stamps == seen {
            continue;
        }
        if !snapshot.stable {
            tracing::debug!("TLS files changed while being read; reading them again next time");
            continue;
        }
        // Remember this state whether or not it is valid, so that a bad file is
        // reported once, not at every poll, and retried when it changes again.
        seen = snapshot.stamps.clone();
        match build_config(&files, &snapshot) {
            Ok(config) => {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                *shared
                    .config
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
                let reloads = shared.reloads.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::info!(
                    cert = %files.cert.display(),
                    reloads,
                    "reloaded the TLS certificate"
                );
            }
            Err(e) => tracing::error!(
                error = %format!("{e:#}"),
                "new TLS files are not valid; still serving the previous certificate"
            ),
        }
    }
}

/// What the server knows about the other end of a connection.
///
/// tonic puts it into the extensions of every request on the connection:
/// `request.extensions().get::<PeerInfo>()`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Identities from the client certificate that the handshake verified, as
    /// [`identities_of`] lists them; empty without a client certificate.
    pub cert_identities: Vec<String>,
}

/// The subject alternative names of a DER certificate that can serve as an
/// identity: URI names first (e.g. SPIFFE IDs), then DNS names, each in
/// certificate order. Empty when the certificate cannot be parsed or has none.
pub fn identities_of(cert_der: &[u8]) -> Vec<String> {
    let cert = match x509_parser::parse_x509_certificate(cert_der) {
        Ok((_, cert)) => cert,
        Err(e) => {
            tracing::debug!(error = %e, "cannot parse the peer certificate");
            return Vec::new();
        }
    };
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => &san.value.general_names,
        Ok(None) => return Vec::new(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot parse the peer certificate's names");
            return Vec::new();
        }
    };
    let uris = names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) => Some(uri.to_string()),
        _ => None,
    });
    let dns = names.iter().filter_map(|name| match name {
        GeneralName::DNSName(dns) => Some(dns.to_string()),
        _ => None,
    });
    uris.chain(dns).collect()
}

/// One accepted connection, plaintext or TLS.
pub struct Conn {
    io: ConnIo,
    info: PeerInfo,
}

enum ConnIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    /// What is known about the other end.
    pub fn peer_info(&self) -> &PeerInfo {
        &self.info
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn").field("info", &self.info).finish()
    }
}

impl Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    /// Reported as false on purpose, though both streams could write
    /// vectored. h2 copies a DATA frame into its write buffer only below
    /// its "chain threshold": 256 bytes on a stream that writes vectored,
    /// 1 KiB on one that does not. A larger frame is kept aside and must be
    /// flushed before the next frame can be buffered, so a GetCredentials
    /// answer (two documents, about 0.9 KB) took a `writev` of its own and
    /// its trailers another: 1.7 socket writes per call instead of 0.9, a
    /// tenth of berth's CPU under load (BENCHMARKS.md). Frames above 1 KiB
    /// (long listings) now take two writes instead of one `writev`.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connections of a listener, for tonic's `serve_with_incoming_shutdown`.
///
/// With TLS, each handshake runs in its own task with a timeout of
/// [`DEFAULT_HANDSHAKE_TIMEOUT`] (see [`with_handshake_timeout`](Self::with_handshake_timeout));
/// failed handshakes are logged at debug level and skipped. Accept errors
/// never end the stream. Dropping the stream closes the listener and cancels
/// the handshakes in progress.
pub fn incoming(listener: TcpListener, tls: Option<ReloadingTls>) -> Incoming {
    Incoming {
        listener,
        tls,
        handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        handshakes: JoinSet::new(),
        backoff: None,
    }
}

/// The stream returned by [`incoming`]. It never yields an error.
pub struct Incoming {
    listener: TcpListener,
    tls: Option<ReloadingTls>,
    handshake_timeout: Duration,
    handshakes: JoinSet<Option<Conn>>,
    backoff: Option<Pin<Box<Sleep>>>,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .field("pending_handshakes", &self.handshakes.len())
            .finish()
    }
}

impl Incoming {
    /// Replaces how long a client has to complete its TLS handshake.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

impl Stream for Incoming {
    type Item = Result<Conn, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut budget = ACCEPT_BUDGET;
        loop {
            // Hand out finished handshakes first. Polling the set here (also
            // after each spawn below) registers this task's waker for them.
            while let Poll::Ready(Some(done)) = this.handshakes.poll_join_next(cx) {
                match done {
                    Ok(Some(conn)) => return Poll::Ready(Some(Ok(conn))),
                    Ok(None) => {}
                    Err(e) if e.is_panic() => {
                        tracing::error!(error = %e, "a TLS handshake task panicked");
                    }
                    Err(_) => {}
                }
            }
            if this.handshakes.len() >= MAX_PENDING_HANDSHAKES {
                // Woken when one of them finishes.
                return Poll::Pending;
            }
            if let Some(backoff) = this.backoff.as_mut() {
                ready!(backoff.as_mut().poll(cx));
                this.backoff = None;
            }
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            budget -= 1;

            let (tcp, remote_addr) = match ready!(this.listener.poll_accept(cx)) {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => {
                    tracing::debug!(error = %e, "a connection failed before it was accepted");
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "accepting a connection failed; retrying shortly");
                    this.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_ERROR_BACKOFF)));
                    continue;
                }
            };
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%remote_addr, error = %e, "cannot set TCP_NODELAY");
            }
            match &this.tls {
                None => {
                    return Poll::Ready(Some(Ok(Conn {
                        io: ConnIo::Plain(tcp),
                        info: PeerInfo {
                            remote_addr: Some(remote_addr),
                            tls: false,
                            cert_identities: Vec::new(),
                        },
                    })));
                }
                Some(tls) => {
                    this.handshakes.spawn(handshake(
                        tcp,
                        remote_addr,
                        tls.current(),
                        this.handshake_timeout,
                    ));
                }
            }
        }
    }
}

/// Errors of `accept` that concern only the one connection that failed.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn handshake(
    tcp: TcpStream,
    remote_addr: SocketAddr,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> Option<Conn> {
    let accept = TlsAcceptor::from(config).accept(tcp);
    let stream = match tokio::time::timeout(timeout, accept).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%remote_addr, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%remote_addr, ?timeout, "TLS handshake timed out");
            return None;
        }
    };
    let cert_identities = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| identities_of(leaf))
        .unwrap_or_default();
    Some(Conn {
        io: ConnIo::Tls(Box::new(stream)),
        info: PeerInfo {
            remote_addr: Some(remote_addr),
            tls: true,
            cert_identities,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, Uri};
    use tonic::{Request, Response, Status};
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::health_server::{Health, HealthServer};
    use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

    const SPIFFE_ID: &str = "spiffe://example.org/ns/ci/sa/runner";

    /// A throwaway certificate authority.
    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    /// A PEM certificate and its PEM key.
    struct Leaf {
        cert: String,
        key: String,
    }

    impl Ca {
        fn new(name: &str) -> Ca {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let cert = params.self_signed(&key).unwrap();
            Ca {
                pem: cert.pem(),
                issuer: Issuer::new(params, key),
            }
        }

        fn leaf(&self, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> Leaf {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, "leaf");
            params.subject_alt_names = sans;
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            Leaf {
                cert: cert.pem(),
                key: key.serialize_pem(),
            }
        }

        fn server(&self) -> Leaf {
            self.leaf(
                vec![SanType::DnsName("localhost".try_into().unwrap())],
                ExtendedKeyUsagePurpose::ServerAuth,
            )
        }

        fn runner(&self) -> Leaf {
            self.leaf(
                vec![
                    SanType::DnsName("runner.ci".try_into().unwrap()),
                    SanType::URI(SPIFFE_ID.try_into().unwrap()),
                ],
                ExtendedKeyUsagePurpose::ClientAuth,
            )
        }
    }

    /// Writes like Kubernetes does: a new file renamed over the old one.
    fn write_atomic(path: &Path, contents: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// TLS files in a temporary directory.
    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new(server: &Leaf, client_ca: Option<&Ca>) -> Files {
            let files = Files {
                dir: tempfile::tempdir().unwrap(),
            };
            files.set_server(server);
            if let Some(ca) = client_ca {
                write_atomic(&files.path("client-ca.pem"), &ca.pem);
            }
            files
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn set_server(&self, server: &Leaf) {
            write_atomic(&self.path("tls.crt"), &server.cert);
            write_atomic(&self.path("tls.key"), &server.key);
        }

        fn tls_files(&self, client_auth: ClientAuth) -> TlsFiles {
            let ca = self.path("client-ca.pem");
            TlsFiles {
                cert: self.path("tls.crt"),
                key: self.path("tls.key"),
                client_ca: ca.exists().then_some(ca),
                client_auth,
            }
        }
    }

    /// A health service whose Check handler records the request's PeerInfo.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Option<PeerInfo>>>>);

    impl Capture {
        fn last(&self) -> Option<PeerInfo> {
            self.0.lock().unwrap().last().cloned().flatten()
        }
    }

    #[tonic::async_trait]
    impl Health for Capture {
        async fn check(
            &self,
            request: Request<HealthCheckRequest>,
        ) -> Result<Response<HealthCheckResponse>, Status> {
            let peer = request.extensions().get::<PeerInfo>().cloned();
            self.0.lock().unwrap().push(peer);
            Ok(Response::new(HealthCheckResponse {
                status: ServingStatus::Serving as i32,
            }))
        }

        type WatchStream = tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

        async fn watch(
            &self,
            _request: Request<HealthCheckRequest>,
        ) -> Result<Response<Self::WatchStream>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
    }

    struct TestServer {
        addr: SocketAddr,
        capture: Capture,
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<Result<(), tonic::transport::Error>>,
    }

    impl TestServer {
        async fn start(tls: Option<ReloadingTls>) -> TestServer {
            Self::start_with(|listener| incoming(listener, tls)).await
        }

        async fn start_with(make: impl FnOnce(TcpListener) -> Incoming) -> TestServer {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let capture = Capture::default();
            let (stop, stopped) = oneshot::channel::<()>();
            let serve = Server::builder()
                .add_service(HealthServer::new(capture.clone()))
                .serve_with_incoming_shutdown(make(listener), async {
                    let _ = stopped.await;
                });
            TestServer {
                addr,
                capture,
                stop: Some(stop),
                task: tokio::spawn(serve),
            }
        }

        async fn shutdown(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let task = &mut self.task;
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("server stops")
                .unwrap()
                .unwrap();
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn client_tls(trust: &Ca, identity: Option<&Leaf>) -> ClientTlsConfig {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&trust.pem))
            .domain_name("localhost");
        match identity {
            Some(leaf) => config.identity(Identity::from_pem(&leaf.cert, &leaf.key)),
            None => config,
        }
    }

    /// One Health/Check call on a new connection; Err says why it failed.
    async fn check(addr: SocketAddr, tls: Option<ClientTlsConfig>) -> Result<(), String> {
        let call = async {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(5));
            if let Some(tls) = tls {
                endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
            }
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| format!("connect: {e:?}"))?;
            let response = HealthClient::new(channel)
                .check(HealthCheckRequest::default())
                .await
                .map_err(|e| format!("check: {e:?}"))?;
            match response.into_inner().status() {
                ServingStatus::Serving => Ok(()),
                other => Err(format!("status {other:?}")),
            }
        };
        tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    async fn wait_for_reloads(tls: &ReloadingTls, at_least: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while tls.reloads() < at_least {
            assert!(
                Instant::now() < deadline,
                "no reload within 5 s (reloads = {})",
                tls.reloads()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    const POLL: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn tls_without_client_ca() {
        let ca = Ca::new("server CA");
        let files = Files::new(&ca.server(), None);
        let tls = ReloadingTls::load(files.tls_files(ClientAuth::Required), POLL)
            .await
            .unwrap();
        assert_eq!(tls.current().alpn_protocols, vec![b"h2".to_vec()]);
        let server = TestServer::start(Some(tls)).await;

        check(server.addr, Some(client_tls(&ca, None)))
            .await
            .unwrap();
        let peer = server.capture.last().expect("handler saw PeerInfo");
        assert!(peer.tls);
        assert!(peer.cert_identities.is_empty());
        let remote = peer.remote_addr.expect("remote address");
        assert!(remote.ip().is_loopback());

        // A client that does not trust the server's CA is refused.
        let other = Ca::new("other CA");
        assert!(
            check(server.addr, Some(client_tls(&other, None)))
                .await
                .is_err()
        );
        // Plaintext against the TLS port fails too, and changes nothing.
        assert!(check(server.addr, None).await.is_err());
        check(server.addr, Some(client_tls(&ca, None)))
            .await
            .unwrap();
        server.shutdown().await;
    }

    #[tokio::test]
    async fn mtls_required_exposes_identities() {
        let server_ca = Ca::new("server CA");
        let client_ca = Ca::new("client CA");
        let files = Files::new(&server_ca.server(), Some(&client_ca));
        let tls = ReloadingTls::load(files.tls_files(ClientAuth::Required), POLL)
            .await
            .unwrap();
        let server = TestServer::start(Some(tls)).await;
        let runner = client_ca.runner();

        check(server.addr, Some(client_tls(&server_ca, Some(&runner))))
            .await
            .unwrap();
        let peer = server.capture.last().expect("handler saw PeerInfo");
        assert!(peer.tls);
        assert_eq!(peer.cert_identities, vec![SPIFFE_ID, "runner.ci"]);

        let calls_before = server.capture.0.lock().unwrap().len();
        let no_cert = check(server.addr, Some(client_tls(&server_ca, None))).await;
        assert!(no_cert.is_err(), "a client without a certificate got in");
        let rogue = Ca::new("rogue CA").runner();
        let wrong_ca = check(server.addr, Some(client_tls(&server_ca, Some(&rogue)))).await;
        assert!(wrong_ca.is_err(), "a certificate from another CA got in");
        assert_eq!(server.capture.0.lock().unwrap().len(), calls_before);

        // Failed handshakes did not hurt the accept loop.
        check(server.addr, Some(client_tls(&server_ca, Some(&runner))))
            .await
            .unwrap();
        server.shutdown().await;
    }

    #[tokio::test]
    async fn mtls_optional_admits_anonymous_clients() {
        let server_ca = Ca::new("server CA");
        let client_ca = Ca::new("client CA");
        let files = Files::new(&server_ca.server(), Some(&client_ca));
        let tls = ReloadingTls::load(files.tls_files(ClientAuth::Optional), POLL)
            .await
            .unwrap();
        let server = TestServer::start(Some(tls)).await;

        check(server.addr, Some(client_tls(&server_ca, None)))
            .await
            .unwrap();
        let peer = server.capture.last().unwrap();
        assert!(peer.tls && peer.cert_identities.is_empty());

        check(
            server.addr,
            Some(client_tls(&server_ca, Some(&client_ca.runner()))),
        )
        .await
        .unwrap();
        let peer = server.capture.last().unwrap();
        assert_eq!(peer.cert_identities, vec![SPIFFE_ID, "runner.ci"]);

        // A certificate that is presented must still be valid.
        let rogue = Ca::new("rogue CA").runner();
        assert!(
            check(server.addr, Some(client_tls(&server_ca, Some(&rogue))))
                .await
                .is_err()
        );
        server.shutdown().await;
    }

    #[tokio::test]
    async fn reloads_server_certificate_and_keeps_it_on_bad_files() {
        let old_ca = Ca::new("old CA");
        let files = Files::new(&old_ca.server(), None);
        let tls = ReloadingTls::load(files.tls_files(ClientAuth::Required), POLL)
            .await
            .unwrap();
        let server = TestServer::start(Some(tls.clone())).await;
        check(server.addr, Some(client_tls(&old_ca, None)))
            .await
            .unwrap();
        assert_eq!(tls.reloads(), 0);

        let new_ca = Ca::new("new CA");
        files.set_server(&new_ca.server());
        wait_for_reloads(&tls, 1).await;
        check(server.addr, Some(client_tls(&new_ca, None)))
            .await
            .unwrap();
        assert!(
            check(server.addr, Some(client_tls(&old_ca, None)))
                .await
                .is_err()
        );

        // Garbage: logged, and the previous configuration stays.
        write_atomic(&files.path("tls.crt"), "this is not a certificate\n");
        tokio::time::sleep(POLL * 5).await;
        assert_eq!(tls.reloads(), 1);
        check(server.addr, Some(client_tls(&new_ca, None)))
            .await
            .unwrap();

        // A key that belongs to another certificate is refused the same way.
        let newer = new_ca.server();
        write_atomic(&files.path("tls.crt"), &newer.cert);
        tokio::time::sleep(POLL * 5).await;
        assert_eq!(tls.reloads(), 1);
        // Completing the pair is picked up.
        write_atomic(&files.path("tls.key"), &newer.key);
        wait_for_reloads(&tls, 2).await;
        check(server.addr, Some(client_tls(&new_ca, None)))
            .await
            .unwrap();
        server.shutdown().await;
    }

    #[tokio::test]
    async fn reloads_client_ca() {
        let server_ca = Ca::new("server CA");
        let client_ca_1 = Ca::new("client CA 1");
        let client_ca_2 = Ca::new("client CA 2");
        let files = Files::new(&server_ca.server(), Some(&client_ca_1));
        let tls = ReloadingTls::load(files.tls_files(ClientAuth::Required), POLL)
            .await
            .unwrap();
        let server = TestServer::start(Some(tls.clone())).await;
        let runner_1 = client_ca_1.runner();
        let runner_2 = client_ca_2.runner();
        check(server.addr, Some(client_tls(&server_ca, Some(&runner_1))))
            .await
            .unwrap();
        assert!(
            check(server.addr, Some(client_tls(&server_ca, Some(&runner_2))))
                .await
                .is_err()
        );

        write_atomic(&files.path("client-ca.pem"), &client_ca_2.pem);
        wait_for_reloads(&tls, 1).await;
        check(server.addr, Some(client_tls(&server_ca, Some(&runner_2))))
            .await
            .unwrap();
        assert!(
            check(server.addr, Some(client_tls(&server_ca, Some(&runner_1))))
                .await
                .is_err()
        );
        server.shutdown().await;
    }

    #[tokio::test]
    async fn plaintext_reports_client_address() {
        let server = TestServer::start(None).await;
        let addr = server.addr;
        let local = Arc::new(Mutex::new(None));
        let seen_local = local.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let seen_local = seen_local.clone();
            async move {
                let stream = TcpStream::connect(addr).await?;
                *seen_local.lock().unwrap() = Some(stream.local_addr()?);
                Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_with_connector(connector)
            .await
            .unwrap();
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .unwrap();
        assert_eq!(response.into_inner().status(), ServingStatus::Serving);

        let peer = server.capture.last().expect("handler saw PeerInfo");
        assert!(!peer.tls);
        assert!(peer.cert_identities.is_empty());
        let client_addr = *local.lock().unwrap();
        assert_eq!(peer.remote_addr, client_addr);
        assert!(peer.remote_addr.is_some());
        server.shutdown().await;
    }

    #[tokio::test]
    async fn silent_clients_do_not_block_others() {
        let ca = Ca::new("server CA");
        let files = Files::new(&ca.server(), None);
        let tls = ReloadingTls::load(files.tls_files(ClientAuth::Required), POLL)
            .await
            .unwrap();
        let server = TestServer::start(Some(tls)).await;

        let mut silent = Vec::new();
        for _ in 0..5 {
            silent.push(TcpStream::connect(server.addr).await.unwrap());
        }
        // And one that starts a TLS record and stops.
        let mut partial = TcpStream::connect(server.addr).await.unwrap();
        partial
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
            .await
            .unwrap();

        // Well within the 10 s handshake timeout.
        tokio::time::timeout(
            Duration::from_secs(5),
            check(server.addr, Some(client_tls(&ca, None))),
        )
        .await
        .expect("served while others hold handshakes open")
        .unwrap();
        drop(silent);
        drop(partial);
        server.shutdown().await;
    }

    #[tokio::test]
    async fn handshake_timeout_drops_silent_clients() {
        let ca = Ca::new("server CA");
        let files = Files::new(&ca.server(), None);
        let tls = ReloadingTls::load(files.tls_files(ClientAuth::Required), POLL)
            .await
            .unwrap();
        let server = TestServer::start_with(|listener| {
            incoming(listener, Some(tls)).with_handshake_timeout(Duration::from_millis(200))
        })
        .await;

        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
            .await
            .expect("the server closed the silent connection");
        assert!(matches!(read, Ok(0) | Err(_)), "unexpected {read:?}");
        check(server.addr, Some(client_tls(&ca, None)))
            .await
            .unwrap();
        server.shutdown().await;
    }

    #[tokio::test]
    async fn load_errors_name_the_file() {
        let ca = Ca::new("CA");
        let server = ca.server();
        let files = Files::new(&server, None);
        let tls_files = files.tls_files(ClientAuth::Required);
        let err_of = |files: TlsFiles| async move {
            format!("{:#}", ReloadingTls::load(files, POLL).await.unwrap_err())
        };

        let mut missing = tls_files.clone();
        missing.cert = files.path("nope.crt");
        let err = err_of(missing).await;
        assert!(err.contains("nope.crt"), "{err}");

        let empty = files.path("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let mut no_cert = tls_files.clone();
        no_cert.cert = empty.clone();
        let err = err_of(no_cert).await;
        assert!(
            err.contains("empty.pem") && err.contains("no CERTIFICATE"),
            "{err}"
        );

        let mut no_key = tls_files.clone();
        no_key.key = empty.clone();
        let err = err_of(no_key).await;
        assert!(
            err.contains("empty.pem") && err.contains("private key"),
            "{err}"
        );

        let bad = files.path("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let mut bad_pem = tls_files.clone();
        bad_pem.cert = bad.clone();
        let err = err_of(bad_pem).await;
        assert!(err.contains("bad.pem"), "{err}");

        let other = files.path("other.key");
        std::fs::write(&other, ca.server().key).unwrap();
        let mut mismatch = tls_files.clone();
        mismatch.key = other;
        let err = err_of(mismatch).await;
        assert!(
            err.contains("other.key") && err.contains("tls.crt"),
            "{err}"
        );

        let mut bad_ca = tls_files.clone();
        bad_ca.client_ca = Some(empty);
        let err = err_of(bad_ca).await;
        assert!(
            err.contains("client CA") && err.contains("empty.pem"),
            "{err}"
        );

        assert!(
            ReloadingTls::load(tls_files.clone(), Duration::ZERO)
                .await
                .is_err()
        );
        assert!(ReloadingTls::load(tls_files, POLL).await.is_ok());
    }

    #[tokio::test]
    async fn watcher_stops_with_the_last_clone() {
        let ca = Ca::new("CA");
        let files = Files::new(&ca.server(), None);
        let tls = ReloadingTls::load(files.tls_files(ClientAuth::Required), POLL)
            .await
            .unwrap();
        let weak = Arc::downgrade(&tls.shared);
        let clone = tls.clone();
        drop(tls);
        assert!(weak.upgrade().is_some());
        drop(clone);
        assert!(weak.upgrade().is_none());
    }

    const EMFILE_CHILD: &str = "TRANSPORT_TEST_EMFILE_CHILD";

    /// Runs itself again in a child process whose file limit is low, fills
    /// it so that `accept` fails with EMFILE, then frees it: the server must
    /// serve again.
    #[test]
    fn accept_errors_do_not_end_the_stream() {
        if std::env::var_os(EMFILE_CHILD).is_none() {
            let exe = std::env::current_exe().unwrap();
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
                .arg(exe)
                .args([
                    "--exact",
                    "transport::tests::accept_errors_do_not_end_the_stream",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(EMFILE_CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success() && stdout.contains("EMFILE child done"),
                "child failed:\n{stdout}\n{stderr}"
            );
            return;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = TestServer::start(None).await;
            let mut held = Vec::new();
            let mut refused = None;
            for _ in 0..1024 {
                match TcpStream::connect(server.addr).await {
                    Ok(stream) => held.push(stream),
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                }
            }
            let refused = refused.expect("the file limit was reached");
            assert_eq!(refused.raw_os_error(), Some(24), "{refused}"); // EMFILE
            // The server now fails to accept the last connections; let it retry.
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(held);
            check(server.addr, None).await.unwrap();
            server.shutdown().await;
            println!("EMFILE child done");
        });
    }

    #[test]
    fn identities_of_lists_uris_then_dns_names() {
        let ca = Ca::new("CA");
        let leaf = ca.leaf(
            vec![
                SanType::DnsName("a.example".try_into().unwrap()),
                SanType::URI("spiffe://example.org/a".try_into().unwrap()),
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
                SanType::Rfc822Name("ops@example.org".try_into().unwrap()),
                SanType::DnsName("b.example".try_into().unwrap()),
                SanType::URI("https://example.org/b".try_into().unwrap()),
            ],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let der = CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap();
        assert_eq!(
            identities_of(&der),
            vec![
                "spiffe://example.org/a",
                "https://example.org/b",
                "a.example",
                "b.example"
            ]
        );

        let bare = ca.leaf(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
        let der = CertificateDer::from_pem_slice(bare.cert.as_bytes()).unwrap();
        assert!(identities_of(&der).is_empty());
        assert!(identities_of(b"not DER").is_empty());
        assert!(identities_of(&[]).is_empty());
    }
}
