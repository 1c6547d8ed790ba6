//! RegistryService end to end: a real server, through the generated client,
//! on SQLite, PostgreSQL and MariaDB.

mod common;

use berth::pb::{self, Provider, Registry, Scope, TlsSettings};
use common::{Backend, TestServer, violations};
use tonic::Code;

fn all() -> Option<Scope> {
    Some(Scope {
        all_projects: true,
        projects: vec![],
    })
}

fn projects(p: &[&str]) -> Option<Scope> {
    Some(Scope {
        all_projects: false,
        projects: p.iter().map(|s| s.to_string()).collect(),
    })
}

/// A valid registry of each provider, with every field it needs.
fn valid(provider: Provider, n: usize) -> Registry {
    let mut r = Registry {
        provider: provider as i32,
        address: format!("registry-{n}.example.com"),
        namespace: "team".into(),
        username: "robot".into(),
        secret: format!("s3cret-{n}-value"),
        scope: all(),
        ..Default::default()
    };
    match provider {
        Provider::Swr => r.region = "cn-east-3".into(),
        Provider::Ecr => {
            r.region = "ap-northeast-1".into();
            r.address = format!("{n}.dkr.ecr.ap-northeast-1.amazonaws.com");
        }
        Provider::Nexus => r.repository = "docker-hosted".into(),
        _ => {}
    }
    r
}

const PROVIDERS: [Provider; 12] = [
    Provider::AcrPersonal,
    Provider::AcrEnterprise,
    Provider::TcrPersonal,
    Provider::TcrEnterprise,
    Provider::Swr,
    Provider::Ecr,
    Provider::Gar,
    Provider::Harbor,
    Provider::DockerHub,
    Provider::Jfrog,
    Provider::Nexus,
    Provider::Other,
];

async fn create(
    c: &mut pb::registry_service_client::RegistryServiceClient<tonic::transport::Channel>,
    r: Registry,
) -> Result<Registry, tonic::Status> {
    c.create_registry(pb::CreateRegistryRequest { registry: Some(r) })
        .await
        .map(|r| r.into_inner())
}

on_every_backend!(
    every_provider_validates_and_reads_back,
    default_rules,
    concurrent_set_default_leaves_exactly_one,
    etag_and_update_mask,
    secret_never_leaves_encrypted_storage,
    list_filters_and_pages,
    duplicates_and_not_found,
);

async fn every_provider_validates_and_reads_back(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = server.registries().await;
    for (n, p) in PROVIDERS.into_iter().enumerate() {
        let input = valid(p, n);
        let created = create(&mut c, input.clone())
            .await
            .unwrap_or_else(|e| panic!("{p:?}: {e}"));
        let got = c
            .get_registry(pb::GetRegistryRequest {
                id: created.id.clone(),
            })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(got.provider, p as i32, "{p:?}");
        assert_eq!(got.address, input.address, "{p:?}");
        assert_eq!(got.namespace, input.namespace, "{p:?}");
        assert_eq!(got.region, input.region, "{p:?}");
        assert_eq!(got.repository, input.repository, "{p:?}");
        assert!(got.has_secret && got.secret.is_empty(), "{p:?}");
        assert_eq!(got.etag, created.etag);
        assert!(got.create_time.is_some() && got.update_time.is_some());

        // Each required field, missing, is named.
        let mut required = vec!["namespace", "username", "secret"];
        match p {
            Provider::Swr => required.push("region"),
            Provider::Ecr => {
                required = vec!["username", "secret", "region"];
            }
            Provider::Nexus => required.push("repository"),
            Provider::Gar => required.retain(|f| *f != "username"),
            Provider::Other => required = vec!["namespace"],
            _ => {}
        }
        if p != Provider::DockerHub {
            required.push("address");
        }
        for field in required {
            let mut r = valid(p, 100 + n);
            match field {
                "address" => r.address.clear(),
                "namespace" => r.namespace.clear(),
                "username" => r.username.clear(),
                "secret" => r.secret.clear(),
                "region" => r.region.clear(),
                "repository" => r.repository.clear(),
                _ => unreachable!(),
            }
            let err = create(&mut c, r).await.expect_err(field);
            assert_eq!(err.code(), Code::InvalidArgument, "{p:?} {field}");
            assert_eq!(
                violations(&err),
                [format!("registry.{field}")],
                "{p:?} {field}: {err:?}"
            );
        }
    }
    // Defaults: Docker Hub address, GAR username.
    let mut hub = valid(Provider::DockerHub, 500);
    hub.address.clear();
    assert_eq!(create(&mut c, hub).await.expect("hub").address, "docker.io");
    let mut gar = valid(Provider::Gar, 501);
    gar.username.clear();
    assert_eq!(
        create(&mut c, gar).await.expect("gar").username,
        "_json_key_base64"
    );
    // Missing provider and unknown provider numbers.
    let err = create(
        &mut c,
        Registry {
            provider: 0,
            ..valid(Provider::Harbor, 502)
        },
    )
    .await
    .expect_err("none");
    assert_eq!(violations(&err), ["registry.provider"]);
    let err = create(
        &mut c,
        Registry {
            provider: 99,
            ..valid(Provider::Harbor, 503)
        },
    )
    .await
    .expect_err("99");
    assert_eq!(violations(&err), ["registry.provider"]);
    let err = c
        .create_registry(pb::CreateRegistryRequest { registry: None })
        .await
        .expect_err("empty");
    assert_eq!(violations(&err), ["registry"]);
    server.finish().await;
}

async fn default_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = server.registries().await;
    let err = c
        .get_default_registry(pb::GetDefaultRegistryRequest {
            project: "web".into(),
        })
        .await
        .expect_err("no default yet");
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("no default"), "{}", err.message());

    let first = create(
        &mut c,
        Registry {
            scope: projects(&["web"]),
            ..valid(Provider::Harbor, 1)
        },
    )
    .await
    .expect("first");
    assert!(first.is_default, "the first registry becomes the default");
    let second = create(&mut c, valid(Provider::Harbor, 2))
        .await
        .expect("second");
    assert!(!second.is_default);

    let d = c
        .get_default_registry(pb::GetDefaultRegistryRequest {
            project: "web".into(),
        })
        .await
        .expect("default for web")
        .into_inner();
    assert_eq!(d.id, first.id);
    let err = c
        .get_default_registry(pb::GetDefaultRegistryRequest {
            project: "api".into(),
        })
        .await
        .expect_err("scope excludes api");
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("scope"), "{}", err.message());
    let err = c
        .get_default_registry(pb::GetDefaultRegistryRequest {
            project: String::new(),
        })
        .await
        .expect_err("project required");
    assert_eq!(violations(&err), ["project"]);

    // Creating with is_default moves the default.
    let third = create(
        &mut c,
        Registry {
            is_default: true,
            ..valid(Provider::Other, 3)
        },
    )
    .await
    .expect("third");
    assert!(third.is_default);
    let first_now = c
        .get_registry(pb::GetRegistryRequest {
            id: first.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert!(!first_now.is_default);

    let set = c
        .set_default_registry(tonic_req(
            pb::SetDefaultRegistryRequest {
                id: second.id.clone(),
            },
            "alice",
        ))
        .await
        .expect("set default")
        .into_inner();
    assert!(set.is_default);
    // Deleting the default leaves none.
    c.delete_registry(pb::DeleteRegistryRequest {
        id: second.id.clone(),
        etag: String::new(),
        force: false,
    })
    .await
    .expect("delete");
    let err = c
        .get_default_registry(pb::GetDefaultRegistryRequest {
            project: "web".into(),
        })
        .await
        .expect_err("none after delete");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .set_default_registry(pb::SetDefaultRegistryRequest {
            id: second.id.clone(),
        })
        .await
        .expect_err("deleted");
    assert_eq!(err.code(), Code::NotFound);
    server.finish().await;
}

fn tonic_req<T>(msg: T, actor: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("x-berth-actor", actor.parse().expect("ascii"));
    r
}

async fn concurrent_set_default_leaves_exactly_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = server.registries().await;
    let mut ids = Vec::new();
    for n in 0..8 {
        ids.push(
            create(&mut c, valid(Provider::Harbor, n))
                .await
                .expect("create")
                .id,
        );
    }
    let mut tasks = Vec::new();
    for i in 0..32 {
        let id = ids[i % ids.len()].clone();
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.set_default_registry(pb::SetDefaultRegistryRequest { id })
                .await
                .map(|_| ())
        }));
    }
    for t in tasks {
        t.await
            .expect("join")
            .expect("every SetDefaultRegistry succeeds");
    }
    let list = c
        .list_registries(pb::ListRegistriesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .registries;
    let defaults: Vec<_> = list.iter().filter(|r| r.is_default).collect();
    assert_eq!(defaults.len(), 1, "exactly one default");
    let d = c
        .get_default_registry(pb::GetDefaultRegistryRequest {
            project: "any".into(),
        })
        .await
        .expect("default")
        .into_inner();
    assert_eq!(d.id, defaults[0].id);
    // And in the table itself.
    use sea_orm::{ConnectionTrait, Statement};
    let db = server.db.connect().await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM default_registry",
        ))
        .await
        .expect("count")
        .expect("row");
    let n: i64 = row.try_get("", "n").expect("n");
    assert_eq!(n, 1);
    server.finish().await;
}

async fn etag_and_update_mask(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = server.registries().await;
    let created = create(
        &mut c,
        Registry {
            scope: projects(&["a", "b"]),
            tls: Some(TlsSettings {
                verify: Some(false),
                ca_cert_pem: String::new(),
            }),
            ..valid(Provider::Harbor, 1)
        },
    )
    .await
    .expect("create");
    assert_eq!(created.tls.as_ref().and_then(|t| t.verify), Some(false));

    let update = |reg: Registry, paths: &[&str]| pb::UpdateRegistryRequest {
        registry: Some(reg),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|s| s.to_string()).collect(),
        }),
    };
    // Only the named field changes; the secret is kept.
    let patch = Registry {
        id: created.id.clone(),
        etag: created.etag.clone(),
        namespace: "platform".into(),
        username: "ignored-not-in-mask".into(),
        ..Default::default()
    };
    let updated = c
        .update_registry(tonic_req(update(patch, &["namespace"]), "bob"))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.namespace, "platform");
    assert_eq!(updated.username, "robot");
    assert_eq!(updated.scope, projects(&["a", "b"]));
    assert_eq!(updated.tls.as_ref().and_then(|t| t.verify), Some(false));
    assert!(updated.has_secret);
    assert_eq!(updated.updated_by, "bob");
    assert_ne!(updated.etag, created.etag);

    // The old etag is stale now.
    let stale = Registry {
        id: created.id.clone(),
        etag: created.etag.clone(),
        namespace: "x".into(),
        ..Default::default()
    };
    let err = c
        .update_registry(update(stale, &["namespace"]))
        .await
        .expect_err("stale");
    assert_eq!(err.code(), Code::Aborted);
    {
        use tonic_types::StatusExt;
        let info = err.get_details_error_info().expect("ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("ETAG_MISMATCH", "berth")
        );
        assert!(
            err.get_details_retry_info().is_some(),
            "a stale etag is worth retrying"
        );
    }
    let err = c
        .delete_registry(pb::DeleteRegistryRequest {
            id: created.id.clone(),
            etag: created.etag.clone(),
            force: false,
        })
        .await
        .expect_err("stale delete");
    assert_eq!(err.code(), Code::Aborted);

    // Scope replacement, and an invalid merged result names the field.
    let patch = Registry {
        id: created.id.clone(),
        scope: projects(&["c"]),
        ..Default::default()
    };
    let r = c
        .update_registry(update(patch, &["scope"]))
        .await
        .expect("scope")
        .into_inner();
    assert_eq!(r.scope, projects(&["c"]));
    let patch = Registry {
        id: created.id.clone(),
        ..Default::default()
    };
    let err = c
        .update_registry(update(patch, &["username"]))
        .await
        .expect_err("username cleared");
    assert_eq!(violations(&err), ["registry.username"]);
    // Clearing the secret of a provider that needs one is refused.
    let patch = Registry {
        id: created.id.clone(),
        ..Default::default()
    };
    let err = c
        .update_registry(update(patch, &["secret"]))
        .await
        .expect_err("secret cleared");
    assert_eq!(violations(&err), ["registry.secret"]);
    let patch = Registry {
        id: created.id.clone(),
        ..Default::default()
    };
    let err = c
        .update_registry(update(patch, &["create_time"]))
        .await
        .expect_err("output only");
    assert_eq!(violations(&err), ["update_mask"]);
    let patch = Registry {
        id: "nope".into(),
        ..Default::default()
    };
    let err = c
        .update_registry(update(patch, &["namespace"]))
        .await
        .expect_err("bad id");
    assert_eq!(violations(&err), ["registry.id"]);
    let patch = Registry {
        id: uuid::Uuid::now_v7().to_string(),
        namespace: "x".into(),
        ..Default::default()
    };
    let err = c
        .update_registry(update(patch, &["namespace"]))
        .await
        .expect_err("missing");
    assert_eq!(err.code(), Code::NotFound);
    // Current etag deletes.
    let current = c
        .get_registry(pb::GetRegistryRequest {
            id: created.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    c.delete_registry(pb::DeleteRegistryRequest {
        id: created.id.clone(),
        etag: current.etag,
        force: false,
    })
    .await
    .expect("delete with etag");
    server.finish().await;
}

async fn secret_never_leaves_encrypted_storage(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = server.registries().await;
    let secret = "PLAINTEXT-must-not-appear-9f3b";
    let created = create(
        &mut c,
        Registry {
            secret: secret.into(),
            ..valid(Provider::Harbor, 1)
        },
    )
    .await
    .expect("create");
    let get = c
        .get_registry(pb::GetRegistryRequest {
            id: created.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    let list = c
        .list_registries(pb::ListRegistriesRequest::default())
        .await
        .expect("list")
        .into_inner();
    for text in [
        format!("{created:?}"),
        format!("{get:?}"),
        format!("{list:?}"),
    ] {
        assert!(!text.contains(secret));
    }
    assert!(get.secret.is_empty() && get.has_secret);
    assert!(list.registries.iter().all(|r| r.secret.is_empty()));

    use sea_orm::{ConnectionTrait, Statement};
    let db = server.db.connect().await;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT * FROM registries",
        ))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    let ct: Vec<u8> = rows[0]
        .try_get("", "secret_ciphertext")
        .expect("ciphertext");
    assert!(ct.len() > secret.len(), "ciphertext stored");
    assert!(
        !ct.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "plaintext in the column"
    );
    let kid: String = rows[0].try_get("", "secret_key_id").expect("key id");
    assert_eq!(kid.len(), 16);
    // No other column holds it either.
    let dump = format!("{:?}", rows[0]);
    assert!(!dump.contains(secret));
    server.finish().await;
}

async fn list_filters_and_pages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = server.registries().await;
    let mut web_ids = Vec::new();
    for n in 0..5 {
        let r = create(
            &mut c,
            Registry {
                scope: projects(&["web", "api"]),
                ..valid(Provider::Harbor, n)
            },
        )
        .await
        .expect("web");
        web_ids.push(r.id);
    }
    create(
        &mut c,
        Registry {
            scope: projects(&["other"]),
            ..valid(Provider::Harbor, 10)
        },
    )
    .await
    .expect("other");
    let everyone = create(&mut c, valid(Provider::Other, 11))
        .await
        .expect("all");
    web_ids.push(everyone.id.clone());

    // Page through "web" two at a time: every registry once, in order.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_registries(pb::ListRegistriesRequest {
                project: "web".into(),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.registries.len() <= 2);
        seen.extend(page.registries.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen, web_ids,
        "all-projects registries included, creation order"
    );

    let others = c
        .list_registries(pb::ListRegistriesRequest {
            provider: Provider::Other as i32,
            ..Default::default()
        })
        .await
        .expect("by provider")
        .into_inner();
    let other_ids: Vec<&str> = others.registries.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(other_ids, [everyone.id.as_str()]);

    let first = c
        .list_registries(pb::ListRegistriesRequest {
            project: "web".into(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("first page")
        .into_inner();
    let err = c
        .list_registries(pb::ListRegistriesRequest {
            project: "api".into(),
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .expect_err("token for other filters");
    assert_eq!(violations(&err), ["page_token"]);
    for (req, field) in [
        (
            pb::ListRegistriesRequest {
                page_token: "%%%".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            pb::ListRegistriesRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListRegistriesRequest {
                project: "bad project".into(),
                ..Default::default()
            },
            "project",
        ),
        (
            pb::ListRegistriesRequest {
                provider: 77,
                ..Default::default()
            },
            "provider",
        ),
    ] {
        let err = c.list_registries(req).await.expect_err(field);
        assert_eq!(violations(&err), [field]);
    }
    server.finish().await;
}

async fn duplicates_and_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = server.registries().await;
    let r = Registry {
        address: "https://Dup.Example.com:443/".into(),
        ..valid(Provider::Harbor, 1)
    };
    let created = create(&mut c, r).await.expect("create");
    assert_eq!(created.address, "dup.example.com");
    let again = Registry {
        address: "dup.example.com".into(),
        ..valid(Provider::Harbor, 2)
    };
    let err = create(&mut c, again.clone()).await.expect_err("duplicate");
    assert_eq!(err.code(), Code::AlreadyExists);
    // Another namespace on the same host is a different registry.
    create(
        &mut c,
        Registry {
            namespace: "other".into(),
            ..again
        },
    )
    .await
    .expect("other namespace");

    let missing = uuid::Uuid::now_v7().to_string();
    let err = c
        .get_registry(pb::GetRegistryRequest {
            id: missing.clone(),
        })
        .await
        .expect_err("missing");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .delete_registry(pb::DeleteRegistryRequest {
            id: missing,
            etag: String::new(),
            force: false,
        })
        .await
        .expect_err("missing delete");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .get_registry(pb::GetRegistryRequest {
            id: "x'; --".into(),
        })
        .await
        .expect_err("junk id");
    assert_eq!(violations(&err), ["id"]);
    server.finish().await;
}

/// ListProviders describes every provider's form, in the same terms the
/// server validates with.
#[tokio::test]
async fn list_providers_describes_each_form() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut c = server.registries().await;
    let providers = c
        .list_providers(pb::ListProvidersRequest {})
        .await
        .expect("list providers")
        .into_inner()
        .providers;
    assert_eq!(providers.len(), PROVIDERS.len());
    let find = |p: Provider| {
        providers
            .iter()
            .find(|d| d.provider == p as i32)
            .unwrap_or_else(|| panic!("{p:?} described"))
    };
    let swr = find(Provider::Swr);
    assert_eq!(swr.display_name, "Huawei Cloud SWR");
    let names: Vec<&str> = swr.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["region", "address", "namespace", "username", "secret"]
    );
    let ak = &swr.fields[3];
    assert_eq!(
        (ak.label.as_str(), ak.required, ak.secret),
        ("Access Key", true, false)
    );
    assert!(swr.fields[4].secret);
    assert_eq!(swr.credential_modes, [pb::CredentialMode::SwrAksk as i32]);
    let hub = find(Provider::DockerHub);
    let address = hub
        .fields
        .iter()
        .find(|f| f.name == "address")
        .expect("address");
    assert_eq!(
        (address.default_value.as_str(), address.required),
        ("docker.io", false)
    );
    let other = find(Provider::Other);
    assert!(
        other.fields.iter().all(|f| f.name != "region"),
        "unused fields are absent"
    );
    assert_eq!(other.credential_modes.len(), 2);
    // A pattern is a real regular expression that accepts a valid value.
    let ns = find(Provider::Harbor)
        .fields
        .iter()
        .find(|f| f.name == "namespace")
        .expect("ns");
    assert!(
        regex::Regex::new(&ns.pattern)
            .expect("pattern")
            .is_match("team-a/app")
    );
    server.finish().await;
}
