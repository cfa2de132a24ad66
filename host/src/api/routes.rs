//! The route table. The router serves exactly these routes, and the OpenAPI
//! document (`openapi.json`, served at `/v1/openapi.json`) describes exactly
//! these; a unit test holds the two together.

use http::Method;

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    Ingest,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    StreamEvents,
    Cursor,
    Connectors,
    Connector,
    Pull,
    Resume,
    Checkpoint,
    Reload,
    DeadLetters,
    DeadLettersReplay,
    DeadLetter,
    DeadLetterReplay,
    Console,
    ConsoleAsset,
}

/// `ANY` stands for every method.
pub const ANY: &str = "ANY";

/// (method, path pattern, route). `{name}` matches one segment, `{rest*}`
/// one or more.
pub const ROUTES: &[(&str, &str, RouteId)] = &[
    (ANY, "/ingest/{source}", RouteId::Ingest),
    (ANY, "/ingest/{source}/{rest*}", RouteId::Ingest),
    ("GET", "/healthz", RouteId::Healthz),
    ("GET", "/readyz", RouteId::Readyz),
    ("GET", "/metrics", RouteId::Metrics),
    ("GET", "/v1/openapi.json", RouteId::OpenApi),
    ("GET", "/v1/streams/{source}/events", RouteId::StreamEvents),
    (
        "GET",
        "/v1/streams/{source}/cursors/{name}",
        RouteId::Cursor,
    ),
    (
        "PUT",
        "/v1/streams/{source}/cursors/{name}",
        RouteId::Cursor,
    ),
    ("GET", "/v1/connectors", RouteId::Connectors),
    ("GET", "/v1/connectors/{name}", RouteId::Connector),
    ("POST", "/v1/connectors/{name}/pull", RouteId::Pull),
    ("POST", "/v1/connectors/{name}/resume", RouteId::Resume),
    (
        "GET",
        "/v1/connectors/{name}/checkpoint",
        RouteId::Checkpoint,
    ),
    (
        "PUT",
        "/v1/connectors/{name}/checkpoint",
        RouteId::Checkpoint,
    ),
    (
        "DELETE",
        "/v1/connectors/{name}/checkpoint",
        RouteId::Checkpoint,
    ),
    (
        "GET",
        "/v1/connectors/{name}/dead-letters",
        RouteId::DeadLetters,
    ),
    (
        "DELETE",
        "/v1/connectors/{name}/dead-letters",
        RouteId::DeadLetters,
    ),
    // Before `{id}`: `replay` is no letter id.
    (
        "POST",
        "/v1/connectors/{name}/dead-letters/replay",
        RouteId::DeadLettersReplay,
    ),
    (
        "GET",
        "/v1/connectors/{name}/dead-letters/{id}",
        RouteId::DeadLetter,
    ),
    (
        "DELETE",
        "/v1/connectors/{name}/dead-letters/{id}",
        RouteId::DeadLetter,
    ),
    (
        "POST",
        "/v1/connectors/{name}/dead-letters/{id}/replay",
        RouteId::DeadLetterReplay,
    ),
    ("POST", "/v1/reload", RouteId::Reload),
    ("GET", "/console", RouteId::Console),
    ("GET", "/console/{asset}", RouteId::ConsoleAsset),
];

/// The OpenAPI document.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The result of matching a request against [`ROUTES`].
#[derive(Debug, PartialEq, Eq)]
pub enum Match<'a> {
    /// The route and its path parameters, in pattern order.
    Found(RouteId, Vec<&'a str>),
    /// The path exists, not with this method.
    MethodNotAllowed(Vec<&'static str>),
    NotFound,
}

/// Matches `path` against one pattern, returning its parameters.
fn match_pattern<'a>(pattern: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let mut params = Vec::new();
    let mut rest = path.strip_prefix('/')?;
    let mut parts = pattern.trim_start_matches('/').split('/').peekable();
    while let Some(part) = parts.next() {
        if part.ends_with("*}") {
            // One or more segments, to the end.
            if rest.is_empty() {
                return None;
            }
            params.push(rest);
            return parts.peek().is_none().then_some(params);
        }
        let (segment, tail) = match rest.split_once('/') {
            Some((s, t)) => (s, Some(t)),
            None => (rest, None),
        };
        if part.starts_with('{') {
            if segment.is_empty() {
                return None;
            }
            params.push(segment);
        } else if part != segment {
            return None;
        }
        match (tail, parts.peek()) {
            (None, None) => return Some(params),
            (Some(t), Some(_)) => rest = t,
            _ => return None,
        }
    }
    None
}

/// Finds the route for `method` and `path`.
pub fn find<'a>(method: &Method, path: &'a str) -> Match<'a> {
    let mut allowed = Vec::new();
    for (m, pattern, id) in ROUTES {
        let Some(params) = match_pattern(pattern, path) else {
            continue;
        };
        if *m == ANY || *m == method.as_str() {
            return Match::Found(*id, params);
        }
        allowed.push(*m);
    }
    if allowed.is_empty() {
        Match::NotFound
    } else {
        Match::MethodNotAllowed(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn patterns_match_segments() {
        assert_eq!(
            find(&Method::POST, "/ingest/github"),
            Match::Found(RouteId::Ingest, vec!["github"])
        );
        assert_eq!(
            find(&Method::PUT, "/ingest/github/a/b"),
            Match::Found(RouteId::Ingest, vec!["github", "a/b"])
        );
        assert_eq!(find(&Method::POST, "/ingest/"), Match::NotFound);
        assert_eq!(
            find(&Method::GET, "/v1/connectors/x/checkpoint"),
            Match::Found(RouteId::Checkpoint, vec!["x"])
        );
        assert_eq!(
            find(&Method::POST, "/v1/connectors/x"),
            Match::MethodNotAllowed(vec!["GET"])
        );
        assert_eq!(find(&Method::GET, "/v1/connectors/x/y/z"), Match::NotFound);
        assert_eq!(find(&Method::GET, "/healthz/"), Match::NotFound);
    }

    /// Every route the router serves is documented, and every documented
    /// operation is served.
    #[test]
    fn openapi_matches_the_route_table() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let methods = ["get", "put", "post", "delete", "patch"];
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for m in methods {
                if item.get(m).is_some() {
                    documented.insert((m.to_uppercase(), path.clone()));
                }
            }
        }
        let mut served = BTreeSet::new();
        for (m, pattern, _) in ROUTES {
            let path = pattern.replace("*}", "}");
            if *m == ANY {
                for m in methods {
                    served.insert((m.to_uppercase(), path.clone()));
                }
            } else {
                served.insert((m.to_string(), path));
            }
        }
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(missing.is_empty(), "served but not documented: {missing:?}");
        assert!(extra.is_empty(), "documented but not served: {extra:?}");
    }
}
