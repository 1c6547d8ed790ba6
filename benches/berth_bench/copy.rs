//! CopyImage against `skopeo copy`, and ListTags against `skopeo list-tags`,
//! between two real registries on loopback (Debian's `docker-registry`,
//! TLS + htpasswd, the test suite's harness).
//!
//! Fairness: every copy, berth's or skopeo's, goes to a fresh target
//! registry, so neither finds blobs already there; skopeo runs with an empty
//! HOME, so its blob-info cache cannot turn uploads into mounts; the runs
//! alternate (berth, skopeo, berth, …) so drift in the machine hits both.
//! berth's memory growth is its peak resident set during the copy (the peak
//! is reset through /proc/PID/clear_refs first) minus its resident set
//! before.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth::pb::{
    self, CopyTarget, ImageSource, Provider, Registry, Scope, TlsSettings,
    image_service_client::ImageServiceClient, registry_service_client::RegistryServiceClient,
};
use tonic::transport::Channel;

use super::test_registry::{AuthMode, TestRegistry};
use super::{Bench, BerthEnv, BerthProc, ms, req};

/// The image: 4 layers of 50 MiB of random (incompressible) bytes.
const LAYERS: usize = 4;
const LAYER_BYTES: usize = 50 * 1024 * 1024;
/// Timed copies of each tool.
const RUNS: usize = 3;

fn entry(reg: &TestRegistry) -> Registry {
    Registry {
        provider: Provider::Other as i32,
        address: reg.host.clone(),
        namespace: "bench".into(),
        username: reg.username.clone(),
        secret: reg.password.clone(),
        scope: Some(Scope {
            all_projects: true,
            projects: Vec::new(),
        }),
        tls: Some(TlsSettings {
            verify: Some(true),
            ca_cert_pem: reg.ca_pem.clone(),
        }),
        ..Default::default()
    }
}

async fn create(c: &mut RegistryServiceClient<Channel>, r: Registry) -> anyhow::Result<String> {
    Ok(
        c.create_registry(req(pb::CreateRegistryRequest { registry: Some(r) }))
            .await?
            .into_inner()
            .id,
    )
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One CopyImage; the digest it reports.
async fn berth_copy(
    images: &mut ImageServiceClient<Channel>,
    from: &str,
    to: &str,
) -> anyhow::Result<String> {
    let mut stream = images
        .copy_image(req(pb::CopyImageRequest {
            source: Some(ImageSource {
                registry_id: from.into(),
                project: "bench".into(),
                image: "big".into(),
                tag: "v1".into(),
                digest: String::new(),
            }),
            target: Some(CopyTarget {
                registry_id: to.into(),
                project: String::new(),
                image: "big".into(),
                tag: "v1".into(),
            }),
        }))
        .await?
        .into_inner();
    let mut digest = None;
    while let Some(msg) = stream.message().await? {
        if let Some(pb::copy_progress::Event::Result(r)) = msg.progress.and_then(|p| p.event) {
            if r.code != 0 {
                bail!("CopyImage failed: {}", r.error);
            }
            digest = Some(r.digest);
        }
    }
    digest.context("CopyImage sent no result")
}

fn skopeo(args: &[&str], home: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new("skopeo")
        .args(args)
        .env("HOME", home)
        .output()
        .context("run skopeo")?;
    if !out.status.success() {
        bail!(
            "skopeo {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(started.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The section: prints its figures and adds them to the report.
pub(crate) async fn copy_section(b: &mut Bench, dir: &Path) -> anyhow::Result<()> {
    if Command::new("skopeo").arg("--version").output().is_err()
        || Command::new("docker-registry")
            .arg("--version")
            .output()
            .is_err()
    {
        b.report
            .note("CopyImage vs skopeo: skipped (needs skopeo and docker-registry)".into());
        return Ok(());
    }
    println!(
        "\n## CopyImage vs skopeo copy ({LAYERS} × {} MiB)",
        LAYER_BYTES >> 20
    );
    let source =
        tokio::task::spawn_blocking(|| TestRegistry::start_blocking(AuthMode::Htpasswd)).await?;
    let pushed = {
        let source = &source;
        tokio::task::block_in_place(|| {
            source.push_large_image("bench/big", "v1", LAYERS, LAYER_BYTES)
        })
    };

    let env = BerthEnv {
        url: format!("sqlite://{}?mode=rwc", dir.join("copy.db").display()),
        key: b.key.clone(),
        ecr: b.ecr.endpoint.clone(),
        extra: b.args.berth_env.clone(),
    };
    let mut berth = BerthProc::spawn_berth(&b.berth_bin, &env, dir, "copy")?;
    berth.wait_serving().await?;
    let channel = super::connect(berth.addr, 1)
        .await?
        .pop()
        .context("channel")?;
    let mut regs = RegistryServiceClient::new(channel.clone());
    let mut images = ImageServiceClient::new(channel);
    let from = create(&mut regs, entry(&source)).await?;

    let src_creds = source.skopeo_creds();
    let src_ref = format!("docker://{}/bench/big:v1", source.host);
    let src_certs = source.ca_dir.display().to_string();
    let (mut berth_times, mut skopeo_times, mut growth_kb) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        // berth, to a fresh registry.
        let target =
            tokio::task::spawn_blocking(|| TestRegistry::start_blocking(AuthMode::Htpasswd))
                .await?;
        let to = create(&mut regs, entry(&target)).await?;
        let pid = berth.pid();
        // Reset the peak ("5" clears VmHWM), then note where we start.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        let before = rss_kb(pid, "VmRSS:");
        let started = Instant::now();
        let digest = berth_copy(&mut images, &from, &to).await?;
        let took = started.elapsed();
        let peak = rss_kb(pid, "VmHWM:");
        if digest != pushed.digest {
            bail!(
                "CopyImage reported {digest}, the source is {}",
                pushed.digest
            );
        }
        growth_kb.push(peak.saturating_sub(before));
        println!(
            "  run {}: berth {} (memory +{:.1} MB)",
            run + 1,
            ms(took),
            peak.saturating_sub(before) as f64 / 1024.0
        );
        berth_times.push(took);
        drop(target);

        // skopeo, to another fresh registry, with an empty cache.
        let target =
            tokio::task::spawn_blocking(|| TestRegistry::start_blocking(AuthMode::Htpasswd))
                .await?;
        let home = tempfile::tempdir()?;
        let dst_ref = format!("docker://{}/bench/big:v1", target.host);
        let dst_creds = target.skopeo_creds();
        let dst_certs = target.ca_dir.display().to_string();
        let took = skopeo(
            &[
                "copy",
                "--quiet",
                "--src-cert-dir",
                &src_certs,
                "--src-creds",
                &src_creds,
                "--dest-cert-dir",
                &dst_certs,
                "--dest-creds",
                &dst_creds,
                &src_ref,
                &dst_ref,
            ],
            home.path(),
        )?;
        println!("  run {}: skopeo {}", run + 1, ms(took));
        skopeo_times.push(took);
    }
    let (berth_t, skopeo_t) = (median(berth_times), median(skopeo_times));
    let ratio = berth_t.as_secs_f64() / skopeo_t.as_secs_f64().max(1e-9);
    let growth = growth_kb.iter().copied().max().unwrap_or(0) as f64 / 1024.0;
    let size = format!("{LAYERS} × {} MiB", LAYER_BYTES >> 20);
    b.report.fact(
        &format!("CopyImage {size}, median of {RUNS}"),
        "SQLite",
        format!(
            "{} (skopeo copy {}; {ratio:.2}×)",
            ms(berth_t),
            ms(skopeo_t)
        ),
    );
    b.report.fact(
        "berth memory growth during the copy (max)",
        "SQLite",
        format!("{growth:.1} MB"),
    );
    b.report.target(
        "CopyImage ≤ 0.8 × skopeo copy's wall time".into(),
        format!("{ratio:.2}×"),
        ratio <= 0.8,
    );
    b.report.target(
        "memory growth during CopyImage < 64 MB".into(),
        format!("{growth:.1} MB"),
        growth < 64.0,
    );

    // ListTags, warm, against skopeo list-tags (a process per call).
    let list = || {
        req(pb::ListTagsRequest {
            registry_id: from.clone(),
            project: "bench".into(),
            image: "big".into(),
            ..Default::default()
        })
    };
    images.list_tags(list()).await?;
    let mut berth_lists = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let tags = images.list_tags(list()).await?.into_inner();
        berth_lists.push(started.elapsed());
        if !tags.tags.iter().any(|t| t == "v1") {
            bail!("ListTags did not list v1");
        }
    }
    let home = tempfile::tempdir()?;
    let mut skopeo_lists = Vec::new();
    for _ in 0..5 {
        skopeo_lists.push(skopeo(
            &[
                "list-tags",
                "--cert-dir",
                &src_certs,
                "--creds",
                &src_creds,
                &format!("docker://{}/bench/big", source.host),
            ],
            home.path(),
        )?);
    }
    let (l_berth, l_skopeo) = (median(berth_lists), median(skopeo_lists));
    println!(
        "  ListTags (warm) {} vs skopeo list-tags {}",
        ms(l_berth),
        ms(l_skopeo)
    );
    b.report.fact(
        "ListTags warm, median of 20 (skopeo list-tags, median of 5)",
        "SQLite",
        format!("{} ({})", ms(l_berth), ms(l_skopeo)),
    );
    berth.stop().await?;
    Ok(())
}
