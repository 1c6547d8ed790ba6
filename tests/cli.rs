//! The operator CLI (`berth registry …`, `berth image …`) against a live
//! berth and a real registry.

mod common;
mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{Backend, TestServer};
use support::registry::{AuthMode, TestRegistry};

fn berth(server: &TestServer, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env("BERTH_SERVER", server.endpoint())
        .env("BERTH_ACTOR", "cli-test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth cli");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("cli output")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "cli failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_registries_and_images() {
    let reg = TestRegistry::start(AuthMode::Htpasswd).await;
    tokio::task::block_in_place(|| reg.push_test_images("berth/app"));
    let server = TestServer::start(Backend::Sqlite).await;
    let ca = reg.ca_dir.join("ca.crt");
    let ca = ca.to_str().expect("utf-8 path");

    // Create (secret on stdin, never on the command line), as JSON.
    let out = berth(
        &server,
        &[
            "registry",
            "create",
            "--provider",
            "other",
            "--address",
            &reg.host,
            "--namespace",
            "berth",
            "--username",
            &reg.username,
            "--secret-stdin",
            "--project",
            "web",
            "--ca-file",
            ca,
            "-o",
            "json",
        ],
        Some(&format!("{}\n", reg.password)),
    );
    let created: serde_json::Value = serde_json::from_str(&ok(&out)).expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["updatedBy"], "cli-test");
    assert_eq!(created["hasSecret"], true);
    assert!(
        !ok(&out).contains(&reg.password),
        "the secret is not echoed"
    );

    // A second one, made the default.
    ok(&berth(
        &server,
        &[
            "registry",
            "create",
            "--provider",
            "HARBOR",
            "--address",
            "harbor.example.com",
            "--namespace",
            "team",
            "--username",
            "robot",
            "--secret-stdin",
            "--default",
        ],
        Some("pw"),
    ));
    let table = ok(&berth(
        &server,
        &["registry", "list", "--project", "web"],
        None,
    ));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("PROVIDER"),
        "{table}"
    );
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        table.contains("harbor.example.com") && table.contains(&reg.host),
        "{table}"
    );

    ok(&berth(&server, &["registry", "set-default", &id], None));
    let got: serde_json::Value = serde_json::from_str(&ok(&berth(
        &server,
        &["registry", "get", &id, "-o", "json"],
        None,
    )))
    .expect("json");
    assert_eq!(got["isDefault"], true);
    assert!(ok(&berth(&server, &["registry", "test", &id], None)).contains("accepted"));

    // Images through the default registry.
    let reference = ok(&berth(
        &server,
        &[
            "image",
            "resolve",
            "--project",
            "web",
            "--image",
            "app",
            "--tag",
            "{TASK_ID}-{BRANCH}",
            "--var",
            "TASK_ID=42",
            "--var",
            "BRANCH=feature/login",
        ],
        None,
    ));
    assert_eq!(
        reference.trim(),
        format!("{}/berth/app:42-feature-login", reg.host)
    );
    let tags = ok(&berth(
        &server,
        &[
            "image",
            "tags",
            "--project",
            "web",
            "--image",
            "app",
            "--order",
            "semver",
            "--glob",
            "1.*",
        ],
        None,
    ));
    assert_eq!(
        tags.lines().collect::<Vec<_>>(),
        ["1.10.0", "1.2.0", "1.0.0"]
    );
    let cfg = ok(&berth(
        &server,
        &[
            "image",
            "credentials",
            "--project",
            "web",
            "--only",
            "docker-config",
        ],
        None,
    ));
    let cfg: serde_json::Value = serde_json::from_str(&cfg).expect("config.json");
    assert!(cfg["auths"][reg.host.as_str()]["auth"].is_string());
    let table = ok(&berth(
        &server,
        &["image", "credentials", "--project", "web"],
        None,
    ));
    assert!(
        !table.contains(&reg.password),
        "the table hides the password"
    );

    // Errors name the field and exit non-zero.
    let out = berth(
        &server,
        &[
            "image",
            "resolve",
            "--project",
            "bad project",
            "--image",
            "app",
            "--tag",
            "x",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("project"),
        "{err}"
    );

    // A proxy (its password from a file, never echoed) and a budget.
    let dir = tempfile::tempdir().expect("dir");
    let pw = dir.path().join("proxy-password");
    std::fs::write(&pw, "cli-proxy-password-42\n").expect("write");
    let out = berth(
        &server,
        &[
            "registry",
            "create",
            "--provider",
            "other",
            "--address",
            "proxied.example.com",
            "--namespace",
            "team",
            "--project",
            "ops",
            "--proxy-url",
            "http://proxy.example.com:3128",
            "--proxy-username",
            "ops",
            "--proxy-password-file",
            pw.to_str().expect("utf-8 path"),
            "--no-proxy",
            ".internal.example",
            "--requests-per-second",
            "2.5",
            "--max-concurrent",
            "3",
            "-o",
            "json",
        ],
        None,
    );
    let text = ok(&out);
    assert!(!text.contains("cli-proxy-password-42"), "{text}");
    let created: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        created["proxy"],
        serde_json::json!({"url": "http://proxy.example.com:3128", "username": "ops",
            "hasPassword": true, "noProxy": [".internal.example"]})
    );
    assert_eq!(
        created["budget"],
        serde_json::json!({"requestsPerSecond": 2.5, "maxConcurrent": 3})
    );
    server.finish().await;
}

/// With authentication on, the CLI sends the bearer token from
/// `--token-file` (or `BERTH_TOKEN_FILE`), never needing it on the command
/// line; a missing or empty token is refused, and `--token` with
/// `--token-file` is a usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_authenticates_with_a_token_file() {
    use berth::auth::tokens;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = "berth_cli_test_token";
    let tokens_file = dir.path().join("tokens");
    std::fs::write(&tokens_file, tokens::line_for("ops", token)).expect("tokens");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[grant]]\nidentity = \"ops\"\nroles = [\"admin\", \"reader\"]\nprojects = [\"*\"]\n",
    )
    .expect("policy");
    let server = TestServer::start_with(Backend::Sqlite, |cfg| {
        cfg.tokens_file = Some(tokens_file);
        cfg.policy_file = Some(policy);
    })
    .await;
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, format!("{token}\n")).expect("token file");
    let token_arg = token_path.to_str().expect("utf-8 path");
    let run = |args: &[&str]| tokio::task::block_in_place(|| berth(&server, args, None));
    // A refused run, with its stderr.
    let refused = |args: &[&str]| {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let file_of = |name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("token file");
        path.to_str().expect("utf-8 path").to_owned()
    };

    ok(&run(&[
        "registry",
        "list",
        "-o",
        "json",
        "--token-file",
        token_arg,
    ]));

    // No token: refused by the server.
    let err = refused(&["registry", "list"]);
    assert!(
        err.to_ascii_lowercase().contains("unauthenticated"),
        "{err}"
    );

    // A wrong token in the file: refused too.
    refused(&[
        "registry",
        "list",
        "--token-file",
        &file_of("wrong", "not-the-token"),
    ]);

    // An empty file is a local error, before any call.
    let err = refused(&["registry", "list", "--token-file", &file_of("empty", "\n")]);
    assert!(err.contains("empty"), "{err}");

    // Both ways at once: a usage error.
    let err = refused(&[
        "registry",
        "list",
        "--token",
        token,
        "--token-file",
        token_arg,
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
    server.finish().await;
}
