//! Logins computed locally from stored keys, with no call to the provider:
//! Huawei SWR long-term logins and Google Artifact Registry JSON keys.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD as B64;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::CredentialError;
use crate::secret::Secret;

/// The docker user name for a Google service-account JSON key given as
/// base64 (the password is then what [`gar_password`] returns).
pub const GAR_USERNAME: &str = "_json_key_base64";

/// Huawei SWR long-term login for an access key pair.
///
/// Returns `(username, password)`: the user name is `<region>@<access key>`
/// and the password is the lowercase hex HMAC-SHA256 of the access key,
/// keyed with the secret key (Huawei's documented "login key").
pub fn swr_login(region: &str, access_key: &str, secret_key: &Secret) -> (String, Secret) {
    let mac = match Hmac::<Sha256>::new_from_slice(secret_key.expose().as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length (long keys are hashed, short ones
        // padded), so `InvalidLength` cannot happen.
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
    };
    let digest = mac.chain_update(access_key.as_bytes()).finalize();
    let password = Secret::new(hex::encode(digest.into_bytes()));
    (format!("{region}@{access_key}"), password)
}

/// Accepts padded or unpadded base64, since keys pasted by hand often lose
/// their trailing `=`.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const B64_URL_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// The two fields docker's `_json_key` login needs. Other fields are
/// ignored, so keys from any tool that writes the Google format pass.
#[derive(Deserialize)]
struct KeyFields {
    client_email: Option<String>,
    private_key: Option<String>,
}

/// The docker password for Google Artifact Registry / GCR's
/// [`GAR_USERNAME`] login: standard base64 (padded, no line breaks) of the
/// service-account key JSON.
///
/// `key` is either the JSON itself or base64 of it (standard or URL-safe,
/// padding and line breaks optional); either way the JSON must be an object
/// with non-empty string fields `client_email` and `private_key`. Errors say
/// what is wrong without echoing any part of the key.
pub fn gar_password(key: &Secret) -> Result<Secret, CredentialError> {
    // Editors and `echo` add BOMs and newlines; neither is part of the key.
    let text = key.expose().trim().trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Err(CredentialError::InvalidKey(
            "the Google service-account key is empty".into(),
        ));
    }
    let json: Zeroizing<Vec<u8>> = if text.starts_with('{') {
        Zeroizing::new(text.as_bytes().to_vec())
    } else {
        // `base64` wraps at 76 columns; drop all whitespace before decoding.
        let compact: Zeroizing<String> =
            Zeroizing::new(text.chars().filter(|c| !c.is_ascii_whitespace()).collect());
        let decoded = B64_LENIENT
            .decode(compact.as_bytes())
            .or_else(|_| B64_URL_LENIENT.decode(compact.as_bytes()))
            .map_err(|_| {
                CredentialError::InvalidKey(
                    "the Google service-account key is neither JSON nor base64".into(),
                )
            })?;
        Zeroizing::new(decoded)
    };
    check_key_json(&json)?;
    Ok(Secret::new(B64.encode(&json[..])))
}

/// Checks the decoded key. serde_json's `Display` is avoided on purpose:
/// type errors quote the offending value, which could be part of the key.
fn check_key_json(json: &[u8]) -> Result<(), CredentialError> {
    let invalid = |what: String| CredentialError::InvalidKey(what);
    let fields: KeyFields = serde_json::from_slice(json).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => invalid(
                "the Google service-account key JSON is not an object with string fields \
                 client_email and private_key"
                    .into(),
            ),
            _ => invalid(format!(
                "the Google service-account key is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            )),
        }
    })?;
    // Wipe the private key copy as soon as it has been checked.
    let private_key = fields.private_key.map(Zeroizing::new);
    if fields.client_email.as_deref().is_none_or(str::is_empty) {
        return Err(invalid(
            "the Google service-account key JSON has no client_email".into(),
        ));
    }
    if private_key.as_deref().is_none_or(|k| k.is_empty()) {
        return Err(invalid(
            "the Google service-account key JSON has no private_key".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swr_login_matches_openssl() {
        // $ printf %s 'AKIDEXAMPLE12345' \
        //     | openssl dgst -sha256 -hmac 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY'
        // SHA2-256(stdin)= 0a578a73e2e8fe727eceae0452d17bb9eacd2349719a00e8972d685063a05264
        let (user, pass) = swr_login(
            "cn-north-4",
            "AKIDEXAMPLE12345",
            &Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        );
        assert_eq!(user, "cn-north-4@AKIDEXAMPLE12345");
        assert_eq!(
            pass.expose(),
            "0a578a73e2e8fe727eceae0452d17bb9eacd2349719a00e8972d685063a05264"
        );
    }

    const KEY_JSON: &str = r#"{"type":"service_account","client_email":"ci@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"}"#;
    // $ printf %s "$KEY_JSON" | base64 -w0
    const KEY_B64: &str = "eyJ0eXBlIjoic2VydmljZV9hY2NvdW50IiwiY2xpZW50X2VtYWlsIjoiY2lAcC5pYW0uZ3NlcnZpY2VhY2NvdW50LmNvbSIsInByaXZhdGVfa2V5IjoiLS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tXG5NSUlFXG4tLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tXG4ifQ==";

    #[test]
    fn gar_accepts_json_and_base64_forms() {
        let from_json = gar_password(&Secret::new(format!("\n{KEY_JSON}\n"))).expect("json");
        assert_eq!(from_json.expose(), KEY_B64);
        let wrapped: String = KEY_B64
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
            .collect();
        for form in [KEY_B64, KEY_B64.trim_end_matches('='), wrapped.as_str()] {
            let got = gar_password(&Secret::new(form)).expect("base64");
            assert_eq!(got.expose(), KEY_B64, "{form:?}");
        }
    }

    #[test]
    fn gar_errors_name_the_problem_without_the_key() {
        let cases = [
            ("", "empty"),
            ("not base64 at all!", "neither JSON nor base64"),
            (
                r#"{"client_email": "x@y", "private_key": "SECRETPART""#,
                "not valid JSON",
            ),
            (r#"{"client_email":"x@y"}"#, "no private_key"),
            (
                r#"{"private_key":"SECRETPART","client_email":""}"#,
                "no client_email",
            ),
            (
                r#"{"private_key":["SECRETPART"],"client_email":"x"}"#,
                "not an object",
            ),
        ];
        for (key, expected) in cases {
            let err = gar_password(&Secret::new(key)).expect_err(key);
            let msg = err.to_string();
            assert!(matches!(err, CredentialError::InvalidKey(_)), "{msg}");
            assert!(msg.contains(expected), "{key:?}: {msg}");
            assert!(!msg.contains("SECRETPART"), "{msg}");
        }
        // base64 of something that is not a key object
        let err = gar_password(&Secret::new(B64.encode("[\"SECRETPART\"]"))).expect_err("array");
        assert!(!err.to_string().contains("SECRETPART"));
    }
}
