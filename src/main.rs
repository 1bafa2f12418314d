//! The `standin` command: serve, config, demo, simulate, migrate, check, backup, hub.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use standin::config::{Config, Loaded, LogFormat};

#[derive(Parser)]
#[command(
    name = "standin",
    version,
    about = "Store-side offline fallback service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log output: human-readable lines or JSON objects (overrides `log.format`).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(ServeArgs),
    /// Print the configuration `serve` would run with, given the same flags, environment and
    /// file: every key, its value and where it came from (default, file, environment, flag),
    /// secrets redacted. Warns on stderr about values that cannot be meant.
    Config(ServeArgs),
    /// Run the simulator of central and the processor plus Standin wired to it.
    Demo(standin::demo::DemoArgs),
    /// Run the simulator of central and the processor alone.
    Simulate(standin::demo::SimulateArgs),
    /// Create or upgrade the database schema, then exit (with the service stopped: a
    /// running server migrates at its own start-up).
    Migrate(DataArgs),
    /// Verify the database (integrity, feed bookkeeping); exits non-zero on any damage.
    Check(DataArgs),
    /// The hub: central's side of the contract on PostgreSQL (HQ runs it, not the store).
    Hub(standin::hub::cli::HubArgs),
    /// Write a consistent copy of the database to PATH (safe while serving).
    Backup {
        path: PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Address to listen on (overrides `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Serve the UI from this directory instead of the built-in copy (overrides `ui_dir`);
    /// only files inside it are served.
    #[arg(long)]
    ui_dir: Option<PathBuf>,
}

impl ServeArgs {
    fn load(&self, log_format: Option<LogFormat>) -> anyhow::Result<Loaded> {
        let mut loaded = self.data.load_traced()?;
        if let Some(l) = self.listen {
            loaded.set_listen(l);
        }
        if let Some(d) = &self.ui_dir {
            loaded.set_ui_dir(d.clone());
        }
        if let Some(f) = log_format {
            loaded.set_log_format(f);
        }
        Ok(loaded)
    }
}

#[derive(Args)]
struct DataArgs {
    /// TOML config file (also `STANDIN_CONFIG`).
    #[arg(long, env = "STANDIN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl DataArgs {
    fn load(&self) -> anyhow::Result<Config> {
        Ok(self.load_traced()?.config)
    }

    fn load_traced(&self) -> anyhow::Result<Loaded> {
        let mut loaded = Config::load_traced(self.config.as_deref(), std::env::vars())?;
        if let Some(d) = &self.data_dir {
            loaded.set_data_dir(d.clone());
        }
        Ok(loaded)
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("standin: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            // Before anything allocates: glibc reads the arena cap only at start-up.
            standin::server::arenas::cap_malloc_arenas();
            let config = args.load(cli.log_format)?.config;
            init_tracing(config.log.format, &config.log.filter);
            for warning in config.warnings() {
                tracing::warn!("configuration: {warning}");
            }
            runtime()?.block_on(standin::server::serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(args) => {
            let loaded = args.load(cli.log_format)?;
            print!("{}", loaded.report());
            for warning in loaded.config.warnings() {
                eprintln!("standin: warning: {warning}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            init_tracing(cli.log_format.unwrap_or_default(), "info");
            runtime()?.block_on(standin::demo::run_demo(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(args) => {
            init_tracing(cli.log_format.unwrap_or_default(), "info");
            runtime()?.block_on(standin::demo::run_simulator(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(data) => {
            let config = data.load()?;
            init_tracing(
                cli.log_format.unwrap_or(config.log.format),
                &config.log.filter,
            );
            std::fs::create_dir_all(&config.data_dir)?;
            let path = config.database_path();
            let mut conn =
                standin::store::open_write_connection(&path, config.database.busy_timeout_ms)?;
            let version = standin::store::migrate(&mut conn)
                .with_context(|| format!("migrating {}", path.display()))?;
            println!("{}: schema version {version}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(data) => {
            let config = data.load()?;
            let path = config.database_path();
            let problems = standin::store::maintenance::check(&path)?;
            if problems.is_empty() {
                println!("{}: ok", path.display());
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &problems {
                    println!("{}: {}", path.display(), p.0);
                }
                println!("{}: {} problem(s)", path.display(), problems.len());
                Ok(ExitCode::from(1))
            }
        }
        Command::Hub(args) => {
            let config = args.load()?;
            // The fleet simulator's thousands of breakers would log every state change.
            let filter = match args.command {
                standin::hub::cli::HubCommand::FleetSim(_) => "warn",
                _ => config.log_filter.as_str(),
            };
            init_tracing(cli.log_format.unwrap_or_default(), filter);
            runtime()?.block_on(standin::hub::cli::run(args.command, config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { path, data } => {
            let config = data.load()?;
            let report = standin::store::maintenance::backup(&config.database_path(), &path)?;
            println!(
                "{}: backup written ({} bytes), verified",
                path.display(),
                report.bytes
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Logs to stderr; `RUST_LOG` overrides the configured filter.
fn init_tracing(format: LogFormat, filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    // Colours only for a person at a terminal, never into journald or a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Human => builder.init(),
    }
}
