//! Configuration: one struct, flags and `BERTH_*` environment variables,
//! defaults that work on a laptop.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// berth keeps a CI/CD platform's container image registries.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, long_about = None)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options shared by every command.
    #[command(flatten)]
    pub config: Config,
    /// Options of the client commands (`registry`, `image`).
    #[command(flatten)]
    pub client: crate::cli::ClientArgs,
}

/// berth's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Bearer tokens for the tokens file.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Re-encrypt every stored secret under the active (first) secret key,
    /// in one transaction, and exit. Applies migrations first.
    RotateKey {
        /// Only count secrets by key; exit non-zero if any is not under the
        /// active key.
        #[arg(long)]
        check: bool,
    },
    /// Print a fresh secret key (32 random bytes, base64) and exit.
    GenerateKey,
    /// Manage registries on a running berth (client).
    #[command(subcommand)]
    Registry(crate::cli::RegistryCommand),
    /// Images and credentials from a running berth (client).
    #[command(subcommand)]
    Image(crate::cli::ImageCommand),
}

/// `berth token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a new random token for IDENTITY: prints the token (give it to
    /// the caller) and the line to add to the tokens file (berth keeps only
    /// the token's hash).
    Generate {
        /// The identity the token stands for, as the policy names it.
        #[arg(long)]
        identity: String,
    },
    /// Print the tokens file line of an existing token read from stdin.
    Hash {
        /// The identity the token stands for.
        #[arg(long)]
        identity: String,
    },
}

/// When GetCredentials answers relative to its audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AuditMode {
    /// After the record is stored: no credentials without a record.
    #[default]
    Sync,
    /// At once; the record is stored within milliseconds, and flushed at a
    /// clean shutdown, but a crash can lose the last ones.
    Async,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Everything berth can be told.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address the gRPC server listens on. Loopback by default; expose it
    /// deliberately (e.g. 0.0.0.0:50051 in a container).
    #[arg(
        long,
        env = "BERTH_LISTEN",
        default_value = "127.0.0.1:50051",
        global = true
    )]
    pub listen: SocketAddr,

    /// Address of the Prometheus metrics HTTP listener (`GET /metrics`),
    /// e.g. 0.0.0.0:9090. Off when unset.
    #[arg(long, env = "BERTH_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,

    /// Database URL: sqlite://PATH?mode=rwc (default, created on first
    /// start), postgres://user:pass@host/db or mysql://user:pass@host/db.
    #[arg(
        long,
        env = "BERTH_DATABASE_URL",
        default_value = "sqlite://berth.db?mode=rwc",
        hide_env_values = true,
        global = true
    )]
    pub database_url: String,

    /// Key that encrypts stored secrets: 32 random bytes, base64
    /// (`berth generate-key`). During a rotation, a list separated by commas:
    /// the active key first, then older ones. Prefer BERTH_SECRET_KEY_FILE.
    #[arg(long, env = "BERTH_SECRET_KEY", hide_env_values = true, global = true)]
    pub secret_key: Option<String>,

    /// File holding the secret key: one base64 key per line, the active one
    /// first (older keys after it only decrypt; `#` comments and blank lines
    /// are ignored). With neither key option, berth on
    /// SQLite creates `berth.key` beside the database file (mode 0600); on
    /// PostgreSQL/MySQL a key is required.
    #[arg(long, env = "BERTH_SECRET_KEY_FILE", global = true)]
    pub secret_key_file: Option<PathBuf>,

    /// Amazon ECR API endpoint instead of `https://api.ecr.<region>.amazonaws.com`.
    /// Meant for tests (a local stub) and private endpoints.
    #[arg(long, env = "BERTH_ECR_ENDPOINT", global = true)]
    pub ecr_endpoint: Option<String>,

    /// Alibaba Cloud Container Registry API endpoint instead of
    /// `https://cr.<region>.aliyuncs.com`, for ACR registries in access-key
    /// mode. Meant for tests (a local stub).
    #[arg(long, env = "BERTH_ACR_ENDPOINT", global = true)]
    pub acr_endpoint: Option<String>,

    /// Tencent Cloud TCR API endpoint instead of
    /// `https://tcr.tencentcloudapi.com`, for TCR registries in access-key
    /// mode. Meant for tests (a local stub).
    #[arg(long, env = "BERTH_TCR_ENDPOINT", global = true)]
    pub tcr_endpoint: Option<String>,

    /// Seconds berth waits for one registry request (connect: 5 s at most)
    /// before answering DEADLINE_EXCEEDED.
    #[arg(long, env = "BERTH_REGISTRY_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub registry_timeout: u64,

    /// TLS certificate chain (PEM) of the gRPC listener. Re-read when the
    /// file changes, so rotation needs no restart.
    #[arg(long, env = "BERTH_TLS_CERT", requires = "tls_key", global = true)]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of the TLS certificate.
    #[arg(long, env = "BERTH_TLS_KEY", requires = "tls_cert", global = true)]
    pub tls_key: Option<PathBuf>,

    /// CA (PEM) that signs client certificates: turns on mutual TLS, where
    /// the caller is the certificate's URI or DNS SAN (e.g. a SPIFFE id).
    #[arg(
        long,
        env = "BERTH_TLS_CLIENT_CA",
        requires = "tls_cert",
        global = true
    )]
    pub tls_client_ca: Option<PathBuf>,

    /// Bearer tokens file (`IDENTITY sha256:HEX` per line; see `berth token
    /// generate`). Turns on authentication for callers without a client
    /// certificate.
    #[arg(long, env = "BERTH_TOKENS_FILE", global = true)]
    pub tokens_file: Option<PathBuf>,

    /// Policy file (TOML) giving identities the roles admin, reader and
    /// credentials on projects. Required when authentication is on.
    #[arg(long, env = "BERTH_POLICY_FILE", global = true)]
    pub policy_file: Option<PathBuf>,

    /// Serve without authentication on a non-loopback address. Without it,
    /// berth refuses to start there unless tokens or mutual TLS are set up.
    #[arg(long, env = "BERTH_ALLOW_UNAUTHENTICATED", global = true)]
    pub allow_unauthenticated: bool,

    /// RPCs served at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "BERTH_MAX_CONCURRENT_RPCS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=100_000), global = true)]
    pub max_concurrent_rpcs: u32,

    /// Seconds an RPC may take (or the caller's shorter grpc-timeout)
    /// before it ends with DEADLINE_EXCEEDED.
    #[arg(long, env = "BERTH_RPC_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub rpc_timeout: u64,

    /// How many registry changes the change feed keeps, so a watcher that
    /// was away can resume (WatchRegistries from_revision) instead of
    /// listing again. Older ones are pruned.
    #[arg(long, env = "BERTH_FEED_RETENTION", default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(1..=100_000_000), global = true)]
    pub feed_retention: i64,

    /// How often (ms) each replica looks for changes made through other
    /// replicas; the latency of the change feed and of cache invalidation
    /// across replicas.
    #[arg(long, env = "BERTH_FEED_POLL_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000), global = true)]
    pub feed_poll_ms: u64,

    /// How often (ms) an idle WatchRegistries stream is told how far the
    /// feed moved (PROGRESS), so its resume point keeps up.
    #[arg(long, env = "BERTH_FEED_PROGRESS_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000), global = true, hide = true)]
    pub feed_progress_ms: u64,

    /// How often (ms) berth re-reads the TLS, tokens and policy files.
    #[arg(long, env = "BERTH_RELOAD_INTERVAL_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=3_600_000), global = true, hide = true)]
    pub reload_interval_ms: u64,

    /// Whether GetCredentials waits for its audit record to be stored
    /// (`sync`, the default: no credentials leave without their record) or
    /// answers at once (`async`: faster under load; a crash can lose the
    /// last records).
    #[arg(
        long,
        env = "BERTH_AUDIT_CREDENTIALS",
        value_enum,
        default_value = "sync",
        global = true
    )]
    pub audit_credentials: AuditMode,

    /// Log format. The level comes from RUST_LOG (default `info`).
    #[arg(
        long,
        env = "BERTH_LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,
}
