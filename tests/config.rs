//! Configuration as store IT meets it (issue 15): every key in `packaging/standin.toml`, left
//! out in each way a store can leave it out, takes the value the packaged file documents;
//! `standin config` says what is in force and where it came from; `serve` warns at start-up
//! about values that cannot be meant.

mod common;

use std::path::Path;
use std::process::Command;

use common::binary::{BIN, free_port};
use standin::config::Config;

/// Keys whose packaged value deliberately differs from the default: (key, default, why).
const PACKAGED_DIFFERS: &[(&str, &str, &str)] = &[(
    "data_dir",
    "./standin-data",
    "the Debian package's unit can write only /var/lib/standin (StateDirectory=), while \
     `standin serve` from a shell keeps its data next to where it runs",
)];

/// Keys the packaged file leaves commented out because they have no default: not set.
const NOT_SET_BY_DEFAULT: &[&str] = &[
    "central.url",
    "central.token",
    "payments.url",
    "payments.token",
    "pepper",
    "tokens",
    "demo",
    "ui_dir",
];

fn packaged() -> toml::Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/standin.toml");
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every key the packaged file sets: (path, value).
fn keys(table: &toml::Table, prefix: &[String], out: &mut Vec<(Vec<String>, toml::Value)>) {
    for (k, v) in table {
        let mut path = prefix.to_vec();
        path.push(k.clone());
        match v {
            toml::Value::Table(t) => keys(t, &path, out),
            other => out.push((path, other.clone())),
        }
    }
}

/// The value in force for `path`, as TOML (what the packaged file would spell).
fn in_force(c: &Config, path: &[String]) -> Option<toml::Value> {
    let mut v = toml::Value::Table(toml::Table::try_from(c).unwrap());
    for p in path {
        v = v.as_table()?.get(p)?.clone();
    }
    Some(v)
}

fn without(table: &toml::Table, path: &[String]) -> toml::Table {
    let mut t = table.clone();
    let mut cur = &mut t;
    for p in &path[..path.len() - 1] {
        cur = cur.get_mut(p).unwrap().as_table_mut().unwrap();
    }
    cur.remove(&path[path.len() - 1]);
    t
}

fn env_name(path: &[String]) -> String {
    format!("STANDIN_{}", path.join("__").to_ascii_uppercase())
}

fn env_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn load(file: Option<&toml::Table>, env: Vec<(String, String)>) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("standin.toml");
    if let Some(t) = file {
        std::fs::write(&path, toml::to_string(t).unwrap()).unwrap();
    }
    Config::load(file.map(|_| path.as_path()), env)
        .unwrap_or_else(|e| panic!("{e}\nfile: {file:?}"))
}

#[test]
fn every_key_left_out_takes_its_documented_default() {
    let packaged = packaged();
    let mut all = Vec::new();
    keys(&packaged, &[], &mut all);
    assert!(all.len() >= 30, "only {} keys found", all.len());

    for (path, documented) in &all {
        let key = path.join(".");
        let expected = match PACKAGED_DIFFERS.iter().find(|(k, _, _)| *k == key) {
            Some((_, default, _why)) => toml::Value::String(default.to_string()),
            None => documented.clone(),
        };
        // The sibling a section may be left holding alone: its url where it has one (the
        // README's `STANDIN_CENTRAL__URL` case), else another key the packaged file sets.
        let sibling: Option<(Vec<String>, toml::Value)> = (path.len() > 1).then(|| {
            let section = &path[..path.len() - 1];
            if ["central", "payments"].contains(&section[0].as_str()) {
                let mut p = section.to_vec();
                p.push("url".into());
                (p, toml::Value::String("http://127.0.0.1:9".into()))
            } else {
                all.iter()
                    .find(|(p, _)| p[..p.len() - 1] == *section && p != path)
                    .cloned()
                    .expect("a section with one key")
            }
        });
        let file_with = |(p, v): &(Vec<String>, toml::Value)| {
            let mut t = toml::Table::new();
            let section = t
                .entry(p[0].clone())
                .or_insert(toml::Value::Table(Default::default()));
            section
                .as_table_mut()
                .unwrap()
                .insert(p[1].clone(), v.clone());
            t
        };
        let everything_else_by_env: Vec<(String, String)> = all
            .iter()
            .filter(|(p, _)| p != path)
            .map(|(p, v)| (env_name(p), env_value(v)))
            .collect();

        let mut forms: Vec<(&str, Config)> = vec![
            ("no file", load(None, vec![])),
            (
                "the packaged file without it",
                load(Some(&without(&packaged, path)), vec![]),
            ),
            (
                "every other key from the environment",
                load(None, everything_else_by_env),
            ),
        ];
        if let Some(sibling) = &sibling {
            let mut empty_section = toml::Table::new();
            empty_section.insert(path[0].clone(), toml::Value::Table(Default::default()));
            forms.push(("its section, empty", load(Some(&empty_section), vec![])));
            forms.push((
                "its section holding one other key",
                load(Some(&file_with(sibling)), vec![]),
            ));
            forms.push((
                "one other key of its section from the environment",
                load(None, vec![(env_name(&sibling.0), env_value(&sibling.1))]),
            ));
        }
        for (form, c) in forms {
            assert_eq!(
                in_force(&c, path).as_ref(),
                Some(&expected),
                "`{key}` left out ({form}) does not take its documented default"
            );
        }
    }
}

#[test]
fn the_packaged_file_lists_every_key() {
    let mut packaged_keys = Vec::new();
    keys(&packaged(), &[], &mut packaged_keys);
    let packaged_keys: Vec<String> = packaged_keys.iter().map(|(p, _)| p.join(".")).collect();
    let mut config_keys = Vec::new();
    keys(
        &toml::Table::try_from(Config::default()).unwrap(),
        &[],
        &mut config_keys,
    );
    for (path, _) in &config_keys {
        let key = path.join(".");
        assert!(
            packaged_keys.contains(&key) || NOT_SET_BY_DEFAULT.contains(&key.as_str()),
            "`{key}` is a configuration key the packaged standin.toml does not document"
        );
    }
    for (key, _, _) in PACKAGED_DIFFERS {
        assert!(packaged_keys.contains(&key.to_string()));
    }
}

/// `standin config` with `args`, the environment cleared of anything `STANDIN_` but `env`.
fn standin_config(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("config").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("STANDIN_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn line<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("`{key}` missing from\n{report}"))
}

#[test]
fn standin_config_prints_every_key_its_value_and_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("standin.toml");
    std::fs::write(
        &file,
        "store_id = \"store-0420\"\n[payments]\nurl = \"http://processor.test\"\n\n\
         [[tokens]]\nname = \"hq-sync\"\nsha256 = \"5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8\"\nscopes = [\"sync\"]\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let (code, out, err) = standin_config(
        &[
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:18080",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[
            ("STANDIN_CENTRAL__URL", "http://central.test"),
            ("STANDIN_PEPPER", "pepper-in-the-environment"),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.is_empty(), "nothing to warn about: {err}");
    for (key, value, origin) in [
        ("store_id", "\"store-0420\"", "# file"),
        ("listen", "\"127.0.0.1:18080\"", "# flag --listen"),
        (
            "data_dir",
            &format!("\"{}\"", data.display()),
            "# flag --data-dir",
        ),
        (
            "central.url",
            "\"http://central.test\"",
            "# environment STANDIN_CENTRAL__URL",
        ),
        ("central.timeout_ms", "5000", "# default"),
        ("central.health_interval_secs", "5", "# default"),
        ("payments.url", "\"http://processor.test\"", "# file"),
        ("payments.timeout_ms", "1000", "# default"),
        ("payments.health_interval_secs", "5", "# default"),
        ("feeds.pull", "false", "# default"),
        ("pepper", "\"[redacted]\"", "# environment STANDIN_PEPPER"),
        ("tokens[0].name", "\"hq-sync\"", "# file"),
        ("tokens[0].sha256", "\"[redacted]\"", "# file"),
        ("demo", "(not set)", "# default"),
    ] {
        let l = line(&out, key);
        assert!(
            l.starts_with(&format!("{key} = {value} ")) && l.ends_with(origin),
            "want `{key} = {value}  {origin}`, got `{l}`"
        );
    }
    assert!(
        !out.contains("pepper-in-the-environment") && !out.contains("5e884898"),
        "a secret was printed:\n{out}"
    );
    // Every key the packaged file documents is printed.
    let mut documented = Vec::new();
    keys(&packaged(), &[], &mut documented);
    for (path, _) in documented {
        line(&out, &path.join("."));
    }
}

#[test]
fn standin_config_warns_about_values_that_cannot_be_meant_and_names_bad_keys() {
    let (code, out, err) = standin_config(
        &[],
        &[
            ("STANDIN_CENTRAL__URL", "http://central.test"),
            ("STANDIN_CENTRAL__TIMEOUT_MS", "1"),
            ("STANDIN_PAYMENTS__HEALTH_INTERVAL_SECS", "0"),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        line(&out, "central.timeout_ms").ends_with("# environment STANDIN_CENTRAL__TIMEOUT_MS")
    );
    for key in [
        "central.timeout_ms = 1",
        "payments.health_interval_secs = 0",
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("standin: warning: {key}"))),
            "no warning for {key}: {err}"
        );
    }

    let (code, out, err) = standin_config(&[], &[("STANDIN_CENTRAL__TIMOUT_MS", "500")]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("timout_ms") && err.contains("STANDIN_CENTRAL__TIMOUT_MS"),
        "{err}"
    );
}

#[tokio::test]
async fn serve_warns_at_start_up_about_values_that_cannot_be_meant() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir.path())
    .env("STANDIN_PAYMENTS__URL", "http://127.0.0.1:9")
    .env("STANDIN_PAYMENTS__TIMEOUT_MS", "10")
    .env("RUST_LOG", "warn")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "serve never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("payments.timeout_ms = 10 (under 50)")),
        "{log}"
    );
}
