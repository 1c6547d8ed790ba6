//! A local registry to try berth's ImageService against: Debian's
//! `docker-registry` on a free loopback port with TLS (a CA made on the
//! spot) and htpasswd auth, holding `berth/app` with several tags and a
//! multi-platform index. The same harness the tests use.
//!
//!     cargo run --example dev_registry
//!
//! prints the `export` lines the README's ImageService examples use, then
//! keeps the registry up until Ctrl-C.

#[path = "../tests/support/registry.rs"]
mod registry;

fn main() {
    let reg = registry::TestRegistry::start_blocking(registry::AuthMode::Htpasswd);
    let pushed = reg.push_test_images("berth/app");
    let ca = reg.ca_dir.join("ca.crt");
    println!("export REGISTRY={}", reg.host);
    println!("export REGISTRY_USER={}", reg.username);
    println!("export REGISTRY_PASSWORD={}", reg.password);
    println!("export REGISTRY_CA={}", ca.display());
    println!("export REGISTRY_CA_DIR={}", reg.ca_dir.display());
    eprintln!("pushed berth/app tags: {}", pushed.tags.join(", "));
    eprintln!("registry is up; Ctrl-C stops it");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    // Keep the registry alive until the process is interrupted; the
    // harness' watchdog removes it when the process exits.
    std::mem::forget(tx);
    let _ = rx.recv();
    drop(reg);
}
