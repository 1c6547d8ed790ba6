//! ImageService end to end: a real berth, a real `docker-registry` (TLS +
//! htpasswd, and token auth), images pushed by skopeo, and skopeo reading
//! berth's credentials.

mod common;
mod support;

use std::collections::HashMap;

use berth::pb::{self, Provider, Registry, Scope, TlsSettings};
use common::{Backend, TestServer, violations};
use support::registry::{AuthMode, TestRegistry};
use tonic::Code;
use tonic::transport::Channel;

type Images = pb::image_service_client::ImageServiceClient<Channel>;
type Registries = pb::registry_service_client::RegistryServiceClient<Channel>;

async fn clients(server: &TestServer) -> (Registries, Images) {
    let ch = server.channel().await;
    (Registries::new(ch.clone()), Images::new(ch))
}

fn scope(projects: &[&str]) -> Option<Scope> {
    Some(Scope {
        all_projects: projects.is_empty(),
        projects: projects.iter().map(|s| s.to_string()).collect(),
    })
}

async fn create(c: &mut Registries, r: Registry) -> Registry {
    c.create_registry(pb::CreateRegistryRequest { registry: Some(r) })
        .await
        .expect("create registry")
        .into_inner()
}

/// A registry entry for the test registry.
fn for_registry(reg: &TestRegistry, ca: bool, password: &str) -> Registry {
    Registry {
        provider: Provider::Other as i32,
        address: reg.host.clone(),
        namespace: "berth".into(),
        username: reg.username.clone(),
        secret: password.into(),
        scope: scope(&["web"]),
        tls: Some(TlsSettings {
            verify: Some(true),
            ca_cert_pem: if ca {
                reg.ca_pem.clone()
            } else {
                String::new()
            },
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn parse_image_reference() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_, mut c) = clients(&server).await;
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let rows = [
        (
            "nginx",
            "docker.io",
            "library/nginx",
            "latest",
            "",
            "docker.io/library/nginx:latest",
            "nginx:latest",
        ),
        (
            "localhost:5000/a/b:1.0",
            "localhost:5000",
            "a/b",
            "1.0",
            "",
            "localhost:5000/a/b:1.0",
            "localhost:5000/a/b:1.0",
        ),
        (
            &format!("registry.example.com:5000/team/api@{digest}"),
            "registry.example.com:5000",
            "team/api",
            "",
            digest,
            &format!("registry.example.com:5000/team/api@{digest}"),
            &format!("registry.example.com:5000/team/api@{digest}"),
        ),
    ];
    for (input, domain, path, tag, dg, fq, familiar) in rows {
        let r = c
            .parse_image_reference(pb::ParseImageReferenceRequest {
                reference: input.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("{input}: {e}"))
            .into_inner();
        assert_eq!(
            (
                r.domain.as_str(),
                r.path.as_str(),
                r.tag.as_str(),
                r.digest.as_str()
            ),
            (domain, path, tag, dg),
            "{input}"
        );
        assert_eq!(
            (r.fully_qualified.as_str(), r.familiar.as_str()),
            (fq, familiar),
            "{input}"
        );
    }
    for bad in [
        "",
        "team/Api",
        "a:b:c",
        "nginx:",
        &format!("x@sha256:{}", "0".repeat(10)),
        &"a".repeat(300),
    ] {
        let err = c
            .parse_image_reference(pb::ParseImageReferenceRequest {
                reference: bad.to_string(),
            })
            .await
            .expect_err(bad);
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
        assert_eq!(violations(&err), ["reference"], "{bad}");
    }
    server.finish().await;
}

on_every_backend!(resolve_and_static_credentials);

async fn resolve_and_static_credentials(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut regs, mut c) = clients(&server).await;
    let harbor = create(
        &mut regs,
        Registry {
            provider: Provider::Harbor as i32,
            address: "https://harbor.example.com:8443".into(),
            namespace: "team".into(),
            username: "robot$ci".into(),
            secret: "harbor-pass".into(),
            scope: scope(&["web"]),
            tls: Some(TlsSettings {
                verify: Some(false),
                ca_cert_pem: String::new(),
            }),
            ..Default::default()
        },
    )
    .await;
    let vars: HashMap<String, String> = [
        ("TIMESTAMP", "20261128"),
        ("TASK_ID", "42"),
        ("BRANCH", "feature/login"),
    ]
    .map(|(k, v)| (k.into(), v.into()))
    .into();
    // By id, with a tag template.
    let r = c
        .resolve_image(pb::ResolveImageRequest {
            registry_id: harbor.id.clone(),
            project: "web".into(),
            image: "api".into(),
            tag: "{TIMESTAMP}-{TASK_ID}-{BRANCH}".into(),
            variables: vars.clone(),
            ..Default::default()
        })
        .await
        .expect("resolve")
        .into_inner();
    assert_eq!(
        r.reference,
        "harbor.example.com:8443/team/api:20261128-42-feature-login"
    );
    assert_eq!(r.tag, "20261128-42-feature-login");
    // SERVICE (the image's last component), PROJECT and TIMESTAMP (now,
    // UTC) have defaults; a value the caller gives wins.
    for (vars, service) in [
        (HashMap::new(), "api"),
        (
            HashMap::from([("SERVICE".to_string(), "svc".to_string())]),
            "svc",
        ),
    ] {
        let before = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
        let r = c
            .resolve_image(pb::ResolveImageRequest {
                registry_id: harbor.id.clone(),
                project: "web".into(),
                image: "backend/api".into(),
                tag: "{SERVICE}-{PROJECT}-{TIMESTAMP}".into(),
                variables: vars,
                ..Default::default()
            })
            .await
            .expect("resolve with defaults")
            .into_inner();
        let after = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
        let stamp = r
            .tag
            .strip_prefix(&format!("{service}-web-"))
            .unwrap_or_else(|| panic!("{service}-web-<timestamp>: {}", r.tag));
        assert!(
            stamp.len() == 14 && (before.as_str()..=after.as_str()).contains(&stamp),
            "{stamp} is the time of the call ({before}..{after})"
        );
    }
    // By default registry (the first one created).
    let r = c
        .resolve_image(pb::ResolveImageRequest {
            project: "web".into(),
            image: "backend/api".into(),
            tag: "v1".into(),
            ..Default::default()
        })
        .await
        .expect("resolve default")
        .into_inner();
    assert_eq!(r.reference, "harbor.example.com:8443/team/backend/api:v1");
    assert_eq!(r.registry_id, harbor.id);
    // Outside the scope.
    let err = c
        .resolve_image(pb::ResolveImageRequest {
            registry_id: harbor.id.clone(),
            project: "api".into(),
            image: "api".into(),
            tag: "v1".into(),
            ..Default::default()
        })
        .await
        .expect_err("scope");
    assert_eq!(err.code(), Code::PermissionDenied);
    for (req, field) in [
        (
            pb::ResolveImageRequest {
                registry_id: harbor.id.clone(),
                project: "web".into(),
                image: "api".into(),
                tag: "{NOPE}".into(),
                ..Default::default()
            },
            "tag",
        ),
        (
            pb::ResolveImageRequest {
                registry_id: harbor.id.clone(),
                project: "web".into(),
                image: "Api".into(),
                tag: "v1".into(),
                ..Default::default()
            },
            "image",
        ),
        (
            pb::ResolveImageRequest {
                registry_id: harbor.id.clone(),
                project: "web".into(),
                image: "api".into(),
                ..Default::default()
            },
            "tag",
        ),
        (
            pb::ResolveImageRequest {
                registry_id: harbor.id.clone(),
                image: "api".into(),
                tag: "v1".into(),
                ..Default::default()
            },
            "project",
        ),
    ] {
        let err = c.resolve_image(req).await.expect_err(field);
        assert_eq!(violations(&err), [field]);
    }

    // Static credentials, config.json and the Kubernetes Secret.
    let cr = c
        .get_credentials(pb::GetCredentialsRequest {
            registry_id: harbor.id.clone(),
            project: "web".into(),
            kubernetes_namespace: "apps".into(),
            ..Default::default()
        })
        .await
        .expect("credentials")
        .into_inner();
    assert_eq!(
        (cr.username.as_str(), cr.password.as_str()),
        ("robot$ci", "harbor-pass")
    );
    assert_eq!(cr.server_address, "harbor.example.com:8443");
    assert!(cr.expire_time.is_none());
    assert!(
        cr.insecure,
        "verification off makes it an insecure registry"
    );
    let cfg: serde_json::Value = serde_json::from_str(&cr.docker_config_json).expect("config.json");
    let auth = cfg["auths"]["harbor.example.com:8443"]["auth"]
        .as_str()
        .expect("auth");
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .expect("base64");
    assert_eq!(decoded, b"robot$ci:harbor-pass");
    assert!(
        cr.kubernetes_secret_yaml
            .contains("kubernetes.io/dockerconfigjson")
    );
    assert!(cr.kubernetes_secret_yaml.contains("apps"));
    // By image reference domain.
    let by_ref = c
        .get_credentials(pb::GetCredentialsRequest {
            project: "web".into(),
            image_reference: "harbor.example.com:8443/team/api:1".into(),
            ..Default::default()
        })
        .await
        .expect("by reference")
        .into_inner();
    assert_eq!(by_ref.registry_id, harbor.id);
    let err = c
        .get_credentials(pb::GetCredentialsRequest {
            project: "web".into(),
            image_reference: "other.example.com/x:1".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown domain");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .get_credentials(pb::GetCredentialsRequest {
            registry_id: harbor.id.clone(),
            project: "api".into(),
            ..Default::default()
        })
        .await
        .expect_err("scope");
    assert_eq!(err.code(), Code::PermissionDenied);

    // Huawei SWR: <region>@<AK>, HMAC-SHA256 hex of AK keyed by SK.
    let swr = create(
        &mut regs,
        Registry {
            provider: Provider::Swr as i32,
            address: "swr.cn-east-3.myhuaweicloud.com".into(),
            namespace: "org".into(),
            region: "cn-east-3".into(),
            username: "AKEXAMPLE".into(),
            secret: "SKEXAMPLE".into(),
            scope: scope(&[]),
            ..Default::default()
        },
    )
    .await;
    let cr = c
        .get_credentials(pb::GetCredentialsRequest {
            registry_id: swr.id.clone(),
            project: "web".into(),
            ..Default::default()
        })
        .await
        .expect("swr")
        .into_inner();
    assert_eq!(cr.username, "cn-east-3@AKEXAMPLE");
    // printf %s AKEXAMPLE | openssl dgst -sha256 -hmac SKEXAMPLE
    assert_eq!(
        cr.password,
        support::openssl_hmac_hex("SKEXAMPLE", "AKEXAMPLE")
    );

    // Google Artifact Registry: _json_key_base64 and the key, base64.
    let key = r#"{"type":"service_account","client_email":"ci@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nX\n-----END PRIVATE KEY-----\n"}"#;
    let gar = create(
        &mut regs,
        Registry {
            provider: Provider::Gar as i32,
            address: "us-docker.pkg.dev".into(),
            namespace: "proj/repo".into(),
            secret: key.into(),
            scope: scope(&[]),
            ..Default::default()
        },
    )
    .await;
    let cr = c
        .get_credentials(pb::GetCredentialsRequest {
            registry_id: gar.id.clone(),
            project: "web".into(),
            ..Default::default()
        })
        .await
        .expect("gar")
        .into_inner();
    assert_eq!(cr.username, "_json_key_base64");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&cr.password)
            .expect("b64"),
        key.as_bytes()
    );
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_registry_with_htpasswd_and_tls() {
    let reg = TestRegistry::start(AuthMode::Htpasswd).await;
    let pushed = tokio::task::block_in_place(|| reg.push_test_images("berth/app"));
    let server = TestServer::start(Backend::Sqlite).await;
    let (mut regs, mut c) = clients(&server).await;
    let good = create(&mut regs, for_registry(&reg, true, &reg.password)).await;

    // Tags: lexical, semver, newest, filtered.
    let tags = |order: pb::TagOrder, glob: &str| pb::ListTagsRequest {
        registry_id: good.id.clone(),
        project: "web".into(),
        image: "app".into(),
        order: order as i32,
        glob: glob.into(),
        ..Default::default()
    };
    let lexical = c
        .list_tags(tags(pb::TagOrder::Lexical, ""))
        .await
        .expect("tags")
        .into_inner()
        .tags;
    let mut want = pushed.tags.clone();
    want.sort();
    assert_eq!(lexical, want);
    let semver = c
        .list_tags(tags(pb::TagOrder::Semver, ""))
        .await
        .expect("semver")
        .into_inner()
        .tags;
    assert_eq!(&semver[..4], ["2.0.0-rc.1", "1.10.0", "1.2.0", "1.0.0"]);
    let newest = c
        .list_tags(tags(pb::TagOrder::Newest, "1.*"))
        .await
        .expect("newest")
        .into_inner()
        .tags;
    assert_eq!(
        newest,
        ["1.10.0", "1.2.0", "1.0.0"],
        "pushed in that order with increasing created"
    );
    let err = c
        .list_tags(pb::ListTagsRequest {
            regex: "(".into(),
            ..tags(pb::TagOrder::Lexical, "")
        })
        .await
        .expect_err("bad regex");
    assert_eq!(violations(&err), ["regex"]);

    // Catalog with paging.
    let page = c
        .list_repositories(pb::ListRepositoriesRequest {
            registry_id: good.id.clone(),
            project: "web".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("catalog")
        .into_inner();
    assert_eq!(page.repositories, ["berth/app"]);

    // Digest pinning matches what skopeo pushed.
    let r = c
        .resolve_image(pb::ResolveImageRequest {
            registry_id: good.id.clone(),
            project: "web".into(),
            image: "app".into(),
            tag: "1.2.0".into(),
            pin_digest: true,
            ..Default::default()
        })
        .await
        .expect("pin")
        .into_inner();
    assert_eq!(r.digest, pushed.digests["1.2.0"]);
    assert_eq!(
        r.reference,
        format!("{}/berth/app:1.2.0@{}", reg.host, pushed.digests["1.2.0"])
    );
    let err = c
        .resolve_image(pb::ResolveImageRequest {
            registry_id: good.id.clone(),
            project: "web".into(),
            image: "app".into(),
            tag: "missing".into(),
            pin_digest: true,
            ..Default::default()
        })
        .await
        .expect_err("missing tag");
    assert_eq!(err.code(), Code::NotFound);

    // GetImage: one platform, and the index.
    let img = c
        .get_image(pb::GetImageRequest {
            registry_id: good.id.clone(),
            project: "web".into(),
            image: "app".into(),
            reference: "1.2.0".into(),
        })
        .await
        .expect("image")
        .into_inner();
    assert_eq!(img.digest, pushed.digests["1.2.0"]);
    assert!(img.size > 0 && img.created.is_some());
    assert_eq!(
        img.labels
            .get("org.opencontainers.image.version")
            .map(String::as_str),
        Some("1.2.0")
    );
    let idx = c
        .get_image(pb::GetImageRequest {
            registry_id: good.id.clone(),
            project: "web".into(),
            image: "app".into(),
            reference: pushed.index_tag.clone(),
        })
        .await
        .expect("index")
        .into_inner();
    let mut arches: Vec<_> = idx
        .platforms
        .iter()
        .map(|p| p.architecture.clone())
        .collect();
    arches.sort();
    assert_eq!(arches, ["amd64", "arm64"]);

    // berth's config.json works for a real consumer.
    let cr = c
        .get_credentials(pb::GetCredentialsRequest {
            registry_id: good.id.clone(),
            project: "web".into(),
            ..Default::default()
        })
        .await
        .expect("credentials")
        .into_inner();
    assert_eq!(cr.ca_cert_pem.trim(), reg.ca_pem.trim());
    let dir = tempfile::tempdir().expect("tmp");
    let auth = dir.path().join("config.json");
    std::fs::write(&auth, &cr.docker_config_json).expect("write config");
    let out = std::process::Command::new("skopeo")
        .args(["list-tags", "--authfile"])
        .arg(&auth)
        .arg("--cert-dir")
        .arg(&reg.ca_dir)
        .arg(format!("docker://{}/berth/app", reg.host))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo with berth's config.json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1.10.0"));

    // TestConnection: right, wrong password, no CA, verification off.
    let test = |id: &str| pb::TestConnectionRequest {
        registry_id: id.into(),
        spec: None,
    };
    let ok = c
        .test_connection(test(&good.id))
        .await
        .expect("test")
        .into_inner();
    assert!(
        ok.reachable && ok.tls_verified && ok.credentials_accepted,
        "{ok:?}"
    );
    let spec = |password: &str, verify: bool, ca: bool| pb::TestConnectionRequest {
        registry_id: String::new(),
        spec: Some(pb::RegistrySpec {
            provider: Provider::Other as i32,
            address: reg.host.clone(),
            username: reg.username.clone(),
            secret: password.into(),
            tls: Some(TlsSettings {
                verify: Some(verify),
                ca_cert_pem: if ca {
                    reg.ca_pem.clone()
                } else {
                    String::new()
                },
            }),
            ..Default::default()
        }),
    };
    let wrong = c
        .test_connection(spec("wrong-password", true, true))
        .await
        .expect("wrong")
        .into_inner();
    assert!(
        wrong.reachable && wrong.tls_verified && !wrong.credentials_accepted,
        "{wrong:?}"
    );
    let no_ca = c
        .test_connection(spec(&reg.password, true, false))
        .await
        .expect("no ca")
        .into_inner();
    assert!(
        !no_ca.tls_verified && no_ca.tls_error.contains("unknown authority"),
        "{no_ca:?}"
    );
    let off = c
        .test_connection(spec(&reg.password, false, false))
        .await
        .expect("off")
        .into_inner();
    assert!(
        off.reachable && off.credentials_accepted && !off.tls_verified,
        "{off:?}"
    );

    // A stored registry without its CA fails calls with the reason.
    let mut no_ca_reg = for_registry(&reg, false, &reg.password);
    no_ca_reg.namespace = "other".into();
    let no_ca_reg = create(&mut regs, no_ca_reg).await;
    let err = c
        .list_tags(pb::ListTagsRequest {
            registry_id: no_ca_reg.id.clone(),
            project: "web".into(),
            image: "app".into(),
            ..Default::default()
        })
        .await
        .expect_err("tls");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("unknown authority"),
        "{}",
        err.message()
    );
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_registry_with_token_auth() {
    let reg = TestRegistry::start(AuthMode::Token).await;
    let pushed = tokio::task::block_in_place(|| reg.push_test_images("berth/app"));
    let server = TestServer::start(Backend::Sqlite).await;
    let (mut regs, mut c) = clients(&server).await;
    let good = create(&mut regs, for_registry(&reg, true, &reg.password)).await;
    let r = c
        .resolve_image(pb::ResolveImageRequest {
            registry_id: good.id.clone(),
            project: "web".into(),
            image: "app".into(),
            tag: "latest".into(),
            pin_digest: true,
            ..Default::default()
        })
        .await
        .expect("pin via bearer token")
        .into_inner();
    assert_eq!(r.digest, pushed.digests["latest"]);
    let tags = c
        .list_tags(pb::ListTagsRequest {
            registry_id: good.id.clone(),
            project: "web".into(),
            image: "app".into(),
            ..Default::default()
        })
        .await
        .expect("tags via bearer token")
        .into_inner()
        .tags;
    assert_eq!(tags.len(), pushed.tags.len());
    let ok = c
        .test_connection(pb::TestConnectionRequest {
            registry_id: good.id.clone(),
            spec: None,
        })
        .await
        .expect("test")
        .into_inner();
    assert!(ok.credentials_accepted, "{ok:?}");
    let mut bad = for_registry(&reg, true, "wrong");
    bad.namespace = "bad".into();
    let bad = create(&mut regs, bad).await;
    let err = c
        .list_tags(pb::ListTagsRequest {
            registry_id: bad.id.clone(),
            project: "web".into(),
            image: "app".into(),
            ..Default::default()
        })
        .await
        .expect_err("token refused");
    assert_eq!(err.code(), Code::FailedPrecondition);
    server.finish().await;
}

#[tokio::test]
async fn unreachable_registry_is_unavailable() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (mut regs, mut c) = clients(&server).await;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let r = create(
        &mut regs,
        Registry {
            provider: Provider::Other as i32,
            address: format!("127.0.0.1:{port}"),
            namespace: "x".into(),
            scope: scope(&[]),
            ..Default::default()
        },
    )
    .await;
    let err = c
        .list_tags(pb::ListTagsRequest {
            registry_id: r.id.clone(),
            project: "web".into(),
            image: "app".into(),
            ..Default::default()
        })
        .await
        .expect_err("down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let t = c
        .test_connection(pb::TestConnectionRequest {
            registry_id: r.id.clone(),
            spec: None,
        })
        .await
        .expect("report")
        .into_inner();
    assert!(!t.reachable, "{t:?}");
    server.finish().await;
}
