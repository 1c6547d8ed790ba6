//! Alibaba ACR and Tencent TCR access-key modes end to end: a real berth
//! whose ACR and TCR API endpoints are loopback stubs that check the
//! signature the way each cloud documents it (ACS3-HMAC-SHA256,
//! TC3-HMAC-SHA256; the stubs the unit tests of `acr.rs` and `tcr.rs` use),
//! driven through RegistryService and ImageService.

mod common;
// Shared with the unit tests, which also use its other answer modes.
#[allow(dead_code)]
#[path = "../src/credentials/cloud_stub.rs"]
mod cloud_stub;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use berth::pb::{self, CredentialMode, Provider, Registry, Scope};
use cloud_stub::{Cloud, CloudStub, Mode, Setup};
use common::{Backend, TestServer, violations};
use tonic::Code;
use tonic::transport::Channel;

type Images = pb::image_service_client::ImageServiceClient<Channel>;
type Registries = pb::registry_service_client::RegistryServiceClient<Channel>;

const ACR_KEY_ID: &str = "LTAI5tBerthCloudTokens01";
const ACR_SECRET: &str = "Zm9vYmFy/AccessKeySecret+Example01";
const TCR_SECRET_ID: &str = "AKIDBerthCloudTokens0000000000001";
const TCR_SECRET_KEY: &str = "TcrSecretKey/Example+000000000001";
const WRONG: &str = "Zm9vYmFy/WrongSecretKey+Example0001";

const ACR_PERSONAL: &str = "registry.cn-hangzhou.aliyuncs.com";
const ACR_EE: &str = "team-registry.cn-hangzhou.cr.aliyuncs.com";
const ACR_EE_ID: &str = "cri-team0000000001";
const TCR_EE: &str = "team.tencentcloudcr.com";
const TCR_EE_ID: &str = "tcr-team0001";

fn everyone() -> Option<Scope> {
    Some(Scope {
        all_projects: true,
        projects: Vec::new(),
    })
}

/// An ACR or TCR registry in `mode` with the given keys.
fn cloud_registry(
    provider: Provider,
    mode: CredentialMode,
    address: &str,
    namespace: &str,
    region: &str,
    (key_id, secret): (&str, &str),
) -> Registry {
    Registry {
        provider: provider as i32,
        credential_mode: mode as i32,
        address: address.into(),
        namespace: namespace.into(),
        region: region.into(),
        username: key_id.into(),
        secret: secret.into(),
        scope: everyone(),
        ..Default::default()
    }
}

async fn create(c: &mut Registries, registry: Registry) -> Result<Registry, tonic::Status> {
    c.create_registry(pb::CreateRegistryRequest {
        registry: Some(registry),
    })
    .await
    .map(|r| r.into_inner())
}

async fn credentials(
    images: &Images,
    id: &str,
) -> Result<pb::GetCredentialsResponse, tonic::Status> {
    images
        .clone()
        .get_credentials(pb::GetCredentialsRequest {
            registry_id: id.into(),
            project: "web".into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// Replaces the fields named in `paths` with those of `patch`.
async fn update(
    c: &mut Registries,
    id: &str,
    patch: Registry,
    paths: &[&str],
) -> Result<Registry, tonic::Status> {
    c.update_registry(pb::UpdateRegistryRequest {
        registry: Some(Registry {
            id: id.into(),
            ..patch
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
    })
    .await
    .map(|r| r.into_inner())
}

/// Checks one GetCredentials answer against the stub's token.
fn assert_stub_token(cr: &pb::GetCredentialsResponse, stub: &CloudStub, address: &str) {
    assert_eq!(cr.username, stub.username);
    assert_eq!(cr.password, stub.password);
    assert_eq!(cr.server_address, address);
    let expire = cr.expire_time.as_ref().expect("cloud tokens expire");
    let ahead = expire.seconds - chrono::Utc::now().timestamp();
    assert!(
        (3600 - 300..=3600 + 60).contains(&ahead),
        "expires {ahead}s from now, not ~1h"
    );
    let cfg: serde_json::Value = serde_json::from_str(&cr.docker_config_json).expect("config.json");
    let auth = cfg["auths"][address]["auth"].as_str().expect("auth");
    assert_eq!(
        B64.decode(auth).expect("base64"),
        format!("{}:{}", stub.username, stub.password).into_bytes()
    );
}

/// Twenty jobs ask at once; all get the stub's token.
async fn fan_out(images: &Images, id: &str, stub: &CloudStub, address: &str) {
    let calls = (0..20).map(|_| credentials(images, id));
    for answer in futures::future::join_all(calls).await {
        assert_stub_token(&answer.expect("credentials"), stub, address);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acr_tokens_for_both_editions_are_minted_once_and_cached() {
    let stub = CloudStub::launch(
        Cloud::Acr,
        Setup::new(&[(ACR_KEY_ID, ACR_SECRET)], &[("team", ACR_EE_ID)]),
    );
    let server = TestServer::start_with(Backend::Sqlite, |cfg| {
        cfg.acr_endpoint = Some(stub.endpoint.clone());
    })
    .await;
    let ch = server.channel().await;
    let (mut regs, images) = (Registries::new(ch.clone()), Images::new(ch));
    let keys = (ACR_KEY_ID, ACR_SECRET);
    let region = cloud_stub::ACR_REGION;

    // Personal Edition: GET /tokens.
    let personal = create(
        &mut regs,
        cloud_registry(
            Provider::AcrPersonal,
            CredentialMode::AcrAccessKey,
            ACR_PERSONAL,
            "team",
            region,
            keys,
        ),
    )
    .await
    .expect("create ACR personal");
    assert_eq!(
        personal.credential_mode,
        CredentialMode::AcrAccessKey as i32
    );
    assert!(personal.has_secret && personal.instance_id.is_empty());
    fan_out(&images, &personal.id, &stub, ACR_PERSONAL).await;
    assert_eq!(
        (stub.issued(), stub.lookups()),
        (1, 0),
        "one mint for 20 callers"
    );

    // Enterprise Edition named by its address: ListInstance, then the
    // token; both once.
    let by_name = create(
        &mut regs,
        cloud_registry(
            Provider::AcrEnterprise,
            CredentialMode::AcrAccessKey,
            ACR_EE,
            "team",
            region,
            keys,
        ),
    )
    .await
    .expect("create ACR enterprise");
    fan_out(&images, &by_name.id, &stub, ACR_EE).await;
    fan_out(&images, &by_name.id, &stub, ACR_EE).await;
    assert_eq!((stub.issued(), stub.lookups()), (2, 1));

    // Enterprise Edition behind its own domain, with the instance id.
    let custom = "images.example.com";
    let mut by_id = cloud_registry(
        Provider::AcrEnterprise,
        CredentialMode::AcrAccessKey,
        custom,
        "team",
        region,
        keys,
    );
    let err = create(&mut regs, by_id.clone())
        .await
        .expect_err("no instance");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(violations(&err), ["registry.instance_id"]);
    by_id.instance_id = ACR_EE_ID.into();
    let by_id = create(&mut regs, by_id).await.expect("create by id");
    assert_eq!(by_id.instance_id, ACR_EE_ID);
    assert_stub_token(
        &credentials(&images, &by_id.id).await.expect("by id"),
        &stub,
        custom,
    );
    assert_eq!((stub.issued(), stub.lookups()), (3, 1));

    // A wrong secret: the stub refuses the signature; the caller learns
    // why, never the secret.
    update(
        &mut regs,
        &personal.id,
        Registry {
            secret: WRONG.into(),
            ..Default::default()
        },
        &["secret"],
    )
    .await
    .expect("update secret");
    let err = credentials(&images, &personal.id)
        .await
        .expect_err("wrong secret");
    let shown = format!("{err:?}");
    assert_eq!(err.code(), Code::FailedPrecondition, "{shown}");
    assert!(err.message().contains("SignatureDoesNotMatch"), "{shown}");
    assert!(
        !shown.contains(WRONG) && !shown.contains(ACR_SECRET),
        "{shown}"
    );

    // An unknown AccessKey ID.
    update(
        &mut regs,
        &personal.id,
        Registry {
            username: "LTAI5tNobodyKnowsMe".into(),
            secret: ACR_SECRET.into(),
            ..Default::default()
        },
        &["username", "secret"],
    )
    .await
    .expect("update keys");
    let err = credentials(&images, &personal.id)
        .await
        .expect_err("unknown key");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("InvalidAccessKeyId.NotFound"),
        "{err:?}"
    );
    assert_eq!(stub.issued(), 3);

    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcr_enterprise_tokens_are_minted_once_and_cached() {
    let stub = CloudStub::launch(
        Cloud::Tcr,
        Setup::new(&[(TCR_SECRET_ID, TCR_SECRET_KEY)], &[("team", TCR_EE_ID)]),
    );
    let server = TestServer::start_with(Backend::Sqlite, |cfg| {
        cfg.tcr_endpoint = Some(stub.endpoint.clone());
    })
    .await;
    let ch = server.channel().await;
    let (mut regs, images) = (Registries::new(ch.clone()), Images::new(ch));
    let keys = (TCR_SECRET_ID, TCR_SECRET_KEY);
    let region = cloud_stub::TCR_REGION;

    // Named by its `*.tencentcloudcr.com` host: DescribeInstances, then
    // CreateInstanceToken, once for 40 callers.
    let by_name = create(
        &mut regs,
        cloud_registry(
            Provider::TcrEnterprise,
            CredentialMode::TcrAccessKey,
            TCR_EE,
            "team",
            region,
            keys,
        ),
    )
    .await
    .expect("create TCR");
    assert_eq!(by_name.credential_mode, CredentialMode::TcrAccessKey as i32);
    fan_out(&images, &by_name.id, &stub, TCR_EE).await;
    fan_out(&images, &by_name.id, &stub, TCR_EE).await;
    assert_eq!((stub.issued(), stub.lookups()), (1, 1));

    // With the instance id: no lookup.
    let mut by_id = cloud_registry(
        Provider::TcrEnterprise,
        CredentialMode::TcrAccessKey,
        TCR_EE,
        "other",
        region,
        keys,
    );
    by_id.instance_id = TCR_EE_ID.into();
    let by_id = create(&mut regs, by_id).await.expect("create by id");
    assert_stub_token(
        &credentials(&images, &by_id.id).await.expect("by id"),
        &stub,
        TCR_EE,
    );
    assert_eq!((stub.issued(), stub.lookups()), (2, 1));

    // Back to static credentials needs the region cleared: the error names
    // the field.
    let err = update(
        &mut regs,
        &by_id.id,
        Registry {
            credential_mode: CredentialMode::Static as i32,
            ..Default::default()
        },
        &["credential_mode"],
    )
    .await
    .expect_err("region left");
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut fields = violations(&err);
    fields.sort();
    assert_eq!(fields, ["registry.instance_id", "registry.region"]);

    // A wrong SecretKey.
    update(
        &mut regs,
        &by_name.id,
        Registry {
            secret: WRONG.into(),
            ..Default::default()
        },
        &["secret"],
    )
    .await
    .expect("update secret");
    let err = credentials(&images, &by_name.id)
        .await
        .expect_err("wrong key");
    let shown = format!("{err:?}");
    assert_eq!(err.code(), Code::FailedPrecondition, "{shown}");
    assert!(
        err.message().contains("AuthFailure.SignatureFailure"),
        "{shown}"
    );
    assert!(
        !shown.contains(WRONG) && !shown.contains(TCR_SECRET_KEY),
        "{shown}"
    );
    assert_eq!(stub.issued(), 2);

    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_are_described_and_validated() {
    let server = TestServer::start(Backend::Sqlite).await;
    let ch = server.channel().await;
    let (mut regs, images) = (Registries::new(ch.clone()), Images::new(ch));

    let providers = regs
        .list_providers(pb::ListProvidersRequest {})
        .await
        .expect("providers")
        .into_inner()
        .providers;
    let of = |p: Provider| {
        providers
            .iter()
            .find(|d| d.provider == p as i32)
            .expect("described")
    };
    for (p, mode) in [
        (Provider::AcrPersonal, CredentialMode::AcrAccessKey),
        (Provider::AcrEnterprise, CredentialMode::AcrAccessKey),
        (Provider::TcrEnterprise, CredentialMode::TcrAccessKey),
    ] {
        let d = of(p);
        assert_eq!(
            d.credential_modes,
            [CredentialMode::Static as i32, mode as i32],
            "{p:?}: static stays the default"
        );
        let names = |fields: &[pb::FieldDescriptor]| -> Vec<String> {
            fields.iter().map(|f| f.name.clone()).collect()
        };
        assert!(!names(&d.fields).contains(&"region".to_string()), "{p:?}");
        let access_key = d
            .modes
            .iter()
            .find(|m| m.mode == mode as i32)
            .expect("mode");
        let fields = names(&access_key.fields);
        assert!(fields.contains(&"region".to_string()), "{p:?} {fields:?}");
        assert_eq!(
            fields.contains(&"instance_id".to_string()),
            p != Provider::AcrPersonal,
            "{p:?} {fields:?}"
        );
    }
    assert_eq!(
        of(Provider::TcrPersonal).credential_modes,
        [CredentialMode::Static as i32]
    );

    // Existing registries keep working: an ACR registry that names no mode
    // is static, with no region, and hands out its stored login.
    let plain = create(
        &mut regs,
        Registry {
            provider: Provider::AcrEnterprise as i32,
            address: ACR_EE.into(),
            namespace: "team".into(),
            username: "robot@example".into(),
            secret: "static-docker-password".into(),
            scope: everyone(),
            ..Default::default()
        },
    )
    .await
    .expect("static ACR");
    assert_eq!(plain.credential_mode, CredentialMode::Static as i32);
    let cr = credentials(&images, &plain.id).await.expect("static login");
    assert_eq!(
        (cr.username.as_str(), cr.password.as_str()),
        ("robot@example", "static-docker-password")
    );
    assert!(cr.expire_time.is_none());

    // Wrong combinations name the field.
    let cases = [
        (
            cloud_registry(
                Provider::Harbor,
                CredentialMode::AcrAccessKey,
                "harbor.example.com",
                "team",
                "",
                ("a", "secret-1"),
            ),
            "registry.credential_mode",
        ),
        (
            cloud_registry(
                Provider::TcrPersonal,
                CredentialMode::TcrAccessKey,
                "ccr.ccs.tencentyun.com",
                "team",
                "ap-guangzhou",
                ("a", "secret-1"),
            ),
            "registry.credential_mode",
        ),
        (
            cloud_registry(
                Provider::AcrPersonal,
                CredentialMode::AcrAccessKey,
                ACR_PERSONAL,
                "team",
                "",
                ("LTAI5t", "secret-1"),
            ),
            "registry.region",
        ),
        (
            Registry {
                instance_id: "cri-abc".into(),
                ..cloud_registry(
                    Provider::AcrPersonal,
                    CredentialMode::AcrAccessKey,
                    ACR_PERSONAL,
                    "team",
                    "cn-hangzhou",
                    ("LTAI5t", "secret-1"),
                )
            },
            "registry.instance_id",
        ),
        (
            Registry {
                instance_id: "cri-abc".into(),
                ..cloud_registry(
                    Provider::TcrEnterprise,
                    CredentialMode::TcrAccessKey,
                    TCR_EE,
                    "team",
                    "ap-guangzhou",
                    ("AKID", "secret-1"),
                )
            },
            "registry.instance_id",
        ),
        (
            Registry {
                credential_mode: 99,
                ..cloud_registry(
                    Provider::AcrPersonal,
                    CredentialMode::Static,
                    ACR_PERSONAL,
                    "team",
                    "",
                    ("u", "secret-1"),
                )
            },
            "registry.credential_mode",
        ),
    ];
    for (registry, field) in cases {
        let err = create(&mut regs, registry).await.expect_err(field);
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert_eq!(violations(&err), [field], "{err:?}");
    }

    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_failing_cloud_is_unavailable() {
    // Bind then drop: nothing listens there any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let failing = CloudStub::launch(
        Cloud::Tcr,
        Setup {
            mode: Mode::Status500,
            ..Setup::new(&[(TCR_SECRET_ID, TCR_SECRET_KEY)], &[("team", TCR_EE_ID)])
        },
    );
    let server = TestServer::start_with(Backend::Sqlite, |cfg| {
        cfg.acr_endpoint = Some(format!("http://{closed}"));
        cfg.tcr_endpoint = Some(failing.endpoint.clone());
    })
    .await;
    let ch = server.channel().await;
    let (mut regs, images) = (Registries::new(ch.clone()), Images::new(ch));

    let acr = create(
        &mut regs,
        cloud_registry(
            Provider::AcrPersonal,
            CredentialMode::AcrAccessKey,
            ACR_PERSONAL,
            "team",
            cloud_stub::ACR_REGION,
            (ACR_KEY_ID, ACR_SECRET),
        ),
    )
    .await
    .expect("create ACR");
    let err = credentials(&images, &acr.id)
        .await
        .expect_err("unreachable");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    let tcr = create(
        &mut regs,
        Registry {
            instance_id: TCR_EE_ID.into(),
            ..cloud_registry(
                Provider::TcrEnterprise,
                CredentialMode::TcrAccessKey,
                TCR_EE,
                "team",
                cloud_stub::TCR_REGION,
                (TCR_SECRET_ID, TCR_SECRET_KEY),
            )
        },
    )
    .await
    .expect("create TCR");
    let err = credentials(&images, &tcr.id).await.expect_err("500");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    server.finish().await;
}
