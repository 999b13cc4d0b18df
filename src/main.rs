//! The `analytics` binary: load `.env`, parse the command line and settings, start logging,
//! dispatch.

use std::process::ExitCode;

use activity_analytics::cli::{self, Cli};
use activity_analytics::telemetry;

// Every request allocates (keys, headers, payloads); mimalloc's thread-local free lists make
// them cheap (README, "Benchmarks", has the figure).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // The settings are read from the environment `.env` completes.
    let _ = dotenvy::dotenv();
    let args = Cli::parse_settings();
    // Held to the end: dropping it sends the spans still queued for export.
    let _telemetry = telemetry::init(args.command.settings());
    match cli::run(args.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
