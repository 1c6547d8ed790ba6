//! Building and running the gRPC server: berth's services plus reflection
//! (v1 and v1alpha), grpc.health.v1, a tracing span per RPC and graceful
//! shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tracing::Instrument;

use crate::api::{AppState, Ready, image::ImageApi, registry::RegistryApi};
use crate::config::Config;
use crate::images::Images;
use crate::pb::{
    image_service_server::ImageServiceServer, registry_service_server::RegistryServiceServer,
};
use crate::registries::Registries;
use crate::store::Store;

/// The encoded descriptor set of `proto/`, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("berth_descriptor");

/// How long shutdown waits for in-flight RPCs and open connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

const SERVICES: [&str; 2] = ["berth.v1.RegistryService", "berth.v1.ImageService"];

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
    let store = Store::connect(&config.database_url, keys)
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
    let startup = {
        let state = state.clone();
        let health = health.clone();
        async move {
            match open_store(&config).await {
                Ok(store) => {
                    crate::metrics::watch_pool(store.clone());
                    let minter = crate::credentials::Minter::new(config.ecr_endpoint.clone());
                    state.set_ready(Ready {
                        registries: Registries::new(store.clone()),
                        images: Images::new(
                            store,
                            minter,
                            crate::registry_client::ClientOptions::with_timeout_secs(
                                config.registry_timeout,
                            ),
                        ),
                    });
                    for s in SERVICES.iter().chain([&""]) {
                        health.set_service_status(*s, ServingStatus::Serving).await;
                    }
                    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "serving");
                }
                Err(e) => {
                    let _ = fail_tx.send(e);
                }
            }
        }
    };
    tokio::spawn(startup.instrument(tracing::info_span!("startup")));

    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
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
            stopping.notify_one();
        });
    }

    let serve = Server::builder()
        .timeout(Duration::from_secs(60))
        .trace_fn(rpc_span)
        .layer(crate::metrics::RpcMetricsLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(RegistryServiceServer::new(RegistryApi::new(state.clone())))
        .add_service(ImageServiceServer::new(ImageApi::new(state.clone())))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
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
    let err = failed.lock().ok().and_then(|mut f| f.take());
    match err {
        Some(e) => Err(e),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// One span per RPC, named by the method, with the caller's request id
/// (metadata `x-request-id`, generated when absent) and identity
/// (`x-berth-actor`), so JSON log lines carry both.
fn rpc_span(req: &http::Request<()>) -> tracing::Span {
    let caller = req
        .headers()
        .get(crate::api::ACTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 256)
        .unwrap_or("anonymous")
        .to_owned();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    tracing::info_span!("rpc", method = %req.uri().path(), request_id = %request_id, caller = %caller)
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
