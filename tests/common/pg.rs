//! A throwaway PostgreSQL cluster per test: `initdb` in a temp dir, `pg_ctl` on a free port
//! with its unix socket in the same dir, stopped and removed on drop (also when the test
//! panics). PostgreSQL refuses to run as root, so as root (CI) the cluster runs as `nobody`.
//!
//! The binaries come from `scripts/pg` (Debian's `postgresql`, installed when missing). Under
//! CI (`CI` set) a missing PostgreSQL fails the test; elsewhere [`TestPg::start`] returns
//! `None` after printing why, and the test returns early.

use std::path::{Path, PathBuf};
use std::process::Command;

const RUN_AS: &str = "nobody";

pub struct TestPg {
    pub url: String,
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    dir: tempfile::TempDir,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// `program args`, as `nobody` when this process is root.
fn as_pg(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", RUN_AS, "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

fn run(mut c: Command, what: &str) -> Result<String, String> {
    let out = c.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where Debian's server binaries are, through `scripts/pg` (which installs them if it can).
fn pg_bin() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg");
    let out = run(Command::new(script), "scripts/pg")?;
    Ok(PathBuf::from(out.trim()))
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
        if is_root() {
            let mut c = Command::new("chown");
            c.args([RUN_AS]).arg(dir.path());
            run(c, "chown")?;
        }
        let data = dir.path().join("data");
        let port = free_port();
        let pg = TestPg {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            bin,
            data,
            dir,
        };
        let data_s = pg.data.to_string_lossy().into_owned();
        run(
            as_pg(
                &pg.bin.join("initdb"),
                &[
                    "-D",
                    &data_s,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            ),
            "initdb",
        )?;
        pg.pg_ctl_start()?;
        Ok(pg)
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let data_s = self.data.to_string_lossy().into_owned();
        // fsync off: a test cluster need not survive the machine losing power, only a
        // PostgreSQL crash or restart, which the OS page cache survives.
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=60 -c fsync=off -c shared_buffers=16MB",
            self.port,
            self.dir.path().display()
        );
        let log = self
            .dir
            .path()
            .join("pg.log")
            .to_string_lossy()
            .into_owned();
        run(
            as_pg(
                &self.bin.join("pg_ctl"),
                &["-D", &data_s, "-o", &opts, "-l", &log, "-w", "start"],
            ),
            "pg_ctl start",
        )
        .map(|_| ())
    }

    /// Stops PostgreSQL at once, as a crash would (no checkpoint); [`TestPg::start_again`]
    /// brings it back with crash recovery.
    pub fn stop_immediate(&self) {
        let data_s = self.data.to_string_lossy().into_owned();
        let _ = run(
            as_pg(
                &self.bin.join("pg_ctl"),
                &["-D", &data_s, "-m", "immediate", "-w", "stop"],
            ),
            "pg_ctl stop",
        );
    }

    pub fn start_again(&self) {
        self.pg_ctl_start().expect("PostgreSQL restarts");
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

impl Drop for TestPg {
    fn drop(&mut self) {
        self.stop_immediate();
        // The temp dir (data and socket) goes with `self.dir`.
    }
}
