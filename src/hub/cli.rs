//! `standin hub …`: migrate, store add, import, serve.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{HubConfig, HubState, db};
use crate::feeds::Feed;

#[derive(Args)]
pub struct HubArgs {
    #[command(subcommand)]
    pub command: HubCommand,
    /// Hub config file (TOML; also `STANDIN_HUB_CONFIG`).
    #[arg(long, env = "STANDIN_HUB_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL (overrides `database_url` and `STANDIN_HUB__DATABASE_URL`).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
}

#[derive(Subcommand)]
pub enum HubCommand {
    /// Create or upgrade the hub's schema (PostgreSQL 15 or newer), then exit.
    Migrate,
    /// Stores known to the hub.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Hand HQ's records in: FILE holds one JSON record a line in FEED's record shape
    /// (API.md), each with the `store_id` it is for (policy without one: every store);
    /// `{"deleted": true, KEY, "store_id"}` removes one. All lines land or none.
    Import { feed: String, file: PathBuf },
    /// PostgreSQL (a private cluster), the hub, three Standin stores wired to it, and the
    /// simulator as the card processor; prints each store's desk and the hub.
    Demo(super::demo::HubDemoArgs),
    /// Serve central's paths for every registered store.
    Serve {
        /// Address to listen on (overrides `listen`).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
}

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Register a store and print its token, once (only its SHA-256 is kept): the store's
    /// `central.token`.
    Add { store_id: String },
}

impl HubArgs {
    pub fn load(&self) -> anyhow::Result<HubConfig> {
        let mut config = HubConfig::load(self.config.as_deref(), std::env::vars())?;
        if let Some(url) = &self.database_url {
            config.database_url = crate::config::Secret::new(url.clone());
        }
        // The demo runs its own PostgreSQL.
        if config.database_url.is_empty() && !matches!(self.command, HubCommand::Demo(_)) {
            anyhow::bail!("no database URL: pass --database-url or set STANDIN_HUB__DATABASE_URL");
        }
        if let HubCommand::Serve { listen: Some(l) } = &self.command {
            config.listen = *l;
        }
        Ok(config)
    }
}

pub async fn run(command: HubCommand, config: HubConfig) -> anyhow::Result<()> {
    let url = config.database_url.expose().to_owned();
    match command {
        HubCommand::Migrate => {
            let mut client = db::connect(&url).await?;
            let v = db::migrate(&mut client).await?;
            println!("hub schema version {v}");
        }
        HubCommand::Store {
            command: StoreCommand::Add { store_id },
        } => {
            let client = db::connect(&url).await?;
            let token = super::auth::add_store(&client, &store_id).await?;
            println!("store {store_id} registered; its central.token (shown once):");
            println!("{token}");
        }
        HubCommand::Import { feed, file } => {
            let feed = Feed::parse(&feed).with_context(|| {
                format!(
                    "no feed `{feed}`: feeds are pickup_orders, receipts, staff, devices, policy"
                )
            })?;
            let f = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let mut client = db::connect(&url).await?;
            let done = super::feeds::import(&mut client, feed, std::io::BufReader::new(f))
                .await
                .with_context(|| format!("importing {}", file.display()))?;
            println!(
                "{feed}: {} lines read, {} records changed",
                done.lines, done.changed
            );
        }
        HubCommand::Demo(args) => super::demo::run(args).await?,
        HubCommand::Serve { .. } => {
            let listen = config.listen;
            let state = HubState::new(config)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(%listen, "hub serving");
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            super::launch(state, listener, crate::server::shutdown_signal()).await?;
            tracing::info!("hub stopped");
        }
    }
    Ok(())
}
