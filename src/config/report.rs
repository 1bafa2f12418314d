//! What `standin config` prints (every key in force, its value and where it came from, secrets
//! redacted) and the warnings for values that load but cannot be meant.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::Value;

use super::{Config, LogFormat, REDACTED};

/// A configuration as loaded, with what is needed to say where each key came from.
pub struct Loaded {
    pub config: Config,
    /// The file named, if any.
    pub(super) file: Option<PathBuf>,
    /// The keys the file set, as written.
    pub(super) from_file: toml::Table,
    /// Keys set from the environment (dotted key → variable).
    pub(super) env_vars: BTreeMap<String, String>,
    /// Keys set by a command-line flag (dotted key → flag).
    pub(super) flags: BTreeMap<&'static str, &'static str>,
}

/// Where a key's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File,
    /// The environment variable that set it.
    Environment(String),
    /// The command-line flag that set it.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File => f.write_str("file"),
            Origin::Environment(var) => write!(f, "environment {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Keys (their last segment) whose values are never printed: the pepper and token hashes.
const SECRET_KEYS: &[&str] = &["pepper", "sha256"];

impl Loaded {
    /// `--listen`.
    pub fn set_listen(&mut self, listen: SocketAddr) {
        self.config.listen = listen;
        self.flags.insert("listen", "--listen");
    }

    /// `--ui-dir`.
    pub fn set_ui_dir(&mut self, dir: PathBuf) {
        self.config.ui_dir = Some(dir);
        self.flags.insert("ui_dir", "--ui-dir");
    }

    /// `--data-dir`.
    pub fn set_data_dir(&mut self, dir: PathBuf) {
        self.config.data_dir = dir;
        self.flags.insert("data_dir", "--data-dir");
    }

    /// `--log-format`.
    pub fn set_log_format(&mut self, format: LogFormat) {
        self.config.log.format = format;
        self.flags.insert("log.format", "--log-format");
    }

    /// Where the value of `key` (dotted, as `standin config` prints it) came from.
    pub fn origin(&self, key: &str) -> Origin {
        // `tokens[0].name` comes from wherever `tokens` came from.
        let key = key.split('[').next().unwrap_or(key);
        if let Some(flag) = self.flags.get(key) {
            return Origin::Flag(flag);
        }
        let within = |set: &str| key == set || key.starts_with(&format!("{set}."));
        if let Some((_, var)) = self.env_vars.iter().find(|(k, _)| within(k)) {
            return Origin::Environment(var.clone());
        }
        let mut table = &self.from_file;
        for part in key.split('.') {
            match table.get(part) {
                Some(toml::Value::Table(t)) => table = t,
                Some(_) => return Origin::File,
                None => return Origin::Default,
            }
        }
        Origin::File
    }

    /// Every key in force: (dotted key, value as printed, origin), top-level keys first, then
    /// each section's. Secrets show as `[redacted]`, keys without a value as `(not set)`.
    pub fn entries(&self) -> Vec<(String, String, Origin)> {
        let value = serde_json::to_value(&self.config).expect("a config serializes");
        let mut leaves = Vec::new();
        flatten("", &value, &mut leaves);
        leaves.sort_by_key(|(k, _)| k.contains('.'));
        leaves
            .into_iter()
            .map(|(key, v)| {
                let origin = self.origin(&key);
                let last = key.rsplit(['.', ']']).next().unwrap_or(&key);
                let shown = match &v {
                    Value::Null => "(not set)".to_string(),
                    Value::String(s) if s.is_empty() && SECRET_KEYS.contains(&last) => {
                        "(not set)".to_string()
                    }
                    Value::String(_) if SECRET_KEYS.contains(&last) => format!("\"{REDACTED}\""),
                    other => other.to_string(),
                };
                (key, shown, origin)
            })
            .collect()
    }

    /// What `standin config` prints.
    pub fn report(&self) -> String {
        let entries = self.entries();
        let width = entries
            .iter()
            .map(|(k, v, _)| k.len() + v.len() + 3)
            .max()
            .unwrap_or(0)
            .min(64);
        let mut out = match &self.file {
            Some(path) => format!("# the configuration in force (file {})\n", path.display()),
            None => "# the configuration in force (no file)\n".to_string(),
        };
        for (key, value, origin) in entries {
            let line = format!("{key} = {value}");
            out.push_str(&format!("{line:<width$}  # {origin}\n"));
        }
        out
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&join(k), v, out);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), item, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

impl Config {
    /// Values that load but cannot be meant (a timeout under 50 ms, an interval of 0, …), one
    /// sentence each naming the key. `serve` logs them at start-up; `standin config` prints
    /// them. They are warnings, not errors: a test rig may want a 10 ms timeout.
    pub fn warnings(&self) -> Vec<String> {
        let d = Config::default();
        // (key, value, least sensible value, default, what happens below it)
        let checks: [(&str, u64, u64, u64, &str); 20] = [
            (
                "central.timeout_ms",
                self.central.timeout_ms,
                50,
                d.central.timeout_ms,
                "almost every request to central would time out",
            ),
            (
                "payments.timeout_ms",
                self.payments.timeout_ms,
                50,
                d.payments.timeout_ms,
                "almost every authorisation would time out and be decided offline",
            ),
            (
                "central.health_interval_secs",
                self.central.health_interval_secs,
                1,
                d.central.health_interval_secs,
                "0 is raised to 1 s, a probe every second",
            ),
            (
                "payments.health_interval_secs",
                self.payments.health_interval_secs,
                1,
                d.payments.health_interval_secs,
                "0 is raised to 1 s, a probe every second",
            ),
            (
                "feeds.pull_interval_secs",
                self.feeds.pull_interval_secs,
                1,
                d.feeds.pull_interval_secs,
                "0 is raised to 1 s, central asked every second",
            ),
            (
                "feeds.pull_page",
                self.feeds.pull_page as u64,
                1,
                d.feeds.pull_page as u64,
                "each pull asks central for `limit=0` batches",
            ),
            (
                "journal.batch_size",
                self.journal.batch_size as u64,
                1,
                d.journal.batch_size as u64,
                "0 is raised to 1, entries go to central one at a time",
            ),
            (
                "journal.retry_base_ms",
                self.journal.retry_base_ms,
                1,
                d.journal.retry_base_ms,
                "a failed push would be retried almost at once",
            ),
            (
                "journal.retry_cap_ms",
                self.journal.retry_cap_ms,
                self.journal.retry_base_ms.max(1),
                d.journal.retry_cap_ms,
                "the cap is below journal.retry_base_ms",
            ),
            (
                "journal.idle_poll_ms",
                self.journal.idle_poll_ms,
                1,
                d.journal.idle_poll_ms,
                "an idle uplink would poll every 10 ms",
            ),
            (
                "database.read_connections",
                self.database.read_connections as u64,
                1,
                d.database.read_connections as u64,
                "0 is raised to 1 read connection",
            ),
            (
                "database.busy_timeout_ms",
                self.database.busy_timeout_ms,
                50,
                d.database.busy_timeout_ms,
                "a reader meeting a checkpoint or a backup would fail at once",
            ),
            (
                "database.max_group",
                self.database.max_group as u64,
                1,
                d.database.max_group as u64,
                "0 is raised to 1, every write commits alone",
            ),
            (
                "http.request_timeout_secs",
                self.http.request_timeout_secs,
                1,
                d.http.request_timeout_secs,
                "0 is raised to 1 s, any slower request times out",
            ),
            (
                "http.body_limit_bytes",
                self.http.body_limit_bytes as u64,
                64 * 1024,
                d.http.body_limit_bytes as u64,
                "feed batches of any size would be refused",
            ),
            (
                "access.session_idle_minutes",
                self.access.session_idle_minutes.into(),
                1,
                d.access.session_idle_minutes.into(),
                "every staff session would end at once",
            ),
            (
                "access.session_absolute_hours",
                self.access.session_absolute_hours.into(),
                1,
                d.access.session_absolute_hours.into(),
                "every staff session would end at once",
            ),
            (
                "access.lockout_failures",
                self.access.lockout_failures.into(),
                1,
                d.access.lockout_failures.into(),
                "every wrong PIN would lock the employee id",
            ),
            (
                "access.address_failures",
                self.access.address_failures.into(),
                1,
                d.access.address_failures.into(),
                "every sign-in from an address would be refused",
            ),
            (
                "access.pin_checks_at_once",
                self.access.pin_checks_at_once as u64,
                1,
                d.access.pin_checks_at_once as u64,
                "0 is raised to 1 PIN check at a time",
            ),
        ];
        let mut out: Vec<String> = checks
            .into_iter()
            .filter(|(_, value, least, _, _)| value < least)
            .map(|(key, value, least, default, why)| {
                format!("{key} = {value} (under {least}): {why}; the default is {default}")
            })
            .collect();
        if self.feeds.pull && self.central.url.is_none() {
            out.push("feeds.pull = true without central.url: nothing will be pulled".into());
        }
        out
    }
}
