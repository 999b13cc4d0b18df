//! The `analytics` binary: parse the command line, load `.env`, start logging, dispatch.

use std::process::ExitCode;

use activity_analytics::cli::{self, Cli};
use activity_analytics::config::Settings;
use activity_analytics::telemetry;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Cli::parse();
    let _ = dotenvy::dotenv();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    match cli::run(args.command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
