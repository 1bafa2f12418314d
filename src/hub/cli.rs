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
    /// N virtual stores (own hash-chained journals, feed cursors, heartbeats, Standin's
    /// breaker and backoff) against hub processes it runs, through an outage, a hub SIGKILL
    /// and a PostgreSQL restart; prints politeness, drain and exactly-once figures.
    FleetSim(FleetSimArgs),
    /// Serve central's paths for every registered store.
    Serve {
        /// Address to listen on (overrides `listen`).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
}

#[derive(Args)]
pub struct FleetSimArgs {
    /// Virtual stores.
    #[arg(long, default_value_t = 100)]
    pub stores: usize,
    /// Entries each store journals during the outage.
    #[arg(long, default_value_t = 40)]
    pub entries: usize,
    /// How long the hub is away, in seconds.
    #[arg(long, default_value_t = 60)]
    pub outage_secs: u64,
    /// Hub processes to spread the stores over (1 or 2).
    #[arg(long, default_value_t = 2)]
    pub hubs: usize,
    /// Journal batches landing at once per hub process.
    #[arg(long, default_value_t = 8)]
    pub intake_at_once: usize,
    /// Do not SIGKILL a hub process mid-drain.
    #[arg(long)]
    pub no_kill: bool,
    /// Do not restart PostgreSQL mid-drain (always so with --database-url).
    #[arg(long)]
    pub no_pg_restart: bool,
    /// Skip PostgreSQL's own INSERT ceiling.
    #[arg(long)]
    pub no_ceiling: bool,
    /// Where the private PostgreSQL cluster and the hub log go (a temporary directory if
    /// not given; kept when given).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Register a store and print its token, once (only its SHA-256 is kept): the store's
    /// `central.token`.
    Add { store_id: String },
    /// Give a registered store a new token and print it, once; the old one stops working on
    /// every hub process within `token_refresh_secs` (15 s).
    Rotate { store_id: String },
}

impl HubArgs {
    pub fn load(&self) -> anyhow::Result<HubConfig> {
        let mut config = HubConfig::load(self.config.as_deref(), std::env::vars())?;
        if let Some(url) = &self.database_url {
            config.database_url = crate::config::Secret::new(url.clone());
        }
        // The demo runs its own PostgreSQL.
        // The demo and the fleet simulator can run their own PostgreSQL.
        if config.database_url.is_empty()
            && !matches!(self.command, HubCommand::Demo(_) | HubCommand::FleetSim(_))
        {
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
        HubCommand::Store {
            command: StoreCommand::Rotate { store_id },
        } => {
            let client = db::connect(&url).await?;
            let token = super::auth::rotate_token(&client, &store_id).await?;
            println!(
                "store {store_id} has a new central.token (shown once); the old one stops working within {} s:",
                config.token_refresh_secs.max(1)
            );
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
        HubCommand::FleetSim(a) => {
            // A private directory unless one is given; removed afterwards when ours.
            let (work_dir, ours) = match a.work_dir {
                Some(d) => (d, false),
                None => {
                    let d = std::env::temp_dir().join(format!(
                        "standin-fleet-sim-{}",
                        uuid::Uuid::now_v7().simple()
                    ));
                    (d, true)
                }
            };
            let mut plan =
                super::fleet_sim::Plan::new(a.stores, std::env::current_exe()?, work_dir.clone());
            plan.entries_per_store = a.entries;
            plan.outage = std::time::Duration::from_secs(a.outage_secs);
            plan.hubs = a.hubs.clamp(1, 2);
            plan.intake_at_once = a.intake_at_once.max(1);
            plan.kill_hub = !a.no_kill;
            plan.restart_postgres = !a.no_pg_restart;
            plan.ceiling = !a.no_ceiling;
            plan.database_url = (!url.is_empty()).then_some(url);
            let report = super::fleet_sim::run(plan).await;
            if ours {
                let _ = std::fs::remove_dir_all(&work_dir);
            }
            let report = report?;
            report.print();
            anyhow::ensure!(report.exactly_once(), "not every entry landed exactly once");
        }
        HubCommand::Serve { .. } => {
            let listen = config.listen;
            let state = HubState::new(config)?;
            let listener =
                super::listen(listen).with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(%listen, "hub serving");
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            super::launch(state, listener, crate::server::shutdown_signal()).await?;
            tracing::info!("hub stopped");
        }
    }
    Ok(())
}
