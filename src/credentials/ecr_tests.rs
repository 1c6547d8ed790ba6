//! Tests for `ecr.rs` against a loopback HTTP/1.1 stub that checks SigV4 by
//! hand (HMAC chain written here, not aws-sigv4), as ECR would. The stub
//! lives in `ecr_stub.rs`, shared with the integration test
//! `tests/ecr_api.rs`.

use tokio::net::TcpListener;

use super::*;

// A `#[path]` inside a file that was itself loaded through `#[path]` is
// relative to this file's directory, `src/credentials/`.
#[path = "ecr_stub.rs"]
mod stub;

use stub::{EcrStub, Mode, Setup};

const AKID: &str = "AKIDEXAMPLE12345";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGION: &str = stub::REGION;
const KEYS: &[(&str, &str)] = &[(AKID, SECRET)];

/// A stub accepting [`KEYS`] that answers as `mode`.
fn stub_in(mode: Mode) -> EcrStub {
    EcrStub::launch(Setup {
        mode,
        ..Setup::new(KEYS)
    })
}

fn client(endpoint: String) -> EcrClient {
    EcrClient::new(reqwest::Client::new(), Some(endpoint))
}

#[tokio::test]
async fn right_secret_gets_a_token() {
    // $ printf %s 'AWS:pa:ss' | base64  →  QVdTOnBhOnNz
    let stub = EcrStub::launch(Setup {
        password: "pa:ss".into(),
        expires_at: Some(1767225600.5),
        ..Setup::new(KEYS)
    });
    let ecr = client(stub.endpoint.clone());
    let creds = ecr
        .get_authorization_token(REGION, AKID, &Secret::new(format!("{SECRET}\n")))
        .await
        .expect("token");
    assert_eq!(creds.username, "AWS");
    assert_eq!(creds.password.expose(), "pa:ss", "split at the first ':'");
    assert_eq!(creds.password.expose(), stub.password);
    assert_eq!(
        creds.server_address,
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    );
    let expected = DateTime::from_timestamp(1_767_225_600, 500_000_000);
    assert_eq!(creds.expires_at, expected);
    assert_eq!(stub.issued(), 1);
}

#[tokio::test]
async fn wrong_secret_is_rejected_without_leaking_it() {
    let stub = EcrStub::start(KEYS);
    let ecr = client(stub.endpoint.clone());
    let wrong = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYWRONGKEY0";
    let err = ecr
        .get_authorization_token(REGION, AKID, &Secret::new(wrong))
        .await
        .expect_err("rejected");
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, CredentialError::Rejected(_)), "{shown}");
    assert!(shown.contains("InvalidSignatureException"), "{shown}");
    assert!(!shown.contains(wrong) && !shown.contains(SECRET), "{shown}");
    assert_eq!(stub.issued(), 0);
}

#[tokio::test]
async fn server_errors_are_unavailable() {
    let stub = stub_in(Mode::Status500);
    let ecr = client(stub.endpoint.clone());
    let err = ecr
        .get_authorization_token(REGION, AKID, &Secret::new(SECRET))
        .await
        .expect_err("500");
    assert!(matches!(err, CredentialError::Unavailable(_)), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn garbage_is_a_bad_response() {
    let stub = stub_in(Mode::Garbage);
    let ecr = client(stub.endpoint.clone());
    let err = ecr
        .get_authorization_token(REGION, AKID, &Secret::new(SECRET))
        .await
        .expect_err("garbage");
    assert!(matches!(err, CredentialError::BadResponse(_)), "{err}");
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_unavailable() {
    let stub = stub_in(Mode::Hang);
    let ecr = client(stub.endpoint.clone()).with_timeout(std::time::Duration::from_millis(300));
    let err = ecr
        .get_authorization_token(REGION, AKID, &Secret::new(SECRET))
        .await
        .expect_err("timeout");
    assert!(
        matches!(err, CredentialError::Unavailable(ref m) if m.contains("did not answer")),
        "{err}"
    );

    // Bind then drop: nothing listens on that port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let err = client(format!("http://{port}"))
        .get_authorization_token(REGION, AKID, &Secret::new(SECRET))
        .await
        .expect_err("refused");
    assert!(matches!(err, CredentialError::Unavailable(_)), "{err}");
}

#[test]
fn endpoints_follow_the_partition() {
    let ecr = EcrClient::new(reqwest::Client::new(), None);
    let url = |r| ecr.endpoint_url(r);
    assert_eq!(
        url("us-east-1"),
        Ok("https://api.ecr.us-east-1.amazonaws.com/".into())
    );
    assert_eq!(
        url("cn-north-1"),
        Ok("https://api.ecr.cn-north-1.amazonaws.com.cn/".into())
    );
    assert_eq!(
        url("cn-northwest-1"),
        Ok("https://api.ecr.cn-northwest-1.amazonaws.com.cn/".into())
    );
    for bad in ["", "us-east-1/x", "US-EAST-1", "a b"] {
        assert!(
            matches!(url(bad), Err(CredentialError::InvalidKey(_))),
            "{bad:?}"
        );
    }
    let local = client("http://127.0.0.1:4566/".into());
    assert_eq!(
        local.endpoint_url("us-east-1"),
        Ok("http://127.0.0.1:4566/".into())
    );
}

#[test]
fn fips_is_asked_for_by_the_registry_host() {
    use super::Flavor::{Fips, Standard};
    let of = Flavor::of_registry_host;
    assert_eq!(
        of("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com"),
        Fips
    );
    assert_eq!(
        of("123456789012.DKR.ECR-FIPS.us-gov-west-1.amazonaws.com:443"),
        Fips
    );
    assert_eq!(of("123456789012.dkr.ecr.us-east-1.amazonaws.com"), Standard);
    assert_eq!(
        of("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
        Standard
    );
    assert_eq!(of("registry.example.com"), Standard);
}

#[test]
fn fips_endpoints_exist_only_in_us_and_govcloud() {
    let ecr = EcrClient::new(reqwest::Client::new(), None);
    let fips = |r| ecr.endpoint_url_with(Flavor::Fips, r);
    for region in FIPS_REGIONS {
        assert_eq!(
            fips(region),
            Ok(format!("https://ecr-fips.{region}.amazonaws.com/"))
        );
    }
    assert_eq!(
        ecr.endpoint_url_with(Flavor::Standard, "us-gov-west-1"),
        Ok("https://api.ecr.us-gov-west-1.amazonaws.com/".into())
    );
    for none in ["eu-west-1", "cn-north-1", "ap-southeast-2", "ca-central-1"] {
        let err = fips(none).expect_err(none);
        assert!(
            matches!(&err, CredentialError::InvalidKey(m) if m.contains("no FIPS endpoint")),
            "{none}: {err}"
        );
    }
    // Region names are still checked first.
    assert!(matches!(
        fips("US-EAST-1"),
        Err(CredentialError::InvalidKey(_))
    ));
    // An override (VPC endpoint, emulator) wins over both flavours.
    let local = client("http://127.0.0.1:4566".into());
    assert_eq!(
        local.endpoint_url_with(Flavor::Fips, "eu-west-1"),
        Ok("http://127.0.0.1:4566/".into())
    );
}

#[tokio::test]
async fn fips_flavor_signs_for_the_same_region() {
    // Through an override, the FIPS flavour reaches the stub, which checks
    // the SigV4 scope (region, `ecr`) as for the standard endpoint.
    let stub = EcrStub::start(KEYS);
    let ecr = client(stub.endpoint.clone());
    let creds = ecr
        .get_authorization_token_with(Flavor::Fips, REGION, AKID, &Secret::new(SECRET))
        .await
        .expect("token");
    assert_eq!(creds.username, "AWS");
    assert_eq!(stub.issued(), 1);
}

#[tokio::test]
async fn invalid_inputs_fail_before_any_call() {
    let ecr = client("http://127.0.0.1:9".into());
    for (akid, secret) in [("", SECRET), ("AKID/X", SECRET), (AKID, " ")] {
        let err = ecr
            .get_authorization_token(REGION, akid, &Secret::new(secret))
            .await
            .expect_err("invalid");
        assert!(matches!(err, CredentialError::InvalidKey(_)), "{err}");
    }
    let err = client("not a url".into())
        .get_authorization_token(REGION, AKID, &Secret::new(SECRET))
        .await
        .expect_err("bad endpoint");
    assert!(matches!(err, CredentialError::InvalidKey(_)), "{err}");
}

#[test]
fn error_types_are_classified() {
    let body = br#"{"__type":"com.amazon.coral.service#UnrecognizedClientException","message":"bad token s3cr3t"}"#;
    let err = classify_error(400, None, body, "s3cr3t");
    assert_eq!(
        err,
        CredentialError::Rejected("UnrecognizedClientException: bad token *** (HTTP 400)".into())
    );
    let err = classify_error(403, Some("AccessDeniedException:http://x".into()), b"", "k");
    assert_eq!(
        err,
        CredentialError::Rejected("AccessDeniedException (HTTP 403)".into())
    );
    let throttled = br#"{"__type":"ThrottlingException","Message":"Rate exceeded"}"#;
    assert!(classify_error(400, None, throttled, "k").is_transient());
    assert!(classify_error(429, None, b"", "k").is_transient());
    assert!(matches!(
        classify_error(302, None, b"", "k"),
        CredentialError::BadResponse(_)
    ));
}

/// A server answering every connection with `head` and then `body_len`
/// bytes of `a`, whatever it was asked.
async fn answering(head: &'static str, body_len: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(head.as_bytes()).await;
                let chunk = vec![b'a'; 64 * 1024];
                let mut sent = 0;
                while sent < body_len {
                    let n = chunk.len().min(body_len - sent);
                    if s.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    sent += n;
                }
            });
        }
    });
    format!("http://{addr}")
}

/// The answer is read with the cloud APIs' size limit (1 MiB): a longer
/// declared length is refused before reading, and a body without a length
/// is cut off once it passes the limit, not read whole.
#[tokio::test]
async fn oversized_answers_are_refused() {
    let declared = answering(
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 104857600\r\n\r\n",
        0,
    )
    .await;
    let streamed = answering(
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nConnection: close\r\n\r\n",
        4 * 1024 * 1024,
    )
    .await;
    for (endpoint, bytes) in [(declared, "104857600 bytes"), (streamed, " bytes")] {
        let err = client(endpoint)
            .get_authorization_token(REGION, AKID, &Secret::new(SECRET))
            .await
            .expect_err("too big");
        assert!(
            matches!(&err, CredentialError::BadResponse(m) if m.contains("answered with") && m.contains(bytes)),
            "{err}"
        );
    }
}
