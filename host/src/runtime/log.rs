//! What a connector writes to the host log: `host.log` calls and its
//! stdout and stderr, line by line under the connector's name. One byte
//! budget per call covers all three ([`LOG_BYTES_PER_CALL`]; reopening a
//! stream does not renew it); lines past it are dropped and counted
//! (`inlet_connector_log_lines_dropped_total`). Control characters are
//! escaped, so a guest cannot forge a log line of its own (a newline, a CR,
//! a terminal escape) in the text log.

use super::Usage;
use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes one call may write to the host log (`log`, stdout and stderr
/// together).
pub const LOG_BYTES_PER_CALL: usize = 64 * 1024;

/// Most bytes of one line (longer ones are cut).
pub const LOG_LINE_BYTES: usize = 8 * 1024;

/// A log line's level.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The log of one call: its budget, shared by `log`, stdout and stderr.
pub(crate) struct CallLog {
    connector: Arc<str>,
    remaining: AtomicUsize,
    over: AtomicBool,
    usage: Arc<Usage>,
}

impl CallLog {
    pub(crate) fn new(connector: Arc<str>, usage: Arc<Usage>) -> Arc<Self> {
        Arc::new(CallLog {
            connector,
            remaining: AtomicUsize::new(LOG_BYTES_PER_CALL),
            over: AtomicBool::new(false),
            usage,
        })
    }

    /// Writes one line (from `stream`: "log", "stdout" or "stderr"), or
    /// drops it once the call's budget is spent.
    pub(crate) fn line(&self, level: Level, stream: &'static str, line: &[u8]) {
        let line = &line[..line.len().min(LOG_LINE_BYTES)];
        if !self.charge(line.len().max(1)) {
            self.dropped();
            return;
        }
        self.emit(level, stream, line);
    }

    /// Takes `bytes` from the budget, or nothing if that much is not left.
    fn charge(&self, bytes: usize) -> bool {
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }

    fn dropped(&self) {
        self.usage.log_line_dropped();
        if !self.over.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "inlet::guest", connector = %self.connector, budget = LOG_BYTES_PER_CALL, "The call wrote more than its log budget; its further lines are dropped.");
        }
    }

    /// Writes a line whose bytes were charged already.
    fn emit(&self, level: Level, stream: &'static str, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = escape_controls(text.trim_end_matches('\r'));
        let connector = &*self.connector;
        match level {
            Level::Trace => tracing::trace!(target: "inlet::guest", connector, stream, "{text}"),
            Level::Debug => tracing::debug!(target: "inlet::guest", connector, stream, "{text}"),
            Level::Info => tracing::info!(target: "inlet::guest", connector, stream, "{text}"),
            Level::Warn => tracing::warn!(target: "inlet::guest", connector, stream, "{text}"),
            Level::Error => tracing::error!(target: "inlet::guest", connector, stream, "{text}"),
        }
    }
}

/// `s` with every control character (newline, CR, NUL, ESC, ...) written
/// as an escape: one guest line stays one log line.
pub(crate) fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A guest's stdout or stderr: forwarded line by line to the call's log.
pub(crate) struct GuestOutput {
    log: Arc<CallLog>,
    stream: &'static str,
}

impl GuestOutput {
    pub(crate) fn new(log: Arc<CallLog>, stream: &'static str) -> Self {
        GuestOutput { log, stream }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            log: self.log.clone(),
            stream: self.stream,
            buf: Vec::new(),
            discarding: false,
        })
    }
}

struct LineWriter {
    log: Arc<CallLog>,
    stream: &'static str,
    buf: Vec<u8>,
    /// The budget ran out within the current line: it is dropped.
    discarding: bool,
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // Never an error for the guest: past the budget, lines are dropped.
        // Bytes are charged as they are buffered (each stream the guest
        // opens has a buffer, so a partial line must cost what it holds).
        for chunk in data.split_inclusive(|b| *b == b'\n') {
            let (text, ends) = match chunk.strip_suffix(b"\n") {
                Some(line) => (line, true),
                None => (chunk, false),
            };
            let room = LOG_LINE_BYTES.saturating_sub(self.buf.len());
            let take = &text[..text.len().min(room)];
            if !self.discarding && self.log.charge(take.len()) {
                self.buf.extend_from_slice(take);
            } else if !take.is_empty() {
                self.discarding = true;
            }
            if ends {
                let line = std::mem::take(&mut self.buf);
                // The newline costs a byte too: empty lines are not free.
                if std::mem::take(&mut self.discarding) || !self.log.charge(1) {
                    self.log.dropped();
                } else {
                    self.log.emit(Level::Info, self.stream, &line);
                }
            }
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.discarding {
            self.log.dropped();
        } else if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.log.emit(Level::Info, self.stream, &rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain ünïcode"), "plain ünïcode");
        assert_eq!(
            escape_controls("a\nINFO forged\r\0\u{1b}[31m"),
            "a\\nINFO forged\\r\\u{0}\\u{1b}[31m"
        );
    }

    #[test]
    fn one_budget_for_every_stream_of_a_call() {
        let usage = Arc::new(Usage::default());
        let log = CallLog::new("c".into(), usage.clone());
        let line = vec![b'x'; 1024];
        for _ in 0..64 {
            log.line(Level::Info, "log", &line);
        }
        assert_eq!(usage.log_lines_dropped(), 0);
        log.line(Level::Info, "stdout", b"one more");
        log.line(Level::Info, "stderr", b"and another");
        assert_eq!(usage.log_lines_dropped(), 2);
    }
}
