//! A real container registry for integration tests: Debian's
//! `docker-registry` (CNCF distribution 2.8) on 127.0.0.1 over TLS, with
//! either htpasswd (Basic) auth or Docker token (Bearer) auth served by a
//! token server inside the test process, plus a set of test images pushed
//! with skopeo.
//!
//! Needs on the machine: `docker-registry`, `skopeo`, `openssl`, `htpasswd`
//! (apache2-utils), `curl` and `gzip`.
//!
//! ```ignore
//! mod support;
//! use support::registry::{AuthMode, TestRegistry};
//!
//! let reg = TestRegistry::start(AuthMode::Token).await;
//! let pushed = reg.push_test_images("team/app"); // blocking (skopeo)
//! ```
//!
//! Everything is torn down on drop: the registry process is killed (and, if
//! the test binary dies without dropping — e.g. a registry kept in a
//! `static` — a watchdog kills it when the binary exits), the token server
//! stops, the temporary directory goes.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The registry binary; override with `BERTH_TEST_REGISTRY_BIN`.
pub const DEFAULT_REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// The user every test registry accepts.
pub const USERNAME: &str = "berth";
/// `service` of the token auth (the JWT audience).
pub const TOKEN_SERVICE: &str = "berth-test-registry";
/// `issuer` of the token auth (the JWT `iss`).
pub const TOKEN_ISSUER: &str = "berth-test-issuer";
/// Realm of the htpasswd (Basic) challenge.
pub const BASIC_REALM: &str = "berth-test-registry";
/// Single-platform tags pushed by [`TestRegistry::push_test_images`], oldest
/// `created` first.
pub const TEST_TAGS: [&str; 6] = [
    "1.0.0",
    "1.2.0",
    "1.10.0",
    "2.0.0-rc.1",
    "latest",
    "feature-login",
];
/// Tag of the multi-platform OCI index (linux/amd64 + linux/arm64/v8).
pub const INDEX_TAG: &str = "multi";

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 4;
const TOKEN_LIFETIME_SECS: i64 = 300;
/// `created` of the first test image: 2024-01-01T00:00:00Z; each next image is
/// one day later.
const BASE_CREATED: i64 = 1_704_067_200;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// How the registry authenticates clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// `auth.htpasswd`: a `Basic realm="…"` challenge, bcrypt htpasswd file.
    Htpasswd,
    /// `auth.token`: a `Bearer realm="…",service="…"` challenge; the realm is
    /// a token server run by the test process (plain HTTP on 127.0.0.1).
    Token,
}

/// A running registry. Dropping it stops everything.
pub struct TestRegistry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    pub username: String,
    /// Random per registry.
    pub password: String,
    /// PEM of the CA that signed the registry's certificate (and the token
    /// signing certificate).
    pub ca_pem: String,
    /// A directory holding only `ca.crt` (for `skopeo --cert-dir`).
    pub ca_dir: PathBuf,
    /// Token mode: `http://127.0.0.1:PORT2/token`.
    pub token_realm: Option<String>,
    pub mode: AuthMode,
    // Fields drop in this order: registry first, then the token server, then
    // the files.
    process: RegistryProcess,
    token_server: Option<TokenServer>,
    log_path: PathBuf,
    dir: tempfile::TempDir,
}

/// What [`TestRegistry::push_test_images`] pushed.
#[derive(Debug, Clone)]
pub struct PushedImages {
    /// [`TEST_TAGS`] then [`INDEX_TAG`].
    pub tags: Vec<String>,
    /// tag -> manifest digest (`sha256:…`) as the registry stores it (for
    /// [`INDEX_TAG`], the digest of the index).
    pub digests: HashMap<String, String>,
    /// The tag of the multi-platform index ([`INDEX_TAG`]).
    pub index_tag: String,
    /// Platform (`linux/amd64`, `linux/arm64/v8`) -> digest of the index's
    /// per-platform manifest.
    pub platform_digests: HashMap<String, String>,
    /// tag -> the image config's `created` (RFC 3339, strictly increasing in
    /// [`TEST_TAGS`] order; the index's platforms share the last one).
    pub created: HashMap<String, String>,
    /// The repository pushed to.
    pub repo: String,
}

/// One request the token server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Whether the credentials were right (a token was issued).
    pub authorized: bool,
    pub service: Option<String>,
    /// The `scope` parameters, e.g. `repository:team/app:pull,push`.
    pub scopes: Vec<String>,
}

impl TestRegistry {
    /// Starts a registry; panics with a clear message (including the
    /// registry's log) on failure. Needs a tokio runtime (any flavour): the
    /// blocking work runs on `spawn_blocking`.
    pub async fn start(mode: AuthMode) -> TestRegistry {
        match tokio::task::spawn_blocking(move || Self::start_blocking(mode)).await {
            Ok(registry) => registry,
            Err(e) => match e.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(e) => panic!("test registry: start task failed: {e}"),
            },
        }
    }

    /// [`TestRegistry::start`] without a runtime (e.g. for a registry shared
    /// through a `static`).
    pub fn start_blocking(mode: AuthMode) -> TestRegistry {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-registry-")
            .tempdir()
            .expect("test registry: create a temporary directory");
        let root = dir.path().to_path_buf();
        let tls = make_tls(&root);
        let ca_pem = fs::read_to_string(&tls.ca_crt).expect("test registry: read ca.crt");
        let password = random_hex(12);

        let (auth_yaml, token_server) = match mode {
            AuthMode::Htpasswd => {
                let line = run(
                    tool("htpasswd").args(["-Bbn", USERNAME, &password]),
                    "htpasswd -Bbn (apt-get install apache2-utils)",
                );
                let htpasswd = root.join("htpasswd");
                fs::write(
                    &htpasswd,
                    String::from_utf8_lossy(&line).trim_end().to_string() + "\n",
                )
                .expect("test registry: write htpasswd");
                let yaml = format!(
                    "auth:\n  htpasswd:\n    realm: {}\n    path: {}\n",
                    yaml_str(BASIC_REALM),
                    yaml_path(&htpasswd)
                );
                (yaml, None)
            }
            AuthMode::Token => {
                let signer = TokenSigner {
                    key: tls.token_key.clone(),
                    x5c: pem_body(
                        &fs::read_to_string(&tls.token_crt).expect("test registry: read token.crt"),
                    ),
                };
                let server = TokenServer::start(signer, USERNAME.to_string(), password.clone());
                let yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    yaml_str(&server.realm()),
                    yaml_str(TOKEN_SERVICE),
                    yaml_str(TOKEN_ISSUER),
                    yaml_path(&tls.ca_crt)
                );
                (yaml, Some(server))
            }
        };

        let registry_bin = std::env::var("BERTH_TEST_REGISTRY_BIN")
            .unwrap_or_else(|_| DEFAULT_REGISTRY_BIN.to_string());
        let storage = root.join("storage");
        fs::create_dir_all(&storage).expect("test registry: create the storage directory");
        let config = root.join("config.yml");
        let log_path = root.join("registry.log");

        let mut last_log = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let yaml = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {addr}\n  secret: {secret}\n  tls:\n    certificate: {cert}\n    key: {key}\n\
                 {auth_yaml}",
                storage = yaml_path(&storage),
                addr = yaml_str(&host),
                secret = yaml_str(&random_hex(16)),
                cert = yaml_path(&tls.server_crt),
                key = yaml_path(&tls.server_key),
            );
            fs::write(&config, yaml).expect("test registry: write config.yml");

            let process = RegistryProcess::spawn(&registry_bin, &config, &log_path, &root);
            match wait_ready(process, &host, &tls.ca_crt, &log_path) {
                Ok(process) => {
                    return TestRegistry {
                        host,
                        username: USERNAME.to_string(),
                        password,
                        ca_pem,
                        ca_dir: tls.ca_dir,
                        token_realm: token_server.as_ref().map(TokenServer::realm),
                        mode,
                        process,
                        token_server,
                        log_path,
                        dir,
                    };
                }
                Err(log) if log.contains("address already in use") && attempt < START_ATTEMPTS => {
                    last_log = log;
                }
                Err(log) => panic!(
                    "test registry: `{registry_bin} serve {}` exited before answering on https://{host}/v2/ \
                     (attempt {attempt}); registry log:\n{log}",
                    config.display()
                ),
            }
        }
        panic!(
            "test registry: no free port after {START_ATTEMPTS} attempts; last registry log:\n{last_log}"
        )
    }

    /// `user:pass`, for `skopeo --creds`.
    pub fn skopeo_creds(&self) -> String {
        format!("{}:{}", self.username, self.password)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.host)
    }

    /// The registry's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Token mode: every request the token server answered, oldest first.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.token_server
            .as_ref()
            .map(|s| {
                s.requests
                    .lock()
                    .expect("test registry: token request log poisoned")
                    .clone()
            })
            .unwrap_or_default()
    }

    /// Builds an OCI layout with [`TEST_TAGS`] (one distinct tiny layer each)
    /// and the multi-platform index [`INDEX_TAG`], and pushes every tag to
    /// `repo` with skopeo, keeping the layout's manifest digests. Blocking
    /// (several seconds at most); fine to call straight from a tokio test,
    /// the token server runs on its own thread.
    pub fn push_test_images(&self, repo: &str) -> PushedImages {
        let work = tempfile::Builder::new()
            .prefix("berth-test-images-")
            .tempdir()
            .expect("test registry: create a temporary directory for the image layout");
        let layout = work.path().join("layout");
        let mut oci = OciLayout::new(&layout);

        let mut tags = Vec::new();
        let mut expected = HashMap::new();
        let mut created = HashMap::new();
        for (i, tag) in TEST_TAGS.iter().enumerate() {
            let when = rfc3339(BASE_CREATED + i as i64 * 86_400);
            let manifest = oci.image(repo, tag, ("amd64", None), &when);
            oci.tag(manifest.clone(), tag);
            tags.push(tag.to_string());
            expected.insert(tag.to_string(), manifest.digest);
            created.insert(tag.to_string(), when);
        }

        let when = rfc3339(BASE_CREATED + TEST_TAGS.len() as i64 * 86_400);
        let mut platform_digests = HashMap::new();
        let mut entries = Vec::new();
        for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
            let manifest = oci.image(repo, INDEX_TAG, (arch, variant), &when);
            let mut platform = json!({"architecture": arch, "os": "linux"});
            let mut name = format!("linux/{arch}");
            if let Some(v) = variant {
                platform["variant"] = json!(v);
                name = format!("{name}/{v}");
            }
            platform_digests.insert(name, manifest.digest.clone());
            let mut entry = manifest.to_json();
            entry["platform"] = platform;
            entries.push(entry);
        }
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        let index = oci.blob(OCI_INDEX, &to_bytes(&index));
        oci.tag(index.clone(), INDEX_TAG);
        tags.push(INDEX_TAG.to_string());
        expected.insert(INDEX_TAG.to_string(), index.digest);
        created.insert(INDEX_TAG.to_string(), when);
        oci.finish();

        let mut digests = HashMap::new();
        for tag in &tags {
            let pushed = self.skopeo_push(&layout, work.path(), repo, tag, tag == INDEX_TAG);
            assert_eq!(
                pushed, expected[tag],
                "test registry: skopeo pushed {repo}:{tag} with another manifest digest than the layout's"
            );
            digests.insert(tag.clone(), pushed);
        }

        PushedImages {
            tags,
            digests,
            index_tag: INDEX_TAG.to_string(),
            platform_digests,
            created,
            repo: repo.to_string(),
        }
    }

    /// Builds a single-platform image of `layers` uncompressed tar layers,
    /// each one file of `layer_bytes` random (incompressible) bytes, and
    /// pushes it to `repo:tag` with skopeo. The layers are written to disk
    /// a MiB at a time, never held whole in this process's memory (tests
    /// measure it). Blocking.
    pub fn push_large_image(
        &self,
        repo: &str,
        tag: &str,
        layers: usize,
        layer_bytes: usize,
    ) -> LargeImage {
        let work = tempfile::Builder::new()
            .prefix("berth-test-large-image-")
            .tempdir()
            .expect("test registry: create a temporary directory for the image layout");
        let layout = work.path().join("layout");
        let mut oci = OciLayout::new(&layout);
        let when = rfc3339(BASE_CREATED);
        let mut descriptors = Vec::new();
        for i in 0..layers {
            descriptors.push(oci.random_tar_layer(&format!("layer-{i}.bin"), layer_bytes));
        }
        let diff_ids: Vec<&str> = descriptors.iter().map(|d| d.digest.as_str()).collect();
        let config = json!({
            "created": when,
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"org.opencontainers.image.version": tag}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": when, "created_by": "berth test harness"}],
        });
        let config = oci.blob(OCI_CONFIG, &to_bytes(&config));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.to_json(),
            "layers": descriptors.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
        });
        let manifest = oci.blob(OCI_MANIFEST, &to_bytes(&manifest));
        oci.tag(manifest.clone(), tag);
        oci.finish();
        let pushed = self.skopeo_push(&layout, work.path(), repo, tag, false);
        assert_eq!(
            pushed, manifest.digest,
            "test registry: skopeo pushed {repo}:{tag} with another manifest digest than the layout's"
        );
        LargeImage {
            digest: pushed,
            blobs: std::iter::once(&config)
                .chain(descriptors.iter())
                .map(|d| (d.digest.clone(), d.size as u64))
                .collect(),
        }
    }

    /// `skopeo copy --preserve-digests` of `oci:<layout>:<tag>` to
    /// `repo:tag` (`--all` for an index); the pushed manifest digest.
    fn skopeo_push(&self, layout: &Path, work: &Path, repo: &str, tag: &str, all: bool) -> String {
        let digest_file = work.join(format!("digest-{tag}"));
        let mut cmd = tool("skopeo");
        cmd.args([
            "--insecure-policy",
            "copy",
            "--preserve-digests",
            "--retry-times",
            "2",
        ]);
        if all {
            cmd.arg("--all");
        }
        cmd.arg("--dest-creds")
            .arg(self.skopeo_creds())
            .arg("--dest-cert-dir")
            .arg(&self.ca_dir)
            .arg("--digestfile")
            .arg(&digest_file)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.host));
        let out = cmd
            .output()
            .expect("test registry: run skopeo (apt-get install skopeo)");
        if !out.status.success() {
            panic!(
                "test registry: skopeo copy of {repo}:{tag} failed ({}):\n{}\n{}\nregistry log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        let pushed =
            fs::read_to_string(&digest_file).expect("test registry: read skopeo --digestfile");
        pushed.trim().to_string()
    }

    /// The raw manifest of `repo` at `reference` (a tag, or `sha256:…`),
    /// read by skopeo (`inspect --raw`), an implementation independent of
    /// berth's; `Err(stderr)` if skopeo cannot read it.
    pub fn skopeo_raw_manifest(&self, repo: &str, reference: &str) -> Result<Vec<u8>, String> {
        let sep = if reference.contains(':') { '@' } else { ':' };
        let out = tool("skopeo")
            .args(["inspect", "--raw", "--retry-times", "1", "--creds"])
            .arg(self.skopeo_creds())
            .arg("--cert-dir")
            .arg(&self.ca_dir)
            .arg(format!("docker://{}/{repo}{sep}{reference}", self.host))
            .output()
            .expect("test registry: run skopeo (apt-get install skopeo)");
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

/// What [`TestRegistry::push_large_image`] pushed.
#[derive(Debug, Clone)]
pub struct LargeImage {
    /// The manifest digest.
    pub digest: String,
    /// (digest, size) of the config and then each layer.
    pub blobs: Vec<(String, u64)>,
}

// ---------------------------------------------------------------------------
// The registry process

/// `sh` runs the registry in the background and waits for it; a watchdog
/// subshell blocks on our stdin pipe and kills the registry when a line comes
/// (drop) or the pipe closes without one (the test binary exited without
/// dropping, e.g. a registry kept in a `static`): then it also removes the
/// temporary directory ($3), which no `TempDir` drop will.
const WATCHDOG: &str = r#"exec 3<&0 </dev/null
"$1" serve "$2" 3<&- &
pid=$!
( if read -r _ <&3; then kill -9 "$pid" 2>/dev/null
  else kill -9 "$pid" 2>/dev/null; sleep 0.2; rm -rf "$3"; fi ) &
exec 3<&-
wait "$pid""#;

struct RegistryProcess {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl RegistryProcess {
    fn spawn(bin: &str, config: &Path, log: &Path, dir: &Path) -> RegistryProcess {
        let log = fs::File::create(log).expect("test registry: create registry.log");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("berth-test-registry")
            .arg(bin)
            .arg(config)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(
                log.try_clone()
                    .expect("test registry: clone the log file handle"),
            )
            .stderr(log);
        // The registry lets REGISTRY_* variables override its config file.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .spawn()
            .expect("test registry: spawn sh for the registry");
        let stdin = child.stdin.take();
        RegistryProcess { child, stdin }
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            // A line: the watchdog kills the registry and leaves the files
            // to the TempDir.
            let _ = stdin.write_all(b"stop\n");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `GET https://host/v2/` answers 401. `Err(log)` if the registry
/// exited first; panics after [`READY_TIMEOUT`].
fn wait_ready(
    mut process: RegistryProcess,
    host: &str,
    ca_crt: &Path,
    log_path: &Path,
) -> Result<RegistryProcess, String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let url = format!("https://{host}/v2/");
    loop {
        if let Some(status) = process
            .child
            .try_wait()
            .expect("test registry: poll the registry process")
        {
            let log = fs::read_to_string(log_path).unwrap_or_default();
            return Err(format!("(registry exited: {status})\n{log}"));
        }
        let out = tool("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
                "--cacert",
            ])
            .arg(ca_crt)
            .arg(&url)
            .output()
            .expect("test registry: run curl (apt-get install curl)");
        let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if code == "401" {
            return Ok(process);
        }
        let last = format!(
            "HTTP {code} {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if Instant::now() > deadline {
            let log = fs::read_to_string(log_path).unwrap_or_default();
            drop(process);
            panic!(
                "test registry: {url} did not answer 401 within {READY_TIMEOUT:?} (last probe: {last}); \
                 registry log:\n{log}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("test registry: bind 127.0.0.1:0 to find a free port")
        .port()
}

// ---------------------------------------------------------------------------
// TLS material (openssl)

struct Tls {
    ca_dir: PathBuf,
    ca_crt: PathBuf,
    server_crt: PathBuf,
    server_key: PathBuf,
    token_crt: PathBuf,
    token_key: PathBuf,
}

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = berth test
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[token_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// A CA (P-256), the registry's server certificate (P-256, SAN
/// `IP:127.0.0.1,DNS:localhost`) and the token signing certificate (RSA 2048,
/// for RS256), both signed by the CA, valid for one day. `ca_dir` holds only
/// `ca.crt` (skopeo would choke on a `.key` without a `.cert`).
fn make_tls(root: &Path) -> Tls {
    let tls_dir = root.join("tls");
    let ca_dir = root.join("ca");
    fs::create_dir_all(&tls_dir).expect("test registry: create the tls directory");
    fs::create_dir_all(&ca_dir).expect("test registry: create the ca directory");
    let cnf = tls_dir.join("openssl.cnf");
    fs::write(&cnf, OPENSSL_CNF).expect("test registry: write openssl.cnf");
    let ca_crt = ca_dir.join("ca.crt");
    let ca_key = tls_dir.join("ca.key");
    run(
        tool("openssl")
            .args(["req", "-x509", "-config"])
            .arg(&cnf)
            .args([
                "-extensions",
                "ca_ext",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-noenc",
                "-days",
                "1",
                "-subj",
                "/CN=berth test CA",
                "-keyout",
            ])
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca_crt),
        "openssl req -x509 (CA)",
    );
    let leaf = |name: &str, newkey: &[&str], subject: &str, ext: &str| -> (PathBuf, PathBuf) {
        let key = tls_dir.join(format!("{name}.key"));
        let csr = tls_dir.join(format!("{name}.csr"));
        let crt = tls_dir.join(format!("{name}.crt"));
        run(
            tool("openssl")
                .args(["req", "-new", "-config"])
                .arg(&cnf)
                .args(newkey)
                .args(["-noenc", "-subj", subject, "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&csr),
            "openssl req -new",
        );
        run(
            tool("openssl")
                .args(["x509", "-req", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(&ca_crt)
                .arg("-CAkey")
                .arg(&ca_key)
                .args([
                    "-set_serial",
                    &format!("0x{}", random_hex(16)),
                    "-days",
                    "1",
                    "-extfile",
                ])
                .arg(&cnf)
                .args(["-extensions", ext, "-out"])
                .arg(&crt),
            "openssl x509 -req",
        );
        (crt, key)
    };
    let (server_crt, server_key) = leaf(
        "server",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=127.0.0.1",
        "server_ext",
    );
    let (token_crt, token_key) = leaf(
        "token",
        &["-newkey", "rsa:2048"],
        "/CN=berth test token signer",
        "token_ext",
    );
    Tls {
        ca_dir,
        ca_crt,
        server_crt,
        server_key,
        token_crt,
        token_key,
    }
}

/// The base64 body of a PEM block: the standard base64 of its DER, which is
/// what a JWT `x5c` entry is.
fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect()
}

// ---------------------------------------------------------------------------
// Token server (Docker registry token spec), plain HTTP/1.1 on its own thread

struct TokenSigner {
    /// RSA private key (PEM) of the certificate in `x5c`.
    key: PathBuf,
    /// base64 DER of the signing certificate, signed by the CA that is the
    /// registry's `rootcertbundle`.
    x5c: String,
}

impl TokenSigner {
    /// A JWT distribution 2.8 accepts: RS256, the signing certificate in
    /// `x5c` (verified against `rootcertbundle`), `aud` a plain string.
    fn sign(&self, subject: &str, access: Vec<Value>) -> (String, i64) {
        let now = unix_now();
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = json!({
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + TOKEN_LIFETIME_SECS,
            "nbf": now - 5,
            "iat": now,
            "jti": random_hex(16),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(to_bytes(&header)),
            URL_SAFE_NO_PAD.encode(to_bytes(&claims))
        );
        // RSASSA-PKCS1-v1_5 with SHA-256 is exactly RS256's signature format.
        let signature = run_with_stdin(
            tool("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&self.key),
            signing_input.as_bytes(),
            "openssl dgst -sha256 -sign",
        );
        (
            format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)),
            now,
        )
    }
}

struct TokenServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

struct TokenContext {
    signer: TokenSigner,
    username: String,
    password: String,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenServer {
    fn start(signer: TokenSigner, username: String, password: String) -> TokenServer {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("test registry: bind the token server");
        let addr = listener
            .local_addr()
            .expect("test registry: token server address");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let ctx = Arc::new(TokenContext {
            signer,
            username,
            password,
            requests: requests.clone(),
        });
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("test-token-server".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop_flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let ctx = ctx.clone();
                    std::thread::spawn(move || {
                        let _ = serve_token_request(stream, &ctx);
                    });
                }
            })
            .expect("test registry: spawn the token server thread");
        TokenServer {
            addr,
            stop,
            thread: Some(thread),
            requests,
        }
    }

    fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)); // wake accept()
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `GET /token?service=…&scope=…` with Basic auth. One request per
/// connection (`Connection: close`).
fn serve_token_request(stream: TcpStream, ctx: &TokenContext) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    let (status, extra, body) = if path != "/token" {
        (404, "", error_body("NOT_FOUND", "no such endpoint"))
    } else if method != "GET" {
        (
            405,
            "Allow: GET\r\n",
            error_body("UNSUPPORTED", "only GET is supported"),
        )
    } else {
        let params: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        let service = params
            .iter()
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.clone());
        let scopes: Vec<String> = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| {
                v.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        let authorized = authorization
            .as_deref()
            .and_then(|a| {
                a.strip_prefix("Basic ")
                    .or_else(|| a.strip_prefix("basic "))
            })
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|up| {
                up.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            })
            .is_some_and(|(u, p)| u == ctx.username && p == ctx.password);
        ctx.requests
            .lock()
            .expect("test registry: token request log poisoned")
            .push(TokenRequest {
                authorized,
                service: service.clone(),
                scopes: scopes.clone(),
            });
        if !authorized {
            (
                401,
                "WWW-Authenticate: Basic realm=\"berth-test-token-server\"\r\n",
                error_body("UNAUTHORIZED", "authentication required"),
            )
        } else if service.as_deref().is_some_and(|s| s != TOKEN_SERVICE) {
            (400, "", error_body("INVALID_SERVICE", "unknown service"))
        } else {
            // The test user may do everything it asks for.
            let access: Vec<Value> = scopes.iter().filter_map(|s| parse_scope(s)).collect();
            let (token, issued) = ctx.signer.sign(&ctx.username, access);
            let body = json!({
                "token": token,
                "access_token": token,
                "expires_in": TOKEN_LIFETIME_SECS,
                "issued_at": rfc3339(issued),
            });
            (200, "", body.to_string())
        }
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra}\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn error_body(code: &str, message: &str) -> String {
    json!({"errors": [{"code": code, "message": message}]}).to_string()
}

/// `repository:team/app:pull,push` -> `{"type", "name", "actions"}`;
/// `repository(plugin):…` keeps the class; `registry:catalog:*` works too.
fn parse_scope(scope: &str) -> Option<Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if name.is_empty() {
        return None;
    }
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    let mut access = json!({"type": kind, "name": name, "actions": actions});
    if let Some((kind, class)) = kind.split_once('(') {
        access["type"] = json!(kind);
        access["class"] = json!(class.trim_end_matches(')'));
    }
    Some(access)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// OCI image layout, built in code

#[derive(Debug, Clone)]
struct Descriptor {
    media_type: String,
    digest: String,
    size: usize,
}

impl Descriptor {
    fn to_json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

struct OciLayout {
    dir: PathBuf,
    manifests: Vec<Value>,
}

impl OciLayout {
    fn new(dir: &Path) -> OciLayout {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("test registry: create the OCI layout");
        OciLayout {
            dir: dir.to_path_buf(),
            manifests: Vec::new(),
        }
    }

    fn blob(&mut self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let hex = sha256_hex(bytes);
        fs::write(self.dir.join("blobs/sha256").join(&hex), bytes)
            .expect("test registry: write an OCI blob");
        Descriptor {
            media_type: media_type.to_string(),
            digest: format!("sha256:{hex}"),
            size: bytes.len(),
        }
    }

    /// One image: a gzip'd tar layer with one small file naming the image, a
    /// config with `created`, a version label and the layer's diff id, and an
    /// OCI manifest. Returns the manifest's descriptor.
    fn image(
        &mut self,
        repo: &str,
        tag: &str,
        (arch, variant): (&str, Option<&str>),
        created: &str,
    ) -> Descriptor {
        let platform = match variant {
            Some(v) => format!("linux/{arch}/{v}"),
            None => format!("linux/{arch}"),
        };
        let content = format!("berth test image {repo}:{tag} ({platform}, created {created})\n");
        let tar = tar_one_file("berth-test-image.txt", content.as_bytes(), BASE_CREATED);
        let diff_id = format!("sha256:{}", sha256_hex(&tar));
        let layer = self.blob(OCI_LAYER_GZIP, &gzip(&tar));
        let mut config = json!({
            "created": created,
            "architecture": arch,
            "os": "linux",
            "config": {
                "Labels": {
                    "org.opencontainers.image.version": tag,
                    "org.opencontainers.image.created": created,
                },
                "Cmd": ["/bin/true"],
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "berth test harness"}],
        });
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        let config = self.blob(OCI_CONFIG, &to_bytes(&config));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [layer.to_json()],
            "annotations": {"org.opencontainers.image.created": created},
        });
        self.blob(OCI_MANIFEST, &to_bytes(&manifest))
    }

    /// An uncompressed tar layer holding one file of `bytes` random bytes,
    /// streamed to disk a MiB at a time while it is hashed.
    fn random_tar_layer(&mut self, name: &str, bytes: usize) -> Descriptor {
        let header = tar_header(name, bytes, BASE_CREATED);
        let part = self.dir.join("blobs/sha256/partial");
        let mut file = fs::File::create(&part).expect("test registry: create a layer file");
        let mut urandom = fs::File::open("/dev/urandom").expect("test registry: open /dev/urandom");
        let mut hash = Sha256::new();
        let mut size = 0usize;
        let mut put = |chunk: &[u8]| {
            hash.update(chunk);
            file.write_all(chunk)
                .expect("test registry: write a layer file");
            size += chunk.len();
        };
        put(&header);
        let mut buf = vec![0u8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len());
            urandom
                .read_exact(&mut buf[..n])
                .expect("test registry: read /dev/urandom");
            put(&buf[..n]);
            left -= n;
        }
        // Pad the file to a 512-byte record, then the two zero records.
        let padding = bytes.div_ceil(512) * 512 - bytes + 1024;
        put(&vec![0u8; padding]);
        drop(file);
        let hex = format!("{:x}", hash.finalize());
        fs::rename(&part, self.dir.join("blobs/sha256").join(&hex))
            .expect("test registry: name a layer file by its digest");
        Descriptor {
            media_type: OCI_LAYER_TAR.to_string(),
            digest: format!("sha256:{hex}"),
            size,
        }
    }

    fn tag(&mut self, descriptor: Descriptor, tag: &str) {
        let mut entry = descriptor.to_json();
        entry["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.manifests.push(entry);
    }

    fn finish(&self) {
        let index =
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.manifests});
        fs::write(self.dir.join("index.json"), to_bytes(&index))
            .expect("test registry: write index.json");
        fs::write(
            self.dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("test registry: write oci-layout");
    }
}

/// A ustar archive with one regular file.
fn tar_one_file(name: &str, content: &[u8], mtime: i64) -> Vec<u8> {
    let mut out = tar_header(name, content.len(), mtime).to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// The ustar header of a regular file of `len` bytes.
fn tar_header(name: &str, len: usize, mtime: i64) -> [u8; 512] {
    let mut header = [0u8; 512];
    let mut put =
        |offset: usize, bytes: &[u8]| header[offset..offset + bytes.len()].copy_from_slice(bytes);
    put(0, name.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{len:011o}\0").as_bytes());
    put(136, format!("{mtime:011o}\0").as_bytes());
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    header
}

/// `gzip -n`: deterministic (no name, no timestamp).
fn gzip(data: &[u8]) -> Vec<u8> {
    run_with_stdin(tool("gzip").args(["-n", "-c"]), data, "gzip -n")
}

// ---------------------------------------------------------------------------
// Small helpers

/// A command for a local tool that talks only to 127.0.0.1: no proxy.
fn tool(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    cmd
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns stdout.
fn run(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("test registry: cannot run {what}: {e}"));
    if !out.status.success() {
        panic!(
            "test registry: {what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.stdout
}

/// [`run`] with `input` on stdin (small inputs: written before reading).
fn run_with_stdin(cmd: &mut Command, input: &[u8], what: &str) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("test registry: cannot run {what}: {e}"));
    let mut stdin = child.stdin.take().expect("test registry: child stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("test registry: wait for {what}: {e}"));
    let _ = writer.join();
    if !out.status.success() {
        panic!(
            "test registry: {what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.stdout
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("test registry: read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("test registry: serialise JSON")
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("test registry: quote a YAML string")
}

fn yaml_path(p: &Path) -> String {
    yaml_str(
        p.to_str()
            .expect("test registry: temporary paths are UTF-8"),
    )
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("test registry: clock before 1970")
        .as_secs() as i64
}

/// Unix seconds -> `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
