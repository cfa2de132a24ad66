//! `GET /console`: the web console, three files embedded in the binary
//! (`console/index.html`, `app.js`, `app.css`; hand-written, no build step).
//! The page calls the admin API like any client, with the admin token the
//! operator types in (kept in `sessionStorage`, sent as a bearer token:
//! no cookies, so no CSRF). Served where `/v1` is (the admin listener when
//! there is one), under a Content-Security-Policy that allows nothing but
//! this origin's own script, style and API.

use crate::reply::{self, ApiError, Resp};
use http::{HeaderValue, StatusCode, header};

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/app.css");

/// Nothing from another origin, no inline script or style, no framing, no
/// form posts anywhere, no plugins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       connect-src 'self'; img-src 'self'; base-uri 'none'; \
                       form-action 'none'; frame-ancestors 'none'; \
                       require-trusted-types-for 'script'; trusted-types 'none'";

fn serve(content_type: &'static str, body: &'static str) -> Resp {
    let mut resp = reply::text(StatusCode::OK, content_type, body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// The page.
pub fn page() -> Resp {
    serve("text/html; charset=utf-8", INDEX)
}

/// `app.js` or `app.css`.
pub fn asset(name: &str) -> Result<Resp, ApiError> {
    match name {
        "app.js" => Ok(serve("text/javascript; charset=utf-8", SCRIPT)),
        "app.css" => Ok(serve("text/css; charset=utf-8", STYLE)),
        other => Err(ApiError::NoRoute {
            method: "GET".into(),
            path: format!("/console/{other}"),
        }),
    }
}
