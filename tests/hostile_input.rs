//! Hostile input: a battery of malformed requests against every RPC of
//! RegistryService and ImageService. Each one must get the right status —
//! INVALID_ARGUMENT naming the offending field in `google.rpc.BadRequest`,
//! NOT_FOUND for a well-formed but unknown id, PERMISSION_DENIED for a
//! registry outside the project's scope — never INTERNAL, UNKNOWN, a panic or
//! a hang, and never an error that echoes the secret. Afterwards the server
//! still serves and nothing the battery sent was stored.
//!
//! SQLite only: this is about the API, not storage. No case reaches a
//! registry over the network (every one fails validation or lookup first).

mod common;

use std::time::{Duration, Instant};

use berth::pb::{self, Provider, Registry, Scope, TlsSettings};
use common::{Backend, TestServer, violations};
use futures::future::BoxFuture;
use pb::image_service_client::ImageServiceClient;
use pb::registry_service_client::RegistryServiceClient;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Code, IntoRequest, Request, Status};
use tonic_types::StatusExt;

/// Every secret the battery sends contains this; no error may carry it.
const SECRET: &str = "hostile-S3CRET-marker";

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Success (the input is odd but acceptable).
    Ok,
    /// INVALID_ARGUMENT whose BadRequest names exactly these fields.
    Bad(&'static [&'static str]),
    /// INVALID_ARGUMENT whose violations all name fields starting with this
    /// (too many to list, so the status may hold only the first ones).
    BadAll(&'static str),
    /// INVALID_ARGUMENT about metadata (no proto field to name).
    BadMetadata,
    /// This code (NOT_FOUND, PERMISSION_DENIED, ABORTED, …).
    Code(Code),
    /// A request body over the server's 4 MiB decode limit: tonic refuses it
    /// before berth sees it, with OUT_OF_RANGE.
    TooLarge,
}
use Want::{Bad, BadAll, BadMetadata, Code as Is, TooLarge};

type Call = BoxFuture<'static, Result<(), Status>>;

/// One row of the battery.
struct Case {
    name: String,
    want: Want,
    call: Call,
}

#[derive(Clone)]
struct Clients {
    reg: RegistryServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
}

impl Clients {
    fn new(ch: Channel) -> Clients {
        Clients {
            reg: RegistryServiceClient::new(ch.clone()),
            img: ImageServiceClient::new(ch),
        }
    }
}

/// One method per RPC, each turning a request into a boxed call.
macro_rules! rpcs {
    ($($name:ident: $client:ident . $method:ident ($req:ty);)*) => {
        impl Clients {
            $(fn $name(&self, req: impl IntoRequest<$req>) -> Call {
                let mut c = self.$client.clone();
                let req = req.into_request();
                Box::pin(async move { c.$method(req).await.map(drop) })
            })*
        }
    };
}

rpcs! {
    create: reg.create_registry(pb::CreateRegistryRequest);
    get: reg.get_registry(pb::GetRegistryRequest);
    list: reg.list_registries(pb::ListRegistriesRequest);
    update: reg.update_registry(pb::UpdateRegistryRequest);
    delete: reg.delete_registry(pb::DeleteRegistryRequest);
    set_default: reg.set_default_registry(pb::SetDefaultRegistryRequest);
    get_default: reg.get_default_registry(pb::GetDefaultRegistryRequest);
    parse: img.parse_image_reference(pb::ParseImageReferenceRequest);
    resolve: img.resolve_image(pb::ResolveImageRequest);
    credentials: img.get_credentials(pb::GetCredentialsRequest);
    repositories: img.list_repositories(pb::ListRepositoriesRequest);
    tags: img.list_tags(pb::ListTagsRequest);
    image: img.get_image(pb::GetImageRequest);
    test_connection: img.test_connection(pb::TestConnectionRequest);
    copy: img.copy_image(pb::CopyImageRequest);
    distribute: img.distribute_image(pb::DistributeImageRequest);
}

/// A valid Harbor registry for the project `web`; `edit` breaks it.
fn harbor(edit: impl FnOnce(&mut Registry)) -> Registry {
    let mut r = Registry {
        provider: Provider::Harbor as i32,
        address: "hostile.example.com".into(),
        namespace: "team".into(),
        username: "robot".into(),
        secret: format!("{SECRET}-create"),
        scope: Some(Scope {
            all_projects: false,
            projects: vec!["web".into()],
        }),
        tls: Some(TlsSettings {
            verify: Some(true),
            ca_cert_pem: String::new(),
        }),
        ..Default::default()
    };
    edit(&mut r);
    r
}

fn create_req(edit: impl FnOnce(&mut Registry)) -> pb::CreateRegistryRequest {
    pb::CreateRegistryRequest {
        registry: Some(harbor(edit)),
    }
}

/// An update of registry `id` with `edit` applied to a valid patch.
fn update_req(
    id: &str,
    mask: &[&str],
    edit: impl FnOnce(&mut Registry),
) -> pb::UpdateRegistryRequest {
    pb::UpdateRegistryRequest {
        registry: Some(harbor(|r| {
            r.id = id.to_string();
            r.secret = format!("{SECRET}-update");
            edit(r);
        })),
        update_mask: (!mask.is_empty()).then(|| prost_types::FieldMask {
            paths: mask.iter().map(|p| p.to_string()).collect(),
        }),
    }
}

fn spec(edit: impl FnOnce(&mut pb::RegistrySpec)) -> pb::TestConnectionRequest {
    let mut s = pb::RegistrySpec {
        provider: Provider::Harbor as i32,
        address: "hostile.example.com".into(),
        username: "robot".into(),
        secret: format!("{SECRET}-spec"),
        ..Default::default()
    };
    edit(&mut s);
    pb::TestConnectionRequest {
        registry_id: String::new(),
        spec: Some(s),
    }
}

/// `msg` with `x-berth-actor` set to the raw bytes `actor`.
fn as_actor<T>(msg: T, actor: &[u8]) -> Request<T> {
    let mut req = Request::new(msg);
    let value = AsciiMetadataValue::try_from(actor).expect("a header value http accepts");
    req.metadata_mut().insert("x-berth-actor", value);
    req
}

fn kb(n: usize, c: char) -> String {
    std::iter::repeat_n(c, n * 1024).collect()
}

/// Checks one outcome; returns a description of what went wrong, if anything.
fn check(want: Want, got: &Result<(), Status>) -> Result<(), String> {
    let err = match (want, got) {
        (Want::Ok, Ok(())) => return Ok(()),
        (_, Ok(())) => return Err(format!("succeeded, wanted {want:?}")),
        (_, Err(e)) => e,
    };
    let leaked = err.message().contains(SECRET)
        || err
            .details()
            .windows(SECRET.len())
            .any(|w| w == SECRET.as_bytes());
    if leaked {
        return Err(format!("error echoes the secret: {err:?}"));
    }
    // berth's statuses (they carry details) must fit a client's 16 KiB
    // header list, however much of the input they quote.
    if !err.details().is_empty() && (err.message().len() > 1100 || err.details().len() > 8192) {
        return Err(format!(
            "status too large: {} bytes of message, {} of details",
            err.message().len(),
            err.details().len()
        ));
    }
    match want {
        Want::Ok => Err(format!("wanted success, got {err:?}")),
        Bad(fields) => {
            if err.code() != Code::InvalidArgument {
                return Err(format!("wanted INVALID_ARGUMENT {fields:?}, got {err:?}"));
            }
            let got = violations(err);
            if got != fields {
                return Err(format!(
                    "wanted violations {fields:?}, got {got:?}: {err:?}"
                ));
            }
            let reason = err.get_details_error_info().map(|i| i.reason);
            if reason.as_deref() != Some("INVALID_ARGUMENT") {
                return Err(format!("ErrorInfo reason is {reason:?}"));
            }
            Ok(())
        }
        BadAll(prefix) => {
            let got = violations(err);
            if err.code() == Code::InvalidArgument
                && !got.is_empty()
                && got.iter().all(|f| f.starts_with(prefix))
            {
                Ok(())
            } else {
                Err(format!(
                    "wanted INVALID_ARGUMENT on {prefix}…, got {got:?}: {err:?}"
                ))
            }
        }
        BadMetadata => {
            if err.code() == Code::InvalidArgument && err.message().contains("x-berth-actor") {
                Ok(())
            } else {
                Err(format!(
                    "wanted INVALID_ARGUMENT about x-berth-actor, got {err:?}"
                ))
            }
        }
        Is(code) if err.code() == code => Ok(()),
        Is(code) => Err(format!("wanted {code:?}, got {err:?}")),
        TooLarge if err.code() == Code::OutOfRange => Ok(()),
        TooLarge => Err(format!("wanted OUT_OF_RANGE, got {err:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_hostile_input_and_keeps_serving() {
    let started = Instant::now();
    let server = TestServer::start(Backend::Sqlite).await;
    let c = Clients::new(server.channel().await);
    // Cases the transport refuses may close their connection (GOAWAY), and
    // a call in flight on it would fail too: each gets a connection of its own.
    let (big_header, big_body, big_token) = (
        Clients::new(server.channel().await),
        Clients::new(server.channel().await),
        Clients::new(server.channel().await),
    );

    // Fixtures: `web` (Harbor, only project web, the default as the first
    // registry) and `all` (Other, anonymous, every project).
    let mut reg = c.reg.clone();
    let web = reg
        .create_registry(create_req(|_| {}))
        .await
        .expect("create web")
        .into_inner();
    let all = reg
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(Registry {
                provider: Provider::Other as i32,
                address: "anon.example.com:5000".into(),
                namespace: "pub".into(),
                scope: Some(Scope {
                    all_projects: true,
                    projects: vec![],
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("create all")
        .into_inner();
    assert!(web.is_default && !all.is_default);
    let token = reg
        .list_registries(pb::ListRegistriesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("first page")
        .into_inner()
        .next_page_token;
    assert!(!token.is_empty());
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };

    let id = web.id.as_str();
    let unknown = uuid::Uuid::now_v7().to_string();
    let unknown = unknown.as_str();
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let long_key = "p".repeat(300);
    let many_keys: Vec<String> = (0..10_000).map(|i| format!("project-{i}")).collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        kb(100, 'A')
    );

    let mut cases: Vec<Case> = Vec::new();
    let mut add = |name: &str, want: Want, call: Call| {
        cases.push(Case {
            name: name.to_string(),
            want,
            call,
        })
    };

    // ---- RegistryService ------------------------------------------------

    // Empty requests.
    add(
        "create: no registry",
        Bad(&["registry"]),
        c.create(pb::CreateRegistryRequest::default()),
    );
    add(
        "create: empty registry",
        Bad(&["registry.provider"]),
        c.create(pb::CreateRegistryRequest {
            registry: Some(Registry::default()),
        }),
    );
    add(
        "get: empty",
        Bad(&["id"]),
        c.get(pb::GetRegistryRequest::default()),
    );
    add(
        "list: empty is fine",
        Want::Ok,
        c.list(pb::ListRegistriesRequest::default()),
    );
    add(
        "update: no registry",
        Bad(&["registry"]),
        c.update(pb::UpdateRegistryRequest::default()),
    );
    add(
        "update: empty registry",
        Bad(&["registry.id"]),
        c.update(pb::UpdateRegistryRequest {
            registry: Some(Registry::default()),
            update_mask: None,
        }),
    );
    add(
        "delete: empty",
        Bad(&["id"]),
        c.delete(pb::DeleteRegistryRequest::default()),
    );
    add(
        "set_default: empty",
        Bad(&["id"]),
        c.set_default(pb::SetDefaultRegistryRequest::default()),
    );
    add(
        "get_default: empty",
        Bad(&["project"]),
        c.get_default(pb::GetDefaultRegistryRequest::default()),
    );

    // Oversized strings.
    add(
        "create: 100 KB namespace",
        Bad(&["registry.namespace"]),
        c.create(create_req(|r| r.namespace = kb(100, 'a'))),
    );
    add(
        "create: 1 MB secret",
        Bad(&["registry.secret"]),
        c.create(create_req(|r| {
            r.secret = format!("{SECRET}{}", kb(1024, 'x'))
        })),
    );
    add(
        "create: 10k project keys",
        Bad(&["registry.scope.projects"]),
        c.create(create_req(|r| {
            r.scope.as_mut().unwrap().projects = many_keys.clone()
        })),
    );
    add(
        "create: 1000 bad project keys",
        BadAll("registry.scope.projects["),
        c.create(create_req(|r| {
            r.scope.as_mut().unwrap().projects = (0..1000).map(|i| format!("-{i}\0")).collect()
        })),
    );
    add(
        "create: 300-char project key",
        Bad(&["registry.scope.projects[0]"]),
        c.create(create_req(|r| {
            r.scope.as_mut().unwrap().projects = vec![long_key.clone()]
        })),
    );
    add(
        "create: 100 KB address",
        Bad(&["registry.address"]),
        c.create(create_req(|r| {
            r.address = format!("{}.example.com", kb(100, 'a'))
        })),
    );
    add(
        "create: 100 KB username",
        Bad(&["registry.username"]),
        c.create(create_req(|r| r.username = kb(100, 'u'))),
    );
    add(
        "create: 100 KB CA PEM",
        Bad(&["registry.tls.ca_cert_pem"]),
        c.create(create_req(|r| {
            r.tls.as_mut().unwrap().ca_cert_pem = pem.clone()
        })),
    );
    add(
        "create: 100 KB region (SWR)",
        Bad(&["registry.region"]),
        c.create(create_req(|r| {
            r.provider = Provider::Swr as i32;
            r.region = kb(100, 'r');
        })),
    );
    add(
        "create: 100 KB repository (Nexus)",
        Bad(&["registry.repository"]),
        c.create(create_req(|r| {
            r.provider = Provider::Nexus as i32;
            r.repository = kb(100, 'r');
        })),
    );
    add(
        "get: 100 KB id",
        Bad(&["id"]),
        c.get(pb::GetRegistryRequest { id: kb(100, 'a') }),
    );
    add(
        "get_default: 300-char project",
        Bad(&["project"]),
        c.get_default(pb::GetDefaultRegistryRequest {
            project: long_key.clone(),
        }),
    );
    add(
        "list: 100 KB project",
        Bad(&["project"]),
        c.list(pb::ListRegistriesRequest {
            project: kb(100, 'p'),
            ..Default::default()
        }),
    );

    // Control characters and NUL bytes.
    add(
        "create: NUL in address",
        Bad(&["registry.address"]),
        c.create(create_req(|r| r.address = "hostile\0.example.com".into())),
    );
    add(
        "create: CRLF header injection in address",
        Bad(&["registry.address"]),
        c.create(create_req(|r| {
            r.address = "hostile.example.com\r\nX-Injected: 1".into()
        })),
    );
    add(
        "create: NUL in namespace",
        Bad(&["registry.namespace"]),
        c.create(create_req(|r| r.namespace = "team\0".into())),
    );
    add(
        "create: NUL in username",
        Bad(&["registry.username"]),
        c.create(create_req(|r| r.username = "ro\0bot".into())),
    );
    add(
        "create: NUL in project key",
        Bad(&["registry.scope.projects[0]"]),
        c.create(create_req(|r| {
            r.scope.as_mut().unwrap().projects = vec!["web\0".into()]
        })),
    );
    add(
        "create: tab in second project key",
        Bad(&["registry.scope.projects[1]"]),
        c.create(create_req(|r| {
            r.scope.as_mut().unwrap().projects = vec!["web".into(), "w\teb".into()]
        })),
    );
    add(
        "create: NUL in region (SWR)",
        Bad(&["registry.region"]),
        c.create(create_req(|r| {
            r.provider = Provider::Swr as i32;
            r.region = "cn-east-3\0".into();
        })),
    );
    add(
        "create: every field bad at once",
        Bad(&[
            "registry.address",
            "registry.namespace",
            "registry.username",
        ]),
        c.create(create_req(|r| {
            r.address = "\0".into();
            r.namespace = "Team".into();
            r.username = "a\u{7}b".into();
        })),
    );
    add(
        "get: NUL after id",
        Bad(&["id"]),
        c.get(pb::GetRegistryRequest {
            id: format!("{id}\0"),
        }),
    );
    add(
        "get: newline after id",
        Bad(&["id"]),
        c.get(pb::GetRegistryRequest {
            id: format!("{id}\n"),
        }),
    );
    add(
        "delete: NUL in id",
        Bad(&["id"]),
        c.delete(pb::DeleteRegistryRequest {
            id: format!("\0{id}"),
            etag: String::new(),
            force: false,
        }),
    );
    add(
        "set_default: NUL in id",
        Bad(&["id"]),
        c.set_default(pb::SetDefaultRegistryRequest {
            id: format!("{id}\0"),
        }),
    );
    add(
        "update: NUL in id",
        Bad(&["registry.id"]),
        c.update(update_req(&format!("{id}\0"), &["namespace"], |_| {})),
    );
    add(
        "list: NUL in project",
        Bad(&["project"]),
        c.list(pb::ListRegistriesRequest {
            project: "web\0".into(),
            ..Default::default()
        }),
    );
    add(
        "get_default: DEL in project",
        Bad(&["project"]),
        c.get_default(pb::GetDefaultRegistryRequest {
            project: "web\u{7f}".into(),
        }),
    );

    // Unicode look-alikes.
    add(
        "create: Cyrillic a in address",
        Bad(&["registry.address"]),
        c.create(create_req(|r| {
            r.address = "host\u{430}ile.example.com".into()
        })),
    );
    add(
        "create: fullwidth address",
        Bad(&["registry.address"]),
        c.create(create_req(|r| {
            r.address = "\u{ff48}ostile.example.com".into()
        })),
    );
    add(
        "create: fullwidth colon before port",
        Bad(&["registry.address"]),
        c.create(create_req(|r| {
            r.address = "hostile.example.com\u{ff1a}5000".into()
        })),
    );
    add(
        "create: Cyrillic e in namespace",
        Bad(&["registry.namespace"]),
        c.create(create_req(|r| r.namespace = "t\u{435}am".into())),
    );
    add(
        "create: Cyrillic e in project key",
        Bad(&["registry.scope.projects[0]"]),
        c.create(create_req(|r| {
            r.scope.as_mut().unwrap().projects = vec!["w\u{435}b".into()]
        })),
    );
    add(
        "create: DEL in username",
        Bad(&["registry.username"]),
        c.create(create_req(|r| r.username = "ro\u{7f}bot".into())),
    );
    add(
        "get: fullwidth digits in id",
        Bad(&["id"]),
        c.get(pb::GetRegistryRequest {
            id: id.replace('0', "\u{ff10}"),
        }),
    );
    add(
        "get_default: fullwidth project",
        Bad(&["project"]),
        c.get_default(pb::GetDefaultRegistryRequest {
            project: "\u{ff57}\u{ff45}\u{ff42}".into(),
        }),
    );

    // Wrong enum values.
    for (name, n) in [
        ("create: provider 999", 999),
        ("create: provider -1", -1),
        ("create: provider i32::MIN", i32::MIN),
        ("create: provider i32::MAX", i32::MAX),
    ] {
        add(
            name,
            Bad(&["registry.provider"]),
            c.create(create_req(|r| r.provider = n)),
        );
    }
    for (name, n) in [
        ("list: provider 999", 999),
        ("list: provider -1", -1),
        ("list: provider i32::MIN", i32::MIN),
    ] {
        add(
            name,
            Bad(&["provider"]),
            c.list(pb::ListRegistriesRequest {
                provider: n,
                ..Default::default()
            }),
        );
    }
    add(
        "update: provider 999",
        Bad(&["registry.provider"]),
        c.update(update_req(id, &["provider"], |r| r.provider = 999)),
    );

    // Page tokens and sizes.
    for (name, t) in [
        ("list: garbage page token", "!!not base64!!".to_string()),
        ("list: base64 of junk", b64("\u{1}\u{2}junk")),
        ("list: token without an id", b64("v1|not-a-uuid|")),
        ("list: token of another version", b64(&format!("v9|{id}||"))),
        ("list: 100 KB page token", kb(100, 'A')),
        ("list: NUL in page token", format!("{token}\0")),
    ] {
        add(
            name,
            Bad(&["page_token"]),
            c.list(pb::ListRegistriesRequest {
                page_token: t,
                ..Default::default()
            }),
        );
    }
    add(
        "list: token reused with a project filter",
        Bad(&["page_token"]),
        c.list(pb::ListRegistriesRequest {
            project: "web".into(),
            page_token: token.clone(),
            ..Default::default()
        }),
    );
    add(
        "list: token reused with a provider filter",
        Bad(&["page_token"]),
        c.list(pb::ListRegistriesRequest {
            provider: Provider::Harbor as i32,
            page_token: token.clone(),
            ..Default::default()
        }),
    );
    add(
        "list: token reused with the same filters",
        Want::Ok,
        c.list(pb::ListRegistriesRequest {
            page_token: token.clone(),
            ..Default::default()
        }),
    );
    for (name, n) in [
        ("list: page size -1", -1),
        ("list: page size i32::MIN", i32::MIN),
    ] {
        add(
            name,
            Bad(&["page_size"]),
            c.list(pb::ListRegistriesRequest {
                page_size: n,
                ..Default::default()
            }),
        );
    }
    add(
        "list: page size i32::MAX is capped",
        Want::Ok,
        c.list(pb::ListRegistriesRequest {
            page_size: i32::MAX,
            ..Default::default()
        }),
    );

    // Update masks.
    for (name, path) in [
        ("update: unknown mask path", "nope"),
        ("update: output-only path etag", "etag"),
        ("update: output-only path id", "id"),
        ("update: output-only path create_time", "create_time"),
        ("update: is_default path", "is_default"),
        ("update: empty mask path", ""),
        ("update: NUL in mask path", "namespace\0"),
        ("update: path below a leaf", "tls.verify.extra"),
        ("update: path in the wrong case", "Namespace"),
        ("update: camelCase path", "tls.caCertPem"),
        ("update: 100 KB mask path", &kb(100, 'p')),
    ] {
        add(
            name,
            Bad(&["update_mask"]),
            c.update(update_req(id, &[path], |_| {})),
        );
    }
    add(
        "update: masked required field emptied",
        Bad(&["registry.namespace"]),
        c.update(update_req(id, &["namespace"], |r| r.namespace.clear())),
    );
    add(
        "update: masked secret cleared where required",
        Bad(&["registry.secret"]),
        c.update(update_req(id, &["secret"], |r| r.secret.clear())),
    );
    add(
        "update: 1 MB secret",
        Bad(&["registry.secret"]),
        c.update(update_req(id, &["secret"], |r| {
            r.secret = format!("{SECRET}{}", kb(1024, 'x'))
        })),
    );
    add(
        "update: 10k project keys",
        Bad(&["registry.scope.projects"]),
        c.update(update_req(id, &["scope"], |r| {
            r.scope.as_mut().unwrap().projects = many_keys.clone()
        })),
    );

    // Etags.
    for (name, etag) in [
        ("update: garbage etag", "garbage"),
        ("update: etag r0", "r0"),
        ("update: negative etag", "r-1"),
        ("update: etag overflowing i64", "r99999999999999999999999"),
        ("update: NUL in etag", "r1\0"),
        ("update: fullwidth digit etag", "r\u{ff11}"),
    ] {
        add(
            name,
            Bad(&["registry.etag"]),
            c.update(update_req(id, &["namespace"], |r| r.etag = etag.into())),
        );
    }
    add(
        "update: stale etag",
        Is(Code::Aborted),
        c.update(update_req(id, &["namespace"], |r| {
            r.namespace = "changed".into();
            r.etag = "r999".into();
        })),
    );
    add(
        "delete: garbage etag",
        Bad(&["etag"]),
        c.delete(pb::DeleteRegistryRequest {
            id: id.into(),
            etag: "W/\"1\"".into(),
            force: false,
        }),
    );
    add(
        "delete: stale etag",
        Is(Code::Aborted),
        c.delete(pb::DeleteRegistryRequest {
            id: id.into(),
            etag: "r999".into(),
            force: false,
        }),
    );

    // Well-formed but unknown ids.
    add(
        "get: the id in uppercase",
        Want::Ok,
        c.get(pb::GetRegistryRequest {
            id: id.to_uppercase(),
        }),
    );
    add(
        "get: the id as a URN",
        Want::Ok,
        c.get(pb::GetRegistryRequest {
            id: format!("urn:uuid:{id}"),
        }),
    );
    add(
        "get: unknown id",
        Is(Code::NotFound),
        c.get(pb::GetRegistryRequest { id: unknown.into() }),
    );
    add(
        "update: unknown id",
        Is(Code::NotFound),
        c.update(update_req(unknown, &["namespace"], |_| {})),
    );
    add(
        "delete: unknown id",
        Is(Code::NotFound),
        c.delete(pb::DeleteRegistryRequest {
            id: unknown.into(),
            etag: String::new(),
            force: false,
        }),
    );
    add(
        "set_default: unknown id",
        Is(Code::NotFound),
        c.set_default(pb::SetDefaultRegistryRequest { id: unknown.into() }),
    );
    add(
        "get_default: project outside the default's scope",
        Is(Code::NotFound),
        c.get_default(pb::GetDefaultRegistryRequest {
            project: "nobody".into(),
        }),
    );

    // Metadata. With authentication off `x-berth-actor` names the caller of
    // every call (writes record it, GetCredentials audits it), so a bad one
    // is refused everywhere, before the handler runs.
    let cafe = "caf\u{e9}".as_bytes();
    let long_actor = "a".repeat(1000);
    add(
        "create: non-ASCII actor",
        BadMetadata,
        c.create(as_actor(create_req(|_| {}), cafe)),
    );
    add(
        "create: 1000-char actor",
        BadMetadata,
        c.create(as_actor(create_req(|_| {}), long_actor.as_bytes())),
    );
    add(
        "create: blank actor",
        BadMetadata,
        c.create(as_actor(create_req(|_| {}), b"   ")),
    );
    add(
        "update: non-ASCII actor",
        BadMetadata,
        c.update(as_actor(
            update_req(id, &["namespace"], |r| r.namespace = "x".into()),
            &[0xff, 0xfe],
        )),
    );
    add(
        "set_default: 1000-char actor",
        BadMetadata,
        c.set_default(as_actor(
            pb::SetDefaultRegistryRequest { id: all.id.clone() },
            long_actor.as_bytes(),
        )),
    );
    add(
        "get: non-ASCII actor",
        BadMetadata,
        c.get(as_actor(pb::GetRegistryRequest { id: id.into() }, cafe)),
    );
    add(
        "delete: non-ASCII actor",
        BadMetadata,
        c.delete(as_actor(
            pb::DeleteRegistryRequest {
                id: unknown.into(),
                etag: String::new(),
                force: false,
            },
            cafe,
        )),
    );

    add(
        "get: 100 KB actor header (hyper refuses it: GOAWAY)",
        Is(Code::ResourceExhausted),
        big_header.get(as_actor(
            pb::GetRegistryRequest { id: id.into() },
            kb(100, 'a').as_bytes(),
        )),
    );

    // Over the 4 MiB decode limit.
    add(
        "create: 5 MB body",
        TooLarge,
        big_body.create(create_req(|r| {
            r.secret = format!("{SECRET}{}", kb(5 * 1024, 'x'))
        })),
    );
    add(
        "list: 5 MB page token",
        TooLarge,
        big_token.list(pb::ListRegistriesRequest {
            page_token: kb(5 * 1024, 'A'),
            ..Default::default()
        }),
    );

    // ---- ImageService ---------------------------------------------------

    // Empty requests.
    add(
        "parse: empty",
        Bad(&["reference"]),
        c.parse(pb::ParseImageReferenceRequest::default()),
    );
    add(
        "resolve: empty",
        Bad(&["project"]),
        c.resolve(pb::ResolveImageRequest::default()),
    );
    add(
        "credentials: empty",
        Bad(&["project"]),
        c.credentials(pb::GetCredentialsRequest::default()),
    );
    add(
        "repositories: empty",
        Bad(&["project"]),
        c.repositories(pb::ListRepositoriesRequest::default()),
    );
    add(
        "tags: empty",
        Bad(&["project"]),
        c.tags(pb::ListTagsRequest::default()),
    );
    add(
        "image: empty",
        Bad(&["project"]),
        c.image(pb::GetImageRequest::default()),
    );
    add(
        "test_connection: empty",
        Bad(&["registry_id"]),
        c.test_connection(pb::TestConnectionRequest::default()),
    );

    // ParseImageReference.
    for (name, r) in [
        ("parse: 100 KB reference", kb(100, 'a')),
        ("parse: 100 KB uppercase reference", kb(100, 'A')),
        ("parse: 100 KB tag", format!("nginx:{}", kb(100, 't'))),
        ("parse: NUL in reference", "nginx\0".to_string()),
        ("parse: newline after tag", "nginx:1.0\n".to_string()),
        ("parse: Cyrillic i in name", "ng\u{456}nx".to_string()),
        ("parse: fullwidth slash", "library\u{ff0f}nginx".to_string()),
        ("parse: bad digest", "nginx@sha256:zz".to_string()),
        ("parse: only a colon", ":".to_string()),
    ] {
        add(
            name,
            Bad(&["reference"]),
            c.parse(pb::ParseImageReferenceRequest { reference: r }),
        );
    }

    // ResolveImage against `web` for project web, broken one field at a time.
    let resolve = |edit: &dyn Fn(&mut pb::ResolveImageRequest)| {
        let mut r = pb::ResolveImageRequest {
            registry_id: id.into(),
            project: "web".into(),
            image: "api".into(),
            tag: "v1".into(),
            ..Default::default()
        };
        edit(&mut r);
        c.resolve(r)
    };
    add("resolve: control check, valid", Want::Ok, resolve(&|_| {}));
    add(
        "resolve: NUL in project",
        Bad(&["project"]),
        resolve(&|r| r.project = "web\0".into()),
    );
    add(
        "resolve: 300-char project",
        Bad(&["project"]),
        resolve(&|r| r.project = "p".repeat(300)),
    );
    add(
        "resolve: NUL in registry id",
        Bad(&["registry_id"]),
        resolve(&|r| r.registry_id.push('\0')),
    );
    add(
        "resolve: fullwidth registry id",
        Bad(&["registry_id"]),
        resolve(&|r| r.registry_id = r.registry_id.replace('0', "\u{ff10}")),
    );
    add(
        "resolve: NUL in image",
        Bad(&["image"]),
        resolve(&|r| r.image = "api\0".into()),
    );
    add(
        "resolve: Cyrillic a in image",
        Bad(&["image"]),
        resolve(&|r| r.image = "\u{430}pi".into()),
    );
    add(
        "resolve: 100 KB image",
        Bad(&["image"]),
        resolve(&|r| r.image = kb(100, 'a')),
    );
    add(
        "resolve: 100 KB uppercase image",
        Bad(&["image"]),
        resolve(&|r| r.image = kb(100, 'A')),
    );
    add(
        "resolve: image with a tag",
        Bad(&["image"]),
        resolve(&|r| r.image = "api:v1".into()),
    );
    add(
        "resolve: no tag or digest",
        Bad(&["tag"]),
        resolve(&|r| r.tag.clear()),
    );
    add(
        "resolve: NUL in tag",
        Bad(&["tag"]),
        resolve(&|r| r.tag = "v1\0".into()),
    );
    add(
        "resolve: 200-char tag",
        Bad(&["tag"]),
        resolve(&|r| r.tag = "t".repeat(200)),
    );
    add(
        "resolve: zero-width space in tag",
        Bad(&["tag"]),
        resolve(&|r| r.tag = "v\u{200b}1".into()),
    );
    add(
        "resolve: NUL in tag template",
        Bad(&["tag"]),
        resolve(&|r| r.tag = "{BRANCH}\0".into()),
    );
    add(
        "resolve: 100 KB unknown template variable",
        Bad(&["tag"]),
        resolve(&|r| r.tag = format!("{{{}}}", kb(100, 'V'))),
    );
    add(
        "resolve: unknown template variable",
        Bad(&["tag"]),
        resolve(&|r| r.tag = "{NOPE}".into()),
    );
    add(
        "resolve: bad digest",
        Bad(&["digest"]),
        resolve(&|r| r.digest = "sha256:zz".into()),
    );
    add(
        "resolve: NUL in digest",
        Bad(&["digest"]),
        resolve(&|r| r.digest = format!("{digest}\0")),
    );
    add(
        "resolve: control characters in a variable are made tag-safe",
        Want::Ok,
        resolve(&|r| {
            r.tag = "{BRANCH}".into();
            r.variables.insert("BRANCH".into(), "a\0b\u{430}".into());
        }),
    );
    add(
        "resolve: 100 KB variable renders an over-long tag",
        Bad(&["tag"]),
        resolve(&|r| {
            r.tag = "{BRANCH}".into();
            r.variables.insert("BRANCH".into(), kb(100, 'b'));
        }),
    );
    add(
        "resolve: project outside the registry's scope",
        Is(Code::PermissionDenied),
        resolve(&|r| r.project = "api".into()),
    );
    add(
        "resolve: unknown registry",
        Is(Code::NotFound),
        resolve(&|r| r.registry_id = unknown.into()),
    );
    add(
        "resolve: default registry outside the project's scope",
        Is(Code::NotFound),
        resolve(&|r| {
            r.registry_id.clear();
            r.project = "api".into();
        }),
    );

    // GetCredentials.
    let creds = |edit: &dyn Fn(&mut pb::GetCredentialsRequest)| {
        let mut r = pb::GetCredentialsRequest {
            registry_id: id.into(),
            project: "web".into(),
            ..Default::default()
        };
        edit(&mut r);
        c.credentials(r)
    };
    add(
        "credentials: NUL in project",
        Bad(&["project"]),
        creds(&|r| r.project = "\0".into()),
    );
    add(
        "credentials: Cyrillic project",
        Bad(&["project"]),
        creds(&|r| r.project = "w\u{435}b".into()),
    );
    add(
        "credentials: NUL in registry id",
        Bad(&["registry_id"]),
        creds(&|r| r.registry_id.push('\0')),
    );
    add(
        "credentials: NUL in kubernetes namespace",
        Bad(&["kubernetes_namespace"]),
        creds(&|r| r.kubernetes_namespace = "apps\0".into()),
    );
    add(
        "credentials: 100 KB kubernetes namespace",
        Bad(&["kubernetes_namespace"]),
        creds(&|r| r.kubernetes_namespace = kb(100, 'k')),
    );
    add(
        "credentials: NUL in image reference",
        Bad(&["image_reference"]),
        creds(&|r| {
            r.registry_id.clear();
            r.image_reference = "hostile.example.com/team/api\0".into();
        }),
    );
    add(
        "credentials: 100 KB uppercase image reference",
        Bad(&["image_reference"]),
        creds(&|r| {
            r.registry_id.clear();
            r.image_reference = format!("hostile.example.com/{}", kb(100, 'A'));
        }),
    );
    add(
        "credentials: project outside the registry's scope",
        Is(Code::PermissionDenied),
        creds(&|r| r.project = "api".into()),
    );
    add(
        "credentials: unknown registry",
        Is(Code::NotFound),
        creds(&|r| r.registry_id = unknown.into()),
    );
    add(
        "credentials: no registry at the reference's address",
        Is(Code::NotFound),
        creds(&|r| {
            r.registry_id.clear();
            r.image_reference = "elsewhere.example.com/team/api:v1".into();
        }),
    );

    // ListRepositories.
    let repos = |edit: &dyn Fn(&mut pb::ListRepositoriesRequest)| {
        let mut r = pb::ListRepositoriesRequest {
            registry_id: id.into(),
            project: "web".into(),
            ..Default::default()
        };
        edit(&mut r);
        c.repositories(r)
    };
    add(
        "repositories: NUL in project",
        Bad(&["project"]),
        repos(&|r| r.project = "web\0".into()),
    );
    add(
        "repositories: NUL in registry id",
        Bad(&["registry_id"]),
        repos(&|r| r.registry_id.push('\0')),
    );
    add(
        "repositories: page size -1",
        Bad(&["page_size"]),
        repos(&|r| r.page_size = -1),
    );
    add(
        "repositories: page size i32::MIN",
        Bad(&["page_size"]),
        repos(&|r| r.page_size = i32::MIN),
    );
    add(
        "repositories: garbage page token",
        Bad(&["page_token"]),
        repos(&|r| r.page_token = "!!not base64!!".into()),
    );
    add(
        "repositories: base64 of junk",
        Bad(&["page_token"]),
        repos(&|r| r.page_token = b64("junk")),
    );
    add(
        "repositories: a ListRegistries token",
        Bad(&["page_token"]),
        repos(&|r| r.page_token = token.clone()),
    );
    add(
        "repositories: project outside the registry's scope",
        Is(Code::PermissionDenied),
        repos(&|r| r.project = "api".into()),
    );
    add(
        "repositories: unknown registry",
        Is(Code::NotFound),
        repos(&|r| r.registry_id = unknown.into()),
    );

    // ListTags.
    let tags = |edit: &dyn Fn(&mut pb::ListTagsRequest)| {
        let mut r = pb::ListTagsRequest {
            registry_id: id.into(),
            project: "web".into(),
            image: "api".into(),
            ..Default::default()
        };
        edit(&mut r);
        c.tags(r)
    };
    add("tags: order 42", Bad(&["order"]), tags(&|r| r.order = 42));
    add("tags: order -1", Bad(&["order"]), tags(&|r| r.order = -1));
    add(
        "tags: NUL in project",
        Bad(&["project"]),
        tags(&|r| r.project = "web\0".into()),
    );
    add(
        "tags: NUL in image",
        Bad(&["image"]),
        tags(&|r| r.image = "api\0".into()),
    );
    add(
        "tags: empty image",
        Bad(&["image"]),
        tags(&|r| r.image.clear()),
    );
    add(
        "tags: Cyrillic image",
        Bad(&["image"]),
        tags(&|r| r.image = "\u{430}pi".into()),
    );
    add(
        "tags: 100 KB invalid regex",
        Bad(&["regex"]),
        tags(&|r| r.regex = format!("({}", kb(100, 'x'))),
    );
    add(
        "tags: invalid regex",
        Bad(&["regex"]),
        tags(&|r| r.regex = "(".into()),
    );
    add(
        "tags: regex over the size limit",
        Bad(&["regex"]),
        tags(&|r| r.regex = "((a{1000}){1000}){1000}".into()),
    );
    add(
        "tags: 300-char glob",
        Bad(&["glob"]),
        tags(&|r| r.glob = "*".repeat(300)),
    );
    add(
        "tags: page size -5",
        Bad(&["page_size"]),
        tags(&|r| r.page_size = -5),
    );
    add(
        "tags: project outside the registry's scope",
        Is(Code::PermissionDenied),
        tags(&|r| r.project = "api".into()),
    );
    add(
        "tags: unknown registry",
        Is(Code::NotFound),
        tags(&|r| r.registry_id = unknown.into()),
    );

    // GetImage.
    let image = |edit: &dyn Fn(&mut pb::GetImageRequest)| {
        let mut r = pb::GetImageRequest {
            registry_id: id.into(),
            project: "web".into(),
            image: "api".into(),
            reference: "v1".into(),
        };
        edit(&mut r);
        c.image(r)
    };
    add(
        "image: NUL in project",
        Bad(&["project"]),
        image(&|r| r.project = "web\0".into()),
    );
    add(
        "image: NUL in registry id",
        Bad(&["registry_id"]),
        image(&|r| r.registry_id.push('\0')),
    );
    add(
        "image: empty image",
        Bad(&["image"]),
        image(&|r| r.image.clear()),
    );
    add(
        "image: NUL in image",
        Bad(&["image"]),
        image(&|r| r.image = "api\0".into()),
    );
    add(
        "image: empty reference",
        Bad(&["reference"]),
        image(&|r| r.reference.clear()),
    );
    add(
        "image: NUL in reference",
        Bad(&["reference"]),
        image(&|r| r.reference = "v1\0".into()),
    );
    add(
        "image: 200-char tag",
        Bad(&["reference"]),
        image(&|r| r.reference = "t".repeat(200)),
    );
    add(
        "image: bad digest",
        Bad(&["reference"]),
        image(&|r| r.reference = "sha256:zz".into()),
    );
    add(
        "image: zero-width space in tag",
        Bad(&["reference"]),
        image(&|r| r.reference = "v\u{200b}1".into()),
    );
    add(
        "image: project outside the registry's scope",
        Is(Code::PermissionDenied),
        image(&|r| r.project = "api".into()),
    );
    add(
        "image: unknown registry",
        Is(Code::NotFound),
        image(&|r| r.registry_id = unknown.into()),
    );

    // TestConnection (only inputs that fail before any connection).
    add(
        "test_connection: NUL in registry id",
        Bad(&["registry_id"]),
        c.test_connection(pb::TestConnectionRequest {
            registry_id: format!("{id}\0"),
            spec: None,
        }),
    );
    add(
        "test_connection: registry id and spec",
        Bad(&["registry_id"]),
        c.test_connection(pb::TestConnectionRequest {
            registry_id: id.into(),
            ..spec(|_| {})
        }),
    );
    add(
        "test_connection: unknown registry",
        Is(Code::NotFound),
        c.test_connection(pb::TestConnectionRequest {
            registry_id: unknown.into(),
            spec: None,
        }),
    );
    add(
        "test_connection: empty spec",
        Bad(&["spec.provider"]),
        c.test_connection(spec(|s| *s = Default::default())),
    );
    add(
        "test_connection: provider 999",
        Bad(&["spec.provider"]),
        c.test_connection(spec(|s| s.provider = 999)),
    );
    add(
        "test_connection: provider i32::MIN",
        Bad(&["spec.provider"]),
        c.test_connection(spec(|s| s.provider = i32::MIN)),
    );
    add(
        "test_connection: NUL in address",
        Bad(&["spec.address"]),
        c.test_connection(spec(|s| s.address = "hostile.example.com\0".into())),
    );
    add(
        "test_connection: Cyrillic address",
        Bad(&["spec.address"]),
        c.test_connection(spec(|s| s.address = "host\u{430}ile.example.com".into())),
    );
    add(
        "test_connection: control character in username",
        Bad(&["spec.username"]),
        c.test_connection(spec(|s| s.username = "ro\u{1b}bot".into())),
    );
    add(
        "test_connection: 1 MB secret",
        Bad(&["spec.secret"]),
        c.test_connection(spec(|s| s.secret = format!("{SECRET}{}", kb(1024, 'x')))),
    );
    add(
        "test_connection: region for a provider without one",
        Bad(&["spec.region"]),
        c.test_connection(spec(|s| s.region = "cn-east-3\0".into())),
    );
    add(
        "test_connection: bad CA PEM",
        Bad(&["spec.tls.ca_cert_pem"]),
        c.test_connection(spec(|s| {
            s.tls = Some(TlsSettings {
                verify: Some(true),
                ca_cert_pem: format!("{SECRET}\0"),
            })
        })),
    );

    // CopyImage and DistributeImage: refused before any stream starts.
    let copy = |edit: &dyn Fn(&mut pb::CopyImageRequest)| {
        let mut r = pb::CopyImageRequest {
            source: Some(pb::ImageSource {
                registry_id: id.into(),
                project: "web".into(),
                image: "api".into(),
                tag: "v1".into(),
                digest: String::new(),
            }),
            target: Some(pb::CopyTarget {
                registry_id: id.into(),
                image: "api-copy".into(),
                ..Default::default()
            }),
        };
        edit(&mut r);
        c.copy(r)
    };
    add(
        "copy: no source",
        Bad(&["source"]),
        copy(&|r| r.source = None),
    );
    add(
        "copy: no target",
        Bad(&["target"]),
        copy(&|r| r.target = None),
    );
    add(
        "copy: NUL in source project",
        Bad(&["source.project"]),
        copy(&|r| {
            if let Some(s) = r.source.as_mut() {
                s.project = "web\0".into();
            }
        }),
    );
    add(
        "copy: 100 KB source image",
        Bad(&["source.image"]),
        copy(&|r| {
            if let Some(s) = r.source.as_mut() {
                s.image = kb(100, 'a');
            }
        }),
    );
    add(
        "copy: neither tag nor digest",
        Bad(&["source.tag"]),
        copy(&|r| {
            if let Some(s) = r.source.as_mut() {
                s.tag.clear();
            }
        }),
    );
    add(
        "copy: digest of an unknown algorithm",
        Bad(&["source.digest"]),
        copy(&|r| {
            if let Some(s) = r.source.as_mut() {
                s.digest = format!("md5:{}", "0".repeat(32));
            }
        }),
    );
    add(
        "copy: NUL in target tag",
        Bad(&["target.tag"]),
        copy(&|r| {
            if let Some(t) = r.target.as_mut() {
                t.tag = "v1\0".into();
            }
        }),
    );
    add(
        "copy: secret-looking target image",
        Bad(&["target.image"]),
        copy(&|r| {
            if let Some(t) = r.target.as_mut() {
                t.image = format!("{SECRET}:x");
            }
        }),
    );
    add(
        "copy: unknown source registry",
        Is(Code::NotFound),
        copy(&|r| {
            if let Some(s) = r.source.as_mut() {
                s.registry_id = unknown.into();
            }
        }),
    );
    add(
        "copy: target project outside the registry's scope",
        Is(Code::PermissionDenied),
        copy(&|r| {
            if let Some(t) = r.target.as_mut() {
                t.project = "api".into();
            }
        }),
    );
    let distribute = |targets: Vec<pb::CopyTarget>| {
        c.distribute(pb::DistributeImageRequest {
            source: Some(pb::ImageSource {
                registry_id: id.into(),
                project: "web".into(),
                image: "api".into(),
                tag: "v1".into(),
                digest: String::new(),
            }),
            targets,
        })
    };
    let to = |image: &str| pb::CopyTarget {
        registry_id: id.into(),
        image: image.into(),
        ..Default::default()
    };
    add(
        "distribute: no targets",
        Bad(&["targets"]),
        distribute(vec![]),
    );
    add(
        "distribute: 17 targets",
        Bad(&["targets"]),
        distribute((0..17).map(|i| to(&format!("copy{i}"))).collect()),
    );
    add(
        "distribute: NUL in the fourth target's image",
        Bad(&["targets[3].image"]),
        distribute(vec![to("a"), to("b"), to("c"), to("d\0")]),
    );

    // Run the battery, one case at a time; each must answer promptly.
    let total = cases.len();
    let mut failures = Vec::new();
    for case in cases {
        let t = Instant::now();
        let got = match tokio::time::timeout(Duration::from_secs(5), case.call).await {
            Ok(got) => got,
            Err(_) => {
                failures.push(format!("{}: no answer within 5 s", case.name));
                continue;
            }
        };
        // The record of what each case got (shown with --no-capture).
        match &got {
            Ok(()) => println!("{}: OK", case.name),
            Err(e) => println!("{}: {:?} {:?}", case.name, e.code(), violations(e)),
        }
        if let Err(why) = check(case.want, &got) {
            failures.push(format!("{}: {why}", case.name));
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{}", case.name);
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Still serving, and nothing the battery sent was stored or changed.
    {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let status = HealthClient::new(server.channel().await)
            .check(HealthCheckRequest {
                service: "berth.v1.ImageService".into(),
            })
            .await
            .expect("health after the battery")
            .into_inner()
            .status;
        assert_eq!(status, 1, "SERVING");
    }
    let mut reg = c.reg.clone();
    let after = reg
        .get_registry(pb::GetRegistryRequest { id: web.id.clone() })
        .await
        .expect("get after the battery")
        .into_inner();
    assert_eq!(after.etag, web.etag, "no hostile update landed");
    assert_eq!(after.namespace, "team");
    assert!(after.is_default, "no hostile SetDefaultRegistry landed");
    let listed = reg
        .list_registries(pb::ListRegistriesRequest::default())
        .await
        .expect("list after the battery")
        .into_inner()
        .registries;
    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [web.id.as_str(), all.id.as_str()],
        "no hostile create or delete landed"
    );

    server.finish().await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}
