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
    let c = load_str("[central]\ntoken = \"tok-secret\"\n", &[]).unwrap();
    assert_eq!(c.central.token.expose(), "tok-secret");
    assert!(!format!("{c:?}").contains("tok-secret"));
    let c = load_str("pepper = \"hunter2\"\n", &[]).unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
    assert_eq!(c.pepper.expose(), "hunter2");
}

fn json(c: &Config) -> serde_json::Value {
    serde_json::to_value(c).unwrap()
}

#[test]
fn a_section_with_only_its_url_keeps_the_other_defaults() {
    let d = Config::default();
    for (text, env) in [
        (
            "[central]\nurl = \"http://c\"\n[payments]\nurl = \"http://p\"\n",
            vec![],
        ),
        (
            "",
            vec![
                ("STANDIN_CENTRAL__URL", "http://c"),
                ("STANDIN_PAYMENTS__URL", "http://p"),
            ],
        ),
    ] {
        let c = load_str(text, &env).unwrap();
        assert_eq!(c.central.url.as_deref(), Some("http://c"));
        assert_eq!(c.payments.url.as_deref(), Some("http://p"));
        assert_eq!(
            (c.central.timeout_ms, c.central.health_interval_secs),
            (5_000, 5)
        );
        assert_eq!(
            (c.payments.timeout_ms, c.payments.health_interval_secs),
            (1_000, 5)
        );
        // Nothing else moved either.
        let (mut got, mut want) = (json(&c), json(&d));
        got["central"]["url"] = serde_json::Value::Null;
        got["payments"]["url"] = serde_json::Value::Null;
        want["central"]["url"] = serde_json::Value::Null;
        assert_eq!(got, want);
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }
}

#[test]
fn every_key_says_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("standin.toml");
    std::fs::write(
        &path,
        "store_id = \"s-7\"\n[central]\ntimeout_ms = 800\n\n[[tokens]]\nname = \"hq\"\nsha256 = \"abcdef\"\nscopes = [\"sync\"]\n",
    )
    .unwrap();
    let env = [
        ("STANDIN_CENTRAL__URL", "http://c"),
        ("STANDIN_PEPPER", "hunter2"),
        ("HOME", "/root"),
    ];
    let mut l = Config::load_traced(
        Some(&path),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap();
    l.set_listen("127.0.0.1:9999".parse().unwrap());
    assert_eq!(l.origin("store_id"), Origin::File);
    assert_eq!(l.origin("central.timeout_ms"), Origin::File);
    assert_eq!(
        l.origin("central.url"),
        Origin::Environment("STANDIN_CENTRAL__URL".into())
    );
    assert_eq!(l.origin("central.health_interval_secs"), Origin::Default);
    assert_eq!(l.origin("payments.timeout_ms"), Origin::Default);
    assert_eq!(l.origin("listen"), Origin::Flag("--listen"));
    assert_eq!(l.origin("tokens[0].name"), Origin::File);

    let report = l.report();
    for line in [
        "store_id = \"s-7\"",
        "central.url = \"http://c\"",
        "payments.url = (not set)",
        "central.timeout_ms = 800",
        "central.health_interval_secs = 5",
        "listen = \"127.0.0.1:9999\"",
        "tokens[0].name = \"hq\"",
        "tokens[0].sha256 = \"[redacted]\"",
        "pepper = \"[redacted]\"",
    ] {
        assert!(report.contains(line), "{line} missing from\n{report}");
    }
    assert!(
        !report.contains("hunter2") && !report.contains("abcdef"),
        "{report}"
    );
    let line = |key: &str| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} missing from\n{report}"))
            .to_string()
    };
    assert!(line("central.url").ends_with("# environment STANDIN_CENTRAL__URL"));
    assert!(line("pepper").ends_with("# environment STANDIN_PEPPER"));
    assert!(line("store_id").ends_with("# file"));
    assert!(line("listen").ends_with("# flag --listen"));
    assert!(line("journal.batch_size").ends_with("# default"));
    // Every key of the configuration is printed, once.
    let keys: Vec<&str> = report
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(" = ").next().unwrap())
        .collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(keys.len(), unique.len(), "{report}");
    assert!(keys.len() >= 35, "{} keys:\n{report}", keys.len());
}

#[test]
fn values_that_cannot_be_meant_are_warned_about() {
    assert!(Config::default().warnings().is_empty());
    let c = load_str(
        "[central]\ntimeout_ms = 1\nhealth_interval_secs = 0\n[payments]\ntimeout_ms = 49\n",
        &[("STANDIN_FEEDS__PULL", "true")],
    )
    .unwrap();
    let w = c.warnings();
    for key in [
        "central.timeout_ms = 1",
        "central.health_interval_secs = 0",
        "payments.timeout_ms = 49",
        "feeds.pull = true without central.url",
    ] {
        assert!(w.iter().any(|w| w.starts_with(key)), "{key} not in {w:#?}");
    }
    assert_eq!(w.len(), 4, "{w:#?}");
    let c = load_str("[payments]\ntimeout_ms = 50\n", &[]).unwrap();
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}
