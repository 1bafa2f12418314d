//! Operations (issue 8): SIGTERM under a burst of writes, `/metrics` (checked by promtool),
//! systemd's notify protocol, and JSON logs that never carry a credential.
//!
//! `promtool` is optional on a developer's machine (the checks say they were skipped) and
//! required when `CI` is set: `scripts/test` installs Debian's `prometheus` package for it.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::binary::{BIN, free_port, serve, standin};
use common::{TestStore, delta, order, receipts};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// How long a SIGTERM may take: the 10 s drain bound plus closing the store.
const STOP_BOUND: Duration = Duration::from_secs(12);

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
}

/// Waits for `child` to exit after a SIGTERM sent at `sent`; panics past [`STOP_BOUND`].
async fn exit_within_bound(child: &mut Child, sent: Instant) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if sent.elapsed() > STOP_BOUND {
            let _ = child.kill();
            panic!("still running {STOP_BOUND:?} after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `promtool ARGS` with `stdin`; None (and a note) where promtool is not installed,
/// which only a developer's machine may lack: under CI it fails the test.
fn promtool(args: &[&str], stdin: &str) -> Option<String> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing under CI; scripts/test installs it (Debian's prometheus)"
        );
        eprintln!(
            "promtool not installed: `promtool {}` skipped",
            args.join(" ")
        );
        return None;
    }
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "promtool {}: {report}",
        args.join(" ")
    );
    Some(report)
}

/// `promtool check metrics` (lint included) finds nothing to say about `text`.
fn promtool_check(text: &str) {
    if let Some(report) = promtool(&["check", "metrics"], text) {
        assert!(
            report.trim().is_empty(),
            "promtool check metrics: {report}\n--- metrics ---\n{text}"
        );
    }
}

/// The value of the sample written exactly as `series` (name and labels), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn policy_entries(batch: u64) -> Vec<Value> {
    (0..5)
        .map(|i| json!({"key": format!("ops_test_{batch}_{i}"), "value": batch}))
        .collect()
}

/// One batch's records, distinct per feed and batch number.
fn batch_body(feed: &str, n: u64) -> Value {
    match feed {
        "receipts" => delta(n, receipts(&format!("B{n:05}-"), 0..20)),
        "pickup_orders" => delta(n, (0..20).map(|i| order(&format!("{n}-{i}"))).collect()),
        _ => delta(n, policy_entries(n)),
    }
}

/// SIGTERM while 42 pushes are in flight (14 per feed, each taking the feed's next batch
/// number and retrying while the numbers before it land): the process drains and exits 0
/// within the bound, and after a restart every batch that was answered 2xx is there, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_write_burst_keeps_every_acknowledged_batch() {
    const FEEDS: [&str; 3] = ["receipts", "pickup_orders", "policy"];
    const PER_FEED: usize = 14;
    let dir = tempfile::tempdir().unwrap();
    let token = standin::access::token::generate();
    let mut s = serve(dir.path(), &token, "").await;
    let client = reqwest::Client::new();
    let acked: Arc<Mutex<BTreeMap<&str, Vec<u64>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for feed in FEEDS {
        let next = Arc::new(AtomicU64::new(1));
        for _ in 0..PER_FEED {
            let (client, url, token) = (client.clone(), s.url.clone(), token.clone());
            let (next, acked, stop) = (next.clone(), acked.clone(), stop.clone());
            workers.spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                'batches: while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let body = batch_body(feed, n);
                    while Instant::now() < deadline {
                        let res = client
                            .post(format!("{url}/sync/v1/feeds/{feed}/batches"))
                            .bearer_auth(&token)
                            .json(&body)
                            .send()
                            .await;
                        match res.map(|r| r.status()) {
                            Ok(st) if st.is_success() => {
                                acked.lock().unwrap().entry(feed).or_default().push(n);
                                continue 'batches;
                            }
                            // An earlier number is still on its way: try again.
                            Ok(StatusCode::CONFLICT) => {
                                tokio::time::sleep(Duration::from_millis(5)).await
                            }
                            // Refused or cut off by the shutdown: this batch was not acked.
                            _ => break 'batches,
                        }
                    }
                    break;
                }
            });
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_term: usize = acked.lock().unwrap().values().map(Vec::len).sum();
    let sent = Instant::now();
    sigterm(&s.child);
    let status = exit_within_bound(&mut s.child, sent).await;
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    stop.store(true, Ordering::Relaxed);
    while workers.join_next().await.is_some() {}
    let acked = acked.lock().unwrap().clone();
    let after_term = acked.values().map(Vec::len).sum::<usize>() - before_term;
    eprintln!(
        "acked per feed: {:?}; {after_term} acked after SIGTERM was sent",
        acked.iter().map(|(f, v)| (*f, v.len())).collect::<Vec<_>>()
    );
    assert!(
        before_term >= 3 * 5,
        "the burst barely ran before SIGTERM: {acked:?}"
    );

    let (code, report) = standin(&["check"], dir.path());
    assert_eq!(code, 0, "{report}");
    let mut s = serve(dir.path(), &token, "").await;
    let db = rusqlite::Connection::open(dir.path().join("standin.db")).unwrap();
    let count = |sql: &str, p: String| -> i64 { db.query_row(sql, [p], |r| r.get(0)).unwrap() };
    let status = s.status().await.unwrap();
    for feed in FEEDS {
        let numbers = acked.get(feed).cloned().unwrap_or_default();
        let last_batch = status["feeds"][feed]["last_batch"].as_u64().unwrap();
        let highest = numbers.iter().copied().max().unwrap_or(0);
        assert!(
            last_batch >= highest,
            "{feed}: batch {highest} was acked, the store has {last_batch}"
        );
        // Whole batches only: 20 records a batch (5 for policy), nothing half-applied.
        let per_batch = if feed == "policy" { 5 } else { 20 };
        assert_eq!(
            status["feeds"][feed]["records"].as_i64().unwrap(),
            last_batch as i64 * per_batch,
            "{feed}"
        );
        for n in numbers {
            let found = match feed {
                "receipts" => count(
                    "SELECT count(*) FROM receipts WHERE receipt_id LIKE ?1",
                    format!("B{n:05}-%"),
                ),
                "pickup_orders" => count(
                    "SELECT count(*) FROM pickup_orders WHERE order_id LIKE ?1",
                    format!("{n}-%"),
                ),
                _ => count(
                    "SELECT count(*) FROM policy WHERE key GLOB ?1",
                    format!("ops_test_{n}_*"),
                ),
            };
            assert_eq!(
                found, per_batch,
                "{feed} batch {n} was acked but is missing"
            );
        }
    }

    // The restarted process reports the same facts in /metrics, in a form promtool accepts.
    let text = client
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for feed in FEEDS {
        assert_eq!(
            sample(
                &text,
                &format!("standin_feed_last_batch{{feed=\"{feed}\"}}")
            ),
            status["feeds"][feed]["last_batch"].as_f64(),
            "{text}"
        );
    }
    promtool_check(&text);
    s.kill_9();
}

/// After some traffic, every family is exposed with values that match what happened, labels
/// are route templates (never raw paths), and promtool accepts the page.
#[tokio::test]
async fn metrics_expose_every_family_with_sane_values() {
    let t = TestStore::start().await;
    let (st, _) = t.push("receipts", &delta(1, receipts("M", 0..3))).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = t
        .push_raw(
            "receipts",
            delta(2, receipts("N", 0..1)).to_string(),
            Some("not-a-token"),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(t.get("/api/v1/status").await.0, StatusCode::OK);
    assert_eq!(
        t.get("/api/v1/no-such-thing-7f3a").await.0,
        StatusCode::NOT_FOUND
    );

    let res = t
        .client
        .get(format!("{}/metrics", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
    );
    let text = res.text().await.unwrap();

    for (family, kind) in [
        ("standin_build_info", "gauge"),
        ("standin_start_time_seconds", "gauge"),
        ("standin_http_requests_total", "counter"),
        ("standin_http_request_duration_seconds", "histogram"),
        ("standin_upstream_configured", "gauge"),
        ("standin_upstream_up", "gauge"),
        ("standin_upstream_state", "gauge"),
        ("standin_upstream_breaker_open", "gauge"),
        ("standin_upstream_consecutive_failures", "gauge"),
        ("standin_feed_age_seconds", "gauge"),
        ("standin_feed_last_batch", "gauge"),
        ("standin_feed_records", "gauge"),
        ("standin_feed_pull_failing", "gauge"),
        ("standin_journal_pending", "gauge"),
        ("standin_journal_oldest_age_seconds", "gauge"),
        ("standin_journal_set_aside", "gauge"),
        ("standin_writer_queue_depth", "gauge"),
        ("standin_writer_commits_total", "counter"),
        ("standin_writer_failed_commits_total", "counter"),
        ("standin_writer_group_size", "histogram"),
    ] {
        assert!(
            text.contains(&format!("# HELP {family} "))
                && text.contains(&format!("# TYPE {family} {kind}\n")),
            "{family} ({kind}) missing:\n{text}"
        );
    }
    let v = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}:\n{text}"));

    let batches = "route=\"/sync/v1/feeds/{feed}/batches\",method=\"POST\"";
    assert_eq!(
        v(&format!(
            "standin_http_requests_total{{{batches},status=\"200\"}}"
        )),
        1.0
    );
    assert_eq!(
        v(&format!(
            "standin_http_requests_total{{{batches},status=\"401\"}}"
        )),
        1.0
    );
    assert_eq!(
        v(&format!(
            "standin_http_request_duration_seconds_count{{{batches}}}"
        )),
        2.0
    );
    assert_eq!(
        v("standin_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}"),
        1.0
    );
    assert!(
        !text.contains("no-such-thing-7f3a") && !text.contains("/feeds/receipts/"),
        "a raw path became a label:\n{text}"
    );
    assert_eq!(
        v(&format!(
            "standin_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );

    // Neither upstream is configured in this test.
    for u in ["central", "payments"] {
        assert_eq!(
            v(&format!("standin_upstream_configured{{upstream=\"{u}\"}}")),
            0.0
        );
        assert_eq!(v(&format!("standin_upstream_up{{upstream=\"{u}\"}}")), 0.0);
        assert_eq!(
            v(&format!(
                "standin_upstream_state{{upstream=\"{u}\",state=\"unknown\"}}"
            )),
            1.0
        );
    }

    assert_eq!(v("standin_feed_last_batch{feed=\"receipts\"}"), 1.0);
    assert_eq!(v("standin_feed_records{feed=\"receipts\"}"), 3.0);
    let age = v("standin_feed_age_seconds{feed=\"receipts\"}");
    assert!((0.0..60.0).contains(&age), "age {age}");
    assert_eq!(v("standin_feed_last_batch{feed=\"staff\"}"), 0.0);
    assert!(
        sample(&text, "standin_feed_age_seconds{feed=\"staff\"}").is_none(),
        "a feed never loaded has no age"
    );

    // The applied batch is journalled on the audit lane; nothing delivers it here.
    assert_eq!(v("standin_journal_pending{lane=\"audit\"}"), 1.0);
    assert_eq!(v("standin_journal_pending{lane=\"payments\"}"), 0.0);
    assert_eq!(
        v("standin_journal_oldest_age_seconds{lane=\"payments\"}"),
        0.0
    );
    assert_eq!(v("standin_journal_set_aside"), 0.0);

    let commits = v("standin_writer_commits_total");
    assert!(commits >= 1.0);
    assert_eq!(v("standin_writer_group_size_count"), commits);
    assert_eq!(v("standin_writer_group_size_bucket{le=\"+Inf\"}"), commits);
    assert!(v("standin_writer_group_size_sum") >= commits);
    assert_eq!(v("standin_writer_queue_depth"), 0.0);
    assert_eq!(v("standin_writer_failed_commits_total"), 0.0);

    promtool_check(&text);

    // The suggested alert rules (README "Operate") are valid and use only these families.
    let rules_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/prometheus-alerts.yml");
    let rules = std::fs::read_to_string(&rules_path).unwrap();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    let mut used = 0;
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("standin_") {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .filter(|f| families.contains(f))
                .unwrap_or(word);
            assert!(
                families.contains(&family),
                "the alert rules use {word}, not exposed"
            );
            used += 1;
        }
    }
    assert!(used >= 10, "the rules name only {used} Standin metrics");
    if let Some(report) = promtool(&["check", "rules", rules_path.to_str().unwrap()], "") {
        assert!(report.contains("SUCCESS"), "{report}");
    }
    t.stop().await;
}

/// A `standin serve` with its own environment and stderr piped; stops after a SIGTERM.
fn spawn_serve(dir: &Path, token: &str, env: &[(&str, &str)], args: &[&str]) -> (Child, String) {
    let port = free_port();
    let cfg = dir.join("standin.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\n[[tokens]]\nname = \"hq\"\nsha256 = \"{}\"\nscopes = [\"sync\"]\n",
            dir.display(),
            standin::access::token::sha256_hex(token)
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(args)
        .args(["serve", "--config"])
        .arg(&cfg)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}

async fn wait_ready(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{url}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "standin serve never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Under systemd (`Type=notify`): READY=1 once serving, WATCHDOG=1 at half the watchdog
/// interval, STOPPING=1 when SIGTERM starts the drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_systemd_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let messages: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (messages, done) = (messages.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let m = String::from_utf8_lossy(&buf[..n]).to_string();
                    messages.lock().unwrap().push((Instant::now(), m));
                }
            }
        })
    };
    let token = standin::access::token::generate();
    let notify_socket = socket_path.to_str().unwrap();
    // A 600 ms watchdog: pings every 300 ms.
    let (mut child, url) = spawn_serve(
        dir.path(),
        &token,
        &[
            ("NOTIFY_SOCKET", notify_socket),
            ("WATCHDOG_USEC", "600000"),
            ("RUST_LOG", "warn"),
        ],
        &[],
    );
    let client = reqwest::Client::new();
    wait_ready(&client, &url).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let sent = Instant::now();
    sigterm(&child);
    let status = exit_within_bound(&mut child, sent).await;
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(150));
    done.store(true, Ordering::Relaxed);
    reader.join().unwrap();

    let messages = messages.lock().unwrap().clone();
    let has = |m: &(Instant, String), line: &str| m.1.lines().any(|l| l == line);
    let ready = messages.iter().position(|m| has(m, "READY=1"));
    let stopping = messages.iter().position(|m| has(m, "STOPPING=1"));
    let pings: Vec<_> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| has(m, "WATCHDOG=1"))
        .map(|(i, _)| i)
        .collect();
    let texts: Vec<_> = messages.iter().map(|m| m.1.as_str()).collect();
    let (Some(ready), Some(stopping)) = (ready, stopping) else {
        panic!("READY=1 and STOPPING=1 expected: {texts:?}");
    };
    assert!(ready < stopping, "{texts:?}");
    assert_eq!(
        messages.iter().filter(|m| has(m, "READY=1")).count(),
        1,
        "{texts:?}"
    );
    let before_stop = pings
        .iter()
        .filter(|i| **i > ready && **i < stopping)
        .count();
    assert!(
        before_stop >= 3,
        "expected a watchdog ping every 300 ms: {texts:?}"
    );
    assert!(
        messages[stopping].0 >= sent,
        "STOPPING=1 came before SIGTERM"
    );
}

/// `--log-format json` at debug: every line on stderr is a JSON object, and neither the sync
/// token, nor its hash, nor a wrong token tried against the API, nor a card token in a
/// batch, ever appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_never_carry_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let token = standin::access::token::generate();
    let wrong = "wrong-token-5f1c9a0e7d";
    let (mut child, url) = spawn_serve(
        dir.path(),
        &token,
        &[("RUST_LOG", "debug")],
        &["--log-format", "json"],
    );
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let client = reqwest::Client::new();
    wait_ready(&client, &url).await;
    let push = |body: Value, bearer: Option<&str>| {
        let mut req = client
            .post(format!("{url}/sync/v1/feeds/receipts/batches"))
            .json(&body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        async move { req.send().await.unwrap().status() }
    };
    let mut batch = receipts("L", 0..3);
    batch[0]["tenders"][0]["token"] = json!("tok_CARDSECRET_91");
    assert_eq!(push(delta(1, batch.clone()), Some(&token)).await, 200);
    for _ in 0..3 {
        assert_eq!(push(delta(2, batch.clone()), Some(wrong)).await, 401);
    }
    assert_eq!(push(delta(2, batch.clone()), None).await, 401);
    // A bad record in a batch with a card token: refused with the field named, not logged.
    let mut bad = batch.clone();
    bad[1]["tenders"][0]["last4"] = json!("12");
    assert_eq!(push(delta(2, bad), Some(&token)).await, 422);
    let res = client
        .get(format!("{url}/sync/v1/journal?after=0&limit=5"))
        .header("authorization", format!("Bearer {wrong}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        client
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let sent = Instant::now();
    sigterm(&child);
    assert!(exit_within_bound(&mut child, sent).await.success());
    let log = log.join().unwrap();

    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 3, "too few log lines to judge: {log}");
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v.is_object() && v["level"].is_string(), "{line}");
    }
    assert!(
        log.contains("standin serving") && log.contains("stopped cleanly"),
        "{log}"
    );
    let hash = standin::access::token::sha256_hex(&token);
    for secret in [token.as_str(), hash.as_str(), wrong, "tok_CARDSECRET_91"] {
        assert!(
            !log.contains(secret),
            "{secret} appears in the logs:\n{log}"
        );
    }
}
