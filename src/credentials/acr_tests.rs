//! Tests for `acr.rs`: the V3 signature against the example Alibaba Cloud
//! documents, and the client against a loopback stub that checks the
//! signature with its own code (`cloud_stub.rs`, shared with
//! `tests/cloud_tokens.rs`).

use std::time::Duration;

use chrono::DateTime;
use tokio::net::TcpListener;

use super::*;

use crate::credentials::cloud_stub as stub;
use stub::{Cloud, CloudStub, Mode, Setup};

const AKID: &str = "LTAI5tBerthExample01";
const SECRET: &str = "Xk9/Berth+AccessKeySecretExample";
const REGION: &str = stub::ACR_REGION;
const KEYS: &[(&str, &str)] = &[(AKID, SECRET)];
const INSTANCES: &[(&str, &str)] = &[
    ("team", "cri-team0000000001"),
    ("team-two", "cri-team0000000002"),
];

fn start(mode: Mode) -> CloudStub {
    CloudStub::launch(
        Cloud::Acr,
        Setup {
            mode,
            ..Setup::new(KEYS, INSTANCES)
        },
    )
}

fn client(stub: &CloudStub) -> AcrClient {
    AcrClient::new(reqwest::Client::new(), Some(stub.endpoint.clone()))
}

/// The worked example of Alibaba Cloud's "V3 request structure and
/// signature" page: RunInstances on ECS with two query parameters.
#[test]
fn signature_matches_the_documented_example() {
    let headers: BTreeMap<String, String> = [
        ("host", "ecs.cn-shanghai.aliyuncs.com"),
        ("x-acs-action", "RunInstances"),
        ("x-acs-content-sha256", EMPTY_SHA256),
        ("x-acs-date", "2023-10-26T10:22:32Z"),
        ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
        ("x-acs-version", "2014-05-26"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let query = canonical_query(&[
        ("RegionId", "cn-shanghai"),
        (
            "ImageId",
            "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
        ),
    ]);
    assert_eq!(
        query,
        "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai"
    );
    assert_eq!(cloud::sha256_hex(b""), EMPTY_SHA256);
    let auth = authorization(
        "YourAccessKeyId",
        "YourAccessKeySecret",
        "POST",
        "/",
        &query,
        &headers,
        EMPTY_SHA256,
    );
    assert_eq!(
        auth,
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,\
         SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,\
         Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    );
}

#[test]
fn encoding_follows_rfc_3986() {
    assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
    assert_eq!(percent_encode("a b*c+d/e=f&g"), "a%20b%2Ac%2Bd%2Fe%3Df%26g");
    assert_eq!(percent_encode("é"), "%C3%A9");
    assert_eq!(canonical_uri("/"), "/");
    assert_eq!(canonical_uri("/tokens"), "/tokens");
    assert_eq!(
        canonical_query(&[("b", "x y"), ("a", "1"), ("B", "*")]),
        "B=%2A&a=1&b=x%20y"
    );
}

#[tokio::test]
async fn personal_edition_gets_a_token() {
    let stub = CloudStub::launch(
        Cloud::Acr,
        Setup {
            expires_ms: Some(1_767_225_600_500),
            ..Setup::new(KEYS, INSTANCES)
        },
    );
    let creds = client(&stub)
        .get_authorization_token(
            REGION,
            &Instance::None,
            AKID,
            &Secret::new(format!("{SECRET}\n")),
        )
        .await
        .expect("token");
    assert_eq!(creds.username, stub.username);
    assert_eq!(creds.password.expose(), stub.password);
    assert_eq!(
        creds.expires_at,
        DateTime::from_timestamp(1_767_225_600, 500_000_000)
    );
    assert_eq!((stub.issued(), stub.lookups()), (1, 0));
}

#[tokio::test]
async fn enterprise_edition_by_id_and_by_name() {
    let stub = start(Mode::Verify);
    let acr = client(&stub);
    let secret = Secret::new(SECRET);
    let by_id = Instance::Id("cri-team0000000002".into());
    let creds = acr
        .get_authorization_token(REGION, &by_id, AKID, &secret)
        .await
        .expect("by id");
    assert_eq!(creds.password.expose(), stub.password);
    let ahead = creds.expires_at.expect("expires") - chrono::Utc::now();
    assert!((50..=61).contains(&ahead.num_minutes()), "{ahead}");
    assert_eq!((stub.issued(), stub.lookups()), (1, 0));

    // `team` is also a substring of `team-two`: the exact name wins.
    let by_name = Instance::Name("team".into());
    acr.get_authorization_token(REGION, &by_name, AKID, &secret)
        .await
        .expect("by name");
    assert_eq!((stub.issued(), stub.lookups()), (2, 1));

    let err = acr
        .get_authorization_token(REGION, &Instance::Name("nope".into()), AKID, &secret)
        .await
        .expect_err("unknown name");
    assert!(
        matches!(&err, CredentialError::Rejected(m) if m.contains("nope")),
        "{err}"
    );
    let err = acr
        .get_authorization_token(REGION, &Instance::Id("cri-gone".into()), AKID, &secret)
        .await
        .expect_err("unknown id");
    assert!(
        matches!(&err, CredentialError::Rejected(m) if m.contains("INSTANCE_NOT_EXIST")),
        "{err}"
    );
    assert_eq!(stub.issued(), 2);
}

#[tokio::test]
async fn wrong_keys_are_rejected_without_leaking_them() {
    let stub = start(Mode::Verify);
    let acr = client(&stub);
    let wrong = "Xk9/Berth+WrongSecretExample0000";
    let err = acr
        .get_authorization_token(REGION, &Instance::None, AKID, &Secret::new(wrong))
        .await
        .expect_err("wrong secret");
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, CredentialError::Rejected(_)), "{shown}");
    assert!(shown.contains("SignatureDoesNotMatch"), "{shown}");
    assert!(!shown.contains(wrong) && !shown.contains(SECRET), "{shown}");

    let err = acr
        .get_authorization_token(
            REGION,
            &Instance::None,
            "LTAI5tUnknown",
            &Secret::new(SECRET),
        )
        .await
        .expect_err("unknown key");
    assert!(
        matches!(&err, CredentialError::Rejected(m) if m.contains("InvalidAccessKeyId.NotFound")),
        "{err}"
    );
    assert_eq!((stub.issued(), stub.refused()), (0, 2));
}

/// The stub is no rubber stamp: a request whose signature does not cover
/// what is sent, or that replays a nonce, is refused.
#[tokio::test]
async fn the_stub_refuses_a_broken_signature() {
    let stub = start(Mode::Verify);
    let (base, host) = cloud::base_and_host(&stub.endpoint).expect("base");
    let send = |action: &str, signed_action: &str, nonce: &str| {
        let mut headers = BTreeMap::new();
        headers.insert("host".to_owned(), host.clone());
        headers.insert("x-acs-action".to_owned(), signed_action.to_owned());
        headers.insert("x-acs-content-sha256".to_owned(), EMPTY_SHA256.to_owned());
        headers.insert(
            "x-acs-date".to_owned(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        headers.insert("x-acs-signature-nonce".to_owned(), nonce.to_owned());
        headers.insert("x-acs-version".to_owned(), PERSONAL_VERSION.to_owned());
        let auth = authorization(AKID, SECRET, "GET", "/tokens", "", &headers, EMPTY_SHA256);
        headers.insert("x-acs-action".to_owned(), action.to_owned());
        let mut request = reqwest::Client::new().get(format!("{base}/tokens"));
        for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
            request = request.header(k.as_str(), v.as_str());
        }
        request.header("authorization", auth).send()
    };
    let ok = send(ACTION_TOKEN, ACTION_TOKEN, "nonce-1")
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    let replay = send(ACTION_TOKEN, ACTION_TOKEN, "nonce-1")
        .await
        .expect("send");
    assert_eq!(replay.status(), 400);
    assert!(
        replay
            .text()
            .await
            .expect("body")
            .contains("SignatureNonceUsed")
    );
    let tampered = send(ACTION_TOKEN, ACTION_LIST, "nonce-2")
        .await
        .expect("send");
    assert_eq!(tampered.status(), 400);
    assert!(
        tampered
            .text()
            .await
            .expect("body")
            .contains("SignatureDoesNotMatch")
    );
    assert_eq!((stub.issued(), stub.refused()), (1, 2));
}

#[tokio::test]
async fn outages_are_unavailable_and_nonsense_is_a_bad_response() {
    let secret = Secret::new(SECRET);
    let stub = start(Mode::Status500);
    let err = client(&stub)
        .get_authorization_token(REGION, &Instance::None, AKID, &secret)
        .await
        .expect_err("500");
    assert!(err.is_transient(), "{err}");

    let stub = start(Mode::Garbage);
    let err = client(&stub)
        .get_authorization_token(REGION, &Instance::None, AKID, &secret)
        .await
        .expect_err("garbage");
    assert!(matches!(err, CredentialError::BadResponse(_)), "{err}");

    let stub = start(Mode::Hang);
    let err = client(&stub)
        .with_timeout(Duration::from_millis(300))
        .get_authorization_token(REGION, &Instance::None, AKID, &secret)
        .await
        .expect_err("timeout");
    assert!(
        matches!(&err, CredentialError::Unavailable(m) if m.contains("did not answer")),
        "{err}"
    );

    // Bind then drop: nothing listens on that port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let err = AcrClient::new(reqwest::Client::new(), Some(format!("http://{port}")))
        .get_authorization_token(REGION, &Instance::None, AKID, &secret)
        .await
        .expect_err("refused");
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn invalid_inputs_fail_before_any_call() {
    let acr = AcrClient::new(reqwest::Client::new(), Some("http://127.0.0.1:9".into()));
    for (region, akid, secret) in [
        (REGION, "", SECRET),
        (REGION, "LTAI/x", SECRET),
        (REGION, AKID, " "),
        ("cn.hangzhou", AKID, SECRET),
    ] {
        let err = acr
            .get_authorization_token(region, &Instance::None, akid, &Secret::new(secret))
            .await
            .expect_err("invalid");
        assert!(matches!(err, CredentialError::InvalidKey(_)), "{err}");
    }
    let err = AcrClient::new(reqwest::Client::new(), Some("not a url".into()))
        .get_authorization_token(REGION, &Instance::None, AKID, &Secret::new(SECRET))
        .await
        .expect_err("bad endpoint");
    assert!(matches!(err, CredentialError::InvalidKey(_)), "{err}");
}

#[test]
fn endpoints_and_error_codes() {
    let acr = AcrClient::new(reqwest::Client::new(), None);
    assert_eq!(
        acr.endpoint_url("cn-hangzhou"),
        Ok("https://cr.cn-hangzhou.aliyuncs.com".into())
    );
    let body = br#"{"Code":"Forbidden.RAM","Message":"no cr:GetAuthorizationToken for s3cr3t"}"#;
    assert_eq!(
        classify_error(403, body, "s3cr3t"),
        CredentialError::Rejected(
            "Forbidden.RAM: no cr:GetAuthorizationToken for *** (HTTP 403)".into()
        )
    );
    let roa = br#"{"code":"InvalidAccessKeyId.NotFound","message":"not found"}"#;
    assert!(
        matches!(classify_error(404, roa, "k"), CredentialError::Rejected(m) if m.starts_with("InvalidAccessKeyId"))
    );
    assert!(classify_error(400, br#"{"Code":"Throttling.User"}"#, "k").is_transient());
    assert!(classify_error(503, b"", "k").is_transient());
    assert!(matches!(
        classify_error(302, b"", "k"),
        CredentialError::BadResponse(_)
    ));
}
