//! Sending a request through `wasi:http/outgoing-handler`, blocking.
//!
//! Child resources (streams, pollables, header fields) must be dropped
//! before their parents, or the host traps; each is dropped explicitly below.

use std::time::Duration;

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, HeaderError, IncomingBody, IncomingResponse, Method as WasiMethod,
    OutgoingBody, OutgoingRequest, RequestOptions, Scheme as WasiScheme,
};
use wasi::io::streams::{InputStream, StreamError};

use super::url::{Scheme, Url};
use super::{HttpError, HttpErrorKind, Method, Request, Response};

/// `blocking-write-and-flush` accepts at most 4096 bytes per call.
const WRITE_CHUNK: usize = 4096;
const READ_CHUNK: u64 = 64 * 1024;

pub(super) fn send(req: &Request, url: &Url) -> Result<Response, HttpError> {
    let method = req.method.as_str();
    let invalid =
        |message: String| HttpError::new(method, &req.url, HttpErrorKind::InvalidRequest, message);
    let from_code = |code: &ErrorCode| HttpError::from_code(method, &req.url, code);

    let headers = Fields::new();
    for (name, value) in &req.headers {
        headers
            .append(name, value.as_bytes())
            .map_err(|e| invalid(format!("header `{name}` was refused: {}", header_error(&e))))?;
    }
    let has_length = req
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    if !req.body.is_empty() && !has_length {
        headers
            .append("content-length", req.body.len().to_string().as_bytes())
            .map_err(|e| {
                invalid(format!(
                    "header `content-length` was refused: {}",
                    header_error(&e)
                ))
            })?;
    }

    let outgoing = OutgoingRequest::new(headers);
    outgoing
        .set_method(&wasi_method(&req.method))
        .map_err(|()| invalid(format!("method `{method}` was refused")))?;
    let scheme = match url.scheme {
        Scheme::Http => WasiScheme::Http,
        Scheme::Https => WasiScheme::Https,
    };
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("the scheme was refused".into()))?;
    outgoing
        .set_authority(Some(&url.authority))
        .map_err(|()| invalid(format!("authority `{}` was refused", url.authority)))?;
    outgoing
        .set_path_with_query(Some(&url.path_with_query))
        .map_err(|()| invalid(format!("path `{}` was refused", url.path_with_query)))?;

    // Without a body the request is sent with an empty one; taking the body
    // only when there is something to write keeps GETs free of framing.
    let body = if req.body.is_empty() {
        None
    } else {
        Some(
            outgoing
                .body()
                .map_err(|()| invalid("the request body was already taken".into()))?,
        )
    };

    let options = req.timeout.map(request_options);
    let future = outgoing_handler::handle(outgoing, options).map_err(|code| from_code(&code))?;

    // A failed write usually means the request itself failed; the response
    // future then holds the better error, so it is consulted first.
    let written = body.map_or(Ok(()), |body| write_body(body, &req.body));

    let incoming = loop {
        match future.get() {
            Some(Ok(Ok(response))) => match written {
                Ok(()) => break response,
                Err(message) => {
                    return Err(HttpError::new(
                        method,
                        &req.url,
                        HttpErrorKind::Connection,
                        message,
                    ));
                }
            },
            Some(Ok(Err(code))) => return Err(from_code(&code)),
            Some(Err(())) => {
                return Err(HttpError::new(
                    method,
                    &req.url,
                    HttpErrorKind::Protocol,
                    "the response was already taken",
                ));
            }
            None => {
                let pollable = future.subscribe();
                pollable.block();
                drop(pollable);
            }
        }
    };
    let response = read_response(&incoming)
        .map_err(|(kind, message)| HttpError::new(method, &req.url, kind, message))?;
    drop(incoming);
    drop(future);

    Ok(Response {
        method: method.to_owned(),
        url: req.url.clone(),
        status: response.0,
        headers: response.1,
        body: response.2,
    })
}

type RawResponse = (u16, Vec<(String, String)>, Vec<u8>);

fn read_response(incoming: &IncomingResponse) -> Result<RawResponse, (HttpErrorKind, String)> {
    let status = incoming.status();
    let fields = incoming.headers();
    let headers = fields
        .entries()
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect();
    drop(fields);

    let body = incoming.consume().map_err(|()| {
        (
            HttpErrorKind::Protocol,
            "the response body was already taken".to_owned(),
        )
    })?;
    let stream = body.stream().map_err(|()| {
        (
            HttpErrorKind::Protocol,
            "the response body stream was already taken".to_owned(),
        )
    })?;
    let bytes = read_to_end(&stream);
    drop(stream);
    drop(IncomingBody::finish(body));
    Ok((status, headers, bytes?))
}

fn read_to_end(stream: &InputStream) -> Result<Vec<u8>, (HttpErrorKind, String)> {
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(e)) => {
                let message = match wasi::http::types::http_error_code(&e) {
                    Some(code) => {
                        let err = HttpError::from_code("", "", &code);
                        return Err((
                            err.kind(),
                            format!("reading the response body failed: {}", err.message()),
                        ));
                    }
                    None => e.to_debug_string(),
                };
                return Err((
                    HttpErrorKind::Connection,
                    format!("reading the response body failed: {message}"),
                ));
            }
        }
    }
}

fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    let stream = body
        .write()
        .map_err(|()| "the request body stream was already taken".to_owned())?;
    let written = bytes.chunks(WRITE_CHUNK).try_for_each(|chunk| {
        stream.blocking_write_and_flush(chunk).map_err(|e| match e {
            StreamError::Closed => "the server closed the request body early".to_owned(),
            StreamError::LastOperationFailed(e) => {
                format!("writing the request body failed: {}", e.to_debug_string())
            }
        })
    });
    drop(stream);
    written?;
    OutgoingBody::finish(body, None)
        .map_err(|code| format!("finishing the request body failed: {code:?}"))
}

fn request_options(timeout: Duration) -> RequestOptions {
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    let options = RequestOptions::new();
    // A host that does not support a timeout keeps its own; the pull
    // deadline still applies, so a refusal is not an error.
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));
    options
}

fn wasi_method(method: &Method) -> WasiMethod {
    match method {
        Method::Get => WasiMethod::Get,
        Method::Head => WasiMethod::Head,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Delete => WasiMethod::Delete,
        Method::Patch => WasiMethod::Patch,
        Method::Options => WasiMethod::Options,
        Method::Other(m) => WasiMethod::Other(m.clone()),
    }
}

fn header_error(e: &HeaderError) -> &'static str {
    match e {
        HeaderError::InvalidSyntax => "invalid syntax",
        HeaderError::Forbidden => "forbidden (the host sets it)",
        HeaderError::Immutable => "headers are immutable",
    }
}
