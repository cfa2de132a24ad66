//! Read-only SQL through the host: [`query`] a database the operator granted
//! in the connector's manifest, by name.
//!
//! The host owns the connection, the credentials and the pool; a connector
//! names a connection (`[sandbox.sql.NAME]` in its manifest), never a DSN.
//! Each query runs in its own read-only transaction with a statement
//! timeout inside the call's deadline, and is capped in rows and bytes.
//! Only PostgreSQL is supported.
//!
//! ```no_run
//! use inlet_sdk::sql::{self, Value};
//!
//! # fn f() -> Result<(), inlet_sdk::Error> {
//! let rows = sql::query(
//!     "main",
//!     "SELECT id, name, updated_at FROM users WHERE id > $1 ORDER BY id LIMIT 100",
//!     &[Value::Int(0)],
//! )?;
//! for row in rows.iter() {
//!     let id = row.get_i64("id")?;
//!     let name = row.get_str("name")?;
//!     let updated = row.get_timestamp_micros("updated_at")?;
//!     inlet_sdk::log::debug(format!("{id} {name} {updated}"));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A component that never calls [`query`] does not import the `sql`
//! interface at all.

use crate::Error;
use crate::wit::inlet::connector::sql as wit;

/// One SQL value, for parameters and results.
///
/// Results: `boolean` → [`Bool`](Value::Bool); `int2`/`int4`/`int8`/`oid` →
/// [`Int`](Value::Int); `float4`/`float8` → [`Float`](Value::Float);
/// `bytea` → [`Bytes`](Value::Bytes); `timestamp`/`timestamptz` →
/// [`Timestamp`](Value::Timestamp) (microseconds since the Unix epoch, UTC);
/// text types and every other type (`numeric`, `uuid`, `date`, `jsonb`, ...)
/// → [`Text`](Value::Text) in PostgreSQL's text format.
///
/// Parameters bind to the type the server infers for `$n`; a
/// [`Text`](Value::Text) binds to any type through its text format.
///
/// ```no_run
/// use inlet_sdk::sql::Value;
///
/// let params = [Value::Timestamp(1_700_000_000_000_000), Value::from("order-1")];
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// `boolean`.
    Bool(bool),
    /// Integer types.
    Int(i64),
    /// Floating-point types.
    Float(f64),
    /// Text, and every type without a case of its own.
    Text(String),
    /// `bytea`.
    Bytes(Vec<u8>),
    /// `timestamp`/`timestamptz`: microseconds since the Unix epoch (UTC);
    /// `±infinity` are `i64::MAX`/`i64::MIN`.
    Timestamp(i64),
}

impl Value {
    /// The value as JSON: numbers, strings, booleans, `null`; bytes as an
    /// array of numbers; timestamps as microseconds.
    ///
    /// ```no_run
    /// let json = inlet_sdk::sql::Value::Int(7).to_json();
    /// ```
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Text(s) => s.clone().into(),
            Value::Bytes(b) => b.clone().into(),
            Value::Timestamp(us) => (*us).into(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Timestamp(_) => "timestamp",
        }
    }

    fn into_wit(self) -> wit::Value {
        match self {
            Value::Null => wit::Value::Null,
            Value::Bool(b) => wit::Value::Boolean(b),
            Value::Int(i) => wit::Value::Int(i),
            Value::Float(f) => wit::Value::Float(f),
            Value::Text(s) => wit::Value::Text(s),
            Value::Bytes(b) => wit::Value::Bytes(b),
            Value::Timestamp(t) => wit::Value::Timestamp(t),
        }
    }

    fn from_wit(v: wit::Value) -> Self {
        match v {
            wit::Value::Null => Value::Null,
            wit::Value::Boolean(b) => Value::Bool(b),
            wit::Value::Int(i) => Value::Int(i),
            wit::Value::Float(f) => Value::Float(f),
            wit::Value::Text(s) => Value::Text(s),
            wit::Value::Bytes(b) => Value::Bytes(b),
            wit::Value::Timestamp(t) => Value::Timestamp(t),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// The result of a [`query`]: column names and rows of [`Value`]s.
///
/// ```no_run
/// # fn f(rows: inlet_sdk::sql::Rows) -> Result<(), inlet_sdk::Error> {
/// for row in rows.iter() {
///     let id = row.get_i64("id")?;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

impl Rows {
    /// Builds a result by hand (for tests of code that reads rows).
    ///
    /// ```no_run
    /// use inlet_sdk::sql::{Rows, Value};
    /// let rows = Rows::new(vec!["id".into()], vec![vec![Value::Int(1)]]);
    /// ```
    pub fn new(columns: Vec<String>, rows: Vec<Vec<Value>>) -> Self {
        Rows { columns, rows }
    }

    /// Column names, in the statement's order.
    ///
    /// ```no_run
    /// # fn f(rows: inlet_sdk::sql::Rows) { let names = rows.columns(); }
    /// ```
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// How many rows came back.
    ///
    /// ```no_run
    /// # fn f(rows: inlet_sdk::sql::Rows) { let n = rows.len(); }
    /// ```
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row came back.
    ///
    /// ```no_run
    /// # fn f(rows: inlet_sdk::sql::Rows) { let none = rows.is_empty(); }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `i`, if there is one.
    ///
    /// ```no_run
    /// # fn f(rows: inlet_sdk::sql::Rows) { let last = rows.get(rows.len() - 1); }
    /// ```
    pub fn get(&self, i: usize) -> Option<Row<'_>> {
        self.rows.get(i).map(|values| Row {
            columns: &self.columns,
            values,
        })
    }

    /// The rows in order.
    ///
    /// ```no_run
    /// # fn f(rows: inlet_sdk::sql::Rows) { for row in rows.iter() {} }
    /// ```
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Row<'_>> + '_ {
        self.rows.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }
}

/// One row of [`Rows`], read by column name with typed getters. A getter
/// fails with [`Error::Invalid`] naming the column when it is missing or of
/// another type; `NULL` fails too, except in [`get`](Row::get) and
/// [`get_opt_str`](Row::get_opt_str).
///
/// ```no_run
/// # fn f(row: inlet_sdk::sql::Row<'_>) -> Result<(), inlet_sdk::Error> {
/// let id = row.get_i64("id")?;
/// let email = row.get_opt_str("email")?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl<'a> Row<'a> {
    /// The value of `column`, of any type.
    ///
    /// ```no_run
    /// # fn f(row: inlet_sdk::sql::Row<'_>) -> Result<(), inlet_sdk::Error> {
    /// let v = row.get("updated_at")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn get(&self, column: &str) -> Result<&'a Value, Error> {
        self.columns
            .iter()
            .position(|c| c == column)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "the result has no column `{column}` (it has {})",
                    self.columns.join(", ")
                ))
            })
    }

    /// Column names and values, in order.
    ///
    /// ```no_run
    /// # fn f(row: inlet_sdk::sql::Row<'_>) { for (name, value) in row.iter() {} }
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.columns
            .iter()
            .map(String::as_str)
            .zip(self.values.iter())
    }

    /// The row as a JSON object, column name to [`Value::to_json`].
    ///
    /// ```no_run
    /// # fn f(row: inlet_sdk::sql::Row<'_>) { let json = row.to_json(); }
    /// ```
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.iter()
                .map(|(k, v)| (k.to_string(), v.to_json()))
                .collect(),
        )
    }

    /// An integer column.
    ///
    /// ```no_run
    /// # fn f(row: inlet_sdk::sql::Row<'_>) -> Result<(), inlet_sdk::Error> {
    /// let id = row.get_i64("id")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_i64(&self, column: &str) -> Result<i64, Error> {
        match self.get(column)? {
            Value::Int(i) => Ok(*i),
            other => Err(mismatch(column, "an integer", other)),
        }
    }

    /// A floating-point (or integer) column.
    ///
    /// ```no_run
    /// # fn f(row: inlet_sdk::sql::Row<'_>) -> Result<(), inlet_sdk::Error> {
    /// let price = row.get_f64("price")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_f64(&self, column: &str) -> Result<f64, Error> {
        match self.get(column)? {
            Value::Float(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            other => Err(mismatch(column, "a number", other)),
        }
    }

    /// A boolean column.
    ///
    /// ```no_run
    /// # fn f(row: inlet_sdk::sql::Row<'_>) -> Result<(), inlet_sdk::Error> {
    /// let active = row.get_bool("active")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_bool(&self, column: &str) -> Result<bool, Error> {
        match self.get(column)? {
            Value::Bool(b) => Ok(*b),
            other => Err(mismatch(column, "a boolean", other)),
        }
    }

    /// A text column (also every type read as text, such as `numeric`).
    ///
    /// ```no_run
    /// # fn f(row: inlet_sdk::sql::Row<'_>) -> Result<(), inlet_sdk::Error> {
    /// let name = row.get_str("name")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_str(&self, column: &str) -> Result<&'a str, Error> {
        match self.get(column)? {
            Value::Text(s) => Ok(s),
            other => Err(mismatch(column, "text", other)),
        }
    }

    /// A nullable text column: `None` for `NULL`.
    ///
    /// ```no_run
    /// # fn f(row: inlet_sdk::sql::Row<'_>) -> Result<(), inlet_sdk::Error> {
    /// let email = row.get_opt_str("email")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_opt_str(&self, column: &str) -> Result<Option<&'a str>, Error> {
        match self.get(column)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s)),
            other => Err(mismatch(column, "text or NULL", other)),
        }
    }

    /// A `bytea` column.
    ///
    /// ```no_run
    /// # fn f(row: inlet_sdk::sql::Row<'_>) -> Result<(), inlet_sdk::Error> {
    /// let blob = row.get_bytes("blob")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_bytes(&self, column: &str) -> Result<&'a [u8], Error> {
        match self.get(column)? {
            Value::Bytes(b) => Ok(b),
            other => Err(mismatch(column, "bytes", other)),
        }
    }

    /// A `timestamp`/`timestamptz` column in microseconds since the Unix
    /// epoch (UTC).
    ///
    /// ```no_run
    /// # fn f(row: inlet_sdk::sql::Row<'_>) -> Result<(), inlet_sdk::Error> {
    /// let updated = row.get_timestamp_micros("updated_at")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_timestamp_micros(&self, column: &str) -> Result<i64, Error> {
        match self.get(column)? {
            Value::Timestamp(t) => Ok(*t),
            other => Err(mismatch(column, "a timestamp", other)),
        }
    }
}

fn mismatch(column: &str, wanted: &str, found: &Value) -> Error {
    Error::invalid(format!(
        "column `{column}` is {}, not {wanted}",
        found.kind()
    ))
}

/// Runs `statement` with `params` (`$1`, `$2`, ...) on the connection named
/// `connection` in the manifest's `[sandbox.sql]`, in a read-only
/// transaction.
///
/// Errors: [`Error::Invalid`] without a grant for `connection` ("no sql
/// grant for connection `x`"), for SQL the server refuses (its message, such
/// as "cannot execute DELETE in a read-only transaction"), a parameter that
/// does not fit its type, or a result over the manifest's `max_rows` or
/// `max_bytes`; [`Error::Unauthorized`] when the server refuses the
/// configured credentials; [`Error::Unavailable`] when the database cannot
/// be reached, the pool is busy or the statement timed out. Return them from
/// `pull` as they are: the host retries what is transient.
///
/// ```no_run
/// use inlet_sdk::sql::{query, Value};
///
/// # fn f() -> Result<(), inlet_sdk::Error> {
/// let rows = query("main", "SELECT count(*) AS n FROM orders WHERE status = $1", &[Value::from("paid")])?;
/// let n = rows.get(0).map(|r| r.get_i64("n")).transpose()?;
/// # Ok(())
/// # }
/// ```
pub fn query(connection: &str, statement: &str, params: &[Value]) -> Result<Rows, Error> {
    let params: Vec<wit::Value> = params.iter().cloned().map(Value::into_wit).collect();
    let rows = run_query(connection, statement, &params)?;
    Ok(Rows {
        columns: rows.columns,
        rows: rows
            .rows
            .into_iter()
            .map(|r| r.into_iter().map(Value::from_wit).collect())
            .collect(),
    })
}

#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
pub(crate) fn error_from_wit(e: crate::wit::inlet::connector::types::Error) -> Error {
    use crate::wit::inlet::connector::types::Error as E;
    match e {
        E::Invalid(m) => Error::Invalid(m),
        E::Unauthorized(m) => Error::Unauthorized(m),
        E::Unavailable(m) => Error::Unavailable(m),
        E::RateLimited(s) => Error::RateLimited(s),
        E::Other(m) => Error::Other(m),
    }
}

#[cfg(target_family = "wasm")]
fn run_query(connection: &str, statement: &str, params: &[wit::Value]) -> Result<wit::Rows, Error> {
    wit::query(connection, statement, params).map_err(error_from_wit)
}

/// Natively there is no host to run SQL: a clear error, never a panic.
#[cfg(not(target_family = "wasm"))]
fn run_query(_: &str, _: &str, _: &[wit::Value]) -> Result<wit::Rows, Error> {
    Err(Error::invalid(
        "inlet_sdk::sql::query runs in the Inlet host only: the native test kit \
         (inlet_sdk::testing) scripts HTTP, not SQL; try SQL connectors against a \
         database through a host",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getters_check_types_and_name_the_column() {
        let rows = Rows::new(
            vec!["id".into(), "name".into(), "at".into()],
            vec![vec![
                Value::Int(7),
                Value::Null,
                Value::Timestamp(1_700_000_000_000_000),
            ]],
        );
        let row = rows.get(0).unwrap();
        assert_eq!(row.get_i64("id"), Ok(7));
        assert_eq!(row.get_opt_str("name"), Ok(None));
        assert_eq!(row.get_timestamp_micros("at"), Ok(1_700_000_000_000_000));
        assert_eq!(
            row.get_str("name"),
            Err(Error::invalid("column `name` is null, not text"))
        );
        assert!(matches!(row.get("nope"), Err(Error::Invalid(m)) if m.contains("id, name, at")));
        assert_eq!(
            row.to_json(),
            serde_json::json!({"id": 7, "name": null, "at": 1_700_000_000_000_000i64})
        );
    }
}
