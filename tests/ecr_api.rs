//! Amazon ECR credentials end to end: a real berth whose ECR endpoint is a
//! loopback stub that verifies SigV4 like ECR (the one the unit tests of
//! `ecr.rs` use), driven through RegistryService and ImageService.

mod common;
// Shared with the unit tests, which also use its other answer modes.
#[allow(dead_code)]
#[path = "../src/credentials/ecr_stub.rs"]
mod ecr_stub;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use berth::pb::{self, Provider, Registry, Scope};
use common::{Backend, TestServer};
use ecr_stub::EcrStub;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::Channel;

type Images = pb::image_service_client::ImageServiceClient<Channel>;
type Registries = pb::registry_service_client::RegistryServiceClient<Channel>;

const AKID: &str = "AKIAEXAMPLEBERTH0001";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// The same key after rotation; the stub accepts both.
const ROTATED: &str = "9f8e7d6c5b4a/ROTATED+bPxRfiCYEXAMPLEKEY";
const WRONG: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYWRONGKEY00";
const ADDRESS: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

fn request(registry_id: &str) -> pb::GetCredentialsRequest {
    pb::GetCredentialsRequest {
        registry_id: registry_id.into(),
        project: "web".into(),
        ..Default::default()
    }
}

/// Replaces only the registry's secret.
async fn set_secret(c: &mut Registries, id: &str, secret: &str) {
    c.update_registry(pb::UpdateRegistryRequest {
        registry: Some(Registry {
            id: id.into(),
            secret: secret.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["secret".into()],
        }),
    })
    .await
    .expect("update secret");
}

/// Checks one GetCredentials answer against the stub's token.
fn assert_stub_token(cr: &pb::GetCredentialsResponse, stub: &EcrStub, id: &str) {
    assert_eq!(cr.username, "AWS");
    assert_eq!(cr.password, stub.password);
    assert_eq!(cr.server_address, ADDRESS);
    assert_eq!(cr.registry_id, id);
    let expire = cr.expire_time.as_ref().expect("ECR tokens expire");
    let ahead = expire.seconds - chrono::Utc::now().timestamp();
    assert!(
        (12 * 3600 - 300..=12 * 3600 + 60).contains(&ahead),
        "expires {ahead}s from now, not ~12h"
    );
    let cfg: serde_json::Value = serde_json::from_str(&cr.docker_config_json).expect("config.json");
    let auth = cfg["auths"][ADDRESS]["auth"].as_str().expect("auth");
    assert_eq!(
        B64.decode(auth).expect("base64"),
        format!("AWS:{}", stub.password).into_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_tokens_are_minted_once_and_follow_the_secret() {
    let stub = EcrStub::start(&[(AKID, SECRET), (AKID, ROTATED)]);
    let server = TestServer::start_with(Backend::Sqlite, |cfg| {
        cfg.ecr_endpoint = Some(stub.endpoint.clone());
    })
    .await;
    let ch = server.channel().await;
    let (mut regs, images) = (Registries::new(ch.clone()), Images::new(ch));

    let ecr = regs
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(Registry {
                provider: Provider::Ecr as i32,
                address: ADDRESS.into(),
                region: ecr_stub::REGION.into(),
                username: AKID.into(),
                secret: SECRET.into(),
                scope: Some(Scope {
                    all_projects: true,
                    projects: Vec::new(),
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("create ECR registry")
        .into_inner();
    assert!(ecr.has_secret);

    // A pipeline fan-out: 20 jobs at once share one GetAuthorizationToken.
    let calls = (0..20).map(|_| {
        let mut c = images.clone();
        let id = ecr.id.clone();
        async move { c.get_credentials(request(&id)).await }
    });
    for answer in futures::future::join_all(calls).await {
        let cr = answer.expect("credentials").into_inner();
        assert_stub_token(&cr, &stub, &ecr.id);
    }
    assert_eq!(stub.issued(), 1, "cached, and minted by one caller only");

    // A new secret is a new cache key: the next call mints with it.
    set_secret(&mut regs, &ecr.id, ROTATED).await;
    let cr = images
        .clone()
        .get_credentials(request(&ecr.id))
        .await
        .expect("credentials after rotation")
        .into_inner();
    assert_stub_token(&cr, &stub, &ecr.id);
    assert_eq!(stub.issued(), 2, "the rotated secret minted a new token");

    // A wrong secret: ECR refuses the signature; the caller learns why,
    // but never sees the secret.
    set_secret(&mut regs, &ecr.id, WRONG).await;
    let err = images
        .clone()
        .get_credentials(request(&ecr.id))
        .await
        .expect_err("wrong secret");
    let shown = format!("{err:?}");
    assert_eq!(err.code(), Code::FailedPrecondition, "{shown}");
    assert!(
        err.message().contains("InvalidSignatureException"),
        "{shown}"
    );
    assert!(!shown.contains(WRONG), "{shown}");
    assert_eq!(stub.issued(), 2);

    server.finish().await;
}

/// What the registry stub of [`expired_tokens_are_replaced_once`] saw.
#[derive(Default)]
struct Seen {
    /// Requests refused with ECR's 403 "token expired".
    expired: AtomicUsize,
    /// Requests answered 200.
    served: AtomicUsize,
}

/// A plain-HTTP registry on loopback that acts like ECR when a token has
/// expired early: a request without credentials gets a Basic challenge,
/// one with the first token ECR issued (`…0`) or any token for the
/// repository `revoked` gets 403 "Your authorization token has expired",
/// and newer tokens get the tag list.
async fn expiring_registry() -> (String, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let seen = counts.clone();
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
                let password = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("authorization").then_some(value)
                    })
                    .and_then(|v| v.trim().strip_prefix("Basic "))
                    .and_then(|b| B64.decode(b.trim()).ok())
                    .map(|d| String::from_utf8_lossy(&d).to_string())
                    .and_then(|d| d.strip_prefix("AWS:").map(str::to_owned));
                let expired = r#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#;
                let (status, extra, body) = match password {
                    None => (
                        "401 Unauthorized",
                        "WWW-Authenticate: Basic realm=\"ecr\"\r\n",
                        String::new(),
                    ),
                    Some(p)
                        if p == format!("{}0", ecr_stub::PASSWORD)
                            || path.contains("/revoked/") =>
                    {
                        seen.expired.fetch_add(1, Ordering::SeqCst);
                        ("403 Forbidden", "", expired.to_string())
                    }
                    Some(_) => {
                        seen.served.fetch_add(1, Ordering::SeqCst);
                        (
                            "200 OK",
                            "",
                            r#"{"name":"app","tags":["v1","v2"]}"#.to_string(),
                        )
                    }
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
    (format!("http://{addr}"), seen)
}

/// The registry refuses a cached ECR token with 403 "expired" before its
/// `expiresAt`: berth drops it, mints a new one and retries the read once;
/// GetCredentials then hands out the new token. A token refused again is
/// the usual FAILED_PRECONDITION after exactly one retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_replaced_once() {
    let stub = EcrStub::launch(ecr_stub::Setup {
        numbered: true,
        ..ecr_stub::Setup::new(&[(AKID, SECRET)])
    });
    let (address, seen) = expiring_registry().await;
    let server = TestServer::start_with(Backend::Sqlite, |cfg| {
        cfg.ecr_endpoint = Some(stub.endpoint.clone());
    })
    .await;
    let ch = server.channel().await;
    let (mut regs, images) = (Registries::new(ch.clone()), Images::new(ch));
    let ecr = regs
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(Registry {
                provider: Provider::Ecr as i32,
                address,
                region: ecr_stub::REGION.into(),
                username: AKID.into(),
                secret: SECRET.into(),
                scope: Some(Scope {
                    all_projects: true,
                    projects: Vec::new(),
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("create ECR registry")
        .into_inner();
    let tags = |image: &str| {
        let req = pb::ListTagsRequest {
            registry_id: ecr.id.clone(),
            project: "web".into(),
            image: image.into(),
            ..Default::default()
        };
        let mut c = images.clone();
        async move { c.list_tags(req).await.map(|r| r.into_inner().tags) }
    };

    // Token 0 is refused: one new mint, one retry, and the caller never
    // notices.
    assert_eq!(tags("app").await.expect("retried"), ["v1", "v2"]);
    assert_eq!(seen.expired.load(Ordering::SeqCst), 1);
    assert_eq!(seen.served.load(Ordering::SeqCst), 1);
    assert_eq!(stub.issued(), 2);
    // The new token is the cached one now: no more mints, and jobs get it.
    assert_eq!(tags("app").await.expect("cached"), ["v1", "v2"]);
    let cr = images
        .clone()
        .get_credentials(request(&ecr.id))
        .await
        .expect("credentials")
        .into_inner();
    assert_eq!(cr.password, format!("{}1", ecr_stub::PASSWORD));
    assert_eq!(stub.issued(), 2);

    // Refused again after the new token too: the usual error, after
    // exactly one retry, not a loop. The token was replaced under a minute
    // ago, so the refusal is not about its age: no new mint either.
    let err = tags("revoked").await.expect_err("refused twice");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("403"), "{}", err.message());
    assert_eq!(seen.expired.load(Ordering::SeqCst), 3);
    assert_eq!(stub.issued(), 2);

    server.finish().await;
}
