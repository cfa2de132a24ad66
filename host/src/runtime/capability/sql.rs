//! The `sql` host interface: read-only PostgreSQL queries on the
//! connections a manifest grants with `[sandbox.sql.NAME]`.
//!
//! The host owns one pool per granted name (deadpool-postgres over
//! tokio-postgres). The pool is built when the connector loads, so a
//! missing URL variable or file fails the load, but it connects lazily on
//! the first query. Each query runs in its own `READ ONLY` transaction with
//! `SET LOCAL statement_timeout` inside the connector's remaining call
//! deadline, and is capped at `max_rows` rows and `max_bytes` bytes.
//!
//! Connections are plain TCP (`NoTls`): meant for a database on loopback or
//! a private network. Errors reach the guest as the WIT `error` variant,
//! produced here only: `invalid` for SQL the server refuses (with its
//! message), `unauthorized` for refused credentials, `unavailable` for
//! connection, pool and timeout failures.

use crate::config::{ConfigError, SandboxSection, SecretRef};
use crate::runtime::bindings::{sql as wit, types};
use crate::runtime::wait::{self, SourceWaits, source_budget};
use bytes::{BufMut, BytesMut};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};
use futures::TryStreamExt;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// Rows one query may return unless the manifest says otherwise.
pub const DEFAULT_MAX_ROWS: u32 = 10_000;
/// Bytes of values one query may return unless the manifest says otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 16 << 20;
/// Connections one pool keeps at most unless the manifest says otherwise.
const DEFAULT_POOL_SIZE: u32 = 4;
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// One granted database: its pool and per-query limits.
pub struct SqlConnection {
    name: String,
    pool: Pool,
    max_rows: u32,
    max_bytes: u64,
}

impl fmt::Debug for SqlConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it holds the password.
        f.debug_struct("SqlConnection")
            .field("name", &self.name)
            .field("max_rows", &self.max_rows)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl SqlConnection {
    /// Resolves every `[sandbox.sql.NAME]` of a manifest: reads each URL
    /// now (a missing variable or file fails the load, naming it) and builds
    /// its pool, which connects on first use.
    pub(crate) fn resolve_all(
        section: &SandboxSection,
        manifest_path: &Path,
    ) -> Result<BTreeMap<String, Arc<SqlConnection>>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, spec) in &section.sql {
            let key = format!("sandbox.sql.{name}");
            let (url_key, source) = match (&spec.url_env, &spec.url_file) {
                (Some(var), _) => (format!("{key}.url_env"), SecretRef::Env(var.clone())),
                (None, Some(file)) => (format!("{key}.url_file"), SecretRef::File(file.clone())),
                (None, None) => {
                    return Err(ConfigError::invalid(
                        manifest_path,
                        &key,
                        "needs `url_env` or `url_file`",
                    ));
                }
            };
            let url = source
                .read(manifest_path.parent().unwrap_or(Path::new(".")))
                .map_err(|e| {
                    ConfigError::invalid(
                        manifest_path,
                        &url_key,
                        format!("{e} (a postgres:// URL)"),
                    )
                })?;
            let url = url.expose();
            let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
                ConfigError::invalid(
                    manifest_path,
                    &url_key,
                    format!("not a PostgreSQL connection URL ({e}); write postgres://user:password@host:port/db"),
                )
            })?;
            if config.get_connect_timeout().is_none() {
                config.connect_timeout(Duration::from_secs(5));
            }
            if config.get_application_name().is_none() {
                config.application_name("inlet");
            }
            let manager = Manager::from_config(
                config,
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            let pool = Pool::builder(manager)
                .max_size(spec.pool_size.unwrap_or(DEFAULT_POOL_SIZE) as usize)
                .build()
                .map_err(|e| ConfigError::invalid(manifest_path, &key, e.to_string()))?;
            out.insert(
                name.clone(),
                Arc::new(SqlConnection {
                    name: name.clone(),
                    pool,
                    max_rows: spec.max_rows.unwrap_or(DEFAULT_MAX_ROWS),
                    max_bytes: spec.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
                }),
            );
        }
        Ok(out)
    }

    /// Runs one statement in a read-only transaction that must end before
    /// `deadline`.
    async fn query(
        &self,
        statement: &str,
        params: Vec<wit::Value>,
        deadline: Instant,
    ) -> Result<wit::Rows, types::Error> {
        let mut client = tokio::time::timeout(source_budget(deadline), self.pool.get())
            .await
            .map_err(|_| {
                self.unavailable("no database connection became free before the call's deadline")
            })?
            .map_err(|e| self.pool_error(e))?;
        let tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|e| self.db_error(e))?;
        // What is left of the deadline, less a margin (a tenth, at least
        // 250 ms) for the cancel's round trip and for the guest to use the
        // result, so a slow database ends as `unavailable` in time.
        let timeout_ms = source_budget(deadline).as_millis();
        if timeout_ms < 10 {
            return Err(self.unavailable("the call's deadline leaves no time for a query"));
        }
        tx.batch_execute(&format!("SET LOCAL statement_timeout = {timeout_ms}"))
            .await
            .map_err(|e| self.db_error(e))?;
        let prepared = tx.prepare(statement).await.map_err(|e| self.db_error(e))?;
        if prepared.params().len() != params.len() {
            return Err(self.invalid(format!(
                "the statement takes {} parameter(s), {} given",
                prepared.params().len(),
                params.len()
            )));
        }
        let columns: Vec<String> = prepared
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        // Types without a value case of their own are read as text.
        let prepared = if prepared.columns().iter().all(|c| native(c.type_())) {
            prepared
        } else {
            tx.prepare(&as_text(statement, prepared.columns()))
                .await
                .map_err(|e| self.db_error(e))?
        };
        let params: Vec<Param> = params.into_iter().map(Param).collect();
        let stream = tx
            .query_raw(&prepared, params.iter())
            .await
            .map_err(|e| self.db_error(e))?;
        futures::pin_mut!(stream);
        let mut rows = Vec::new();
        let mut bytes = 0u64;
        while let Some(row) = stream.try_next().await.map_err(|e| self.db_error(e))? {
            if rows.len() >= self.max_rows as usize {
                return Err(self.invalid(format!(
                    "the query returned more than max_rows = {} rows; add a LIMIT",
                    self.max_rows
                )));
            }
            let mut values = Vec::with_capacity(row.len());
            for (i, column) in columns.iter().enumerate() {
                let Cell(value) = row
                    .try_get(i)
                    .map_err(|e| self.invalid(format!("column `{column}`: {e}")))?;
                bytes += size_of(&value);
                values.push(value);
            }
            if bytes > self.max_bytes {
                return Err(self.invalid(format!(
                    "the query returned more than max_bytes = {} bytes; select fewer rows or columns",
                    self.max_bytes
                )));
            }
            rows.push(values);
        }
        tx.rollback().await.map_err(|e| self.db_error(e))?;
        Ok(wit::Rows { columns, rows })
    }

    fn invalid(&self, message: impl fmt::Display) -> types::Error {
        types::Error::Invalid(format!("sql connection `{}`: {message}", self.name))
    }

    fn unavailable(&self, message: impl fmt::Display) -> types::Error {
        types::Error::Unavailable(format!("sql connection `{}`: {message}", self.name))
    }

    fn pool_error(&self, e: PoolError) -> types::Error {
        match e {
            PoolError::Backend(e) => self.db_error(e),
            other => self.unavailable(other),
        }
    }

    /// The one place a database error becomes a WIT error.
    fn db_error(&self, e: tokio_postgres::Error) -> types::Error {
        if let Some(db) = e.as_db_error() {
            let mut message = db.message().to_string();
            if let Some(detail) = db.detail() {
                message = format!("{message} ({detail})");
            }
            return match &db.code().code()[..2] {
                // Invalid authorization: the configured credentials.
                "28" => {
                    types::Error::Unauthorized(format!("sql connection `{}`: {message}", self.name))
                }
                // Connection exceptions, insufficient resources, operator
                // intervention (statement timeout, shutdown), system errors,
                // serialization failures: worth retrying.
                "08" | "53" | "57" | "58" | "40" => self.unavailable(message),
                _ => self.invalid(message),
            };
        }
        let text = e.to_string();
        if text.starts_with("error serializing") || text.starts_with("error deserializing") {
            let source = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            return self.invalid(format!("{text}{source}"));
        }
        let source = std::error::Error::source(&e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        self.unavailable(format!("{text}{source}"))
    }
}

/// Per-call state of the `sql` interface: the connector's grants (in its
/// sandbox), the call's deadline and the waits it records.
pub(crate) struct Sql {
    pub(crate) connector: Arc<str>,
    /// `[sandbox.sql.NAME]` grants, by NAME.
    pub(crate) grants: Arc<BTreeMap<String, Arc<SqlConnection>>>,
    pub(crate) deadline: Instant,
    pub(crate) waits: Arc<SourceWaits>,
}

impl wit::Host for Sql {
    async fn query(
        &mut self,
        connection: String,
        statement: String,
        params: Vec<wit::Value>,
    ) -> Result<wit::Rows, types::Error> {
        let Some(conn) = self.grants.get(&connection).cloned() else {
            return Err(types::Error::Invalid(format!(
                "no sql grant for connection `{connection}`"
            )));
        };
        let deadline = self.deadline;
        let started = Instant::now();
        // The statement timeout ends a slow query at the source budget; if
        // even its answer is late, this ends the wait halfway through the
        // margin, so the guest still has time to return `unavailable`.
        let left = deadline.saturating_duration_since(started);
        let left = left.saturating_sub(wait::margin(left) / 2);
        let _waiting = self.waits.enter(format!("sql connection `{connection}`"));
        let result =
            match tokio::time::timeout(left, conn.query(&statement, params, deadline)).await {
                Ok(r) => r,
                Err(_) => Err(conn.unavailable("the query ran past the call's deadline")),
            };
        match &result {
            Ok(rows) => tracing::debug!(
                connector = %self.connector,
                connection = %connection,
                rows = rows.rows.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "SQL query answered."
            ),
            Err(e) => tracing::debug!(
                connector = %self.connector,
                connection = %connection,
                error = ?e,
                "SQL query failed."
            ),
        }
        result
    }
}

/// Types decoded into a value case of their own; the rest are cast to text.
fn native(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::BOOL
            | Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::OID
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::BYTEA
            | Type::TIMESTAMP
            | Type::TIMESTAMPTZ
    ) || text_like(ty)
}

/// Types whose binary format is their UTF-8 text.
fn text_like(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON
    )
}

/// `statement` wrapped so that every non-native column is cast to text:
/// `SELECT c0, c1::text FROM (statement) AS inlet_q(c0, c1)`.
fn as_text(statement: &str, columns: &[tokio_postgres::Column]) -> String {
    let inner = statement.trim().trim_end_matches(';');
    let select: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if native(c.type_()) {
                format!("c{i}")
            } else {
                format!("c{i}::text")
            }
        })
        .collect();
    let aliases: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
    format!(
        "SELECT {} FROM ({inner}\n) AS inlet_q({})",
        select.join(", "),
        aliases.join(", ")
    )
}

fn size_of(value: &wit::Value) -> u64 {
    match value {
        wit::Value::Text(s) => s.len() as u64 + 8,
        wit::Value::Bytes(b) => b.len() as u64 + 8,
        _ => 9,
    }
}

/// One result value.
struct Cell(wit::Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use wit::Value as V;
        Ok(Cell(match *ty {
            Type::BOOL => V::Boolean(bool::from_sql(ty, raw)?),
            Type::INT2 => V::Int(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => V::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => V::Int(i64::from_sql(ty, raw)?),
            Type::OID => V::Int(u32::from_sql(ty, raw)?.into()),
            Type::FLOAT4 => V::Float(f32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => V::Float(f64::from_sql(ty, raw)?),
            Type::BYTEA => V::Bytes(raw.to_vec()),
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                V::Timestamp(from_pg_micros(i64::from_sql(&Type::INT8, raw)?))
            }
            _ => V::Text(std::str::from_utf8(raw)?.to_string()),
        }))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell(wit::Value::Null))
    }

    fn accepts(ty: &Type) -> bool {
        native(ty)
    }
}

/// PostgreSQL's microseconds since 2000-01-01 as Unix microseconds; the
/// infinities stay the extremes.
fn from_pg_micros(us: i64) -> i64 {
    match us {
        i64::MAX | i64::MIN => us,
        us => us.saturating_add(PG_EPOCH_MICROS),
    }
}

fn to_pg_micros(us: i64) -> i64 {
    match us {
        i64::MAX | i64::MIN => us,
        us => us.saturating_sub(PG_EPOCH_MICROS),
    }
}

/// One parameter, bound by the type the server inferred for it.
#[derive(Debug)]
struct Param(wit::Value);

impl Param {
    /// The value in PostgreSQL's text format, when it is sent that way.
    fn text(&self, ty: &Type) -> Option<String> {
        match (&self.0, ty) {
            (wit::Value::Text(s), ty) if !text_like(ty) && *ty != Type::BYTEA => Some(s.clone()),
            (wit::Value::Int(i), &Type::NUMERIC) => Some(i.to_string()),
            (wit::Value::Float(f), &Type::NUMERIC) => Some(f.to_string()),
            _ => None,
        }
    }
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use wit::Value as V;
        if let Some(text) = self.text(ty) {
            out.put_slice(text.as_bytes());
            return Ok(IsNull::No);
        }
        match (&self.0, ty) {
            (V::Null, _) => Ok(IsNull::Yes),
            (V::Boolean(b), &Type::BOOL) => b.to_sql(ty, out),
            (V::Int(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (V::Int(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (V::Int(i), &Type::INT8) => i.to_sql(ty, out),
            (V::Int(i), &Type::OID) => u32::try_from(*i)?.to_sql(ty, out),
            (V::Int(i), &Type::FLOAT4) => (*i as f32).to_sql(ty, out),
            (V::Int(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (V::Float(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (V::Float(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (V::Text(s), ty) if text_like(ty) => {
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            (V::Bytes(b), &Type::BYTEA) => b.as_slice().to_sql(ty, out),
            (V::Timestamp(us), &Type::TIMESTAMP | &Type::TIMESTAMPTZ) => {
                out.put_i64(to_pg_micros(*us));
                Ok(IsNull::No)
            }
            (value, ty) => Err(format!(
                "a {} value cannot be bound to a parameter of type {ty}; pass text and cast in SQL",
                kind(value)
            )
            .into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, ty: &Type) -> tokio_postgres::types::Format {
        match self.text(ty) {
            Some(_) => tokio_postgres::types::Format::Text,
            None => tokio_postgres::types::Format::Binary,
        }
    }

    to_sql_checked!();
}

fn kind(value: &wit::Value) -> &'static str {
    match value {
        wit::Value::Null => "null",
        wit::Value::Boolean(_) => "boolean",
        wit::Value::Int(_) => "int",
        wit::Value::Float(_) => "float",
        wit::Value::Text(_) => "text",
        wit::Value::Bytes(_) => "bytes",
        wit::Value::Timestamp(_) => "timestamp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_shift_between_epochs() {
        assert_eq!(from_pg_micros(0), PG_EPOCH_MICROS);
        assert_eq!(to_pg_micros(from_pg_micros(123_456)), 123_456);
        assert_eq!(from_pg_micros(i64::MAX), i64::MAX);
    }

    #[test]
    fn numbers_and_text_go_as_text_to_other_types() {
        let p = Param(wit::Value::Int(5));
        assert_eq!(p.text(&Type::NUMERIC).as_deref(), Some("5"));
        assert_eq!(p.text(&Type::INT8), None);
        let p = Param(wit::Value::Text("2f1c".into()));
        assert_eq!(p.text(&Type::UUID).as_deref(), Some("2f1c"));
        assert_eq!(p.text(&Type::VARCHAR), None);
    }
}
