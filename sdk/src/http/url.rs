//! The small URL parser the client needs: `http(s)://authority/path?query`.

/// The scheme of an outbound URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

/// An absolute `http`/`https` URL split the way `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    pub(crate) scheme: Scheme,
    /// `host[:port]`, as written.
    pub(crate) authority: String,
    /// Path and query, always starting with `/`; the fragment is dropped.
    pub(crate) path_with_query: String,
}

impl Url {
    /// Parses `raw`; the error says what is wrong, without the URL (the caller
    /// names it).
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("the URL is empty".into());
        }
        if let Some(c) = raw.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("the URL contains {c:?}; percent-encode it"));
        }
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or("the URL must be absolute, starting with http:// or https://")?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(format!(
                    "scheme `{other}` is not supported; use http or https"
                ));
            }
        };
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_with_query) = rest.split_at(split);
        if authority.is_empty() {
            return Err("the URL has no host".into());
        }
        if authority.contains('@') {
            return Err(
                "user info in the URL is not supported; credentials are injected by the host \
                 ([[sandbox.inject]])"
                    .into(),
            );
        }
        validate_authority(authority)?;
        let path_with_query = match path_with_query.chars().next() {
            None => "/".to_owned(),
            Some('?') => format!("/{path_with_query}"),
            Some(_) => path_with_query.to_owned(),
        };
        Ok(Self {
            scheme,
            authority: authority.to_owned(),
            path_with_query,
        })
    }
}

fn validate_authority(authority: &str) -> Result<(), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (_, after) = v6
            .split_once(']')
            .ok_or("the IPv6 host is missing its closing `]`")?;
        ("[v6]", after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!("port `{port}` is not a number from 0 to 65535"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> Url {
        Url::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn splits_the_parts() {
        let url = ok("http://127.0.0.1:9000/items?since=3#frag");
        assert_eq!(url.scheme, Scheme::Http);
        assert_eq!(url.authority, "127.0.0.1:9000");
        assert_eq!(url.path_with_query, "/items?since=3");

        let url = ok("HTTPS://api.example.com");
        assert_eq!(url.scheme, Scheme::Https);
        assert_eq!(url.authority, "api.example.com");
        assert_eq!(url.path_with_query, "/");

        assert_eq!(ok("http://h?x=1").path_with_query, "/?x=1");
        assert_eq!(ok("http://[::1]:8080/a").authority, "[::1]:8080");
    }

    #[test]
    fn rejects_what_it_cannot_send() {
        for (raw, expected) in [
            ("", "empty"),
            ("example.com/x", "absolute"),
            ("ftp://example.com/x", "scheme `ftp`"),
            ("http:///x", "no host"),
            ("http://user:pw@example.com/", "user info"),
            ("http://example.com:99999/", "port `99999`"),
            ("http://example.com/a b", "percent-encode"),
            ("http://:80/", "no host"),
        ] {
            let err = Url::parse(raw).unwrap_err();
            assert!(err.contains(expected), "{raw:?}: {err}");
        }
    }
}
