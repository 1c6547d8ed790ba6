//! Prometheus metrics on a separate HTTP port (`BERTH_METRICS_LISTEN`).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `berth_rpc_requests_total` | `method`, `code` | RPCs answered, by gRPC status |
//! | `berth_rpc_duration_seconds` | `method` | RPC latency histogram |
//! | `berth_registry_requests_total` | `registry`, `outcome` | HTTP calls to registries |
//! | `berth_credential_cache_total` | `result` (`hit`, `miss`) | ECR token cache lookups |
//! | `berth_token_refreshes_total` | `provider` | cloud tokens minted |
//! | `berth_db_pool_connections` | `state` (`in_use`, `idle`) | database pool use |
//! | `berth_audit_batch_size` | | audit events per group-commit batch (summary) |
//! | `berth_audit_write_seconds` | | time to store one audit batch (summary) |
//! | `berth_audit_write_failures_total` | | audit batches the database refused |

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Starts the exporter's HTTP listener (`GET /metrics`) on `addr`. Call
/// once per process, from inside the runtime.
pub fn install(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full("berth_rpc_duration_seconds".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ],
        )?
        .install()?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    Ok(())
}

/// Publishes database pool use every few seconds.
pub fn watch_pool(store: crate::store::Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            if let Some((size, idle)) = store.pool_stats() {
                metrics::gauge!("berth_db_pool_connections", "state" => "in_use")
                    .set(size.saturating_sub(idle as u32) as f64);
                metrics::gauge!("berth_db_pool_connections", "state" => "idle").set(idle as f64);
            }
        }
    });
}

/// Tower layer recording every RPC's count (by status code) and latency.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

/// See [`RpcMetricsLayer`].
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The clone that was driven to readiness handles this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let method = req.uri().path().to_string();
        let start = Instant::now();
        Box::pin(async move {
            let res = inner.call(req).await;
            // Handler errors are trailers-only responses: the status is in
            // the headers. A unary success carries it in trailers, as OK.
            let code = match &res {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map(|c| format!("{:?}", tonic::Code::from_i32(c)))
                    .unwrap_or_else(|| "Ok".into()),
                Err(_) => "TransportError".into(),
            };
            metrics::counter!("berth_rpc_requests_total", "method" => method.clone(), "code" => code).increment(1);
            metrics::histogram!("berth_rpc_duration_seconds", "method" => method)
                .record(start.elapsed().as_secs_f64());
            res
        })
    }
}
