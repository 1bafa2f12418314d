//! A throwaway PostgreSQL cluster per test ([`standin::hub::cluster::Cluster`] in a temp
//! dir, on a free port), stopped and removed on drop, also when the test panics.
//!
//! The binaries come from `scripts/pg` (Debian's `postgresql`, installed when missing). Under
//! CI (`CI` set) a missing PostgreSQL fails the test; elsewhere [`TestPg::start`] returns
//! `None` after printing why, and the test returns early.

use std::path::{Path, PathBuf};
use std::process::Command;

use standin::hub::cluster::Cluster;

pub struct TestPg {
    pub url: String,
    pub port: u16,
    // Before `dir`: the server stops before its directory is removed.
    cluster: Cluster,
    _dir: tempfile::TempDir,
}

/// Where Debian's server binaries are, through `scripts/pg` (which installs them if it can).
fn pg_bin() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg");
    let out = Command::new(script)
        .output()
        .map_err(|e| format!("scripts/pg: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestPg {
    /// A fresh, running cluster; `None` (with a note) when PostgreSQL cannot be had outside CI.
    pub fn start() -> Option<TestPg> {
        match Self::try_start() {
            Ok(pg) => Some(pg),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("PostgreSQL is required under CI: {e}")
            }
            Err(e) => {
                eprintln!("skipped: no PostgreSQL for the hub tests ({e})");
                None
            }
        }
    }

    fn try_start() -> Result<TestPg, String> {
        let bin = pg_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("standin-hub-pg")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let cluster = Cluster::create(bin, dir.path(), free_port())?;
        Ok(TestPg {
            url: cluster.url.clone(),
            port: cluster.port,
            cluster,
            _dir: dir,
        })
    }

    /// Stops PostgreSQL at once, as a crash would; [`TestPg::start_again`] recovers it.
    pub fn stop_immediate(&self) {
        self.cluster.stop_immediate();
    }

    pub fn start_again(&self) {
        self.cluster.start().expect("PostgreSQL restarts");
    }

    /// Freezes every process of the cluster (SIGSTOP), as a hung VM or a stuck volume
    /// freezes a server: connections stay open and nothing errors. Thawed when the guard
    /// drops, also when the test panics.
    pub fn freeze(&self) -> Frozen {
        let pid_file = self._dir.path().join("data/postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).expect("postmaster.pid");
        let postmaster = text.lines().next().unwrap().trim().to_owned();
        let mut pids = vec![postmaster.clone()];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid …: the fields after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid == Some(postmaster.as_str()) {
                pids.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        let signal = |sig: &str, pids: &[String]| {
            Command::new("kill")
                .arg(sig)
                .args(pids)
                .status()
                .expect("kill");
        };
        signal("-STOP", &pids);
        Frozen {
            thaw: Box::new(move || signal("-CONT", &pids)),
        }
    }

    /// A plain client for checking what landed, as HQ's own systems would read it.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test PostgreSQL");
        tokio::spawn(conn);
        client
    }
}

/// A frozen cluster ([`TestPg::freeze`]), thawed on drop.
pub struct Frozen {
    thaw: Box<dyn Fn() + Send>,
}

impl Drop for Frozen {
    fn drop(&mut self) {
        (self.thaw)();
    }
}
