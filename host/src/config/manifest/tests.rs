//! Unit tests of manifest parsing.

use super::*;

fn parse(text: &str) -> Result<Manifest, String> {
    Manifest::parse(Path::new("plugins.d/x.toml"), text).map_err(|e| e.to_string())
}

#[test]
fn design_example_parses() {
    let m = parse(
        r#"
[push]
auth = { scheme = "github", secret_env = "GITHUB_WEBHOOK_SECRET" }
idempotency_header = "X-GitHub-Delivery"
dedup_window = "7d"
rate_limit = { per_second = 50, burst = 100 }
max_in_flight = 64

[pull]
every = "1m"
min_interval = "5s"
max_interval = "10m"
max_parallel = 4
retry = { initial = "1s", max = "5m" }

[sandbox]
allowed_hosts = ["api.github.com", "127.0.0.1:9000"]
memory_mb = 32
[[sandbox.inject]]
host = "api.github.com"
header = "Authorization"
value_env = "GITHUB_TOKEN"
format = "Bearer {}"

[config]
repo = "octo/hello"
batch = 1000
"#,
    )
    .unwrap();
    assert_eq!(m.push.auth.scheme, AuthScheme::Github);
    assert_eq!(m.pull.every, Some(Duration::from_secs(60)));
    assert_eq!(m.config["batch"], "1000");
    assert_eq!(m.sandbox.inject[0].format, "Bearer {}");
}

#[test]
fn unknown_key_is_named() {
    let err = parse("[push]\nidempotency_heder = \"X\"\n").unwrap_err();
    assert!(
        err.contains("plugins.d/x.toml") && err.contains("idempotency_heder"),
        "{err}"
    );
}

#[test]
fn a_zero_rate_limit_does_not_parse_and_says_where() {
    for bad in ["per_second = 0, burst = 5", "per_second = 5, burst = 0"] {
        let err = parse(&format!("[push]\nrate_limit = {{ {bad} }}\n")).unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("nonzero"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn both_every_and_cron_is_refused() {
    let err = parse("[pull]\nevery = \"1m\"\ncron = \"0 * * * * *\"\n").unwrap_err();
    assert!(err.contains("pull.cron"), "{err}");
}

#[test]
fn cron_is_checked_at_load() {
    let m = parse("[pull]\ncron = \"0 */5 * * * *\"\n").unwrap();
    assert_eq!(m.pull.cron.as_deref(), Some("0 */5 * * * *"));
    for bad in [
        "*/5 * * *",
        "61 * * * * *",
        "every minute",
        "0 0 0 1 1 * 1999",
    ] {
        let err = parse(&format!("[pull]\ncron = \"{bad}\"\n")).unwrap_err();
        assert!(
            err.contains("plugins.d/x.toml") && err.contains("pull.cron") && err.contains(bad),
            "{err}"
        );
    }
}

#[test]
fn sql_grants_parse_and_are_checked() {
    let m = parse(
        "[sandbox.sql.main]\nurl_env = \"PG_URL\"\nmax_rows = 500\n\
         [sandbox.sql.replica]\nurl_file = \"replica.url\"\n",
    )
    .unwrap();
    assert_eq!(m.sandbox.sql["main"].url_env.as_deref(), Some("PG_URL"));
    assert_eq!(m.sandbox.sql["main"].max_rows, Some(500));
    assert!(m.sandbox.sql["replica"].url_file.is_some());
    let err = parse("[sandbox.sql.main]\nmax_rows = 5\n").unwrap_err();
    assert!(
        err.contains("sandbox.sql.main") && err.contains("url_env"),
        "{err}"
    );
    let err = parse("[sandbox.sql.main]\nurl_env = \"X\"\ndsn = \"y\"\n").unwrap_err();
    assert!(err.contains("dsn"), "{err}");
}

#[test]
fn nested_config_values_are_refused() {
    let err = parse("[config]\nx = [1, 2]\n").unwrap_err();
    assert!(err.contains("config.x"), "{err}");
}

#[test]
fn push_and_pull_share_the_streams_dedup_window() {
    let days = |d: u64| Duration::from_secs(d * 24 * 3600);
    assert_eq!(parse("").unwrap().dedup_window(), DEFAULT_DEDUP_WINDOW);
    let m = parse("[stream]\ndedup_window = \"2d\"\n").unwrap();
    assert_eq!(m.dedup_window(), days(2));
    // The first name of the setting still works.
    let m = parse("[push]\ndedup_window = \"3d\"\n").unwrap();
    assert_eq!(m.dedup_window(), days(3));
    let m = parse("[push]\ndedup_window = \"3d\"\n[stream]\ndedup_window = \"3d\"\n").unwrap();
    assert_eq!(m.dedup_window(), days(3));
    let err =
        parse("[push]\ndedup_window = \"3d\"\n[stream]\ndedup_window = \"2d\"\n").unwrap_err();
    assert!(
        err.contains("push.dedup_window") && err.contains("one dedup window"),
        "{err}"
    );
    let err = parse("[stream]\ndedup_window = \"0s\"\n").unwrap_err();
    assert!(err.contains("stream.dedup_window"), "{err}");
}

#[test]
fn dead_letters_are_on_by_default_and_never_outlive_the_dedup_window() {
    use crate::config::DeadLetterClass;
    let m = parse("").unwrap();
    let dl = &m.push.dead_letters;
    assert!(dl.keeps(DeadLetterClass::Trap) && dl.keeps(DeadLetterClass::Invalid));
    assert!(!dl.keeps(DeadLetterClass::Unauthorized));
    assert_eq!(dl.keep(m.dedup_window()), DEFAULT_DEDUP_WINDOW);
    let m = parse("[push]\ndead_letters = { keep = \"1d\", on = [\"trap\"] }\n").unwrap();
    assert!(!m.push.dead_letters.keeps(DeadLetterClass::Invalid));
    assert!(
        !parse("[push]\ndead_letters = { enabled = false }\n")
            .unwrap()
            .push
            .dead_letters
            .keeps(DeadLetterClass::Trap)
    );
    for (text, key, says) in [
        (
            "[push]\ndead_letters = { keep = \"8d\" }\n",
            "push.dead_letters.keep",
            "dedup window",
        ),
        (
            "[push]\ndead_letters = { on = [\"tarp\"] }\n",
            "push.dead_letters.on",
            "`tarp` is no failure class",
        ),
        (
            "[push]\ndead_letters = { max_bytes = 0 }\n",
            "push.dead_letters",
            "greater than 0",
        ),
        (
            "[push]\ndead_letters = { kep = \"1d\" }\n",
            "kep",
            "unknown",
        ),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains(key) && err.contains(says), "{text}: {err}");
    }
}

/// Every key the manifest structs accept, as `section.key` (top level:
/// `[section]`), read from serde's own "expected one of" list, so a key
/// cannot be added without showing up here.
fn accepted_keys() -> Vec<String> {
    let sections = [
        ("", "zz_unknown = 1\n"),
        ("push", "[push]\nzz_unknown = 1\n"),
        ("push.auth", "[push]\nauth = { zz_unknown = 1 }\n"),
        (
            "push.rate_limit",
            "[push]\nrate_limit = { zz_unknown = 1 }\n",
        ),
        (
            "push.dead_letters",
            "[push]\ndead_letters = { zz_unknown = 1 }\n",
        ),
        ("pull", "[pull]\nzz_unknown = 1\n"),
        ("pull.retry", "[pull]\nretry = { zz_unknown = 1 }\n"),
        ("sandbox", "[sandbox]\nzz_unknown = 1\n"),
        ("sandbox.inject", "[[sandbox.inject]]\nzz_unknown = 1\n"),
        ("sandbox.sql.NAME", "[sandbox.sql.main]\nzz_unknown = 1\n"),
        ("stream", "[stream]\nzz_unknown = 1\n"),
    ];
    let mut keys = Vec::new();
    for (section, text) in sections {
        let err = parse(text).unwrap_err();
        let expected = err
            .split("expected")
            .nth(1)
            .unwrap_or_else(|| panic!("{section}: {err}"));
        for key in expected.split('`').skip(1).step_by(2) {
            keys.push(if section.is_empty() {
                format!("[{key}]")
            } else {
                format!("{section}.{key}")
            });
        }
    }
    keys
}

/// sdk/README.md's manifest table lists every accepted key exactly once,
/// and nothing else.
#[test]
fn every_manifest_key_is_documented_once() {
    let accepted = accepted_keys();
    let readme = include_str!("../../../../sdk/README.md");
    let table = readme
        .split("<!-- manifest-keys -->")
        .nth(1)
        .and_then(|t| t.split("<!-- /manifest-keys -->").next())
        .expect("sdk/README.md has the <!-- manifest-keys --> table");
    let documented: Vec<String> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    let missing: Vec<_> = accepted
        .iter()
        .filter(|k| !documented.contains(k))
        .collect();
    let unknown: Vec<_> = documented
        .iter()
        .filter(|k| !accepted.contains(k))
        .collect();
    let mut twice = documented.clone();
    twice.sort();
    let twice: Vec<_> = twice
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    assert!(
        missing.is_empty() && unknown.is_empty() && twice.is_empty(),
        "accepted but undocumented: {missing:?}\ndocumented but not accepted: {unknown:?}\ndocumented twice: {twice:?}"
    );
}
