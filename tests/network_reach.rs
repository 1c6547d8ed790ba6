//! Network reach through the gRPC API, on loopback: a registry's HTTP(S)
//! proxy (a tiny forward proxy written here, in front of a real TLS
//! registry) and its request budget (a counting stub registry).

mod common;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth::pb::{self, Provider, ProxySettings, Registry, RequestBudget, Scope, TlsSettings};
use common::{Backend, TestServer, violations};
use support::registry::{AuthMode, TestRegistry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::Channel;

type Images = pb::image_service_client::ImageServiceClient<Channel>;
type Registries = pb::registry_service_client::RegistryServiceClient<Channel>;

const PROXY_USER: &str = "proxy-user";
const PROXY_PASSWORD: &str = "proxy-password-7f3a91c2";

/// Reads an HTTP/1.1 request or response head (up to the blank line).
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.push(byte[0]);
    }
    String::from_utf8(buf).ok()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A forward proxy: HTTP CONNECT tunnels, basic auth required.
struct Proxy {
    url: String,
    /// CONNECTs that passed authentication, with their target.
    tunnels: Arc<std::sync::Mutex<Vec<String>>>,
    /// Requests refused for want of the right Proxy-Authorization.
    refused: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let tunnels = Arc::new(std::sync::Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicUsize::new(0));
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{PROXY_USER}:{PROXY_PASSWORD}"))
        );
        let (t, r) = (tunnels.clone(), refused.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let (t, r, want) = (t.clone(), r.clone(), want.clone());
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut client).await else {
                        return;
                    };
                    let mut first = head.lines().next().unwrap_or("").split(' ');
                    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
                    if header(&head, "proxy-authorization") != Some(want.as_str()) {
                        r.fetch_add(1, Ordering::SeqCst);
                        let _ = client
                            .write_all(
                                b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                                  Proxy-Authenticate: Basic realm=\"test\"\r\n\
                                  Content-Length: 0\r\nConnection: close\r\n\r\n",
                            )
                            .await;
                        return;
                    }
                    if method != "CONNECT" {
                        let _ = client
                            .write_all(
                                b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n",
                            )
                            .await;
                        return;
                    }
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    t.lock().expect("tunnels").push(target.to_string());
                    if client
                        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        Proxy {
            url,
            tunnels,
            refused,
        }
    }

    fn tunnels(&self) -> Vec<String> {
        self.tunnels.lock().expect("tunnels").clone()
    }
}

fn scope() -> Option<Scope> {
    Some(Scope {
        all_projects: false,
        projects: vec!["web".into()],
    })
}

async fn clients(server: &TestServer) -> (Registries, Images) {
    let ch = server.channel().await;
    (Registries::new(ch.clone()), Images::new(ch))
}

fn tags_request(id: &str) -> pb::ListTagsRequest {
    pb::ListTagsRequest {
        registry_id: id.into(),
        project: "web".into(),
        image: "app".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_goes_through_the_registrys_proxy() {
    let reg = TestRegistry::start(AuthMode::Htpasswd).await;
    tokio::task::block_in_place(|| reg.push_test_images("berth/app"));
    let proxy = Proxy::start().await;
    let server = TestServer::start(Backend::Sqlite).await;
    let (mut regs, mut images) = clients(&server).await;

    // A proxy URL with a path names the field.
    let bad = regs
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(Registry {
                provider: Provider::Other as i32,
                address: reg.host.clone(),
                namespace: "berth".into(),
                scope: scope(),
                proxy: Some(ProxySettings {
                    url: format!("{}/path", proxy.url),
                    ..Default::default()
                }),
                budget: Some(RequestBudget {
                    requests_per_second: -1.0,
                    max_concurrent: 0,
                }),
                ..Default::default()
            }),
        })
        .await
        .expect_err("bad proxy");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let mut fields = violations(&bad);
    fields.sort();
    assert_eq!(
        fields,
        ["registry.budget.requests_per_second", "registry.proxy.url"]
    );

    // TestConnection of unsaved settings goes through the proxy too.
    let report = images
        .test_connection(pb::TestConnectionRequest {
            spec: Some(pb::RegistrySpec {
                provider: Provider::Other as i32,
                address: reg.host.clone(),
                username: reg.username.clone(),
                secret: reg.password.clone(),
                tls: Some(TlsSettings {
                    verify: Some(true),
                    ca_cert_pem: reg.ca_pem.clone(),
                }),
                proxy: Some(ProxySettings {
                    url: proxy.url.clone(),
                    username: PROXY_USER.into(),
                    password: PROXY_PASSWORD.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("test connection")
        .into_inner();
    assert!(
        report.reachable && report.credentials_accepted,
        "{report:?}"
    );
    assert!(proxy.tunnels().contains(&reg.host), "{:?}", proxy.tunnels());

    let created = regs
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(Registry {
                provider: Provider::Other as i32,
                address: reg.host.clone(),
                namespace: "berth".into(),
                username: reg.username.clone(),
                secret: reg.password.clone(),
                scope: scope(),
                tls: Some(TlsSettings {
                    verify: Some(true),
                    ca_cert_pem: reg.ca_pem.clone(),
                }),
                proxy: Some(ProxySettings {
                    url: proxy.url.clone(),
                    username: PROXY_USER.into(),
                    password: PROXY_PASSWORD.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("create")
        .into_inner();
    let id = created.id.clone();

    // ListTags goes through the proxy: the proxy saw the CONNECT.
    proxy.tunnels.lock().expect("tunnels").clear();
    let tags = images
        .list_tags(tags_request(&id))
        .await
        .expect("tags through the proxy")
        .into_inner()
        .tags;
    assert!(!tags.is_empty());
    assert!(
        proxy.tunnels().contains(&reg.host),
        "the proxy tunnelled to {}: {:?}",
        reg.host,
        proxy.tunnels()
    );
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 0);

    // GetRegistry says a password is stored, never what it is.
    let got = regs
        .get_registry(pb::GetRegistryRequest { id: id.clone() })
        .await
        .expect("get")
        .into_inner();
    let p = got.proxy.expect("proxy shown");
    assert_eq!(p.url, proxy.url);
    assert_eq!(p.username, PROXY_USER);
    assert!(p.password.is_empty());
    assert!(p.has_password);
    assert!(got.budget.is_none(), "no budget set");
    // Nor does the change feed.
    let mut watch = regs
        .watch_registries(pb::WatchRegistriesRequest {
            initial_state: true,
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("stream")
        .expect("existing")
        .registry
        .expect("registry");
    let p = first.proxy.expect("proxy in the feed");
    assert!(p.password.is_empty() && p.has_password);
    drop(watch);

    // GetCredentials hands the proxy, password included, to callers.
    let creds = images
        .get_credentials(pb::GetCredentialsRequest {
            registry_id: id.clone(),
            project: "web".into(),
            ..Default::default()
        })
        .await
        .expect("credentials")
        .into_inner();
    assert_eq!(creds.proxy_url, proxy.url);
    assert_eq!(creds.proxy_username, PROXY_USER);
    assert_eq!(creds.proxy_password, PROXY_PASSWORD);
    assert!(creds.no_proxy.is_empty());

    // A wrong proxy password fails clearly.
    let updated = regs
        .update_registry(pb::UpdateRegistryRequest {
            registry: Some(Registry {
                id: id.clone(),
                proxy: Some(ProxySettings {
                    password: "wrong-proxy-password-123".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["proxy.password".into()],
            }),
        })
        .await
        .expect("update password")
        .into_inner();
    assert_eq!(
        updated.proxy.as_ref().map(|p| p.url.as_str()),
        Some(proxy.url.as_str())
    );
    let err = images
        .list_tags(tags_request(&id))
        .await
        .expect_err("wrong proxy password");
    assert!(
        proxy.refused.load(Ordering::SeqCst) > 0,
        "the proxy refused"
    );
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("proxy authorization required"),
        "names the proxy: {err:?}"
    );

    // no_proxy: the registry is reached directly.
    let before = proxy.tunnels().len();
    regs.update_registry(pb::UpdateRegistryRequest {
        registry: Some(Registry {
            id: id.clone(),
            proxy: Some(ProxySettings {
                no_proxy: vec!["127.0.0.1".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["proxy.no_proxy".into()],
        }),
    })
    .await
    .expect("update no_proxy");
    images
        .list_tags(tags_request(&id))
        .await
        .expect("tags without the proxy");
    assert_eq!(proxy.tunnels().len(), before, "bypassed the proxy");

    // Removing the proxy drops its password too.
    let cleared = regs
        .update_registry(pb::UpdateRegistryRequest {
            registry: Some(Registry {
                id: id.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["proxy".into()],
            }),
        })
        .await
        .expect("remove proxy")
        .into_inner();
    assert!(cleared.proxy.is_none());
    let creds = images
        .get_credentials(pb::GetCredentialsRequest {
            registry_id: id.clone(),
            project: "web".into(),
            ..Default::default()
        })
        .await
        .expect("credentials")
        .into_inner();
    assert!(creds.proxy_url.is_empty() && creds.proxy_password.is_empty());
    server.finish().await;
}

/// A plain-HTTP registry stub answering tag lists slowly, counting the
/// requests in flight.
struct Stub {
    host: String,
    total: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

impl Stub {
    async fn start(delay: Duration) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
        let host = listener.local_addr().expect("addr").to_string();
        let total = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (t, m) = (total.clone(), max_in_flight.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let (t, m, f) = (t.clone(), m.clone(), in_flight.clone());
                tokio::spawn(async move {
                    // Keep-alive: one request after the other.
                    while let Some(_head) = read_head(&mut s).await {
                        t.fetch_add(1, Ordering::SeqCst);
                        let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                        m.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        let body = r#"{"name":"berth/app","tags":["1.0.0","2.0.0"]}"#;
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        f.fetch_sub(1, Ordering::SeqCst);
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Stub {
            host,
            total,
            max_in_flight,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_caps_concurrency_and_rate() {
    let stub = Stub::start(Duration::from_millis(30)).await;
    let server = TestServer::start(Backend::Sqlite).await;
    let (mut regs, images) = clients(&server).await;
    let rps = 5.0;
    let created = regs
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(Registry {
                provider: Provider::Other as i32,
                address: format!("http://{}", stub.host),
                namespace: "berth".into(),
                scope: scope(),
                budget: Some(RequestBudget {
                    requests_per_second: rps,
                    max_concurrent: 1,
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("create")
        .into_inner();
    let budget = created.budget.expect("budget shown");
    assert_eq!(budget.requests_per_second, rps);
    assert_eq!(budget.max_concurrent, 1);

    let calls = 12;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..calls {
        let mut c = images.clone();
        let id = created.id.clone();
        tasks.push(tokio::spawn(async move {
            c.list_tags(tags_request(&id))
                .await
                .map(|r| r.into_inner().tags)
        }));
    }
    for t in tasks {
        let tags = t.await.expect("task").expect("tags within the budget");
        assert_eq!(tags, ["1.0.0", "2.0.0"]);
    }
    let elapsed = started.elapsed();
    let sent = stub.total.load(Ordering::SeqCst);
    assert!(sent >= calls, "{sent} requests for {calls} calls");
    assert_eq!(
        stub.max_in_flight.load(Ordering::SeqCst),
        1,
        "never more than one request in flight"
    );
    // A burst of one second's worth (5), then 5 per second.
    let floor = Duration::from_secs_f64((sent as f64 - rps) / rps);
    assert!(
        elapsed + Duration::from_millis(50) >= floor,
        "{sent} requests took {elapsed:?}, at least {floor:?} expected"
    );
    server.finish().await;
}

/// The proxy password is sealed like the registry secret, counted by
/// `key_status` and re-sealed by `rotate-key`: after a rotation the new key
/// alone opens both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_password_is_rotated_with_the_secret() {
    use berth::secret::Cipher;
    let key_b = Cipher::generate_base64().as_str().to_owned();
    let id_a = Cipher::from_base64(common::TEST_KEY)
        .expect("key")
        .key_id()
        .to_owned();
    let id_b = Cipher::from_base64(&key_b)
        .expect("key")
        .key_id()
        .to_owned();
    let both = format!("{key_b},{}", common::TEST_KEY);
    let with_keys = |db: &common::TestDb, keys: &str| {
        let mut cfg = common::config(&db.url);
        cfg.secret_key = Some(keys.to_owned());
        cfg
    };

    let server = TestServer::start(Backend::Sqlite).await;
    let (mut regs, _) = clients(&server).await;
    let id = regs
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(Registry {
                provider: Provider::Other as i32,
                address: "registry.example.com".into(),
                namespace: "team".into(),
                username: "robot".into(),
                secret: "registry-secret-123".into(),
                scope: scope(),
                proxy: Some(ProxySettings {
                    url: "http://proxy.example.com:3128".into(),
                    username: PROXY_USER.into(),
                    password: PROXY_PASSWORD.into(),
                    no_proxy: vec![".internal.example".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("create")
        .into_inner()
        .id;
    let db = server.stop().await;

    let status = berth::server::key_status(&with_keys(&db, &both))
        .await
        .expect("status");
    assert_eq!(status.old, vec![(id_a, 2)], "secret and proxy password");
    let done = berth::server::rotate_keys(&with_keys(&db, &both))
        .await
        .expect("rotate");
    assert_eq!(
        done.to_string(),
        format!("rotated 2 secrets to key {id_b}; 0 already current")
    );

    let server = TestServer::start_on_with(db, |cfg| cfg.secret_key = Some(key_b.clone())).await;
    let (_, mut images) = clients(&server).await;
    let creds = images
        .get_credentials(pb::GetCredentialsRequest {
            registry_id: id,
            project: "web".into(),
            ..Default::default()
        })
        .await
        .expect("credentials under the new key alone")
        .into_inner();
    assert_eq!(creds.password, "registry-secret-123");
    assert_eq!(creds.proxy_url, "http://proxy.example.com:3128");
    assert_eq!(creds.proxy_password, PROXY_PASSWORD);
    assert_eq!(creds.no_proxy, [".internal.example"]);
    server.finish().await;
}
