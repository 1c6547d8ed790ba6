//! Building and running the gRPC server: berth's services plus reflection
//! (v1 and v1alpha), grpc.health.v1, a tracing span per RPC and graceful
//! shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tracing::Instrument;

use crate::api::middleware::{Authn, Guard, GuardLayer};
use crate::api::{AppState, Ready, audit::AuditApi, image::ImageApi, registry::RegistryApi};
use crate::config::Config;
use crate::feed::{Feed, FeedOptions};
use crate::images::Images;
use crate::pb::{
    audit_service_server::AuditServiceServer, image_service_server::ImageServiceServer,
    registry_service_server::RegistryServiceServer,
};
use crate::registries::Registries;
use crate::store::Store;

/// The encoded descriptor set of `proto/`, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("berth_descriptor");

/// How long shutdown waits for in-flight RPCs and open connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

const SERVICES: [&str; 3] = [
    "berth.v1.RegistryService",
    "berth.v1.ImageService",
    "berth.v1.AuditService",
];

/// Largest request berth decodes (tonic's default, stated): a registry with
/// a CA bundle and a thousand projects is far below it.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Who may call, from the configuration: authentication is on with a
/// tokens file or a client CA, and then needs a policy. Without either,
/// berth serves only on loopback unless told `--allow-unauthenticated`.
pub fn authn(config: &Config, addr: std::net::SocketAddr) -> anyhow::Result<Authn> {
    use crate::auth::{policy::Policy, tokens::TokenTable, watch::Watched};
    let poll = Duration::from_millis(config.reload_interval_ms);
    let on = config.tokens_file.is_some() || config.tls_client_ca.is_some();
    if !on {
        if config.policy_file.is_some() {
            anyhow::bail!(
                "BERTH_POLICY_FILE is set but authentication is off: a policy needs identities                  (set BERTH_TOKENS_FILE or BERTH_TLS_CLIENT_CA)"
            );
        }
        if !addr.ip().is_loopback() && !config.allow_unauthenticated {
            anyhow::bail!(
                "refusing to serve {addr} without authentication: set BERTH_TOKENS_FILE and                  BERTH_POLICY_FILE (or mutual TLS), or pass --allow-unauthenticated"
            );
        }
        tracing::warn!(
            %addr,
            "authentication is off: every caller may read credentials and change registries"
        );
        return Ok(Authn::Off);
    }
    let Some(policy_path) = &config.policy_file else {
        anyhow::bail!(
            "authentication is on but BERTH_POLICY_FILE is not set: without a policy nobody may do anything"
        );
    };
    let policy = Watched::load(policy_path, "policy", Policy::parse, poll)?;
    let tokens = match &config.tokens_file {
        Some(p) => Some(Watched::load(p, "tokens", TokenTable::parse, poll)?),
        None => None,
    };
    if config.tls_client_ca.is_none() && config.tls_cert.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "bearer tokens travel in clear text: set BERTH_TLS_CERT and BERTH_TLS_KEY");
    }
    Ok(Authn::On { tokens, policy })
}

/// Connects to the database, checks the key and applies migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = open_store_unchecked(config).await?;
    store
        .check_keys()
        .await
        .context("checking the secret key against stored secrets")?;
    Ok(store)
}

/// Loads the keys, connects to the database and applies migrations, but
/// leaves checking the keys against stored secrets to the caller.
async fn open_store_unchecked(config: &Config) -> anyhow::Result<Store> {
    let keys = Arc::new(crate::keys::load(config)?);
    let feed = crate::store::FeedSettings {
        retention: config.feed_retention,
    };
    let store = Store::connect_with(&config.database_url, keys, feed)
        .await
        .context("connecting to the database")?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// `berth rotate-key`: applies migrations, then re-seals every stored
/// secret under the active key in one transaction. Fails, changing
/// nothing, if some secret was sealed by a key that is not configured.
pub async fn rotate_keys(config: &Config) -> anyhow::Result<crate::store::Rotation> {
    let store = open_store_unchecked(config).await?;
    let done = store.rotate_keys().await.context("rotating secret keys")?;
    tracing::info!(
        rotated = done.rotated,
        already_current = done.already_current,
        key_id = %done.key_id,
        "secret key rotation finished"
    );
    Ok(done)
}

/// `berth rotate-key --check`: applies migrations and counts the stored
/// secrets by the key that sealed them.
pub async fn key_status(config: &Config) -> anyhow::Result<crate::store::KeyStatus> {
    let store = open_store_unchecked(config).await?;
    store
        .key_status()
        .await
        .context("counting stored secrets by key")
}

/// Runs berth on `listener` until `shutdown` resolves. The listener answers
/// at once (health NOT_SERVING); the database is opened and migrated in the
/// background, then health turns SERVING. A startup failure stops the
/// server with that error.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let addr = listener.local_addr()?;
    let guard = Guard {
        authn: authn(&config, addr)?,
        max_concurrent: config.max_concurrent_rpcs as usize,
        timeout: Duration::from_secs(config.rpc_timeout),
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(
            crate::transport::ReloadingTls::load(
                crate::transport::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: config.tls_client_ca.clone(),
                    // Callers without a certificate may still use a token.
                    client_auth: if config.tokens_file.is_some() {
                        crate::transport::ClientAuth::Optional
                    } else {
                        crate::transport::ClientAuth::Required
                    },
                },
                Duration::from_millis(config.reload_interval_ms),
            )
            .await
            .context("loading the TLS certificate")?,
        ),
        _ => None,
    };
    let mutual_tls = config.tls_client_ca.is_some();
    let state = AppState::default();
    let (health, health_service) = tonic_health::server::health_reporter();
    for s in SERVICES.iter().chain([&""]) {
        health
            .set_service_status(*s, ServingStatus::NotServing)
            .await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
    // Background tasks end when this turns true.
    let (down_tx, down_rx) = tokio::sync::watch::channel(false);
    let startup = {
        let state = state.clone();
        let health = health.clone();
        async move {
            match open_store(&config).await {
                Ok(store) => {
                    crate::metrics::watch_pool(store.clone());
                    let store_for_health = store.clone();
                    let minter =
                        crate::credentials::Minter::with_endpoints(crate::credentials::Endpoints {
                            ecr: config.ecr_endpoint.clone(),
                            acr: config.acr_endpoint.clone(),
                            tcr: config.tcr_endpoint.clone(),
                        });
                    let feed = match Feed::start(
                        store.clone(),
                        FeedOptions {
                            poll_interval: Duration::from_millis(config.feed_poll_ms),
                            progress_interval: Duration::from_millis(config.feed_progress_ms),
                        },
                        down_rx.clone(),
                    )
                    .await
                    {
                        Ok(feed) => feed,
                        Err(e) => {
                            let _ = fail_tx.send(anyhow::anyhow!("starting the change feed: {e}"));
                            return;
                        }
                    };
                    let images = Images::new(
                        store.clone(),
                        minter,
                        crate::registry_client::ClientOptions::with_timeout_secs(
                            config.registry_timeout,
                        ),
                    )
                    .with_queued_audit(config.audit_credentials == crate::config::AuditMode::Async);
                    {
                        // Every replica drops what it cached for a registry
                        // that changed, wherever the change was made.
                        let images = images.clone();
                        let store = store.clone();
                        feed.on_event(move |event| {
                            use crate::store::EventKind;
                            let default_moved = matches!(
                                event.kind,
                                EventKind::DefaultChanged | EventKind::Deleted
                            ) || event.registry.is_default;
                            store.invalidate_cached(&event.registry.id, default_moved);
                            // Tokens and clients depend on the registry's
                            // own settings: a creation or a move of the
                            // default leaves them valid (and dropping them
                            // would throw away tokens minted since).
                            if matches!(
                                event.kind,
                                EventKind::Updated | EventKind::TlsChanged | EventKind::Deleted
                            ) {
                                images.forget(&event.registry.id);
                            }
                        });
                    }
                    state.set_ready(Ready {
                        audit: crate::audit::Audit::new(store.clone()),
                        registries: Registries::new(store, feed.clone()),
                        images,
                        feed,
                    });
                    for s in SERVICES.iter().chain([&""]) {
                        health.set_service_status(*s, ServingStatus::Serving).await;
                    }
                    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "serving");
                    tokio::spawn(watch_database(store_for_health, health.clone(), down_rx));
                }
                Err(e) => {
                    let _ = fail_tx.send(e);
                }
            }
        }
    };
    tokio::spawn(startup.instrument(tracing::info_span!("startup")));

    tracing::info!(%addr, tls = tls.is_some(), mutual_tls, "listening");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stopping = Arc::new(tokio::sync::Notify::new());
    let failed = Arc::new(std::sync::Mutex::new(None));
    {
        let failed = failed.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown => tracing::info!("shutting down"),
                Ok(e) = fail_rx => {
                    if let Ok(mut f) = failed.lock() { *f = Some(e); }
                }
            }
            let _ = stop_tx.send(());
            let _ = down_tx.send(true);
            stopping.notify_one();
        });
    }

    let serve = Server::builder()
        .layer(crate::metrics::RpcMetricsLayer)
        .layer(GuardLayer::new(guard))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            RegistryServiceServer::new(RegistryApi::new(state.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            ImageServiceServer::new(ImageApi::new(state.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            AuditServiceServer::new(AuditApi::new(state.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .serve_with_incoming_shutdown(crate::transport::incoming(listener, tls), async {
            let _ = stop_rx.await;
        });
    // Graceful: stop accepting, let in-flight RPCs finish, but do not wait
    // forever for clients that keep idle connections open.
    let grace = async {
        stopping.notified().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = serve => r?,
        _ = grace => tracing::warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "connections still open after the grace period; closing"),
    }
    // Queued audit records (--audit-credentials async) are stored before
    // the process exits.
    if let Ok(images) = state.images()
        && let Err(e) = images.flush_audit().await
    {
        tracing::error!(error = %e, "queued audit records could not be stored at shutdown");
    }
    let err = failed.lock().ok().and_then(|mut f| f.take());
    match err {
        Some(e) => Err(e),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// How often the database is pinged for health.
const DB_PING_EVERY: Duration = Duration::from_secs(1);

/// Health follows the database: NOT_SERVING while it does not answer (load
/// balancers and Kubernetes then route around this replica), SERVING again
/// as soon as it does. Calls in between fail with UNAVAILABLE; the pool
/// reconnects by itself, so no restart is needed.
async fn watch_database(
    store: Store,
    health: tonic_health::server::HealthReporter,
    mut down: tokio::sync::watch::Receiver<bool>,
) {
    let mut up = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DB_PING_EVERY) => {}
            _ = down.changed() => return,
        }
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(2), store.ping()).await,
            Ok(Ok(()))
        );
        metrics::gauge!("berth_database_up").set(if ok { 1.0 } else { 0.0 });
        if ok == up {
            continue;
        }
        up = ok;
        let status = if ok {
            tracing::info!("the database answers again: serving");
            ServingStatus::Serving
        } else {
            tracing::error!("the database does not answer: not serving until it does");
            ServingStatus::NotServing
        };
        for s in SERVICES.iter().chain([&""]) {
            health.set_service_status(*s, status).await;
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
