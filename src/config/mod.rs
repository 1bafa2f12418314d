//! Configuration: a TOML file plus `STANDIN_`-prefixed environment overrides.
//!
//! Precedence: command-line flags > environment > file > defaults. Nested keys use a double
//! underscore in the environment (`STANDIN_CENTRAL__URL` sets `central.url`). Unknown keys are
//! refused by name, and a wrongly typed value names its key, so a typo never silently runs
//! with a default. Loading has no side effects: nothing is created or opened here.
//!
//! **One source of defaults:** [`Config::default()`]. Loading serializes it to a table and lays
//! the file and then the environment over it, key by key, before deserializing; no struct has
//! a serde default of its own. So a key left out takes the same value whether the file is
//! absent, its section is absent, or the section is there without that key, from the file or
//! from the environment. (A section-level `#[serde(default)]` on a type shared by two sections
//! once gave `[central]` with only `url` a 0 ms timeout: `tests/config.rs` walks every key.)

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod report;
pub use report::{Loaded, Origin};

/// The whole configuration of `standin serve`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The store this instance serves (as central knows it).
    pub store_id: String,
    #[serde(deserialize_with = "de::from_str")]
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub central: UpstreamConfig,
    pub payments: UpstreamConfig,
    pub feeds: FeedsConfig,
    pub journal: JournalConfig,
    pub access: AccessConfig,
    /// Set by `standin demo` only: where the simulator's admin API is, for the UI's panel.
    pub demo: Option<DemoConfig>,
    /// Serve the UI from this directory instead of the copy built into the binary (editing
    /// the UI without rebuilding; `STANDIN_UI_DIR` or `serve --ui-dir`). Only files inside it
    /// are served.
    pub ui_dir: Option<PathBuf>,
    /// Bearer tokens for machine callers (the HQ sync job), by hash and scope.
    pub tokens: Vec<TokenConfig>,
    /// Mixed into staff PIN verifiers (Argon2id secret). Never stored in the database.
    pub pepper: Secret,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Read connections in the pool (the writer has its own).
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub read_connections: usize,
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub busy_timeout_ms: u64,
    /// Most writes the writer thread folds into one transaction (group commit).
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub max_group: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest feed batch (`POST /sync/v1/feeds/{feed}/batches`); every other route declares
    /// its own, far smaller, limit in the route table.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub body_limit_bytes: usize,
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub request_timeout_secs: u64,
    /// Open connections at most; at the cap the oldest idle one is closed for a newcomer.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub max_connections: usize,
    /// Open connections from one client address at most (a desk browser opens about 6).
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub max_connections_per_client: usize,
    /// A request's head must arrive within this of the connection opening or of the previous
    /// answer: idle keep-alive connections and slow heads are closed after it.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub idle_timeout_secs: u64,
}

/// `[central]` and `[payments]`: one type, two sets of defaults (both in `Config::default()`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL; absent means this upstream is not configured.
    pub url: Option<String>,
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub timeout_ms: u64,
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub health_interval_secs: u64,
    /// Sent as `Authorization: Bearer` on every call to this upstream when set: for central,
    /// the store's own token from `standin hub store add`. A secret (redacted when printed).
    pub token: Secret,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeedsConfig {
    /// Pull feed batches from central (otherwise only HQ's push API brings them).
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub pull: bool,
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub pull_interval_secs: u64,
    /// Batches asked for per request while catching up.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub pull_page: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Push the journal to central (`central.url`); the HQ sync job can pull it either way.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub push: bool,
    /// Entries per push; while a backlog drains (each push full and fully answered) pushes
    /// double up to 10× this (at most 5,000, the hub's default per request), and fall back
    /// to this after any failure.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub batch_size: usize,
    /// First retry delay after a failed push; doubles up to `retry_cap_ms` (full jitter).
    /// 2 s: when the hub goes, every store that had a request in flight loses it in the same
    /// second, and a first retry spread over 0.5 s put 19 % of 5,000 stores at a dead hub in
    /// one second (`cargo bench --bench fleet`, 2026-12-06); over 2 s it is under a tenth.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub retry_base_ms: u64,
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub retry_cap_ms: u64,
    /// How often an idle uplink looks for entries written by another process.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub idle_poll_ms: u64,
    /// Delivered entries are kept this many days; undelivered ones forever.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub retention_days: u32,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            push: true,
            batch_size: 100,
            retry_base_ms: 2_000,
            retry_cap_ms: 60_000,
            idle_poll_ms: 1_000,
            retention_days: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// A staff session ends after this long without a request.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub session_idle_minutes: u32,
    /// ... and this long after login, whatever happens.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub session_absolute_hours: u32,
    /// Wrong PINs in a row before an employee id is locked.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub lockout_failures: u32,
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub lockout_minutes: u32,
    /// Wrong PINs from one client address (any employee ids) per window before it is refused.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub address_failures: u32,
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub address_window_minutes: u32,
    /// Mark the session cookie `Secure` (set when the desk reaches Standin over TLS).
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub secure_cookies: bool,
    /// PIN checks running at once (each holds 19 MiB for Argon2id).
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub pin_checks_at_once: usize,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            session_idle_minutes: 15,
            session_absolute_hours: 12,
            lockout_failures: 5,
            lockout_minutes: 30,
            address_failures: 30,
            address_window_minutes: 15,
            secure_cookies: false,
            pin_checks_at_once: 2,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    pub simulator_url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it, for logs and audit ("hq-sync").
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub filter: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// A string that never shows in `Debug` output, logs or a serialized config (it serializes as
/// `"[redacted]"` when set, so `standin config` and anything else that serializes a `Config`
/// cannot leak it).
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { REDACTED })
    }
}

/// What a secret shows instead of its value.
pub const REDACTED: &str = "[redacted]";

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"[redacted]\""
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            store_id: "store-0001".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./standin-data"),
            database: DatabaseConfig::default(),
            http: HttpConfig::default(),
            central: UpstreamConfig::with_timeout(5_000),
            payments: UpstreamConfig::with_timeout(1_000),
            feeds: FeedsConfig::default(),
            journal: JournalConfig::default(),
            access: AccessConfig::default(),
            demo: None,
            ui_dir: None,
            tokens: Vec::new(),
            pepper: Secret::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            read_connections: 4,
            busy_timeout_ms: 5_000,
            max_group: 512,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 32 * 1024 * 1024,
            request_timeout_secs: 60,
            max_connections: 2048,
            max_connections_per_client: 256,
            idle_timeout_secs: 15,
        }
    }
}

impl UpstreamConfig {
    fn with_timeout(timeout_ms: u64) -> Self {
        Self {
            url: None,
            timeout_ms,
            health_interval_secs: 5,
            token: Secret::default(),
        }
    }
}

impl Default for FeedsConfig {
    fn default() -> Self {
        Self {
            pull: false,
            pull_interval_secs: 30,
            pull_page: 10,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            filter: "info".into(),
        }
    }
}

/// A configuration problem, always naming the key (or file) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`{origin}: {message}")]
    Key {
        key: String,
        origin: String,
        message: String,
    },
}

impl Config {
    /// Loads `file` (if given) and applies `env` overrides (`STANDIN_…` pairs).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Ok(Self::load_traced(file, env)?.config)
    }

    /// As [`Config::load`], remembering where each key came from (for `standin config`).
    pub fn load_traced(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let from_file = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Syntax {
                    path: path.into(),
                    message: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        let mut from_env = toml::Table::new();
        let mut env_vars = std::collections::BTreeMap::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("STANDIN_") else {
                continue;
            };
            // STANDIN_CONFIG names the file itself; it is not a key.
            // STANDIN_HUB__… configure the hub (src/hub/config.rs), not a store.
            if rest == "CONFIG" || rest.is_empty() || rest.starts_with("HUB_") {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            set_path(&mut from_env, &path, value).map_err(|message| ConfigError::Key {
                key: path.join("."),
                origin: format!(" (from {name})"),
                message,
            })?;
            env_vars.insert(path.join("."), name);
        }
        // Defaults, then the file, then the environment, key by key: the one place a left-out
        // key gets its value (see the module docs).
        let mut table = defaults_table();
        overlay(&mut table, from_file.clone());
        overlay(&mut table, from_env);
        let config = serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                let message = e.inner().to_string();
                // A key set from the environment is named with its variable, so it can be found.
                let origin = env_vars
                    .iter()
                    .find(|(k, _)| {
                        key.starts_with(k.as_str()) || message.contains(&format!("`{k}`"))
                    })
                    .map(|(_, var)| format!(" (from {var})"))
                    .unwrap_or_default();
                let key = if key == "." {
                    unknown_field(&message).unwrap_or(key)
                } else {
                    key
                };
                ConfigError::Key {
                    key,
                    origin,
                    message,
                }
            })?;
        Ok(Loaded {
            config,
            file: file.map(Path::to_path_buf),
            from_file,
            env_vars,
            flags: Default::default(),
        })
    }

    /// The SQLite database file inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("standin.db")
    }
}

/// `Config::default()` as a TOML table: what every file and environment is laid over. Keys
/// whose default is "not set" (`central.url`, `demo`) are absent from it.
fn defaults_table() -> toml::Table {
    toml::Table::try_from(Config::default()).expect("the default configuration serializes")
}

/// Lays `over` onto `base`: tables merge key by key, anything else replaces.
fn overlay(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => overlay(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// serde's "unknown field `x`" error at the top level has an empty path; pull the name out.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

fn set_path(table: &mut toml::Table, path: &[String], value: String) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut cur = table;
    for p in parents {
        let entry = cur
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a table"))?;
    }
    cur.insert(last.clone(), toml::Value::String(value));
    Ok(())
}

/// Environment overrides arrive as strings; these accept either the native TOML type or a
/// string that parses to it.
mod de {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer};

    pub fn from_str<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<T, D::Error>
    where
        T::Err: Display,
    {
        let s = String::deserialize(d)?;
        s.trim().parse().map_err(serde::de::Error::custom)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Native<T> {
        Value(T),
        Text(String),
    }

    pub fn from_str_or_native<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr + Deserialize<'de>,
        T::Err: Display,
    {
        match Native::<T>::deserialize(d)? {
            Native::Value(v) => Ok(v),
            Native::Text(s) => s
                .trim()
                .parse()
                .map_err(|e| serde::de::Error::custom(format!("`{s}`: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests;
