//! Tests for `tcr.rs`: TC3-HMAC-SHA256 against the example Tencent Cloud
//! documents, and the client against a loopback stub that checks the
//! signature with its own code (`cloud_stub.rs`, shared with
//! `tests/cloud_tokens.rs`).

use std::time::Duration;

use chrono::DateTime;

use super::*;

use crate::credentials::cloud_stub as stub;
use stub::{Cloud, CloudStub, Mode, Setup};

const SECRET_ID: &str = "AKIDBerthExample0000000000000001";
const SECRET_KEY: &str = "BerthSecretKeyExample/000000001";
const REGION: &str = stub::TCR_REGION;
const KEYS: &[(&str, &str)] = &[(SECRET_ID, SECRET_KEY)];
const INSTANCES: &[(&str, &str)] = &[("team", "tcr-team0001")];

fn start(mode: Mode) -> CloudStub {
    CloudStub::launch(
        Cloud::Tcr,
        Setup {
            mode,
            ..Setup::new(KEYS, INSTANCES)
        },
    )
}

fn client(stub: &CloudStub) -> TcrClient {
    TcrClient::new(reqwest::Client::new(), Some(stub.endpoint.clone()))
}

/// The worked example of Tencent Cloud's "Signature v3" page:
/// DescribeInstances on CVM at timestamp 1551113065.
#[test]
fn signature_matches_the_documented_example() {
    let payload =
        r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
    assert_eq!(
        cloud::sha256_hex(payload.as_bytes()),
        "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    );
    let at = DateTime::from_timestamp(1_551_113_065, 0).expect("time");
    let headers = [
        ("content-type", "application/json; charset=utf-8".to_owned()),
        ("host", "cvm.tencentcloudapi.com".to_owned()),
    ];
    let auth = sign(
        "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
        "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        "cvm",
        &headers,
        at,
        payload.as_bytes(),
    );
    assert_eq!(
        auth,
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, \
         SignedHeaders=content-type;host, \
         Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    );
}

#[tokio::test]
async fn tokens_by_id_and_by_name() {
    let stub = CloudStub::launch(
        Cloud::Tcr,
        Setup {
            username: "100036950234".into(),
            expires_ms: Some(1_735_880_997_750),
            ..Setup::new(KEYS, INSTANCES)
        },
    );
    let tcr = client(&stub);
    let key = Secret::new(format!(" {SECRET_KEY}\n"));
    let creds = tcr
        .create_instance_token(
            REGION,
            &Instance::Id("tcr-team0001".into()),
            SECRET_ID,
            &key,
        )
        .await
        .expect("by id");
    assert_eq!(creds.username, "100036950234");
    assert_eq!(creds.password.expose(), stub.password);
    assert_eq!(
        creds.expires_at,
        DateTime::from_timestamp(1_735_880_997, 750_000_000)
    );
    assert_eq!((stub.issued(), stub.lookups()), (1, 0));

    tcr.create_instance_token(REGION, &Instance::Name("team".into()), SECRET_ID, &key)
        .await
        .expect("by name");
    assert_eq!((stub.issued(), stub.lookups()), (2, 1));

    let err = tcr
        .create_instance_token(REGION, &Instance::Name("other".into()), SECRET_ID, &key)
        .await
        .expect_err("unknown name");
    assert!(
        matches!(&err, CredentialError::Rejected(m) if m.contains("other")),
        "{err}"
    );
    let err = tcr
        .create_instance_token(REGION, &Instance::Id("tcr-gone".into()), SECRET_ID, &key)
        .await
        .expect_err("unknown id");
    assert!(
        matches!(&err, CredentialError::Rejected(m) if m.contains("ResourceNotFound")),
        "{err}"
    );
    // The region travels in X-TC-Region; the stub serves one.
    let err = tcr
        .create_instance_token(
            "ap-shanghai",
            &Instance::Id("tcr-team0001".into()),
            SECRET_ID,
            &key,
        )
        .await
        .expect_err("other region");
    assert!(matches!(err, CredentialError::Rejected(_)), "{err}");
    assert_eq!(stub.issued(), 2);
}

#[tokio::test]
async fn wrong_keys_are_rejected_without_leaking_them() {
    let stub = start(Mode::Verify);
    let tcr = client(&stub);
    let id = Instance::Id("tcr-team0001".into());
    let wrong = "BerthSecretKeyExample/WRONG0001";
    let err = tcr
        .create_instance_token(REGION, &id, SECRET_ID, &Secret::new(wrong))
        .await
        .expect_err("wrong key");
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, CredentialError::Rejected(_)), "{shown}");
    assert!(shown.contains("AuthFailure.SignatureFailure"), "{shown}");
    assert!(
        !shown.contains(wrong) && !shown.contains(SECRET_KEY),
        "{shown}"
    );

    let err = tcr
        .create_instance_token(REGION, &id, "AKIDUnknown", &Secret::new(SECRET_KEY))
        .await
        .expect_err("unknown id");
    assert!(
        matches!(&err, CredentialError::Rejected(m) if m.contains("AuthFailure.SecretIdNotFound")),
        "{err}"
    );
    assert_eq!((stub.issued(), stub.refused()), (0, 2));
}

/// The stub is no rubber stamp: a body or action other than the one
/// signed is refused.
#[tokio::test]
async fn the_stub_refuses_a_broken_signature() {
    let stub = start(Mode::Verify);
    let (base, host) = cloud::base_and_host(&stub.endpoint).expect("base");
    let send = |signed_body: &str, body: &str, signed_action: &str| {
        let now = chrono::Utc::now();
        let auth = authorization(
            SECRET_ID,
            SECRET_KEY,
            &host,
            signed_action,
            now,
            signed_body.as_bytes(),
        );
        reqwest::Client::new()
            .post(format!("{base}/"))
            .header("content-type", CONTENT_TYPE)
            .header("x-tc-action", "CreateInstanceToken")
            .header("x-tc-version", VERSION)
            .header("x-tc-timestamp", now.timestamp().to_string())
            .header("x-tc-region", REGION)
            .header("authorization", auth)
            .body(body.to_owned())
            .send()
    };
    let body = r#"{"RegistryId":"tcr-team0001","TokenType":"temp"}"#;
    let text = |r: reqwest::Response| async move { r.text().await.expect("body") };
    let ok = text(send(body, body, "CreateInstanceToken").await.expect("send")).await;
    assert!(ok.contains(&stub.password), "{ok}");
    let other_body = r#"{"RegistryId":"tcr-team0002","TokenType":"temp"}"#;
    let tampered = text(
        send(body, other_body, "CreateInstanceToken")
            .await
            .expect("send"),
    )
    .await;
    assert!(
        tampered.contains("AuthFailure.SignatureFailure"),
        "{tampered}"
    );
    let other_action = text(send(body, body, "DescribeInstances").await.expect("send")).await;
    assert!(
        other_action.contains("AuthFailure.SignatureFailure"),
        "{other_action}"
    );
    assert_eq!((stub.issued(), stub.refused()), (1, 2));
}

#[tokio::test]
async fn outages_are_unavailable_and_nonsense_is_a_bad_response() {
    let key = Secret::new(SECRET_KEY);
    let id = Instance::Id("tcr-team0001".into());
    let stub = start(Mode::Status500);
    let err = client(&stub)
        .create_instance_token(REGION, &id, SECRET_ID, &key)
        .await
        .expect_err("500");
    assert!(err.is_transient(), "{err}");

    let stub = start(Mode::Garbage);
    let err = client(&stub)
        .create_instance_token(REGION, &id, SECRET_ID, &key)
        .await
        .expect_err("garbage");
    assert!(matches!(err, CredentialError::BadResponse(_)), "{err}");

    let stub = start(Mode::Hang);
    let err = client(&stub)
        .with_timeout(Duration::from_millis(300))
        .create_instance_token(REGION, &id, SECRET_ID, &key)
        .await
        .expect_err("timeout");
    assert!(
        matches!(&err, CredentialError::Unavailable(m) if m.contains("did not answer")),
        "{err}"
    );
}

#[tokio::test]
async fn invalid_inputs_fail_before_any_call() {
    let tcr = TcrClient::new(reqwest::Client::new(), Some("http://127.0.0.1:9".into()));
    let id = Instance::Id("tcr-team0001".into());
    for (region, instance, secret_id, key) in [
        (REGION, &id, "", SECRET_KEY),
        (REGION, &id, "AKID/x", SECRET_KEY),
        (REGION, &id, SECRET_ID, ""),
        ("ap guangzhou", &id, SECRET_ID, SECRET_KEY),
        (REGION, &Instance::None, SECRET_ID, SECRET_KEY),
    ] {
        let err = tcr
            .create_instance_token(region, instance, secret_id, &Secret::new(key))
            .await
            .expect_err("invalid");
        assert!(matches!(err, CredentialError::InvalidKey(_)), "{err}");
    }
}

#[test]
fn error_codes_are_classified() {
    let e = |code: &str, message: &str| TcError {
        code: code.into(),
        message: message.into(),
    };
    assert_eq!(
        classify_error(
            "TCR x",
            &e("AuthFailure.SignatureFailure", "bad s3cr3t"),
            "s3cr3t"
        ),
        CredentialError::Rejected("TCR x: AuthFailure.SignatureFailure: bad ***".into())
    );
    assert!(classify_error("x", &e("RequestLimitExceeded", ""), "k").is_transient());
    assert!(classify_error("x", &e("InternalError.ErrorConflict", ""), "k").is_transient());
    assert!(!classify_error("x", &e("UnauthorizedOperation", ""), "k").is_transient());
}
