//! What the benches that run `standin serve` in its own process share: a free port, the
//! process started on a config file and waited for until ready, and its memory read from
//! `/proc/PID/status` (included with `#[path]`; not a bench target of its own).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A field of `/proc/PID/status` in KiB (`VmRSS:`, `RssAnon:` …); 0 when absent.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `standin serve --config CONFIG` (the release binary this bench was built with), listening
/// on `port`, once `/readyz` answers (waiting at most `ready_within`).
pub async fn spawn_serve(config: &Path, port: u16, stderr: Stdio, ready_within: Duration) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_standin"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("standin serve");
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + ready_within;
    while tokio::time::Instant::now() < deadline {
        if client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

/// Samples `sample` (e.g. a process's RSS) every 20 ms until `done` resolves; the peak.
pub async fn peak_while<F: std::future::Future>(
    sample: impl Fn() -> u64,
    done: F,
) -> (F::Output, u64) {
    let mut peak = sample();
    tokio::pin!(done);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            out = &mut done => return (out, peak.max(sample())),
            _ = tick.tick() => peak = peak.max(sample()),
        }
    }
}
