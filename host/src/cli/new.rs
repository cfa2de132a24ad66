//! `inlet new NAME [--push] [--pull]`: a connector crate outside the
//! checkout that builds, passes its tests and loads without edits.

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};

/// Where the SDK is: the checkout `inlet` was built from, when it is still
/// there.
fn default_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().ok())
        .flatten()
}

/// Writes the crate `dir/NAME` and prints what to do next.
pub fn run(
    name: &str,
    push: bool,
    pull: bool,
    dir: &Path,
    sdk: Option<PathBuf>,
) -> anyhow::Result<()> {
    if !crate::config::valid_source_name(name) || name.starts_with(|c: char| c.is_ascii_digit()) {
        bail!(
            "`{name}` cannot be a connector name: use letters, digits, `-` and `_`, starting with a letter, at most 64 (it is the source name in /ingest/NAME and the crate's name)"
        );
    }
    let krate = name.replace('-', "_");
    if RESERVED.contains(&krate.as_str()) {
        bail!(
            "`{name}` cannot be a connector name: as a crate it would be `{krate}`, a Rust keyword or a crate the connector uses; choose another"
        );
    }
    let (push, pull) = if !push && !pull {
        (true, false)
    } else {
        (push, pull)
    };
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} exists already; choose another name or directory",
            root.display()
        );
    }
    let sdk_dep = match sdk.or_else(default_sdk) {
        Some(path) => {
            let path = path
                .canonicalize()
                .with_context(|| format!("--sdk {}: no such directory", path.display()))?;
            if !path.join("Cargo.toml").is_file() {
                bail!("--sdk {}: no Cargo.toml there", path.display());
            }
            format!("inlet-sdk = {{ path = {:?} }}", path.display().to_string())
        }
        // The SDK is not on crates.io: without the checkout there is
        // nothing to depend on.
        None => bail!(
            "cannot find the inlet-sdk crate (the checkout inlet was built from is gone); pass --sdk PATH to the sdk/ directory of an Inlet checkout"
        ),
    };
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk_dep)),
        ("src/lib.rs", lib_rs(name, push, pull)),
        (
            &format!("tests/{krate}.rs") as &str,
            test_rs(&krate, push, pull),
        ),
        (&format!("{name}.toml") as &str, manifest(name, push, pull)),
        ("README.md", readme(name, push, pull)),
        (".gitignore", "/target\n".to_string()),
    ];
    for (file, text) in files {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().expect("a file in the crate"))
            .with_context(|| format!("cannot create {}", root.display()))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("Created {} ({}).", root.display(), modes(push, pull));
    println!();
    println!("  cd {}", root.display());
    println!("  cargo test                                      # the hooks, natively");
    println!("  cargo build --target wasm32-wasip2 --release    # the component");
    println!("  inlet check target/wasm32-wasip2/release/{krate}.wasm");
    println!();
    println!("Deploy: copy the .wasm to PLUGINS/{name}.wasm and {name}.toml beside it.");
    Ok(())
}

/// Crate names that cannot be: Rust keywords (the test file `use`s the
/// crate) and the crates the generated code depends on.
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "yield",
    "abstract",
    "become",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "test",
    "inlet_sdk",
    "serde",
    "serde_json",
];

fn modes(push: bool, pull: bool) -> &'static str {
    match (push, pull) {
        (true, true) => "push and pull",
        (true, false) => "push",
        _ => "pull",
    }
}

fn env_prefix(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

fn cargo_toml(name: &str, sdk_dep: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the WebAssembly component the host loads; rlib: `cargo test`.
crate-type = ["cdylib", "rlib"]

[dependencies]
{sdk_dep}
serde_json = "1"

# A crate of its own, even inside another workspace.
[workspace]
"#
    )
}

fn lib_rs(name: &str, push: bool, pull: bool) -> String {
    let mut hooks = String::new();
    let mut uses = vec!["Connector", "Descriptor", "Error", "Event"];
    let mut describe = format!("Descriptor::new(\"{name}\", env!(\"CARGO_PKG_VERSION\"))");
    if push {
        uses.extend(["PushOutcome", "Request"]);
        describe.push_str("\n            .push()");
        hooks.push_str(
            r#"
    /// One event per JSON object in the body (an object, or an array of
    /// them); the object's `id` is the event id, so a sender's retry is
    /// stored once.
    fn on_push(req: Request) -> Result<PushOutcome, Error> {
        let body: serde_json::Value = req.json()?;
        let items = match body {
            serde_json::Value::Array(items) => items,
            object @ serde_json::Value::Object(_) => vec![object],
            _ => return Err(Error::invalid("the body is a JSON object or an array of objects")),
        };
        let events = items.iter().map(event).collect::<Result<Vec<_>, _>>()?;
        log::debug(format!("{} event(s) from one push.", events.len()));
        Ok(PushOutcome::events(events))
    }
"#,
        );
    }
    if pull {
        uses.extend(["PullBatch", "config_required", "http"]);
        describe.push_str("\n            .pull()\n            .schedule(\"1m\")");
        hooks.push_str(
            r#"
    /// Asks `[config] url` for the items after the checkpoint
    /// (`?since=CURSOR`), and stores them with the answer's `next` as the
    /// new checkpoint; `has_more` pulls again at once.
    fn pull(since: Option<String>, _partition: Option<String>) -> Result<PullBatch, Error> {
        let url = config_required("url")?;
        let mut request = http::Request::get(&url);
        if let Some(since) = &since {
            request = request.with_query("since", since);
        }
        let page: serde_json::Value = request.send()?.error_for_status()?.json()?;
        let items = page["items"]
            .as_array()
            .ok_or_else(|| Error::invalid(format!("GET {url}: the answer has no `items` array")))?;
        let events = items.iter().map(event).collect::<Result<Vec<_>, _>>()?;
        log::debug(format!("GET {url}: {} item(s).", events.len()));
        let mut batch = PullBatch::new(events).has_more(page["has_more"] == true);
        if let Some(next) = page["next"].as_str() {
            batch = batch.checkpoint(next);
        }
        Ok(batch)
    }
"#,
        );
    }
    uses.push("log");
    format!(
        r#"//! `{name}`: an Inlet connector. The host authenticates, rate-limits,
//! schedules and stores; this crate only turns requests and source answers
//! into events.

use inlet_sdk::{{{uses}}};

pub struct Connector_;

impl Connector for Connector_ {{
    fn describe() -> Descriptor {{
        {describe}
            .description("{desc}")
    }}
{hooks}}}

/// A JSON object as an event: its `id` (a string or a number) is the
/// event id. Put the version in the id (`id@updated_at`) when a record can
/// change and each change should be stored.
fn event(item: &serde_json::Value) -> Result<Event, Error> {{
    let id = match &item["id"] {{
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err(Error::invalid("every item needs an `id`, a string or a number")),
    }};
    Ok(Event::json(item)?.id(id))
}}

inlet_sdk::export_connector!(Connector_);
"#,
        uses = uses.join(", "),
        desc = match (push, pull) {
            (true, true) => "Pushed and pulled JSON items, one event each.",
            (true, false) => "Pushed JSON objects, one event each.",
            _ => "JSON items pulled with a cursor, one event each.",
        },
    )
    .replace("Connector_", &struct_name(name))
}

fn struct_name(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(['-', '_']) {
        let mut chars = part.chars();
        if let Some(c) = chars.next() {
            out.extend(c.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    // Not a name the generated code imports or takes from the prelude.
    if [
        "Connector",
        "Descriptor",
        "Error",
        "Event",
        "PushOutcome",
        "Request",
        "PullBatch",
        "Env",
        "Route",
        "Result",
        "Ok",
        "Err",
        "Option",
        "Some",
        "None",
        "String",
        "Vec",
        "Box",
        "Self",
    ]
    .contains(&out.as_str())
    {
        out.push_str("Source");
    }
    out
}

fn test_rs(krate: &str, push: bool, pull: bool) -> String {
    let ty = struct_name(krate);
    let mut tests = String::new();
    if push {
        tests.push_str(&format!(
            r##"
#[test]
fn a_push_of_two_objects_is_two_events() {{
    let body = br#"[{{"id": "a-1", "n": 1}}, {{"id": 2}}]"#;
    let out = Env::new()
        .push::<{ty}>(Request::new("POST", "", body.to_vec()))
        .unwrap();
    let ids: Vec<_> = out.get_events().iter().map(|e| e.get_id().unwrap()).collect();
    assert_eq!(ids, ["a-1", "2"]);
}}

#[test]
fn a_body_that_is_not_json_is_refused() {{
    let err = Env::new()
        .push::<{ty}>(Request::new("POST", "", b"nope".to_vec()))
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{{err:?}}");
}}
"##
        ));
    }
    if pull {
        tests.push_str(&format!(
            r#"
#[test]
fn a_pull_follows_the_cursor_with_the_hosts_token() {{
    let env = Env::new()
        .config("url", "https://api.example.com/items")
        // What the manifest's [[sandbox.inject]] adds: never the connector.
        .inject("api.example.com", "Authorization", "Bearer test")
        .route(Route::get("https://api.example.com/items?since=c1").json(
            200,
            &serde_json::json!({{"items": [{{"id": 7}}], "next": "c2", "has_more": false}}),
        ));
    let batch = env.pull::<{ty}>(Some("c1"), None).unwrap();
    assert_eq!(batch.events()[0].get_id(), Some("7"));
    assert_eq!(batch.get_checkpoint(), Some("c2"));
    let sent = &env.sent()[0];
    assert_eq!(sent.header("authorization"), Some("Bearer test"));
    assert_eq!(sent.connector_header("authorization"), None);
}}

#[test]
fn a_source_that_is_down_is_retried() {{
    let env = Env::new()
        .config("url", "https://api.example.com/items")
        .route(Route::get("https://api.example.com/items").any_query().status(503));
    assert!(matches!(env.pull::<{ty}>(None, None), Err(Error::Unavailable(_))));
}}
"#
        ));
    }
    format!(
        r#"//! The connector's hooks, run natively by `inlet_sdk::testing` (no host).

use {krate}::{ty};
use inlet_sdk::testing::{{Env, Route}};
use inlet_sdk::{{Error, Request}};
{tests}"#
    )
    .replace(
        "use inlet_sdk::testing::{Env, Route};",
        if pull {
            "use inlet_sdk::testing::{Env, Route};"
        } else {
            "use inlet_sdk::testing::Env;"
        },
    )
    .replace(
        "use inlet_sdk::{Error, Request};",
        if push {
            "use inlet_sdk::{Error, Request};"
        } else {
            "use inlet_sdk::Error;"
        },
    )
}

fn manifest(name: &str, push: bool, pull: bool) -> String {
    let env = env_prefix(name);
    let mut m = format!("# {name}.toml: the host's settings for {name}.wasm (see the README).\n");
    if push {
        m.push_str(&format!(
            r#"
[push]
# Senders send `Authorization: Bearer $TOKEN`; the host checks it before
# the connector runs. Export {env}_PUSH_TOKEN where `inlet serve` runs.
auth = {{ scheme = "bearer", token_env = "{env}_PUSH_TOKEN" }}
"#
        ));
    }
    if pull {
        m.push_str(&format!(
            r#"
[pull]
every = "1m"

[sandbox]
# The only hosts the connector may call.
allowed_hosts = ["api.example.com"]
# The source's token, added by the host: the connector never sees it.
[[sandbox.inject]]
host = "api.example.com"
header = "Authorization"
value_env = "{env}_SOURCE_TOKEN"
format = "Bearer {{}}"

[config]
url = "https://api.example.com/items"
"#
        ));
    }
    m
}

fn readme(name: &str, push: bool, pull: bool) -> String {
    let krate = name.replace('-', "_");
    let env = env_prefix(name);
    let mut try_it = String::new();
    if push {
        try_it.push_str(&format!(
            r#"
Push to it:

```sh
export {env}_PUSH_TOKEN=change-me     # where `inlet serve` runs
curl -s localhost:8080/ingest/{name} -H "Authorization: Bearer change-me" -d '{{"id": "1", "hello": "world"}}'
curl -s localhost:8080/v1/streams/{name}/events
```
"#
        ));
    }
    if pull {
        try_it.push_str(&format!(
            "\nPull: set `url`, `allowed_hosts` and the injected token in `{name}.toml` to your source, export `{env}_SOURCE_TOKEN`, and `POST /v1/connectors/{name}/pull` to try it at once.\n"
        ));
    }
    format!(
        r#"# {name}

An [Inlet](https://example.invalid/inlet) connector ({modes}).

```sh
cargo test                                      # the hooks, natively (inlet_sdk::testing)
cargo build --target wasm32-wasip2 --release    # the component
inlet check target/wasm32-wasip2/release/{krate}.wasm
```

Deploy: copy `target/wasm32-wasip2/release/{krate}.wasm` to the host's
plugins directory as `{name}.wasm` (write a temporary name, then rename),
with `{name}.toml` beside it. The host hot-reloads it.
{try_it}"#,
        modes = modes(push, pull)
    )
}
