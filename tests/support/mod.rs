//! Support for tests that need more than a berth server: a real registry,
//! and independent computations to check berth against.
#![allow(dead_code)]

pub mod registry;

/// HMAC-SHA256 of `message` keyed by `key`, lowercase hex, computed by the
/// `openssl` command line (an implementation independent of berth's).
pub fn openssl_hmac_hex(key: &str, message: &str) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(message.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("openssl output");
    let text = String::from_utf8_lossy(&out.stdout);
    text.rsplit(' ').next().expect("digest").trim().to_string()
}
