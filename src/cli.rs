//! The `analytics` commands. Each takes every setting (`config::Settings`, listed by its
//! `--help`) and does one job.

use std::ffi::OsStr;

use clap::{CommandFactory, FromArgMatches, Id, Parser, Subcommand};

use crate::auth::{self, Role};
use crate::config::Settings;
use crate::retention::Outcome;
use crate::startup::Application;
use crate::state::AppState;
use crate::{db, statistics};

#[derive(Debug, Parser)]
#[command(
    name = "analytics",
    version,
    about = "Records user activity and serves cached analytics over REST"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the command line and the settings' environment variables, where an empty variable
    /// counts as unset (`REDIS_URL=` in a `.env` means no Redis; clap alone would parse "").
    /// Exits with clap's message, naming the setting, when one is missing or invalid.
    pub fn parse_settings() -> Self {
        let is_empty = |name: &OsStr| {
            std::env::var_os(name).is_some_and(|v| v.to_str().is_some_and(|v| v.trim().is_empty()))
        };
        let mut command = Self::command();
        let subcommands: Vec<String> = command
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        for name in subcommands {
            command = command.mut_subcommand(name, |sub| {
                let empty: Vec<Id> = sub
                    .get_arguments()
                    .filter(|a| a.get_env().is_some_and(is_empty))
                    .map(|a| a.get_id().clone())
                    .collect();
                empty
                    .into_iter()
                    .fold(sub, |sub, id| sub.mut_arg(id, |a| a.env(None)))
            });
        }
        Self::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations (unless --no-migrate), then serve HTTP on APP_ADDR.
    Serve {
        #[arg(long)]
        no_migrate: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Create the database if needed, apply pending migrations, and exit.
    Migrate {
        #[command(flatten)]
        settings: Settings,
    },
    /// Load deterministic synthetic activity.
    Seed {
        #[arg(long, default_value_t = 1000)]
        users: u32,
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        #[arg(long, default_value_t = 90)]
        days: u32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Seed only when the activities table is empty.
        #[arg(long)]
        if_empty: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[command(flatten)]
        settings: Settings,
    },
    /// Compute and cache the default dashboard aggregates.
    Prewarm {
        #[command(flatten)]
        settings: Settings,
    },
    /// Apply RETENTION_DAYS once: drop the months of activities that have expired, with their
    /// rollups and cached answers, and print what was dropped.
    Retention {
        #[command(flatten)]
        settings: Settings,
    },
}

impl Command {
    pub fn settings(&self) -> &Settings {
        match self {
            Command::Serve { settings, .. }
            | Command::Migrate { settings }
            | Command::Seed { settings, .. }
            | Command::Keys { settings, .. }
            | Command::Prewarm { settings }
            | Command::Retention { settings } => settings,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Store a new key and print its token, alone, on stdout.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["read", "write", "admin"])]
        role: String,
        /// Use this token instead of a random one (at least 16 characters).
        #[arg(long)]
        token: Option<String>,
    },
    /// List keys (never their tokens).
    List,
    /// Revoke the key with this name.
    Revoke { name: String },
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            no_migrate,
            settings,
        } => {
            if !no_migrate {
                migrate(&settings).await?;
            }
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await?;
        }
        Command::Migrate { settings } => migrate(&settings).await?,
        Command::Seed {
            users,
            events,
            days,
            seed,
            if_empty,
            settings,
        } => {
            let pool = db::pool(&settings)?;
            let options = crate::seed::SeedOptions {
                users,
                events,
                days,
                seed,
            };
            crate::seed::run(&pool, options, if_empty).await?;
        }
        Command::Keys { command, settings } => keys(command, &settings).await?,
        Command::Prewarm { settings } => {
            let state = AppState::new(&settings)?;
            let n = statistics::prewarm(&state, chrono::Utc::now())
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            tracing::info!(answers = n, "cache prewarmed");
        }
        Command::Retention { settings } => retention(&settings).await?,
    }
    Ok(())
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    db::create_database_if_missing(&settings.database_url).await?;
    let pool = db::pool(settings)?;
    db::migrate(&pool).await?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn retention(settings: &Settings) -> anyhow::Result<()> {
    let state = AppState::new(settings)?;
    let outcome = crate::retention::apply(
        &state.pool,
        &state.pending,
        &state.partitions,
        state.retention_days,
        chrono::Utc::now(),
    )
    .await?;
    // The cache has been told; its `cache_pending` rows can go now rather than by a sweep.
    state.pending.flush().await;
    match outcome {
        Outcome::KeepEverything => println!("RETENTION_DAYS is unset: every activity is kept"),
        Outcome::Busy => println!("another instance is applying retention right now; nothing done"),
        Outcome::Applied { cutoff, dropped } => {
            let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            if dropped.is_empty() {
                println!("nothing has expired: no month ends before {cutoff}");
            }
            for d in &dropped {
                println!(
                    "dropped {} ({} to {}): {} activities, {} cache touches",
                    d.partition.name,
                    d.partition.first_instant.date_naive(),
                    d.partition.end_instant.date_naive(),
                    d.events,
                    d.touches
                );
            }
            println!(
                "activities before {cutoff} have expired; {} partition(s) dropped",
                dropped.len()
            );
        }
    }
    Ok(())
}

async fn keys(command: KeysCommand, settings: &Settings) -> anyhow::Result<()> {
    let pool = db::pool(settings)?;
    match command {
        KeysCommand::Create { name, role, token } => {
            let role = Role::parse(&role).ok_or_else(|| anyhow::anyhow!("unknown role {role}"))?;
            let token = auth::create_key(&pool, &name, role, token).await?;
            println!("{token}");
        }
        KeysCommand::List => {
            for key in db::keys::list_keys(&pool).await? {
                let state = key
                    .revoked_at
                    .map_or("active".to_owned(), |t| format!("revoked {t}"));
                println!("{}\t{}\t{}\t{}", key.name, key.role, key.created_at, state);
            }
        }
        KeysCommand::Revoke { name } => {
            anyhow::ensure!(
                db::keys::revoke_key(&pool, &name).await?,
                "no active key is named {name:?}"
            );
            eprintln!("revoked {name}");
        }
    }
    Ok(())
}
