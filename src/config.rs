//! Configuration: a TOML file plus `STANDIN_`-prefixed environment overrides.
//!
//! Precedence: command-line flags > environment > file > defaults. Nested keys use a double
//! underscore in the environment (`STANDIN_CENTRAL__URL` sets `central.url`). Unknown keys are
//! refused by name, and a wrongly typed value names its key, so a typo never silently runs
//! with a default. Loading has no side effects: nothing is created or opened here.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration of `standin serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Base URL; absent means this upstream is not configured.
    pub url: Option<String>,
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub timeout_ms: u64,
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub health_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Push the journal to central (`central.url`); the HQ sync job can pull it either way.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub push: bool,
    /// Most entries per push.
    #[serde(deserialize_with = "de::from_str_or_native")]
    pub batch_size: usize,
    /// First retry delay after a failed push; doubles up to `retry_cap_ms` (full jitter).
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
            retry_base_ms: 500,
            retry_cap_ms: 60_000,
            idle_poll_ms: 1_000,
            retention_days: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    pub simulator_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it, for logs and audit ("hq-sync").
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub filter: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// A string that never shows in `Debug` output or logs.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

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
        let mut table = match file {
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
        let mut from_env = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("STANDIN_") else {
                continue;
            };
            // STANDIN_CONFIG names the file itself; it is not a key.
            if rest == "CONFIG" || rest.is_empty() {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            set_path(&mut table, &path, value).map_err(|message| ConfigError::Key {
                key: path.join("."),
                origin: format!(" (from {name})"),
                message,
            })?;
            from_env.push((path.join("."), name));
        }
        let de = toml::Value::Table(table);
        serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
            let key = e.path().to_string();
            let message = e.inner().to_string();
            // A key set from the environment is named with its variable, so it can be found.
            let origin = from_env
                .iter()
                .find(|(k, _)| key.starts_with(k.as_str()) || message.contains(&format!("`{k}`")))
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
        })
    }

    /// The SQLite database file inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("standin.db")
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
mod tests {
    use super::*;

    fn load_str(toml_text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("standin.toml");
        std::fs::write(&path, toml_text).unwrap();
        Config::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn no_file_runs_the_defaults() {
        let c = Config::load(None, []).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./standin-data"));
        assert!(c.central.url.is_none());
    }

    #[test]
    fn file_then_environment_override() {
        let c = load_str(
            "store_id = \"s-42\"\n[central]\nurl = \"http://c\"\ntimeout_ms = 100\n",
            &[
                ("STANDIN_CENTRAL__TIMEOUT_MS", "250"),
                ("STANDIN_FEEDS__PULL", "true"),
            ],
        )
        .unwrap();
        assert_eq!(c.store_id, "s-42");
        assert_eq!(c.central.url.as_deref(), Some("http://c"));
        assert_eq!(c.central.timeout_ms, 250);
        assert!(c.feeds.pull);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load_str("[central]\nurll = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("urll"), "{e}");
        let e = load_str("listen_addr = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_addr"), "{e}");
        let e = Config::load(None, [("STANDIN_BOGUS".into(), "1".into())]).unwrap_err();
        assert!(
            e.to_string().contains("bogus") && e.to_string().contains("STANDIN_BOGUS"),
            "{e}"
        );
    }

    #[test]
    fn malformed_value_names_the_key() {
        let e = load_str("[database]\nread_connections = \"many\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("database.read_connections"), "{e}");
        let e = Config::load(None, [("STANDIN_LISTEN".into(), "nowhere".into())]).unwrap_err();
        assert!(
            e.to_string().contains("listen") && e.to_string().contains("STANDIN_LISTEN"),
            "{e}"
        );
        let e = load_str("store_id = [\n", &[]).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    }

    #[test]
    fn the_shipped_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/standin.toml");
        let c = Config::load(Some(&path), []).unwrap();
        let d = Config::default();
        assert_eq!(
            (c.listen, c.database.max_group, c.feeds.pull),
            (d.listen, d.database.max_group, d.feeds.pull)
        );
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let c = load_str("pepper = \"hunter2\"\n", &[]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.pepper.expose(), "hunter2");
    }
}
