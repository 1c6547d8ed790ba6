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

    /// Seconds berth waits for one registry request (connect: 5 s at most)
    /// before answering DEADLINE_EXCEEDED.
    #[arg(long, env = "BERTH_REGISTRY_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub registry_timeout: u64,

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
