//! The `berth` binary: parse flags, then serve or migrate. All logic lives
//! in the library.

use clap::Parser;

use berth::config::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    berth::telemetry::init(cli.config.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Migrate => berth::server::open_store(&cli.config).await.map(|_| {
            tracing::info!("migrations applied");
        }),
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

async fn serve(config: berth::config::Config) -> anyhow::Result<()> {
    if let Some(addr) = config.metrics_listen {
        berth::metrics::install(addr)?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    berth::server::run(config, listener, berth::server::shutdown_signal()).await
}
