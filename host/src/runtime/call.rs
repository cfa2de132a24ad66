//! One call into a connector: what it takes and returns, how it fails,
//! and the machinery around it (a fresh store with its limits and
//! deadline, the timeout that judges a call blocked in a host call, and
//! the conversion of the guest's events under the sandbox's caps).

use super::bindings::{Plugin, types};
use super::output;
use super::wait::{self, SourceWaits};
use super::{Code, EPOCH_TICK, HostState, Runtime, Sandbox};
use crate::event::Event;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::Instrument as _;
use wasmtime::Store;

/// The deadline of `describe`, whatever the manifest's deadlines: it
/// returns constants, and a component that spins in it holds up its own
/// load (and, at start-up, the listener) no longer than this.
pub const DESCRIBE_DEADLINE: Duration = Duration::from_secs(5);

/// What a connector says about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Descriptor {
    pub name: String,
    pub version: String,
    pub push: bool,
    pub pull: bool,
    pub schedule: Option<String>,
    pub description: String,
}

/// An error the connector returned (the WIT `error` variant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("rate limited{}", .0.map(|s| format!(" (retry after {s}s)")).unwrap_or_default())]
    RateLimited(Option<u32>),
    #[error("{0}")]
    Other(String),
}

/// Why a call into a connector failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The connector returned an error.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// The guest trapped (a panic, `unreachable`, a host bug).
    #[error("trapped: {0}")]
    Trap(String),
    /// The call ran past its deadline in the guest's own code (or blocked
    /// on something other than its source, such as a timer).
    #[error("ran past its deadline of {0:?}")]
    Deadline(Duration),
    /// The deadline expired while the guest waited on its source (a SQL
    /// query, an outbound request): the source was slow, not the connector.
    /// Retried like `unavailable`; never counts toward quarantine.
    #[error(
        "unavailable: the source did not answer within the deadline of {deadline:?} (waiting on {waiting_on})"
    )]
    SourceTimeout {
        deadline: Duration,
        waiting_on: String,
    },
    /// The guest tried to grow its memory past the limit.
    #[error("exceeded its memory limit of {0} MiB")]
    Memory(usize),
    /// The guest returned more than a call may, past what lifting its
    /// result may cost (hostcall fuel: a million events, a 100 MB payload)
    /// or in a host call's arguments: the connector's doing.
    #[error("returned too much: {0}")]
    Limit(String),
    /// The call's events are over `max_events_per_call` or
    /// `max_bytes_per_call`. On push that follows from the request (10,001
    /// items in one array): the sender's doing, 422, no quarantine; on pull
    /// the connector's.
    #[error("returned too much: {0}")]
    Output(String),
    /// No instance slot was free, or the source's memory budget was in
    /// use: retried, never a quarantine strike.
    #[error("no instance can start now (no slot free, or the source's memory budget in use)")]
    Overloaded,
}

impl CallError {
    /// What a push client is told: the class and the host's limit, never
    /// the guest's own words (those go to the host log and status).
    pub fn public_message(&self) -> String {
        match self {
            CallError::Connector(_) => "the connector returned an error".to_string(),
            CallError::Trap(_) => "the connector trapped".to_string(),
            CallError::Deadline(d) => format!("the connector ran past its deadline of {d:?}"),
            CallError::SourceTimeout { deadline, .. } => {
                format!("the connector's source did not answer within {deadline:?}")
            }
            CallError::Memory(mb) => {
                format!("the connector exceeded its memory limit of {mb} MiB")
            }
            CallError::Limit(_) | CallError::Output(_) => {
                "the connector returned more than its per-call limits allow".to_string()
            }
            CallError::Overloaded => "no connector instance slot is free".to_string(),
        }
    }

    /// Whether this is a sandbox failure (trap, deadline, memory, limit):
    /// what counts towards quarantine.
    pub fn is_sandbox_failure(&self) -> bool {
        matches!(
            self,
            CallError::Trap(_)
                | CallError::Deadline(_)
                | CallError::Memory(_)
                | CallError::Limit(_)
                | CallError::Output(_)
        )
    }

    /// The failure's class, for metrics, logs and error bodies.
    pub fn class(&self) -> FailureClass {
        match self {
            CallError::Connector(_) => FailureClass::ConnectorError,
            CallError::Trap(_) => FailureClass::Trap,
            CallError::Deadline(_) => FailureClass::Deadline,
            CallError::SourceTimeout { .. } => FailureClass::SourceTimeout,
            CallError::Memory(_) => FailureClass::Memory,
            CallError::Limit(_) | CallError::Output(_) => FailureClass::Limit,
            CallError::Overloaded => FailureClass::Overloaded,
        }
    }
}

/// What kind of failure a call ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// The connector returned an error of its own.
    ConnectorError,
    Trap,
    Deadline,
    /// The call's deadline passed while it waited on its source.
    SourceTimeout,
    Memory,
    Limit,
    /// No instance slot was free.
    Overloaded,
}

impl FailureClass {
    /// The classes counted per source: the first four are the connector's
    /// own (they count toward quarantine), `source_timeout` is its source's.
    pub const COUNTED: [FailureClass; 5] = [
        FailureClass::Trap,
        FailureClass::Deadline,
        FailureClass::Memory,
        FailureClass::Limit,
        FailureClass::SourceTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::ConnectorError => "connector_error",
            FailureClass::Trap => "trap",
            FailureClass::Deadline => "deadline",
            FailureClass::SourceTimeout => "source_timeout",
            FailureClass::Memory => "memory",
            FailureClass::Limit => "limit",
            FailureClass::Overloaded => "overloaded",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request handed to `on-push`.
#[derive(Debug, Clone, Default)]
pub struct PushRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The connector's reply to a push, replacing the default body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What `on-push` returned.
#[derive(Debug, Clone, Default)]
pub struct PushResult {
    pub events: Vec<Event>,
    pub reply: Option<Reply>,
}

/// What `pull` returned.
#[derive(Debug, Clone, Default)]
pub struct PullResult {
    pub events: Vec<Event>,
    pub checkpoint: Option<String>,
    pub has_more: bool,
}

impl Runtime {
    async fn instantiate(
        &self,
        code: &Code,
        sandbox: &Arc<Sandbox>,
        deadline: Duration,
        waits: &Arc<SourceWaits>,
    ) -> Result<(Store<HostState>, Plugin), CallError> {
        let started = Instant::now();
        let mut store = Store::new(
            &self.engine,
            HostState::new(
                sandbox.clone(),
                started + deadline,
                waits.clone(),
                self.outbound_slots.clone(),
            ),
        );
        store.limiter(|s| &mut s.limits);
        // Bounds what wasmtime copies out of the guest in one call (results
        // and host-call arguments) before anything is allocated on the host.
        store.set_hostcall_fuel(hostcall_fuel(sandbox));
        if self.epoch {
            store.set_epoch_deadline(1);
        }
        let usage = sandbox.usage.clone();
        let share = self.cpu_ticks_per_window;
        store.epoch_deadline_callback(move |_| {
            if started.elapsed() > deadline {
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            usage.ran_tick();
            let usage = usage.clone();
            // The next tick is run only once it is reserved within the
            // source's CPU share (runtime/usage.rs); then tokio's own
            // yield, not wasmtime's plain wake-up: tokio polls its IO
            // driver before resuming us, so a busy guest cannot delay other
            // connections' IO by up to `event_interval` (61) ticks.
            Ok(wasmtime::UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    loop {
                        let wait = usage.reserve(super::usage::now_ms(), share);
                        let left = deadline.saturating_sub(started.elapsed());
                        if wait.is_zero() || left.is_zero() {
                            break;
                        }
                        tokio::time::sleep(wait.min(left)).await;
                        usage.throttled(wait.min(left));
                    }
                    tokio::task::yield_now().await;
                }),
            ))
        });
        let plugin = code
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| classify(e, &store, sandbox, deadline))?;
        Ok((store, plugin))
    }

    /// Instantiates and calls `describe`.
    pub async fn describe(
        &self,
        code: &Code,
        sandbox: &Arc<Sandbox>,
    ) -> Result<Descriptor, CallError> {
        let deadline = DESCRIBE_DEADLINE;
        self.with_deadline("describe", sandbox, deadline, async |waits| {
            let (mut store, plugin) = self.instantiate(code, sandbox, deadline, waits).await?;
            let d = plugin
                .inlet_connector_connector()
                .call_describe(&mut store)
                .await
                .map_err(|e| classify(e, &store, sandbox, deadline))?;
            let d = Descriptor {
                name: d.name,
                version: d.version,
                push: d.modes.contains(types::Modes::PUSH),
                pull: d.modes.contains(types::Modes::PULL),
                schedule: d.schedule,
                description: d.description,
            };
            output::descriptor(&d)?;
            Ok(d)
        })
        .await
    }

    /// Instantiates and calls `partitions`.
    pub async fn partitions(
        &self,
        code: &Code,
        sandbox: &Arc<Sandbox>,
    ) -> Result<Vec<String>, CallError> {
        let deadline = sandbox.pull_deadline;
        self.with_deadline("partitions", sandbox, deadline, async |waits| {
            let (mut store, plugin) = self.instantiate(code, sandbox, deadline, waits).await?;
            let r = plugin
                .inlet_connector_connector()
                .call_partitions(&mut store)
                .await
                .map_err(|e| classify(e, &store, sandbox, deadline))?;
            let list = r.map_err(|e| CallError::Connector(e.into()))?;
            output::partitions(&list)?;
            Ok(list)
        })
        .await
    }

    /// Instantiates and calls `on-push`.
    pub async fn on_push(
        &self,
        code: &Code,
        sandbox: &Arc<Sandbox>,
        req: PushRequest,
    ) -> Result<PushResult, CallError> {
        let deadline = sandbox.push_deadline;
        self.with_deadline("on-push", sandbox, deadline, async |waits| {
            let (mut store, plugin) = self.instantiate(code, sandbox, deadline, waits).await?;
            let req = types::HttpRequest {
                method: req.method,
                path: req.path,
                query: req.query,
                headers: req.headers,
                body: req.body,
            };
            let r = plugin
                .inlet_connector_connector()
                .call_on_push(&mut store, &req)
                .await
                .map_err(|e| classify(e, &store, sandbox, deadline))?;
            let out = r.map_err(|e| CallError::Connector(e.into()))?;
            let (events, spent) = output::events(out.events, sandbox)?;
            let reply = match out.reply {
                Some(r) => Some(output::reply(r, spent, sandbox)?),
                None => None,
            };
            Ok(PushResult { events, reply })
        })
        .await
    }

    /// Instantiates and calls `pull`.
    pub async fn pull(
        &self,
        code: &Code,
        sandbox: &Arc<Sandbox>,
        since: Option<String>,
        partition: Option<String>,
    ) -> Result<PullResult, CallError> {
        let deadline = sandbox.pull_deadline;
        self.with_deadline("pull", sandbox, deadline, async |waits| {
            let (mut store, plugin) = self.instantiate(code, sandbox, deadline, waits).await?;
            let r = plugin
                .inlet_connector_connector()
                .call_pull(&mut store, since.as_deref(), partition.as_deref())
                .await
                .map_err(|e| classify(e, &store, sandbox, deadline))?;
            let out = r.map_err(|e| CallError::Connector(e.into()))?;
            let (events, spent) = output::events(out.events, sandbox)?;
            Ok(PullResult {
                events,
                checkpoint: output::checkpoint(out.checkpoint, spent, sandbox)?,
                has_more: out.has_more,
            })
        })
        .await
    }

    /// Runs `call` within `deadline`. A small grace lets the epoch trap
    /// fire first when the guest is computing; the timeout catches a guest
    /// blocked in a host call, and the call's [`SourceWaits`] tell whether
    /// that call was waiting on the source (the source's fault) or on
    /// anything else (the connector's).
    ///
    /// The call is the `connector.call` span of the trace (its outbound
    /// requests are its children).
    async fn with_deadline<T>(
        &self,
        export: &'static str,
        sandbox: &Sandbox,
        deadline: Duration,
        call: impl AsyncFnOnce(&Arc<SourceWaits>) -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        let span = crate::telemetry::span!(
            "connector.call",
            inlet.export = export,
            inlet.connector = %sandbox.name,
        );
        let waits = Arc::new(SourceWaits::default());
        // Pinned here, not inside the timeout, so that the call (and the
        // waits it holds) is still alive when the timeout is judged.
        let call = call(&waits);
        let mut call = std::pin::pin!(call);
        let result = match tokio::time::timeout(deadline + EPOCH_TICK * 5, call.as_mut())
            .instrument(span.clone())
            .await
        {
            Ok(r) => r,
            Err(_) => Err(match waits.waiting_on() {
                Some(waiting_on) => CallError::SourceTimeout {
                    deadline,
                    waiting_on,
                },
                None => CallError::Deadline(deadline),
            }),
        };
        if let Err(err) = &result {
            crate::telemetry::failed(&span, err);
        }
        result
    }
}

/// Hostcall fuel for one call: enough for `max_bytes_per_call` of payload
/// plus as much again for ids, keys and attributes, and the host-side
/// record of `max_events_per_call` events. A result past it fails while
/// being lifted, so 1,000,000 events or a 100 MB payload are refused without
/// being copied into the host.
fn hostcall_fuel(sandbox: &Sandbox) -> usize {
    let events =
        (sandbox.max_events_per_call as usize).saturating_mul(std::mem::size_of::<types::Event>());
    usize::try_from(sandbox.max_bytes_per_call)
        .unwrap_or(usize::MAX)
        .saturating_mul(2)
        .saturating_add(events)
        .saturating_add(1 << 20)
}

fn classify(
    err: wasmtime::Error,
    store: &Store<HostState>,
    sandbox: &Sandbox,
    deadline: Duration,
) -> CallError {
    let limits = &store.data().limits;
    if limits.exhausted.load(Ordering::Relaxed) {
        if limits.source_exhausted {
            // The source is busy, not this call wrong: retried, never a
            // quarantine strike (a flood of pushes would otherwise
            // quarantine a working connector).
            tracing::warn!(connector = %sandbox.name, budget_mb = sandbox.memory_budget_bytes >> 20, "A call was refused: the source's live instances hold its whole memory budget.");
            return CallError::Overloaded;
        }
        return CallError::Memory(sandbox.memory_bytes >> 20);
    }
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::Interrupt => overrun(&store.data().waits, deadline),
            other => CallError::Trap(other.to_string()),
        };
    }
    if err
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return CallError::Overloaded;
    }
    // wasmtime's hostcall-fuel error type is private; its message is stable.
    if err
        .chain()
        .any(|e| e.to_string().contains("fuel allocated for hostcalls"))
    {
        return CallError::Limit(format!(
            "the data it returned is over the per-call limits of {} events and {} payload bytes",
            sandbox.max_events_per_call, sandbox.max_bytes_per_call
        ));
    }
    // Keep the first line: guest internals stay in the host log.
    let text = format!("{err}");
    tracing::debug!(connector = %sandbox.name, error = ?err, "Call failed.");
    CallError::Trap(text.lines().next().unwrap_or("unknown error").to_string())
}

/// Whose fault a deadline overrun in the guest's own code is: the
/// connector's, unless its source answered so late that less than the
/// call's margin was left to use the answer (a wait ended within the margin
/// before the interrupt). A guest that computes past its deadline after a
/// timely answer is the connector's failure however long it waited.
fn overrun(waits: &SourceWaits, deadline: Duration) -> CallError {
    match waits.ended_within(wait::margin(deadline) + EPOCH_TICK) {
        Some(waiting_on) => CallError::SourceTimeout {
            deadline,
            waiting_on,
        },
        None => CallError::Deadline(deadline),
    }
}

impl From<types::Error> for ConnectorError {
    /// The guest's message, like everything it returns, is untrusted: it is
    /// cut to [`output::MAX_ERROR_MESSAGE_BYTES`] and its control
    /// characters escaped before it reaches a sender, a log or a status.
    fn from(e: types::Error) -> Self {
        let m = output::error_message;
        match e {
            types::Error::Invalid(s) => ConnectorError::Invalid(m(s)),
            types::Error::Unauthorized(s) => ConnectorError::Unauthorized(m(s)),
            types::Error::Unavailable(s) => ConnectorError::Unavailable(m(s)),
            types::Error::RateLimited(s) => ConnectorError::RateLimited(s),
            types::Error::Other(s) => ConnectorError::Other(m(s)),
        }
    }
}
