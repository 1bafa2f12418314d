//! A private PostgreSQL cluster in a directory: `initdb`, then `pg_ctl` on a port with its
//! unix socket in the same directory; stopped on drop. For `standin hub demo` and the tests,
//! never for production (trust authentication on 127.0.0.1, fsync off).
//!
//! PostgreSQL refuses to run as root, so as root the cluster runs as `nobody`.

use std::path::{Path, PathBuf};
use std::process::Command;

const RUN_AS: &str = "nobody";

pub struct Cluster {
    pub url: String,
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
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

/// Debian's PostgreSQL server binaries, newest version first.
pub fn find_bin() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

/// [`find_bin`], installing Debian's `postgresql` first when missing and this is root.
pub fn find_or_install_bin() -> Result<PathBuf, String> {
    if let Some(b) = find_bin() {
        return Ok(b);
    }
    if !is_root() {
        return Err("PostgreSQL is not installed; as root: apt-get install postgresql".into());
    }
    eprintln!("installing postgresql (Debian's package)");
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    run(update, "apt-get update")?;
    let mut install = Command::new("apt-get");
    install
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "postgresql",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(install, "apt-get install postgresql")?;
    find_bin().ok_or_else(|| "postgresql installed but no initdb under /usr/lib/postgresql".into())
}

impl Cluster {
    /// Creates a cluster in `dir` (which must be empty or absent) and starts it on `port`.
    pub fn create(bin: PathBuf, dir: &Path, port: u16) -> Result<Cluster, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if is_root() {
            let mut c = Command::new("chown");
            c.args([RUN_AS]).arg(dir);
            run(c, "chown")?;
        }
        let cluster = Cluster {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            bin,
            dir: dir.to_path_buf(),
        };
        let data = cluster.data();
        run(
            as_pg(
                &cluster.bin.join("initdb"),
                &[
                    "-D",
                    &data,
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
        cluster.start()?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    /// Starts (or starts again) the server and waits until it accepts connections.
    pub fn start(&self) -> Result<(), String> {
        // fsync off: a throwaway cluster need not survive the machine losing power, only a
        // PostgreSQL crash or restart, which the OS page cache survives.
        // `STANDIN_TEST_PG_OPTS`: more server options for a measurement (`-c name=value …`).
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off -c shared_buffers=16MB {}",
            self.port,
            self.dir.display(),
            std::env::var("STANDIN_TEST_PG_OPTS").unwrap_or_default()
        );
        let log = self.dir.join("pg.log").to_string_lossy().into_owned();
        run(
            as_pg(
                &self.bin.join("pg_ctl"),
                &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
            ),
            "pg_ctl start",
        )
        .map(|_| ())
    }

    /// Stops the server at once, as a crash would (no checkpoint); [`Cluster::start`]
    /// brings it back through crash recovery.
    pub fn stop_immediate(&self) {
        let _ = run(
            as_pg(
                &self.bin.join("pg_ctl"),
                &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
            ),
            "pg_ctl stop",
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_immediate();
    }
}
