//! `inlet dead-letters {list,show,replay,discard}`: the dead-letter admin
//! API from the command line, against a running host (`--url` or
//! `INLET_URL`, default `http://127.0.0.1:8080`; the admin token from
//! `INLET_ADMIN_TOKEN` when the host has one).

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List a source's dead letters, oldest first (without bodies).
    List {
        source: String,
        #[command(flatten)]
        filter: Filter,
        /// List after this id (the `next` a previous page printed).
        #[arg(long)]
        after: Option<String>,
        /// Letters per page (1 to 500).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter with its request body.
    Show { source: String, id: String },
    /// Replay one letter (ID), or every letter matching the filter,
    /// through the connector loaded now.
    Replay {
        source: String,
        id: Option<String>,
        #[command(flatten)]
        filter: Filter,
        /// Replay letters older than the source's dedup window too (their
        /// events may be stored twice).
        #[arg(long)]
        force: bool,
    },
    /// Discard one letter (ID), or every letter matching the filter
    /// (`--all` with no filter discards them all).
    Discard {
        source: String,
        id: Option<String>,
        #[command(flatten)]
        filter: Filter,
        /// Discard every letter of the source when no filter is given.
        #[arg(long)]
        all: bool,
    },
}

/// Which letters: the API's filter parameters.
#[derive(Debug, Clone, Default, Args)]
pub struct Filter {
    /// Failure class (invalid, trap, deadline, ...).
    #[arg(long)]
    class: Option<String>,
    /// Connector label or its prefix (`name@1.2.0`).
    #[arg(long)]
    connector: Option<String>,
    /// Received at or after (ms since the Unix epoch).
    #[arg(long)]
    since: Option<u64>,
    /// Received before (ms since the Unix epoch).
    #[arg(long)]
    until: Option<u64>,
}

impl Filter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(c) = &self.class {
            q.push(("class", c.clone()));
        }
        if let Some(c) = &self.connector {
            q.push(("connector", c.clone()));
        }
        if let Some(s) = self.since {
            q.push(("since", s.to_string()));
        }
        if let Some(u) = self.until {
            q.push(("until", u.to_string()));
        }
        q
    }

    fn is_empty(&self) -> bool {
        self.query().is_empty()
    }
}

/// Runs one dead-letter command against the host at `url`.
pub async fn run(url: &str, command: DeadLetterCommand) -> anyhow::Result<()> {
    let base = |source: &str| format!("/v1/connectors/{}/dead-letters", encode(source));
    match command {
        DeadLetterCommand::List {
            source,
            filter,
            after,
            limit,
            json,
        } => {
            let mut q = filter.query();
            q.push(("limit", limit.to_string()));
            if let Some(a) = after {
                q.push(("after", a));
            }
            let page = request(url, http::Method::GET, &with_query(&base(&source), &q)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print_table(&page);
            }
        }
        DeadLetterCommand::Show { source, id } => {
            let path = format!("{}/{}", base(&source), encode(&id));
            print(&request(url, http::Method::GET, &path).await?)?;
        }
        DeadLetterCommand::Replay {
            source,
            id,
            filter,
            force,
        } => {
            let mut q = filter.query();
            if force {
                q.push(("force", "true".into()));
            }
            match id {
                Some(id) if filter.is_empty() => {
                    let path = with_query(&format!("{}/{}/replay", base(&source), encode(&id)), &q);
                    print(&request(url, http::Method::POST, &path).await?)?;
                }
                Some(_) => bail!("give either an ID or a filter, not both"),
                None => print(&replay_all(url, &base(&source), q).await?)?,
            }
        }
        DeadLetterCommand::Discard {
            source,
            id,
            filter,
            all,
        } => {
            let path = match id {
                Some(id) if filter.is_empty() && !all => {
                    format!("{}/{}", base(&source), encode(&id))
                }
                Some(_) => bail!("give either an ID or a filter (or --all), not both"),
                None if filter.is_empty() && !all => {
                    bail!("discarding needs an ID, a filter, or --all for every letter")
                }
                None => with_query(&base(&source), &filter.query()),
            };
            print(&request(url, http::Method::DELETE, &path).await?)?;
        }
    }
    Ok(())
}

/// Replays every matching letter: the API replays up to 1,000 a request
/// and says where to go on. Returns the summed counts.
async fn replay_all(
    url: &str,
    base: &str,
    q: Vec<(&'static str, String)>,
) -> anyhow::Result<serde_json::Value> {
    const COUNTS: [&str; 5] = ["stored", "duplicate", "failed", "busy", "expired"];
    let mut total = serde_json::json!({});
    for k in COUNTS {
        total[k] = 0.into();
    }
    let mut after: Option<String> = None;
    loop {
        let mut q = q.clone();
        if let Some(a) = &after {
            q.push(("after", a.clone()));
        }
        let part = request(
            url,
            http::Method::POST,
            &with_query(&format!("{base}/replay"), &q),
        )
        .await?;
        for k in COUNTS {
            total[k] = (total[k].as_u64().unwrap_or(0) + part[k].as_u64().unwrap_or(0)).into();
        }
        if !part["stopped"].is_null() {
            total["stopped"] = part["stopped"].clone();
            return Ok(total);
        }
        match part["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => return Ok(total),
        }
    }
}

fn print(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// One line per letter: id, class, status, attempts, connector, error.
fn print_table(page: &serde_json::Value) {
    println!(
        "{:<30} {:<14} {:>6} {:>8}  {:<40} ERROR",
        "ID", "CLASS", "STATUS", "ATTEMPTS", "CONNECTOR"
    );
    for l in page["dead_letters"].as_array().into_iter().flatten() {
        let error: String = l["error"].as_str().unwrap_or("").chars().take(80).collect();
        println!(
            "{:<30} {:<14} {:>6} {:>8}  {:<40} {}",
            l["id"].as_str().unwrap_or(""),
            l["class"].as_str().unwrap_or(""),
            l["status"],
            l["attempts"],
            l["connector"].as_str().unwrap_or(""),
            error.replace(['\n', '\r'], " ")
        );
    }
    println!(
        "{} letter(s), {} bytes{}",
        page["total"],
        page["bytes"],
        match page["next"].as_str() {
            Some(next) => format!("; more after {next} (--after {next})"),
            None => String::new(),
        }
    );
}

fn with_query(path: &str, q: &[(&str, String)]) -> String {
    if q.is_empty() {
        return path.to_string();
    }
    let pairs: Vec<String> = q
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends one request to the admin API and returns its JSON answer, or
/// the API's error as the error.
async fn request(url: &str, method: http::Method, path: &str) -> anyhow::Result<serde_json::Value> {
    let base: http::Uri = url
        .parse()
        .with_context(|| format!("INLET_URL / --url `{url}` is not a URL"))?;
    if base.scheme_str() != Some("http") {
        bail!("`{url}`: only http:// URLs are supported by this command");
    }
    let authority = base
        .authority()
        .with_context(|| format!("`{url}` has no host"))?
        .clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to {url} (is `inlet serve` running there?)"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake failed")?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority.as_str());
    if let Ok(token) = std::env::var("INLET_ADMIN_TOKEN")
        && !token.is_empty()
    {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let resp = sender
        .send_request(req.body(Empty::<bytes::Bytes>::new())?)
        .await
        .with_context(|| format!("request to {url}{path} failed"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into()));
    if !status.is_success() {
        let message = json["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| json.to_string());
        bail!("{status}: {message}");
    }
    Ok(json)
}
