//! The `berth` binary: parse flags, then serve or migrate. All logic lives
//! in the library.

use clap::Parser;

use berth::config::{Cli, Command};

/// See Cargo.toml for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve) {
        // Client commands print answers, not logs.
        Command::Registry(cmd) => berth::cli::registry(cmd, &cli.client).await,
        Command::Image(cmd) => berth::cli::image(cmd, &cli.client).await,
        Command::Token(cmd) => berth::cli::token(cmd),
        Command::GenerateKey => {
            println!("{}", berth::secret::Cipher::generate_base64().as_str());
            Ok(())
        }
        server_side => {
            let _telemetry = berth::telemetry::init(cli.config.log_format);
            run_server_side(server_side, cli.config).await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("berth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_server_side(command: Command, config: berth::config::Config) -> anyhow::Result<()> {
    match command {
        Command::Migrate => berth::server::open_store(&config).await.map(|_| {
            tracing::info!("migrations applied");
        }),
        Command::RotateKey { check } => rotate_key(config, check).await,
        _ => serve(config).await,
    }
}

/// `berth rotate-key [--check]`: one summary line on stdout.
async fn rotate_key(config: berth::config::Config, check: bool) -> anyhow::Result<()> {
    if !check {
        let done = berth::server::rotate_keys(&config).await?;
        println!("{done}");
        return Ok(());
    }
    let status = berth::server::key_status(&config).await?;
    println!("{status}");
    match status.stale() {
        0 => Ok(()),
        n => anyhow::bail!(
            "{n} stored secret(s) are not encrypted with the active key; run `berth rotate-key`"
        ),
    }
}

async fn serve(config: berth::config::Config) -> anyhow::Result<()> {
    if let Some(addr) = config.metrics_listen {
        berth::metrics::install(addr)?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    berth::server::run(config, listener, berth::server::shutdown_signal()).await
}
