//! Amazon ECR credentials end to end: a real berth whose ECR endpoint is a
//! loopback stub that verifies SigV4 like ECR (the one the unit tests of
//! `ecr.rs` use), driven through RegistryService and ImageService.

mod common;
// Shared with the unit tests, which also use its other answer modes.
#[allow(dead_code)]
#[path = "../src/credentials/ecr_stub.rs"]
mod ecr_stub;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use berth::pb::{self, Provider, Registry, Scope};
use common::{Backend, TestServer};
use ecr_stub::EcrStub;
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
