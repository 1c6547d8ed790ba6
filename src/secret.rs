//! Secrets: a newtype that never prints its value, and the AEAD that
//! encrypts secrets at rest.
//!
//! Each ciphertext is stored with the id of the key that sealed it, so that
//! keys can rotate: berth refuses to start when stored secrets were sealed by
//! a key it does not have, instead of handing out garbage credentials.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A password, token or key. `Debug` and `Display` print `***`; the value is
/// wiped from memory on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The value, for the few places that must use it (encryption and the
    /// credential calls).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a key could not be loaded or a ciphertext opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key is not base64 of exactly 32 bytes.
    #[error(
        "the secret key must be 32 random bytes, base64-encoded (e.g. `openssl rand -base64 32`)"
    )]
    Malformed,
    /// A ciphertext was sealed with a key berth does not have.
    #[error("secret was encrypted with key id {0}, which is not configured")]
    UnknownKey(String),
    /// Authentication failed: wrong key or tampered data.
    #[error("secret could not be decrypted (wrong key or corrupted data)")]
    Corrupt,
}

/// A sealed secret as stored: key id beside `nonce || ciphertext+tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Which key sealed it.
    pub key_id: String,
    /// 12-byte nonce followed by the AES-GCM ciphertext and tag.
    pub bytes: Vec<u8>,
}

/// AES-256-GCM with one active key.
pub struct Cipher {
    key_id: String,
    aead: Aes256Gcm,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Cipher {
    /// Builds a cipher from the base64 text of a 32-byte key (whitespace
    /// around it is ignored, so key files may end with a newline).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let raw = Zeroizing::new(B64.decode(text.trim()).map_err(|_| KeyError::Malformed)?);
        if raw.len() != 32 {
            return Err(KeyError::Malformed);
        }
        // The key id is a fingerprint of the key, not a secret: the first 8
        // bytes of SHA-256 over a domain-separated key.
        let mut h = Sha256::new();
        h.update(b"berth key id v1\0");
        h.update(&raw[..]);
        let key_id = hex::encode(&h.finalize()[..8]);
        let aead = Aes256Gcm::new_from_slice(&raw).map_err(|_| KeyError::Malformed)?;
        Ok(Cipher { key_id, aead })
    }

    /// A fresh random key, base64-encoded.
    pub fn generate_base64() -> Zeroizing<String> {
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut raw[..]);
        Zeroizing::new(B64.encode(&raw[..]))
    }

    /// The id stored beside every ciphertext this cipher seals.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Seals `secret`, bound to `context` (the registry id) so a ciphertext
    /// copied to another row does not open.
    pub fn seal(&self, secret: &Secret, context: &str) -> Result<Sealed, KeyError> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            // AES-GCM only fails for plaintexts over 64 GiB; validation
            // limits secrets to 64 KiB, but never store an empty ciphertext.
            .map_err(|_| KeyError::Corrupt)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ct);
        Ok(Sealed {
            key_id: self.key_id.clone(),
            bytes,
        })
    }

    /// Opens a sealed secret.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<Secret, KeyError> {
        if sealed.key_id != self.key_id {
            return Err(KeyError::UnknownKey(sealed.key_id.clone()));
        }
        if sealed.bytes.len() < 12 {
            return Err(KeyError::Corrupt);
        }
        let (nonce, ct) = sealed.bytes.split_at(12);
        let plain = Zeroizing::new(
            self.aead
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ct,
                        aad: context.as_bytes(),
                    },
                )
                .map_err(|_| KeyError::Corrupt)?,
        );
        let text = String::from_utf8(plain.to_vec()).map_err(|_| KeyError::Corrupt)?;
        Ok(Secret::new(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> Cipher {
        Cipher::from_base64(&Cipher::generate_base64()).expect("generated key is valid")
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let c = cipher();
        let sealed = c.seal(&Secret::new("p@ss"), "reg-1").expect("seals");
        assert!(!sealed.bytes.windows(4).any(|w| w == b"p@ss"));
        assert_eq!(c.open(&sealed, "reg-1").expect("opens").expose(), "p@ss");
        assert!(matches!(c.open(&sealed, "reg-2"), Err(KeyError::Corrupt)));
    }

    #[test]
    fn other_key_is_reported_by_id() {
        let sealed = cipher().seal(&Secret::new("x"), "r").expect("seals");
        assert!(matches!(
            cipher().open(&sealed, "r"),
            Err(KeyError::UnknownKey(_))
        ));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for bad in ["", "not base64!", "c2hvcnQ=", &B64.encode([0u8; 31])] {
            assert!(Cipher::from_base64(bad).is_err(), "{bad:?}");
        }
        assert!(Cipher::from_base64(&format!("{}\n", B64.encode([7u8; 32]))).is_ok());
    }
}
