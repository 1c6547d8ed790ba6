//! Bearer tokens for deployments without mutual TLS.
//!
//! The tokens file holds one line per token: the identity and the SHA-256
//! of the token, never the token itself:
//!
//! ```text
//! # identity           sha256 of the token
//! workflow-runner      sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b
//! ```
//!
//! `berth token generate --identity NAME` makes a token and prints its
//! line. A plain hash (no salt, no slow KDF) is right here because berth
//! generates the tokens: 256 random bits cannot be guessed or looked up in
//! a table, so a slow hash would only slow down every RPC.

use std::collections::HashMap;

use anyhow::bail;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// Prefix of tokens berth generates, so that secret scanners can spot one.
pub const TOKEN_PREFIX: &str = "berth_";

/// The identities of the configured tokens, by token hash.
#[derive(Debug, Default)]
pub struct TokenTable {
    by_hash: HashMap<[u8; 32], String>,
}

impl TokenTable {
    /// Parses a tokens file.
    pub fn parse(text: &str) -> anyhow::Result<TokenTable> {
        let mut by_hash = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let mut parts = line.split_whitespace();
            let (Some(identity), Some(hash), None) = (parts.next(), parts.next(), parts.next())
            else {
                bail!("line {n}: expected `IDENTITY sha256:HEX`");
            };
            if identity.len() > 256 || identity.chars().any(char::is_control) {
                bail!("line {n}: the identity must be at most 256 printable characters");
            }
            let Some(hex_text) = hash.strip_prefix("sha256:") else {
                bail!("line {n}: the hash must start with `sha256:`");
            };
            let mut digest = [0u8; 32];
            if hex::decode_to_slice(hex_text, &mut digest).is_err() {
                bail!("line {n}: `sha256:` must be followed by 64 hex digits");
            }
            if by_hash.insert(digest, identity.to_string()).is_some() {
                bail!("line {n}: the same token hash appears twice");
            }
        }
        Ok(TokenTable { by_hash })
    }

    /// The identity holding `token`, if any.
    pub fn identify(&self, token: &str) -> Option<&str> {
        self.by_hash.get(&hash(token)).map(String::as_str)
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether no token is configured.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The tokens file line for `identity` holding `token`.
pub fn line_for(identity: &str, token: &str) -> String {
    format!("{identity} sha256:{}", hex::encode(hash(token)))
}

/// A new random token (256 bits).
pub fn generate() -> Secret {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    Secret::new(format!("{TOKEN_PREFIX}{}", B64.encode(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_identify_their_holder() {
        let t = generate();
        assert!(t.expose().starts_with(TOKEN_PREFIX));
        let file = format!(
            "# comment\n\n{}\n{}\n",
            line_for("runner", t.expose()),
            line_for("deployer", "another")
        );
        let table = TokenTable::parse(&file).expect("parses");
        assert_eq!(table.len(), 2);
        assert_eq!(table.identify(t.expose()), Some("runner"));
        assert_eq!(table.identify("another"), Some("deployer"));
        assert_eq!(table.identify("guess"), None);
        assert!(!file.contains(t.expose()), "only the hash is stored");
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, want) in [
            ("runner", "line 1"),
            ("a b c", "line 1"),
            ("\nrunner md5:00", "line 2"),
            ("runner sha256:zz", "64 hex"),
        ] {
            let e = TokenTable::parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        let dup = format!("{}\n{}", line_for("a", "t"), line_for("b", "t"));
        assert!(
            TokenTable::parse(&dup)
                .expect_err("dup")
                .to_string()
                .contains("twice")
        );
    }
}
