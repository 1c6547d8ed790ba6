//! berth over TLS: mutual TLS where the client certificate's SAN is the
//! caller, bearer tokens beside it for callers without a certificate, and a
//! certificate rotated on disk served without a restart. Certificates are
//! made by the test (rcgen).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use berth::pb::{
    self, Provider, Registry, Scope, audit_service_client::AuditServiceClient,
    image_service_client::ImageServiceClient, registry_service_client::RegistryServiceClient,
};
use common::{Backend, TestDb};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request};

const RUNNER: &str = "spiffe://example.org/ns/ci/sa/runner";
const INTRUDER: &str = "spiffe://example.org/ns/ci/sa/intruder";
const ROOT_TOKEN: &str = "berth_tls_test_root_token";
const PASSWORD: &str = "tls-test-registry-password";

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-signed");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "leaf");
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn server(&self) -> Leaf {
        self.leaf(
            vec![SanType::DnsName("localhost".try_into().expect("dns"))],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client(&self, uri: &str) -> Leaf {
        self.leaf(
            vec![
                SanType::DnsName("client.ci".try_into().expect("dns")),
                SanType::URI(uri.try_into().expect("uri")),
            ],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

async fn connect(
    addr: std::net::SocketAddr,
    ca: &str,
    identity: Option<&Leaf>,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(l) = identity {
        tls = tls.identity(Identity::from_pem(&l.cert, &l.key));
    }
    Channel::from_shared(format!("https://127.0.0.1:{}", addr.port()))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

fn with_token<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {ROOT_TOKEN}").parse().expect("ascii"),
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_identities_and_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| dir.path().join(name);
    let ca = Ca::new("berth test CA");
    let server_leaf = ca.server();
    write_atomic(&p("tls.crt"), &server_leaf.cert);
    write_atomic(&p("tls.key"), &server_leaf.key);
    write_atomic(&p("client-ca.crt"), &ca.pem);
    write_atomic(
        &p("tokens"),
        &berth::auth::tokens::line_for("root", ROOT_TOKEN),
    );
    write_atomic(
        &p("policy.toml"),
        &format!(
            "[[grant]]\nidentity = \"root\"\nroles = [\"admin\", \"reader\"]\nprojects = [\"*\"]\n\n\
             [[grant]]\nidentity = \"{RUNNER}\"\nroles = [\"reader\", \"credentials\"]\nprojects = [\"web\"]\n"
        ),
    );
    let db = TestDb::new(Backend::Sqlite).await;
    let mut cfg = common::config(&db.url);
    cfg.tls_cert = Some(p("tls.crt"));
    cfg.tls_key = Some(p("tls.key"));
    cfg.tls_client_ca = Some(p("client-ca.crt"));
    cfg.tokens_file = Some(p("tokens"));
    cfg.policy_file = Some(p("policy.toml"));
    cfg.reload_interval_ms = 100;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(berth::server::run(cfg, listener, async {
        let _ = stop_rx.await;
    }));

    // A caller with a token and no certificate (allowed: tokens are on).
    let deadline = Instant::now() + Duration::from_secs(30);
    let root = loop {
        if let Ok(ch) = connect(addr, &ca.pem, None).await {
            let mut c = RegistryServiceClient::new(ch.clone());
            if c.list_registries(with_token(pb::ListRegistriesRequest::default()))
                .await
                .is_ok()
            {
                break ch;
            }
        }
        assert!(Instant::now() < deadline, "berth did not serve over TLS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reg = RegistryServiceClient::new(root.clone())
        .create_registry(with_token(pb::CreateRegistryRequest {
            registry: Some(Registry {
                provider: Provider::Harbor as i32,
                address: "harbor.example.com".into(),
                namespace: "web".into(),
                username: "robot".into(),
                secret: PASSWORD.into(),
                scope: Some(Scope {
                    all_projects: false,
                    projects: vec!["web".into()],
                }),
                ..Default::default()
            }),
        }))
        .await
        .expect("create over TLS with a token")
        .into_inner();
    assert_eq!(reg.updated_by, "root");

    // The runner is its certificate: no token needed.
    let runner_leaf = ca.client(RUNNER);
    let runner = connect(addr, &ca.pem, Some(&runner_leaf))
        .await
        .expect("mTLS");
    let creds = ImageServiceClient::new(runner.clone())
        .get_credentials(pb::GetCredentialsRequest {
            registry_id: reg.id.clone(),
            project: "web".into(),
            ..Default::default()
        })
        .await
        .expect("credentials for the certificate's identity")
        .into_inner();
    assert_eq!(creds.password, PASSWORD);
    let err = RegistryServiceClient::new(runner.clone())
        .delete_registry(pb::DeleteRegistryRequest {
            id: reg.id.clone(),
            etag: String::new(),
            force: false,
        })
        .await
        .expect_err("a runner is no admin");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains(RUNNER), "{}", err.message());
    let events = AuditServiceClient::new(root.clone())
        .list_audit_events(with_token(pb::ListAuditEventsRequest {
            action: "credentials.issue".into(),
            ..Default::default()
        }))
        .await
        .expect("audit")
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].actor.as_str(), events[0].outcome.as_str()),
        (RUNNER, "granted")
    );

    // A certificate from the right CA for an identity the policy does not
    // name: authenticated, allowed nothing.
    let intruder = connect(addr, &ca.pem, Some(&ca.client(INTRUDER)))
        .await
        .expect("mTLS");
    let err = RegistryServiceClient::new(intruder)
        .list_registries(pb::ListRegistriesRequest::default())
        .await
        .expect_err("not in the policy");
    assert_eq!(err.code(), Code::PermissionDenied);
    // A certificate from another CA: the handshake fails.
    let rogue = Ca::new("rogue CA");
    let refused = match connect(addr, &ca.pem, Some(&rogue.client(RUNNER))).await {
        Err(_) => true,
        Ok(ch) => RegistryServiceClient::new(ch)
            .list_registries(pb::ListRegistriesRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from an unknown CA is refused");
    // No certificate and no token: UNAUTHENTICATED.
    let anonymous = connect(addr, &ca.pem, None).await.expect("TLS");
    let err = RegistryServiceClient::new(anonymous)
        .list_registries(pb::ListRegistriesRequest::default())
        .await
        .expect_err("anonymous");
    assert_eq!(err.code(), Code::Unauthenticated);
    // Plain HTTP/2 on the TLS port gets nowhere.
    let plain = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await;
    if let Ok(ch) = plain {
        assert!(
            RegistryServiceClient::new(ch)
                .list_registries(with_token(pb::ListRegistriesRequest::default()))
                .await
                .is_err()
        );
    }

    // Rotation: a certificate from a new CA is written over the old one;
    // new connections get it without a restart.
    let ca2 = Ca::new("berth test CA 2");
    let leaf2 = ca2.server();
    write_atomic(&p("tls.key"), &leaf2.key);
    write_atomic(&p("tls.crt"), &leaf2.cert);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(ch) = connect(addr, &ca2.pem, None).await
            && RegistryServiceClient::new(ch)
                .list_registries(with_token(pb::ListRegistriesRequest::default()))
                .await
                .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        connect(addr, &ca.pem, None).await.is_err()
            || RegistryServiceClient::new(connect(addr, &ca.pem, None).await.expect("ch"))
                .list_registries(with_token(pb::ListRegistriesRequest::default()))
                .await
                .is_err(),
        "the old certificate is no longer served"
    );

    let _ = stop_tx.send(());
    server.await.expect("join").expect("clean stop");
    db.drop_db().await;
}
