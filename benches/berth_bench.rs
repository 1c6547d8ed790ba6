//! berth's performance benchmark, one run on one machine:
//!
//! ```text
//! cargo bench --bench berth-bench -- [--duration 10] [--clients 64] [--postgres URL] …
//! ```
//!
//! `cargo bench` builds the release `berth` binary of this tree first (a
//! benchmark gets `CARGO_BIN_EXE_berth`); `--berth-bin` runs another one.
//! berth runs as a real subprocess on a fresh SQLite database and, when
//! PostgreSQL answers, on a fresh PostgreSQL database; the ceiling is a bare
//! tonic server (this binary re-executed with `--echo-server`, serving only
//! `grpc.health.v1` through berth's own listener code) measured in the same
//! run. Every figure is N clients over a few shared HTTP/2 connections for a
//! fixed time after a warm-up. BENCHMARKS.md has the figures and what bounds
//! them.
//!
//! The run is a list of sections, each adding rows, facts and targets to
//! one [`Report`]: [`echo_section`], then [`backend_section`] per database.
//! A new section (e.g. CopyImage against skopeo) is one more `async fn
//! (&mut Bench) -> anyhow::Result<()>` called from [`run`], using
//! [`drive`] for load and [`BerthProc`] for processes.

// The stub is shared with the ECR unit and integration tests; only its
// verifying mode is used here.
#[allow(dead_code)]
#[path = "../src/credentials/ecr_stub.rs"]
mod ecr_stub;
// The test suite's registry harness (Debian's docker-registry with TLS and
// htpasswd, images pushed with skopeo), for the copy figures.
#[path = "../tests/support/registry.rs"]
mod test_registry;
// CopyImage and ListTags against skopeo.
#[path = "berth_bench/copy.rs"]
mod copy;
// The answer ceiling: a bare server answering GetCredentials' bytes.
#[path = "berth_bench/answer.rs"]
mod answer;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use berth::pb::{
    self, Provider, Registry, Scope, image_service_client::ImageServiceClient,
    registry_service_client::RegistryServiceClient,
};
use clap::Parser;
use sea_orm::{ConnectionTrait, Database};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Sent as `x-berth-actor` on every call (authentication is off on
/// loopback).
const ACTOR: &str = "berth-bench";
const HARBOR_ADDRESS: &str = "harbor.bench.example:8443";
const HARBOR_USER: &str = "robot$ci";
const HARBOR_SECRET: &str = "harbor-bench-pass";
const ECR_ADDRESS: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const ECR_AKID: &str = "AKIAEXAMPLEBERTH0001";
const ECR_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// What ResolveImage answers for the request of [`resolve_request`].
const RESOLVED: &str = "harbor.bench.example:8443/team/backend/api:feature-login-42";

/// The scenarios, by the names `--only` takes.
const SCENARIOS: [&str; 9] = [
    "echo",
    "answer",
    "resolve",
    "creds-static",
    "creds-ecr",
    "default",
    "list",
    "writes",
    "copy",
];

/// berth's performance benchmark (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "berth-bench")]
struct Args {
    /// Seconds each figure is measured for, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before each figure's measurement starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Concurrent clients, each with one call in flight.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// HTTP/2 connections (tonic Channels) the clients share, round-robin.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Registries seeded before the read figures, each scoped to one project.
    #[arg(long, default_value_t = 1000)]
    registries: usize,
    /// Projects the seeded registries are spread over.
    #[arg(long, default_value_t = 100)]
    projects: usize,
    /// PostgreSQL server (trust auth); a fresh database `berth_bench_<random>`
    /// is created there and dropped at the end. Skipped when it does not
    /// answer. Plain TCP by default (`sslmode=disable`): on loopback, as
    /// the gRPC side is plain HTTP/2, so the figures are berth's and the
    /// database's work, not TLS record encryption on the shared cores.
    /// Pass `?sslmode=require` to include it.
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432?sslmode=disable"
    )]
    postgres: String,
    /// Measure SQLite only.
    #[arg(long)]
    no_postgres: bool,
    /// Skip SQLite (and the startup figure, which is taken on SQLite).
    #[arg(long)]
    no_sqlite: bool,
    /// The berth binary to measure (default: the release build of this tree
    /// that `cargo bench` builds).
    #[arg(long)]
    berth_bin: Option<PathBuf>,
    /// Extra settings for every berth started, as KEY=VALUE (repeatable),
    /// e.g. `--berth-env BERTH_AUDIT_CREDENTIALS=async`.
    #[arg(long)]
    berth_env: Vec<String>,
    /// Only these scenarios (comma-separated): echo, answer, resolve,
    /// creds-static, creds-ecr, default, list, writes, copy. Ratios need
    /// echo; answer (the ceiling with GetCredentials' answer) needs
    /// creds-static and SQLite.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Restarts of berth on the seeded SQLite database timed to SERVING.
    #[arg(long, default_value_t = 5)]
    startup_runs: usize,
    /// Times the echo ceiling is measured; the best is the ceiling. On this
    /// 2-core machine one run in a few lands in a slow mode (the
    /// connections' tasks crowd one worker; echo at ~55k/s instead of ~80k);
    /// the best of several keeps the ratios from being inflated by that.
    #[arg(long, default_value_t = 3)]
    echo_runs: usize,
    /// Internal: serve the echo ceiling on this address and nothing else.
    #[arg(long, hide = true)]
    echo_server: Option<SocketAddr>,
    /// Internal: with --echo-server, also answer `GetCredentials` with the
    /// `GetCredentialsResponse` encoded in this file (the answer ceiling).
    #[arg(long, hide = true)]
    echo_answer: Option<PathBuf>,
    /// Passed by `cargo bench`; without it (`cargo test --benches`) the
    /// benchmark does nothing.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Args {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

/// berth's allocator (src/main.rs), for the echo ceiling, which is this
/// binary re-executed: "the same settings" as berth includes the
/// allocator, and with glibc's malloc the ceiling ran on a slower one than
/// the server it is the ceiling of. The clients share it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The same runtime as berth's `#[tokio::main]`: multi-threaded, one
    // worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(addr) = args.echo_server {
        return rt.block_on(echo_server(addr, args.echo_answer));
    }
    if !args.bench {
        eprintln!(
            "berth-bench: nothing to do without --bench (run `cargo bench --bench berth-bench`)"
        );
        return Ok(());
    }
    for s in &args.only {
        if !SCENARIOS.contains(&s.as_str()) {
            bail!("unknown scenario {s:?}; known: {}", SCENARIOS.join(", "));
        }
    }
    if args.clients == 0 || args.connections == 0 || args.duration <= 0.0 {
        bail!("--clients, --connections and --duration must be positive");
    }
    rt.block_on(run(args))
}

// --- the ceiling --------------------------------------------------------------

/// The echo ceiling: tonic's `grpc.health.v1` (Check answers from a map)
/// and nothing else, on berth's own accept loop (`berth::transport`,
/// TCP_NODELAY, no TLS), with tonic's default server settings as berth has
/// them, minus berth's layers (metrics, auth guard, concurrency limit).
async fn echo_server(addr: SocketAddr, answer: Option<PathBuf>) -> anyhow::Result<()> {
    let (health, service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let answer = match answer {
        Some(path) => {
            let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
            Some(answer::Answer(Arc::new(prost::Message::decode(
                bytes.as_slice(),
            )?)))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tonic::transport::Server::builder()
        .add_service(service)
        .add_optional_service(answer.map(pb::image_service_server::ImageServiceServer::new))
        .serve_with_incoming_shutdown(
            berth::transport::incoming(listener, None),
            berth::server::shutdown_signal(),
        )
        .await?;
    Ok(())
}

// --- the run -----------------------------------------------------------------

/// What every section shares.
struct Bench {
    args: Args,
    berth_bin: PathBuf,
    /// The secret key of every berth started (restarts reuse it).
    key: String,
    ecr: ecr_stub::EcrStub,
    /// The ceiling, once measured: throughput and latencies.
    echo: Option<Summary>,
    /// The answer ceiling ([`answer`]), once measured.
    answer: Option<Summary>,
    report: Report,
    clk_tck: f64,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let berth_bin = args
        .berth_bin
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth")));
    if !berth_bin.is_file() {
        bail!(
            "no berth binary at {}: run `cargo build --release --bin berth` or pass --berth-bin",
            berth_bin.display()
        );
    }
    let mut key = [0u8; 32];
    rand::Rng::fill(&mut rand::thread_rng(), &mut key);
    let clk_tck = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0);
    let mut bench = Bench {
        berth_bin,
        key: base64::engine::general_purpose::STANDARD.encode(key),
        ecr: ecr_stub::EcrStub::start(&[(ECR_AKID, ECR_SECRET)]),
        echo: None,
        answer: None,
        report: Report::default(),
        clk_tck,
        args,
    };
    let machine = machine();
    println!("# berth-bench");
    println!("{machine}");
    println!(
        "berth: {} (commit {})",
        bench.berth_bin.display(),
        git_commit()
    );
    println!(
        "load: {} clients on {} HTTP/2 connections (round-robin), warm-up {} s, {} s per figure\n",
        bench.args.clients, bench.args.connections, bench.args.warmup, bench.args.duration
    );
    let started = Instant::now();

    if bench.args.wants("echo") {
        echo_section(&mut bench).await?;
    }
    let dir = tempfile::tempdir()?;
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("berth.db").display()
    );
    if bench.args.no_sqlite {
        bench.report.note("SQLite: skipped (--no-sqlite)".into());
    } else {
        backend_section(&mut bench, "SQLite", &sqlite, dir.path()).await?;
    }
    if bench.args.no_postgres {
        bench
            .report
            .note("PostgreSQL: skipped (--no-postgres)".into());
    } else {
        match PgDatabase::create(&bench.args.postgres).await {
            Ok(None) => bench.report.note(format!(
                "PostgreSQL: skipped, nothing answers at {}",
                bench.args.postgres
            )),
            Ok(Some(db)) => {
                let measured = backend_section(&mut bench, "PostgreSQL", &db.url, dir.path()).await;
                db.drop_db().await;
                measured?;
            }
            Err(e) => bail!("PostgreSQL answers but the bench database was not created: {e:#}"),
        }
    }
    if bench.args.wants("copy") {
        copy::copy_section(&mut bench, dir.path()).await?;
    }
    println!("\n(whole run: {:.0} s)\n", started.elapsed().as_secs_f64());
    print!("{}", bench.report.markdown(&machine, &bench.args));
    Ok(())
}

/// The echo ceiling, measured like berth.
async fn echo_section(b: &mut Bench) -> anyhow::Result<()> {
    let addr = free_addr()?;
    let mut echo = BerthProc::spawn(
        Command::new(std::env::current_exe()?)
            .arg("--echo-server")
            .arg(addr.to_string()),
        "echo",
        addr,
        None,
    )?;
    echo.wait_serving().await?;
    let mut best: Option<Measured> = None;
    for run in 1..=b.args.echo_runs.max(1) {
        // New connections each run: the slow mode sticks to a set of
        // connections (where their tasks landed), not to the process.
        let channels = connect(addr, b.args.connections).await?;
        let m = drive(b, &channels, Some(echo.pid()), |_, ch| {
            let client = HealthClient::new(ch);
            Simple(move || {
                let mut c = client.clone();
                async move {
                    c.check(req(HealthCheckRequest {
                        service: String::new(),
                    }))
                    .await
                    .map(|_| ())
                }
            })
        })
        .await;
        let s = m.summary();
        println!(
            "  echo run {run}: {:.0} calls/s, p50 {} p99 {}",
            s.rate,
            ms(s.p50),
            ms(s.p99)
        );
        if best.as_ref().is_none_or(|b| b.summary().rate < s.rate) {
            best = Some(m);
        }
    }
    let Some(m) = best else {
        bail!("echo was not measured");
    };
    b.echo = Some(m.summary());
    b.report
        .row("—", "echo (grpc.health.v1 Check)", "calls/s", m, &[]);
    let mem = echo.memory();
    b.report
        .fact("echo server VmHWM after the load", "—", mb(mem.hwm_kb));
    echo.stop().await?;
    Ok(())
}

/// Every berth figure on one database: memory idle, the read figures on
/// seeded registries, the write mix, memory after the load, and (SQLite)
/// startup on the seeded database.
async fn backend_section(
    b: &mut Bench,
    backend: &'static str,
    url: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let env = BerthEnv {
        url: url.to_owned(),
        key: b.key.clone(),
        ecr: b.ecr.endpoint.clone(),
        extra: b.args.berth_env.clone(),
    };
    let mut berth = BerthProc::spawn_berth(&b.berth_bin, &env, dir, backend)?;
    let first_start = berth.wait_serving().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = berth.memory();
    println!(
        "[{backend}] berth SERVING after {} on a fresh database; idle VmHWM {}",
        ms(first_start),
        mb(idle.hwm_kb)
    );
    b.report.fact(
        "berth VmHWM idle after start (fresh database)",
        backend,
        mb(idle.hwm_kb),
    );
    b.report.target(
        format!("idle RSS < 30 MB ({backend})"),
        mb(idle.hwm_kb),
        idle.hwm_kb * 1024 < 30_000_000,
    );

    let channels = connect(berth.addr, b.args.connections).await?;
    let setup = Seeded::create(b, &channels, backend).await?;
    let echo = b.echo;
    let reads = [
        ("resolve", "ResolveImage"),
        ("creds-static", "GetCredentials (HARBOR, static)"),
        ("creds-ecr", "GetCredentials (ECR, token cache)"),
        ("default", "GetDefaultRegistry"),
        ("list", "ListRegistries (one project)"),
    ];
    let projects: Arc<Vec<String>> = Arc::new((0..b.args.projects).map(project).collect());
    let issued_before = b.ecr.issued();
    for (scenario, title) in reads {
        if !b.args.wants(scenario) {
            continue;
        }
        setup.check(scenario, &channels[0], &b.ecr).await?;
        if scenario == "creds-static" && b.args.wants("answer") && b.answer.is_none() {
            let harbor = setup.harbor.clone();
            let s = answer::answer_section(b, &channels[0], &harbor, projects.clone(), dir).await?;
            b.answer = Some(s);
        }
        let pid = Some(berth.pid());
        let m = match scenario {
            "resolve" => {
                let vars: HashMap<String, String> =
                    [("BRANCH", "feature/login"), ("TASK_ID", "42")]
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .into();
                let id = setup.harbor.clone();
                drive(b, &channels, pid, |i, ch| {
                    let (client, projects, id, vars) = (
                        ImageServiceClient::new(ch),
                        projects.clone(),
                        id.clone(),
                        vars.clone(),
                    );
                    let mut n = i;
                    Simple(move || {
                        n += 1;
                        let mut c = client.clone();
                        let r = resolve_request(&id, &projects[n % projects.len()], vars.clone());
                        async move { c.resolve_image(req(r)).await.map(|_| ()) }
                    })
                })
                .await
            }
            "creds-static" | "creds-ecr" => {
                let id = if scenario == "creds-ecr" {
                    setup.ecr.clone()
                } else {
                    setup.harbor.clone()
                };
                drive(b, &channels, pid, |i, ch| {
                    credentials_client(i, ch, &id, projects.clone())
                })
                .await
            }
            "default" => {
                drive(b, &channels, pid, |i, ch| {
                    let (client, projects) = (RegistryServiceClient::new(ch), projects.clone());
                    let mut n = i;
                    Simple(move || {
                        n += 1;
                        let mut c = client.clone();
                        let r = pb::GetDefaultRegistryRequest {
                            project: projects[n % projects.len()].clone(),
                        };
                        async move { c.get_default_registry(req(r)).await.map(|_| ()) }
                    })
                })
                .await
            }
            _ => {
                drive(b, &channels, pid, |i, ch| {
                    let (client, projects) = (RegistryServiceClient::new(ch), projects.clone());
                    let mut n = i;
                    Simple(move || {
                        n += 1;
                        let mut c = client.clone();
                        let r = pb::ListRegistriesRequest {
                            project: projects[n % projects.len()].clone(),
                            ..Default::default()
                        };
                        async move { c.list_registries(req(r)).await.map(|_| ()) }
                    })
                })
                .await
            }
        };
        // The throughput half of these targets is relative to the ceiling:
        // without echo in this run (`--only`), they are not judged.
        if let (true, Some(e)) = (scenario != "list", echo) {
            let s = m.summary();
            b.report.target(
                format!("{title} ≥ 80% of echo, p99 < 5 ms ({backend})"),
                format!(
                    "{:.0}% of echo, p99 {}{}",
                    100.0 * s.rate / e.rate,
                    ms(s.p99),
                    errors_note(s.errors)
                ),
                s.errors == 0 && s.rate >= 0.8 * e.rate && s.p99 < Duration::from_millis(5),
            );
        }
        if let (true, Some(a)) = (scenario.starts_with("creds"), b.answer) {
            b.report.note(format!(
                "{backend}: {title} reached {:.0}% of the answer ceiling",
                100.0 * m.summary().rate / a.rate
            ));
        }
        b.report.row(backend, title, "calls/s", m, &[]);
    }
    if b.args.wants("creds-ecr") {
        b.report.note(format!(
            "{backend}: the ECR stub minted {} token(s) during the ECR figure (the rest came from berth's token cache)",
            b.ecr.issued() - issued_before
        ));
    }
    if b.args.wants("writes") {
        let m = drive(b, &channels, Some(berth.pid()), |i, ch| WriteMix {
            client: RegistryServiceClient::new(ch),
            who: i,
            seq: 0,
            current: None,
            updated: false,
        })
        .await;
        let s = m.summary();
        let goal = if backend == "SQLite" { 1000.0 } else { 2000.0 };
        b.report.target(
            format!("writes ≥ {goal:.0}/s ({backend})"),
            format!("{:.0}/s{}", s.rate, errors_note(s.errors)),
            s.errors == 0 && s.rate >= goal,
        );
        b.report.row(
            backend,
            "writes: Create + Update + Delete",
            "writes/s",
            m,
            &["CreateRegistry", "UpdateRegistry", "DeleteRegistry"],
        );
    }
    let loaded = berth.memory();
    println!(
        "[{backend}] berth VmHWM after the load {}",
        mb(loaded.hwm_kb)
    );
    b.report
        .fact("berth VmHWM after the load", backend, mb(loaded.hwm_kb));
    b.report.target(
        format!("RSS under load < 100 MB ({backend})"),
        mb(loaded.hwm_kb),
        loaded.hwm_kb * 1024 < 100_000_000,
    );
    drop(channels);
    berth.stop().await?;

    if backend == "SQLite" && b.args.startup_runs > 0 {
        let mut times = Vec::new();
        for _ in 0..b.args.startup_runs {
            let mut again = BerthProc::spawn_berth(&b.berth_bin, &env, dir, backend)?;
            times.push(again.wait_serving().await?);
            again.stop().await?;
        }
        let shown: Vec<String> = times.iter().map(|t| ms(*t)).collect();
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "[{backend}] startup to SERVING on the seeded database: {} (median {})",
            shown.join(", "),
            ms(median)
        );
        b.report.fact(
            &format!(
                "startup to SERVING, existing database (median of {}; all runs)",
                times.len()
            ),
            backend,
            format!("{} ({})", ms(median), shown.join(", ")),
        );
        b.report.target(
            format!("startup < 200 ms ({backend}, median)"),
            format!("{} (max {})", ms(median), ms(times[times.len() - 1])),
            median < Duration::from_millis(200),
        );
    }
    Ok(())
}

fn errors_note(errors: u64) -> String {
    if errors == 0 {
        String::new()
    } else {
        format!(", {errors} errors")
    }
}

// --- seeding -----------------------------------------------------------------

fn project(n: usize) -> String {
    format!("p{n:03}")
}

fn all_projects() -> Option<Scope> {
    Some(Scope {
        all_projects: true,
        projects: Vec::new(),
    })
}

/// The registries the read figures use.
struct Seeded {
    /// HARBOR, all projects, the default: ResolveImage, static credentials.
    harbor: String,
    /// ECR, all projects, through the stub.
    ecr: String,
    /// How many registries ListRegistries of `project(7)` returns.
    listed_p7: usize,
}

impl Seeded {
    async fn create(
        b: &mut Bench,
        channels: &[Channel],
        backend: &'static str,
    ) -> anyhow::Result<Seeded> {
        let mut c = RegistryServiceClient::new(channels[0].clone());
        let harbor = c
            .create_registry(req(pb::CreateRegistryRequest {
                registry: Some(Registry {
                    provider: Provider::Harbor as i32,
                    address: HARBOR_ADDRESS.into(),
                    namespace: "team".into(),
                    username: HARBOR_USER.into(),
                    secret: HARBOR_SECRET.into(),
                    scope: all_projects(),
                    is_default: true,
                    ..Default::default()
                }),
            }))
            .await
            .context("create the HARBOR registry")?
            .into_inner();
        let ecr = c
            .create_registry(req(pb::CreateRegistryRequest {
                registry: Some(Registry {
                    provider: Provider::Ecr as i32,
                    address: ECR_ADDRESS.into(),
                    region: ecr_stub::REGION.into(),
                    username: ECR_AKID.into(),
                    secret: ECR_SECRET.into(),
                    scope: all_projects(),
                    ..Default::default()
                }),
            }))
            .await
            .context("create the ECR registry")?
            .into_inner();
        // The seeded registries, 16 callers at once.
        let (total, projects) = (b.args.registries, b.args.projects.max(1));
        let started = Instant::now();
        let callers = (0..16).map(|t| {
            let mut c = RegistryServiceClient::new(channels[t % channels.len()].clone());
            async move {
                for i in (t..total).step_by(16) {
                    c.create_registry(req(pb::CreateRegistryRequest {
                        registry: Some(Registry {
                            provider: Provider::Harbor as i32,
                            address: format!("reg-{i:05}.bench.example"),
                            namespace: "team".into(),
                            username: "robot".into(),
                            secret: format!("seed-secret-{i}"),
                            scope: Some(Scope {
                                all_projects: false,
                                projects: vec![project(i % projects)],
                            }),
                            ..Default::default()
                        }),
                    }))
                    .await
                    .with_context(|| format!("seed registry {i}"))?;
                }
                anyhow::Ok(())
            }
        });
        for r in futures::future::join_all(callers).await {
            r?;
        }
        let took = started.elapsed();
        println!(
            "[{backend}] seeded {total} registries over {projects} projects in {} ({:.0}/s, 16 callers)",
            ms(took),
            total as f64 / took.as_secs_f64()
        );
        b.report.fact(
            &format!("seeding {total} registries (16 concurrent CreateRegistry)"),
            backend,
            format!("{} ({:.0}/s)", ms(took), total as f64 / took.as_secs_f64()),
        );
        Ok(Seeded {
            harbor: harbor.id,
            ecr: ecr.id,
            listed_p7: (0..total).filter(|i| i % projects == 7 % projects).count() + 2,
        })
    }

    /// One call of `scenario`, checked, before it is measured: a figure of
    /// wrong answers is worth nothing.
    async fn check(
        &self,
        scenario: &str,
        ch: &Channel,
        stub: &ecr_stub::EcrStub,
    ) -> anyhow::Result<()> {
        let mut images = ImageServiceClient::new(ch.clone());
        let mut regs = RegistryServiceClient::new(ch.clone());
        let vars = [("BRANCH", "feature/login"), ("TASK_ID", "42")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let ok = match scenario {
            "resolve" => {
                let r = images
                    .resolve_image(req(resolve_request(&self.harbor, &project(7), vars)))
                    .await?
                    .into_inner();
                r.reference == RESOLVED
            }
            "creds-static" | "creds-ecr" => {
                let ecr = scenario == "creds-ecr";
                let id = if ecr { &self.ecr } else { &self.harbor };
                let r = images
                    .get_credentials(req(credentials_request(id, project(7))))
                    .await?
                    .into_inner();
                if ecr {
                    r.username == "AWS" && r.password == stub.password
                } else {
                    r.username == HARBOR_USER && r.password == HARBOR_SECRET
                }
            }
            "default" => {
                let r = regs
                    .get_default_registry(req(pb::GetDefaultRegistryRequest {
                        project: project(7),
                    }))
                    .await?
                    .into_inner();
                r.id == self.harbor
            }
            _ => {
                let r = regs
                    .list_registries(req(pb::ListRegistriesRequest {
                        project: project(7),
                        ..Default::default()
                    }))
                    .await?
                    .into_inner();
                r.registries.len() == self.listed_p7
            }
        };
        if !ok {
            bail!("{scenario}: berth's answer is not the expected one");
        }
        Ok(())
    }
}

/// Client `i` of a GetCredentials figure: registry `id`, the projects in
/// turn from the i-th.
fn credentials_client(i: usize, ch: Channel, id: &str, projects: Arc<Vec<String>>) -> impl Caller {
    let (client, id) = (ImageServiceClient::new(ch), id.to_owned());
    let mut n = i;
    Simple(move || {
        n += 1;
        let mut c = client.clone();
        let r = credentials_request(&id, projects[n % projects.len()].clone());
        async move { c.get_credentials(req(r)).await.map(|_| ()) }
    })
}

/// GetCredentials for registry `id` and `project`, the bench's only form.
fn credentials_request(id: &str, project: String) -> pb::GetCredentialsRequest {
    pb::GetCredentialsRequest {
        registry_id: id.to_owned(),
        project,
        ..Default::default()
    }
}

fn resolve_request(
    registry_id: &str,
    project: &str,
    variables: HashMap<String, String>,
) -> pb::ResolveImageRequest {
    pb::ResolveImageRequest {
        registry_id: registry_id.to_owned(),
        project: project.to_owned(),
        image: "backend/api".into(),
        tag: "{BRANCH}-{TASK_ID}".into(),
        variables,
        ..Default::default()
    }
}

/// Each client in turn creates a registry (its own address, project `w`),
/// updates its namespace (with the etag it read) and deletes it (with the
/// etag again): three writes per round.
struct WriteMix {
    client: RegistryServiceClient<Channel>,
    who: usize,
    seq: u64,
    /// The registry being worked on, and its etag.
    current: Option<(String, String)>,
    updated: bool,
}

impl Caller for WriteMix {
    async fn call(&mut self) -> Result<usize, tonic::Status> {
        match self.current.take() {
            None => {
                self.seq += 1;
                let r = self
                    .client
                    .create_registry(req(pb::CreateRegistryRequest {
                        registry: Some(Registry {
                            provider: Provider::Harbor as i32,
                            address: format!("w{}-{}.bench.example", self.who, self.seq),
                            namespace: "team".into(),
                            username: "robot".into(),
                            secret: "write-mix-secret".into(),
                            scope: Some(Scope {
                                all_projects: false,
                                projects: vec!["w".into()],
                            }),
                            ..Default::default()
                        }),
                    }))
                    .await?
                    .into_inner();
                self.current = Some((r.id, r.etag));
                self.updated = false;
                Ok(0)
            }
            Some((id, etag)) if !self.updated => {
                let r = self
                    .client
                    .update_registry(req(pb::UpdateRegistryRequest {
                        registry: Some(Registry {
                            id: id.clone(),
                            etag,
                            namespace: "team-b".into(),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["namespace".into()],
                        }),
                    }))
                    .await?
                    .into_inner();
                self.current = Some((id, r.etag));
                self.updated = true;
                Ok(1)
            }
            Some((id, etag)) => {
                self.client
                    .delete_registry(req(pb::DeleteRegistryRequest {
                        id,
                        etag,
                        force: false,
                    }))
                    .await?;
                Ok(2)
            }
        }
    }
}

// --- load --------------------------------------------------------------------

/// A request with the caller's name.
fn req<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("x-berth-actor", MetadataValue::from_static(ACTOR));
    r
}

/// One client's calls. `call` makes one and says which series its latency
/// belongs to (0 unless the scenario mixes calls).
trait Caller: Send + 'static {
    fn call(&mut self) -> impl Future<Output = Result<usize, tonic::Status>> + Send;
}

/// A stateless caller: a closure making one call.
struct Simple<F>(F);

impl<F, Fut> Caller for Simple<F>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    fn call(&mut self) -> impl Future<Output = Result<usize, tonic::Status>> + Send {
        let call = (self.0)();
        async move { call.await.map(|()| 0) }
    }
}

/// `--clients` callers, client i on connection i mod `--connections`, each
/// with one call in flight, for the warm-up and then `--duration`. Counted:
/// calls that start after the warm-up and end before the end.
async fn drive<C: Caller>(
    b: &Bench,
    channels: &[Channel],
    server_pid: Option<u32>,
    make: impl Fn(usize, Channel) -> C,
) -> Measured {
    let duration = Duration::from_secs_f64(b.args.duration);
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(b.args.warmup);
    let end = warm_end + duration;
    let clk_tck = b.clk_tck;
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(warm_end.into()).await;
        let before = CpuSample::take(server_pid);
        tokio::time::sleep_until(end.into()).await;
        CpuSample::take(server_pid).since(&before, clk_tck, server_pid)
    });
    let clients: Vec<_> = (0..b.args.clients)
        .map(|i| {
            let mut caller = make(i, channels[i % channels.len()].clone());
            tokio::spawn(async move {
                let mut seen = ClientSeen::default();
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let r = caller.call().await;
                    let t1 = Instant::now();
                    let counted = t0 >= warm_end && t1 <= end;
                    match r {
                        Ok(kind) if counted => {
                            let ns = (t1 - t0).as_nanos() as u64;
                            if seen.kinds.len() <= kind {
                                seen.kinds.resize(kind + 1, Vec::new());
                            }
                            seen.kinds[kind].push(ns);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            seen.errors += 1;
                            seen.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                seen
            })
        })
        .collect();
    let mut m = Measured {
        secs: duration.as_secs_f64(),
        ..Default::default()
    };
    for c in clients {
        let seen = c.await.expect("client task");
        m.errors += seen.errors;
        if m.first_error.is_none() {
            m.first_error = seen.first_error;
        }
        if m.kinds.len() < seen.kinds.len() {
            m.kinds.resize(seen.kinds.len(), Vec::new());
        }
        for (k, lat) in seen.kinds.into_iter().enumerate() {
            m.kinds[k].extend(lat);
        }
    }
    m.all = m.kinds.concat();
    m.all.sort_unstable();
    for k in &mut m.kinds {
        k.sort_unstable();
    }
    m.cpu = cpu.await.expect("cpu sampler");
    m
}

#[derive(Default)]
struct ClientSeen {
    kinds: Vec<Vec<u64>>,
    errors: u64,
    first_error: Option<String>,
}

/// One figure: every counted call's latency (ns, sorted), by series too.
#[derive(Default)]
struct Measured {
    secs: f64,
    all: Vec<u64>,
    kinds: Vec<Vec<u64>>,
    errors: u64,
    first_error: Option<String>,
    cpu: CpuUse,
}

#[derive(Debug, Clone, Copy)]
struct Summary {
    rate: f64,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    errors: u64,
}

impl Measured {
    fn summary(&self) -> Summary {
        Summary {
            rate: self.all.len() as f64 / self.secs,
            p50: percentile(&self.all, 0.50),
            p90: percentile(&self.all, 0.90),
            p99: percentile(&self.all, 0.99),
            errors: self.errors,
        }
    }
}

/// Nearest rank of sorted nanoseconds.
fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Duration::from_nanos(sorted[rank - 1])
}

// --- CPU ---------------------------------------------------------------------

/// CPU time (ticks) of the server, of this process (the clients), of
/// every other process and of the whole machine.
struct CpuSample {
    server: u64,
    bench: u64,
    /// Every process: pid → (command name, ticks).
    procs: HashMap<u32, (String, u64)>,
    busy: u64,
    total: u64,
    at: Instant,
}

/// Cores kept busy during a figure.
#[derive(Debug, Default, Clone)]
struct CpuUse {
    server: f64,
    bench: f64,
    machine: f64,
    cores: f64,
    /// Other processes by command name (≥ 0.05 cores), busiest first: the
    /// database server, and anything else that ran meanwhile.
    others: Vec<(String, f64)>,
}

impl CpuUse {
    fn others(&self) -> String {
        if self.others.is_empty() {
            return "—".into();
        }
        let shown: Vec<String> = self
            .others
            .iter()
            .take(3)
            .map(|(name, cores)| format!("{name} {cores:.2}"))
            .collect();
        shown.join(", ")
    }
}

impl CpuSample {
    fn take(server: Option<u32>) -> CpuSample {
        let (busy, total) = machine_ticks();
        let procs = all_processes();
        CpuSample {
            server: server.and_then(|p| procs.get(&p)).map_or(0, |(_, t)| *t),
            bench: procs.get(&std::process::id()).map_or(0, |(_, t)| *t),
            procs,
            busy,
            total,
            at: Instant::now(),
        }
    }

    fn since(&self, before: &CpuSample, clk_tck: f64, server: Option<u32>) -> CpuUse {
        let secs = (self.at - before.at).as_secs_f64().max(1e-9);
        let cores = |ticks: u64| ticks as f64 / clk_tck / secs;
        let total = (self.total - before.total) as f64;
        let mut by_name: HashMap<&str, u64> = HashMap::new();
        for (pid, (name, ticks)) in &self.procs {
            if Some(*pid) == server || *pid == std::process::id() {
                continue;
            }
            // A process started meanwhile counts whole.
            let earlier = before.procs.get(pid).map_or(0, |(_, t)| *t);
            *by_name.entry(name).or_default() += ticks.saturating_sub(earlier);
        }
        let mut others: Vec<(String, f64)> = by_name
            .into_iter()
            .map(|(name, ticks)| (name.to_owned(), cores(ticks)))
            .filter(|(_, c)| *c >= 0.05)
            .collect();
        others.sort_by(|a, b| b.1.total_cmp(&a.1));
        CpuUse {
            server: cores(self.server.saturating_sub(before.server)),
            bench: cores(self.bench.saturating_sub(before.bench)),
            machine: cores(self.busy.saturating_sub(before.busy)),
            cores: if total > 0.0 {
                total / clk_tck / secs
            } else {
                0.0
            },
            others,
        }
    }
}

/// Every process's command name and utime + stime, from /proc/PID/stat.
fn all_processes() -> HashMap<u32, (String, u64)> {
    let mut procs = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return procs;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        // Fields after the command name: state is the first, utime the 12th.
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        procs.insert(
            pid,
            (stat[open + 1..close].to_owned(), field(11) + field(12)),
        );
    }
    procs
}

/// (busy, total) ticks of all CPUs, from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return (0, 0);
    };
    let f: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() < 8 {
        return (0, 0);
    }
    // user nice system idle iowait irq softirq steal
    let busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    (busy, busy + f[3] + f[4])
}

// --- processes ---------------------------------------------------------------

/// The environment of every berth started on one database.
struct BerthEnv {
    url: String,
    key: String,
    ecr: String,
    /// `--berth-env` settings, KEY=VALUE.
    extra: Vec<String>,
}

/// A server subprocess (berth or the echo ceiling); killed if dropped
/// while running.
struct BerthProc {
    child: Child,
    name: String,
    addr: SocketAddr,
    spawned: Instant,
    log: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
struct Memory {
    hwm_kb: u64,
}

impl BerthProc {
    fn spawn(
        cmd: &mut Command,
        name: &str,
        addr: SocketAddr,
        log: Option<PathBuf>,
    ) -> anyhow::Result<BerthProc> {
        let stderr = match &log {
            Some(p) => Stdio::from(std::fs::File::create(p)?),
            None => Stdio::null(),
        };
        let spawned = Instant::now();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawn {name}"))?;
        Ok(BerthProc {
            child,
            name: name.to_owned(),
            addr,
            spawned,
            log,
        })
    }

    /// berth on a free loopback port: authentication off, RUST_LOG=warn,
    /// no other BERTH_* setting from the caller's environment.
    fn spawn_berth(
        bin: &Path,
        env: &BerthEnv,
        dir: &Path,
        backend: &str,
    ) -> anyhow::Result<BerthProc> {
        let addr = free_addr()?;
        let mut cmd = Command::new(bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BERTH_") {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(dir)
            .env("BERTH_LISTEN", addr.to_string())
            .env("BERTH_DATABASE_URL", &env.url)
            .env("BERTH_SECRET_KEY", &env.key)
            .env("BERTH_ECR_ENDPOINT", &env.ecr)
            .env("RUST_LOG", "warn");
        for kv in &env.extra {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        let log = dir.join(format!("berth-{}-{}.log", backend, addr.port()));
        BerthProc::spawn(&mut cmd, &format!("berth ({backend})"), addr, Some(log))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let Some(p) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits for health Check SERVING (polling every millisecond); the time
    /// since spawn.
    async fn wait_serving(&mut self) -> anyhow::Result<Duration> {
        let deadline = self.spawned + Duration::from_secs(60);
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))?
            .connect_timeout(Duration::from_millis(200));
        let mut health: Option<HealthClient<Channel>> = None;
        loop {
            if health.is_none()
                && let Ok(ch) = endpoint.connect().await
            {
                health = Some(HealthClient::new(ch));
            }
            if let Some(h) = &mut health {
                match h
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                {
                    Ok(r) if r.get_ref().status == 1 => return Ok(self.spawned.elapsed()),
                    Ok(_) => {}
                    Err(_) => health = None,
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("{} exited ({status}):\n{}", self.name, self.log_tail());
            }
            if Instant::now() > deadline {
                bail!("{} not SERVING after 60 s:\n{}", self.name, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Peak resident memory so far (VmHWM).
    fn memory(&self) -> Memory {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let hwm_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Memory { hwm_kb }
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after 15 s.
    async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    eprintln!("{} stopped with {status}:\n{}", self.name, self.log_tail());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                eprintln!("{} ignored SIGTERM for 15 s; killing it", self.name);
                self.child.kill()?;
                self.child.wait()?;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for BerthProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// `n` HTTP/2 connections to `addr`.
async fn connect(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true);
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        channels.push(endpoint.connect().await?);
    }
    Ok(channels)
}

/// A fresh PostgreSQL database, dropped by [`PgDatabase::drop_db`].
struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// `None` when nothing answers at the server's address.
    async fn create(base: &str) -> anyhow::Result<Option<PgDatabase>> {
        let mut parsed = url::Url::parse(base).context("--postgres")?;
        let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = parsed.port().unwrap_or(5432);
        let reachable = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await;
        if !matches!(reachable, Ok(Ok(_))) {
            return Ok(None);
        }
        let name = format!("berth_bench_{}", uuid::Uuid::new_v4().simple());
        parsed.set_path("/postgres");
        let admin = parsed.to_string();
        parsed.set_path(&format!("/{name}"));
        let url = parsed.to_string();
        admin_sql(&admin, &format!("CREATE DATABASE {name}")).await?;
        Ok(Some(PgDatabase { admin, name, url }))
    }

    async fn drop_db(&self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = admin_sql(&self.admin, &sql).await {
            eprintln!("could not drop {}: {e:#}", self.name);
        }
    }
}

async fn admin_sql(url: &str, sql: &str) -> anyhow::Result<()> {
    let db = Database::connect(url).await?;
    db.execute_unprepared(sql).await?;
    let _ = db.close().await;
    Ok(())
}

// --- the report --------------------------------------------------------------

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    facts: Vec<(String, &'static str, String)>,
    targets: Vec<Target>,
    notes: Vec<String>,
    echo: Option<Summary>,
}

struct Row {
    backend: &'static str,
    scenario: &'static str,
    unit: &'static str,
    m: Measured,
    kind_names: &'static [&'static str],
}

struct Target {
    what: String,
    measured: String,
    pass: bool,
}

impl Report {
    /// Adds a figure and prints it at once.
    fn row(
        &mut self,
        backend: &'static str,
        scenario: &'static str,
        unit: &'static str,
        m: Measured,
        kind_names: &'static [&'static str],
    ) {
        let s = m.summary();
        if scenario.starts_with("echo") && self.echo.is_none() {
            self.echo = Some(s);
        }
        println!(
            "[{backend}] {scenario}: {:.0} {unit}, p50 {} p90 {} p99 {}; cores busy: server {:.2}, bench {:.2}, machine {:.2} of {:.0}, others: {}{}",
            s.rate,
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            m.cpu.server,
            m.cpu.bench,
            m.cpu.machine,
            m.cpu.cores,
            m.cpu.others(),
            errors_note(s.errors)
        );
        if let Some(e) = &m.first_error {
            println!("    first error: {e}");
        }
        for (name, lat) in kind_names.iter().zip(&m.kinds) {
            println!(
                "    {name}: {} calls, p50 {} p99 {}",
                lat.len(),
                ms(percentile(lat, 0.5)),
                ms(percentile(lat, 0.99))
            );
        }
        self.rows.push(Row {
            backend,
            scenario,
            unit,
            m,
            kind_names,
        });
    }

    fn fact(&mut self, figure: &str, backend: &'static str, value: String) {
        self.facts.push((figure.to_owned(), backend, value));
    }

    fn target(&mut self, what: String, measured: impl Into<String>, pass: bool) {
        self.targets.push(Target {
            what,
            measured: measured.into(),
            pass,
        });
    }

    fn note(&mut self, note: String) {
        println!("{note}");
        self.notes.push(note);
    }

    /// The tables to paste into BENCHMARKS.md.
    fn markdown(&self, machine: &str, args: &Args) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## Results (markdown)\n");
        let _ = writeln!(
            out,
            "{machine}; {} clients on {} HTTP/2 connections, warm-up {} s, {} s per figure; commit {}.\n",
            args.clients,
            args.connections,
            args.warmup,
            args.duration,
            git_commit()
        );
        let _ = writeln!(
            out,
            "| scenario | backend | throughput | vs echo | p50 | p90 | p99 | p99 vs echo | cores busy: server / bench / machine | other processes (cores) | errors |"
        );
        let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|");
        for r in &self.rows {
            let s = r.m.summary();
            let (vs, p99_vs) = match &self.echo {
                Some(e) if !r.scenario.starts_with("echo") => (
                    format!("{:.0}%", 100.0 * s.rate / e.rate),
                    format!(
                        "{:.1}×",
                        s.p99.as_secs_f64() / e.p99.as_secs_f64().max(1e-9)
                    ),
                ),
                Some(_) => ("100%".into(), "1.0×".into()),
                None => ("—".into(), "—".into()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} {} | {} | {} | {} | {} | {} | {:.2} / {:.2} / {:.2} | {} | {} |",
                r.scenario,
                r.backend,
                thousands(s.rate),
                r.unit,
                vs,
                ms(s.p50),
                ms(s.p90),
                ms(s.p99),
                p99_vs,
                r.m.cpu.server,
                r.m.cpu.bench,
                r.m.cpu.machine,
                r.m.cpu.others(),
                s.errors
            );
            for (name, lat) in r.kind_names.iter().zip(&r.m.kinds) {
                let _ = writeln!(
                    out,
                    "| ↳ {name} | {} | {} {} | | {} | {} | {} | | | | |",
                    r.backend,
                    thousands(lat.len() as f64 / r.m.secs),
                    r.unit,
                    ms(percentile(lat, 0.5)),
                    ms(percentile(lat, 0.9)),
                    ms(percentile(lat, 0.99)),
                );
            }
        }
        let _ = writeln!(out, "\n| figure | backend | value |\n|---|---|--:|");
        for (figure, backend, value) in &self.facts {
            let _ = writeln!(out, "| {figure} | {backend} | {value} |");
        }
        let _ = writeln!(out, "\n| target | measured | result |\n|---|---|---|");
        for t in &self.targets {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                t.what,
                t.measured,
                if t.pass { "PASS" } else { "MISS" }
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 * 1024.0 / 1e6)
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// nproc, CPU model, RAM and kernel.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let family = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("cpu family"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_default();
    let guest = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}, family {family}{}), {:.1} GiB RAM, Linux {}",
        if guest { ", virtual machine" } else { "" },
        ram_kb as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}
