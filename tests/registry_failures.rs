//! Registries that misbehave: berth retries what retrying helps (429 with
//! `Retry-After`, a passing 5xx), and otherwise answers UNAVAILABLE,
//! DEADLINE_EXCEEDED or FAILED_PRECONDITION with the reason — never a hang
//! or a panic. The registry here is a tiny plain-HTTP stub on loopback
//! (which also exercises `http://` addresses).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth::pb::{self, Provider, Registry, Scope};
use common::{Backend, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// Counts requests per scenario.
#[derive(Default)]
struct Counts {
    flaky: AtomicUsize,
    throttled: AtomicUsize,
    broken: AtomicUsize,
}

async fn stub() -> (String, Arc<Counts>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let tags = |name: &str| format!(r#"{{"name":"ns/{name}","tags":["a","b"]}}"#);
                let (status, extra, body) = if path == "/v2/" {
                    ("200 OK", "", "{}".to_string())
                } else if path.starts_with("/v2/ns/flaky/") {
                    // One 503, then fine.
                    if c.flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                        ("503 Service Unavailable", "", String::new())
                    } else {
                        ("200 OK", "", tags("flaky"))
                    }
                } else if path.starts_with("/v2/ns/throttled/") {
                    if c.throttled.fetch_add(1, Ordering::SeqCst) == 0 {
                        ("429 Too Many Requests", "Retry-After: 1\r\n", String::new())
                    } else {
                        ("200 OK", "", tags("throttled"))
                    }
                } else if path.starts_with("/v2/ns/broken/") {
                    c.broken.fetch_add(1, Ordering::SeqCst);
                    ("500 Internal Server Error", "", String::new())
                } else if path.starts_with("/v2/ns/greedy/") {
                    (
                        "429 Too Many Requests",
                        "Retry-After: 3600\r\n",
                        String::new(),
                    )
                } else if path.starts_with("/v2/ns/slow/") {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    ("200 OK", "", tags("slow"))
                } else if path.starts_with("/v2/ns/lying/") {
                    ("200 OK", "", "this is not JSON".to_string())
                } else {
                    (
                        "404 Not Found",
                        "",
                        r#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#.to_string(),
                    )
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_registries() {
    let (address, counts) = stub().await;
    let server = TestServer::start_with(Backend::Sqlite, |cfg| cfg.registry_timeout = 2).await;
    let ch = server.channel().await;
    let mut regs = pb::registry_service_client::RegistryServiceClient::new(ch.clone());
    let images = pb::image_service_client::ImageServiceClient::new(ch);
    let reg = regs
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(Registry {
                provider: Provider::Other as i32,
                address: address.clone(),
                namespace: "ns".into(),
                scope: Some(Scope {
                    all_projects: true,
                    projects: vec![],
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        reg.address, address,
        "http:// is kept for plain-HTTP registries"
    );
    let tags = |image: &str| {
        let req = pb::ListTagsRequest {
            registry_id: reg.id.clone(),
            project: "web".into(),
            image: image.into(),
            ..Default::default()
        };
        let mut c = images.clone();
        async move { c.list_tags(req).await.map(|r| r.into_inner().tags) }
    };

    // A passing 503 is retried.
    assert_eq!(tags("flaky").await.expect("retried"), ["a", "b"]);
    assert_eq!(counts.flaky.load(Ordering::SeqCst), 2);
    // 429 waits as long as Retry-After says.
    let start = Instant::now();
    assert_eq!(tags("throttled").await.expect("waited"), ["a", "b"]);
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "honoured Retry-After"
    );
    // Always failing: UNAVAILABLE after a bounded number of attempts.
    let err = tags("broken").await.expect_err("broken");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(counts.broken.load(Ordering::SeqCst), 3);
    // A Retry-After longer than berth will wait: UNAVAILABLE at once.
    let start = Instant::now();
    let err = tags("greedy").await.expect_err("greedy");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // Too slow: DEADLINE_EXCEEDED after the configured timeout, no hang.
    let start = Instant::now();
    let err = tags("slow").await.expect_err("slow");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    // Nonsense: FAILED_PRECONDITION naming the problem.
    let err = tags("lying").await.expect_err("lying");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("JSON"), "{}", err.message());
    // Unknown repository: NOT_FOUND.
    let err = tags("missing").await.expect_err("missing");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // The server still serves.
    regs.get_registry(pb::GetRegistryRequest { id: reg.id.clone() })
        .await
        .expect("still serving");
    server.finish().await;
}

/// Overload and slowness bounded by berth itself: one call over the
/// concurrency limit is refused at once with RESOURCE_EXHAUSTED (health
/// still answers), and a call that outlives the RPC deadline ends with
/// DEADLINE_EXCEEDED, even though the registry timeout is longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_and_deadlines() {
    let (address, _) = stub().await;
    let server = TestServer::start_with(Backend::Sqlite, |cfg| {
        cfg.max_concurrent_rpcs = 1;
        cfg.rpc_timeout = 2;
        cfg.registry_timeout = 30;
    })
    .await;
    let ch = server.channel().await;
    let mut regs = pb::registry_service_client::RegistryServiceClient::new(ch.clone());
    let images = pb::image_service_client::ImageServiceClient::new(ch.clone());
    let reg = regs
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(Registry {
                provider: Provider::Other as i32,
                address,
                namespace: "ns".into(),
                scope: Some(Scope {
                    all_projects: true,
                    projects: vec![],
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("create")
        .into_inner();
    let slow = {
        let mut c = images.clone();
        let req = pb::ListTagsRequest {
            registry_id: reg.id.clone(),
            project: "web".into(),
            image: "slow".into(),
            ..Default::default()
        };
        tokio::spawn(async move {
            let start = Instant::now();
            let r = c.list_tags(req).await;
            (r.map(|_| ()), start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let err = regs
        .get_registry(pb::GetRegistryRequest { id: reg.id.clone() })
        .await
        .expect_err("over the limit");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health is never refused");
    let (r, took) = slow.await.expect("join");
    let err = r.expect_err("slower than the RPC deadline");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // The slot is free again. (A caller's own shorter grpc-timeout races
    // the client's timer, so it is unit-tested in api::middleware.)
    regs.get_registry(pb::GetRegistryRequest { id: reg.id.clone() })
        .await
        .expect("served again");
    server.finish().await;
}
