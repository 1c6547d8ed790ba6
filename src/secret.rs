//! Secrets: a newtype that never prints its value, and the AEAD that
//! encrypts secrets at rest.
//!
//! Each ciphertext is stored with the id of the key that sealed it, so that
//! keys can rotate: a [`Keyring`] seals with its active key and opens with
//! whichever of its keys the stored id names, and berth refuses to start
//! when stored secrets were sealed by a key it does not have, instead of
//! handing out garbage credentials.

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
    /// One entry of a key list is not a valid key (`at` is e.g. `line 3`).
    #[error(
        "{at}: not a secret key (expected 32 random bytes, base64-encoded, e.g. from `berth generate-key`)"
    )]
    MalformedAt {
        /// Where in the list: `line N` of a key file, `entry N` of a
        /// comma-separated list.
        at: String,
    },
    /// The same key is listed twice.
    #[error("{at}: the same key as {first} (key id {key_id}); list each key once")]
    Duplicate {
        /// Where the repeat is.
        at: String,
        /// Where the key was first listed.
        first: String,
        /// Its id.
        key_id: String,
    },
    /// A key list without a single key.
    #[error("no secret key found (only blank lines or comments)")]
    Empty,
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

/// The keys berth knows: the active one seals new secrets; older ones only
/// open ciphertexts they sealed, chosen by the stored key id, until
/// `berth rotate-key` has re-sealed everything under the active key.
///
/// `Debug` prints key ids only.
pub struct Keyring {
    active: Cipher,
    old: Vec<Cipher>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active.key_id)
            .field(
                "old",
                &self.old.iter().map(|c| &c.key_id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl From<Cipher> for Keyring {
    fn from(active: Cipher) -> Self {
        Keyring {
            active,
            old: Vec::new(),
        }
    }
}

impl Keyring {
    /// Parses a key file: one base64 key per line; blank lines and `#`
    /// comments (whole lines or after a key) are ignored. The first key is
    /// the active one. Errors name the line (never its content).
    pub fn from_lines(text: &str) -> Result<Self, KeyError> {
        Self::from_entries(
            text.lines()
                .enumerate()
                .map(|(n, line)| (format!("line {}", n + 1), strip_comment(line))),
        )
    }

    /// Parses a list of base64 keys separated by commas or whitespace (the
    /// form of BERTH_SECRET_KEY); the first is the active one.
    pub fn from_list(text: &str) -> Result<Self, KeyError> {
        Self::from_entries(
            text.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|e| !e.is_empty())
                .enumerate()
                .map(|(n, e)| (format!("entry {}", n + 1), e)),
        )
    }

    fn from_entries<'a>(
        entries: impl Iterator<Item = (String, &'a str)>,
    ) -> Result<Self, KeyError> {
        let mut keys: Vec<(String, Cipher)> = Vec::new();
        for (at, text) in entries {
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let cipher =
                Cipher::from_base64(text).map_err(|_| KeyError::MalformedAt { at: at.clone() })?;
            if let Some((first, _)) = keys.iter().find(|(_, c)| c.key_id == cipher.key_id) {
                return Err(KeyError::Duplicate {
                    at,
                    first: first.clone(),
                    key_id: cipher.key_id,
                });
            }
            keys.push((at, cipher));
        }
        let mut keys = keys.into_iter().map(|(_, c)| c);
        let active = keys.next().ok_or(KeyError::Empty)?;
        Ok(Keyring {
            active,
            old: keys.collect(),
        })
    }

    /// The key that seals new secrets.
    pub fn active(&self) -> &Cipher {
        &self.active
    }

    /// The id of the active key.
    pub fn active_key_id(&self) -> &str {
        &self.active.key_id
    }

    /// The ids of the older keys, in the order they were listed.
    pub fn old_key_ids(&self) -> impl Iterator<Item = &str> {
        self.old.iter().map(|c| c.key_id.as_str())
    }

    /// The key with this id, if configured.
    pub fn get(&self, key_id: &str) -> Option<&Cipher> {
        std::iter::once(&self.active)
            .chain(&self.old)
            .find(|c| c.key_id == key_id)
    }

    /// Whether a key with this id is configured.
    pub fn contains(&self, key_id: &str) -> bool {
        self.get(key_id).is_some()
    }

    /// Seals `secret` with the active key, bound to `context`.
    pub fn seal(&self, secret: &Secret, context: &str) -> Result<Sealed, KeyError> {
        self.active.seal(secret, context)
    }

    /// Opens a secret with the key its id names.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<Secret, KeyError> {
        self.get(&sealed.key_id)
            .ok_or_else(|| KeyError::UnknownKey(sealed.key_id.clone()))?
            .open(sealed, context)
    }
}

/// A key-file line without its `#` comment (base64 has no `#`).
fn strip_comment(line: &str) -> &str {
    line.split_once('#').map_or(line, |(before, _)| before)
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

    fn key(byte: u8) -> String {
        B64.encode([byte; 32])
    }

    fn id_of(text: &str) -> String {
        Cipher::from_base64(text)
            .expect("valid")
            .key_id()
            .to_owned()
    }

    #[test]
    fn key_file_lines_comments_and_blanks() {
        let text = format!(
            "# berth keys: active first\n\n  {}  # new, 2026-03\r\n\t\n{}\n# {}\n",
            key(2),
            key(1),
            key(9)
        );
        let ring = Keyring::from_lines(&text).expect("parses");
        assert_eq!(ring.active_key_id(), id_of(&key(2)));
        assert_eq!(ring.old_key_ids().collect::<Vec<_>>(), [id_of(&key(1))]);
        assert!(!ring.contains(&id_of(&key(9))), "commented-out key ignored");
    }

    #[test]
    fn key_list_commas_and_whitespace() {
        let ring =
            Keyring::from_list(&format!(" {}, {}\n{} ,", key(3), key(2), key(1))).expect("parses");
        assert_eq!(ring.active_key_id(), id_of(&key(3)));
        assert_eq!(
            ring.old_key_ids().collect::<Vec<_>>(),
            [id_of(&key(2)), id_of(&key(1))]
        );
        // A single key, as before keyrings, still works.
        let one = Keyring::from_list(&format!("{}\n", key(1))).expect("one key");
        assert_eq!(one.old_key_ids().count(), 0);
    }

    #[test]
    fn duplicates_and_malformed_lines_are_named() {
        let dup =
            Keyring::from_lines(&format!("{}\n\n{}\n", key(1), key(1))).expect_err("duplicate");
        assert_eq!(
            dup.to_string(),
            format!(
                "line 3: the same key as line 1 (key id {}); list each key once",
                id_of(&key(1))
            )
        );
        let bad =
            Keyring::from_lines(&format!("# c\n{}\nc2hvcnQ=\n", key(1))).expect_err("short key");
        assert!(
            bad.to_string().starts_with("line 3: not a secret key"),
            "{bad}"
        );
        let bad = Keyring::from_list(&format!("{},not-base64!", key(1))).expect_err("bad");
        assert!(bad.to_string().starts_with("entry 2: "), "{bad}");
        assert!(
            !bad.to_string().contains("not-base64"),
            "the entry is not echoed"
        );
        for empty in ["", "\n# only a comment\n\n"] {
            assert!(matches!(Keyring::from_lines(empty), Err(KeyError::Empty)));
        }
        assert!(matches!(Keyring::from_list(" , "), Err(KeyError::Empty)));
    }

    #[test]
    fn keyring_seals_with_active_and_opens_by_key_id() {
        let old = Keyring::from_lines(&key(1)).expect("old");
        let sealed_old = old.seal(&Secret::new("old-pw"), "reg-1").expect("seals");
        let ring = Keyring::from_lines(&format!("{}\n{}\n", key(2), key(1))).expect("ring");
        // Opens the old ciphertext with the old key, chosen by its id.
        assert_eq!(
            ring.open(&sealed_old, "reg-1").expect("opens").expose(),
            "old-pw"
        );
        assert!(matches!(
            ring.open(&sealed_old, "reg-2"),
            Err(KeyError::Corrupt)
        ));
        // Seals with the active key.
        let sealed_new = ring.seal(&Secret::new("new-pw"), "reg-1").expect("seals");
        assert_eq!(sealed_new.key_id, id_of(&key(2)));
        assert_eq!(
            ring.open(&sealed_new, "reg-1").expect("opens").expose(),
            "new-pw"
        );
        // The old key alone cannot open it, and says which key is missing.
        match old.open(&sealed_new, "reg-1") {
            Err(KeyError::UnknownKey(id)) => assert_eq!(id, id_of(&key(2))),
            other => panic!("expected UnknownKey, got {other:?}"),
        }
        // A ciphertext whose id claims a configured key but that key did
        // not seal it does not open.
        let forged = Sealed {
            key_id: id_of(&key(2)),
            bytes: sealed_old.bytes.clone(),
        };
        assert!(matches!(
            ring.open(&forged, "reg-1"),
            Err(KeyError::Corrupt)
        ));
    }

    #[test]
    fn keyring_debug_shows_ids_only() {
        let ring = Keyring::from_list(&format!("{},{}", key(2), key(1))).expect("ring");
        let dbg = format!("{ring:?}");
        assert!(
            dbg.contains(&id_of(&key(2))) && dbg.contains(&id_of(&key(1))),
            "{dbg}"
        );
        for k in [key(1), key(2)] {
            assert!(!dbg.contains(&k), "{dbg}");
        }
        assert!(!dbg.contains("[1, 1"), "{dbg}");
    }
}
