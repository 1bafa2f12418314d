//! Running the real `standin` binary, for tests that kill it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_standin");

pub struct Served {
    pub child: Child,
    pub url: String,
    pub token: String,
    pub dir: PathBuf,
}

impl Served {
    /// `/api/v1/status`, or `None` while it cannot be had (starting, killed).
    pub async fn status(&self) -> Option<serde_json::Value> {
        reqwest::get(format!("{}/api/v1/status", self.url))
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `standin serve` on a free port with a sync `token`, plus `extra` TOML (top-level
/// keys and sections), and waits until it is ready.
pub async fn serve(dir: &Path, token: &str, extra: &str) -> Served {
    serve_with(dir, token, extra, &[], None).await
}

/// As `serve`, with extra environment variables and stderr (the logs) sent to `log`.
pub async fn serve_with(
    dir: &Path,
    token: &str,
    extra: &str,
    env: &[(&str, &str)],
    log: Option<&Path>,
) -> Served {
    let port = free_port();
    let cfg = dir.join("standin.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n{extra}\n\n[[tokens]]\nname = \"hq\"\nsha256 = \"{}\"\nscopes = [\"sync\"]\n",
            dir.display(),
            standin::access::token::sha256_hex(token)
        ),
    )
    .unwrap();
    let stderr = match log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
        ),
        None => Stdio::inherit(),
    };
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(stderr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(format!("{url}/readyz")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "standin serve did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Served {
        child,
        url,
        token: token.into(),
        dir: dir.into(),
    }
}

/// Runs a `standin` subcommand against `dir`; (exit code, stdout + stderr).
pub fn standin(args: &[&str], dir: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}
