//! `postgres-table`: pulls new and updated rows of one PostgreSQL table
//! through the host's `sql` capability, in keyset order.
//!
//! Each pull runs
//! `SELECT * FROM table WHERE (cursor, id) > ($1, $2) ORDER BY cursor, id
//! LIMIT batch + 1` and stores one JSON event per row. The checkpoint is
//! the last `(cursor, id)` pair returned, so rows that share a cursor value
//! across a batch boundary are neither skipped nor repeated; the extra row
//! only tells whether more is ready now (`has-more`). The event id is
//! `table:id:cursor`, so an updated row (a new cursor value) is a new event
//! and reading a row again is a duplicate the host drops.

use inlet_sdk::sql::{self, Row, Rows, Value};
use inlet_sdk::{
    Connector, Descriptor, Error, Event, PullBatch, config, config_parse, config_required,
};
use serde::{Deserialize, Serialize};

/// The connector; see the crate docs.
pub struct PostgresTable;

impl Connector for PostgresTable {
    fn describe() -> Descriptor {
        Descriptor::new("postgres-table", env!("CARGO_PKG_VERSION"))
            .pull()
            .schedule("1m")
            .description(
                "Pulls new and updated rows of a PostgreSQL table in (cursor, id) keyset order.",
            )
    }

    fn partitions() -> Result<Vec<String>, Error> {
        Ok(Settings::from_config()?.partitions)
    }

    fn pull(since: Option<String>, partition: Option<String>) -> Result<PullBatch, Error> {
        let settings = Settings::from_config()?;
        let since = since.as_deref().map(Checkpoint::parse).transpose()?;
        let (statement, params) = settings.statement(since.as_ref(), partition.as_deref());
        let rows = sql::query(&settings.connection, &statement, &params)?;
        settings.batch_of(&rows)
    }
}

inlet_sdk::export_connector!(PostgresTable);

/// The `[config]` of the connector, checked up front.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The `[sandbox.sql.NAME]` to query (config `connection`).
    pub connection: String,
    /// The table, `name` or `schema.name`, quoted (config `table`).
    pub table: String,
    /// The table name as configured, the first part of every event id.
    pub table_name: String,
    /// The column that grows on insert and update, such as `updated_at`
    /// (config `cursor_column`).
    pub cursor_column: String,
    /// The unique key that breaks ties between equal cursor values (config
    /// `id_column`).
    pub id_column: String,
    /// Rows per pull (config `batch`, default 1000).
    pub batch: u32,
    /// Only rows whose cursor is older than `now() - lag` (config `lag`,
    /// default `0s`: no bound), in microseconds.
    pub lag_micros: i64,
    /// The column that splits the table for parallel pulls (config
    /// `partition_column`).
    pub partition_column: Option<String>,
    /// The values of `partition_column`, one partition each (config
    /// `partitions`, comma-separated).
    pub partitions: Vec<String>,
}

impl Settings {
    /// Reads and checks the manifest's `[config]`.
    pub fn from_config() -> Result<Self, Error> {
        Self::new(
            &config_required("connection")?,
            &config_required("table")?,
            &config_required("cursor_column")?,
            &config_required("id_column")?,
            config_parse::<u32>("batch")?.unwrap_or(1000),
            config("lag").as_deref().unwrap_or("0s"),
            config("partition_column").as_deref(),
            config("partitions").as_deref(),
        )
    }

    /// Checks every setting: identifiers are letters, digits and `_`
    /// (`schema.table` for the table), `batch` is 1 to 100,000, `lag` is a
    /// duration such as `30s`, and `partitions` comes with
    /// `partition_column`.
    #[expect(clippy::too_many_arguments, reason = "one argument per config key")]
    pub fn new(
        connection: &str,
        table: &str,
        cursor_column: &str,
        id_column: &str,
        batch: u32,
        lag: &str,
        partition_column: Option<&str>,
        partitions: Option<&str>,
    ) -> Result<Self, Error> {
        if !(1..=100_000).contains(&batch) {
            return Err(Error::invalid(format!(
                "config key `batch` must be from 1 to 100000, not {batch}"
            )));
        }
        let partitions: Vec<String> = partitions
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        if partition_column.is_none() && !partitions.is_empty() {
            return Err(Error::invalid(
                "config key `partitions` needs `partition_column`",
            ));
        }
        if partition_column.is_some() && partitions.is_empty() {
            return Err(Error::invalid(
                "config key `partition_column` needs `partitions` (comma-separated values)",
            ));
        }
        Ok(Settings {
            connection: connection.to_string(),
            table: quote_table(table)?,
            table_name: table.to_string(),
            cursor_column: column("cursor_column", cursor_column)?,
            id_column: column("id_column", id_column)?,
            batch,
            lag_micros: parse_lag(lag)?,
            partition_column: partition_column
                .map(|c| column("partition_column", c))
                .transpose()?,
            partitions,
        })
    }

    /// The statement and parameters of one pull after `since` (the first
    /// pull when `None`), in `partition` when set.
    pub fn statement(
        &self,
        since: Option<&Checkpoint>,
        partition: Option<&str>,
    ) -> (String, Vec<Value>) {
        let (cursor, id) = (quote(&self.cursor_column), quote(&self.id_column));
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        if let Some(Checkpoint::V1 { cursor: c, id: i }) = since {
            params.push(c.to_value());
            params.push(i.to_value());
            conditions.push(format!("({cursor}, {id}) > ($1, $2)"));
        }
        if self.lag_micros > 0 {
            params.push(Value::Int(self.lag_micros));
            conditions.push(format!(
                "{cursor} <= now() - ${} * interval '1 microsecond'",
                params.len()
            ));
        }
        if let (Some(column), Some(partition)) = (&self.partition_column, partition) {
            params.push(Value::from(partition));
            conditions.push(format!("{}::text = ${}", quote(column), params.len()));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let statement = format!(
            "SELECT * FROM {}{filter} ORDER BY {cursor}, {id} LIMIT {}",
            self.table,
            self.batch as u64 + 1
        );
        (statement, params)
    }

    /// One event per row (up to `batch`), the checkpoint at the last row,
    /// and `has-more` when the query found a row past the batch.
    pub fn batch_of(&self, rows: &Rows) -> Result<PullBatch, Error> {
        let take = rows.len().min(self.batch as usize);
        let mut events = Vec::with_capacity(take);
        let mut last = None;
        for row in rows.iter().take(take) {
            let cursor = Key::from_row(&row, &self.cursor_column)?;
            let id = Key::from_row(&row, &self.id_column)?;
            let mut event = Event::json(&row.to_json())?
                .id(format!("{}:{}:{}", self.table_name, id, cursor))
                .key(id.to_string());
            if let Key::Timestamp(us) = cursor
                && let Ok(ms) = u64::try_from(us / 1000)
            {
                event = event.time_ms(ms);
            }
            events.push(event);
            last = Some(Checkpoint::V1 { cursor, id });
        }
        let batch = PullBatch::new(events).has_more(rows.len() > take);
        Ok(match last {
            Some(checkpoint) => batch.checkpoint(checkpoint.to_string()),
            None => batch,
        })
    }
}

/// A cursor or id value as stored in the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Key {
    /// A `timestamp`/`timestamptz`, in microseconds since the Unix epoch.
    Timestamp(i64),
    /// An integer.
    Int(i64),
    /// Text, or any other type in its text form (`uuid`, `numeric`, ...).
    Text(String),
}

impl Key {
    fn from_row(row: &Row<'_>, column: &str) -> Result<Self, Error> {
        match row.get(column)? {
            Value::Timestamp(t) => Ok(Key::Timestamp(*t)),
            Value::Int(i) => Ok(Key::Int(*i)),
            Value::Text(s) => Ok(Key::Text(s.clone())),
            Value::Null => Err(Error::invalid(format!(
                "column `{column}` is NULL in a row; the cursor and id columns must be NOT NULL"
            ))),
            other => Err(Error::invalid(format!(
                "column `{column}` is {other:?}; use a timestamp, integer or text column"
            ))),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Key::Timestamp(t) => Value::Timestamp(*t),
            Key::Int(i) => Value::Int(*i),
            Key::Text(s) => Value::Text(s.clone()),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Timestamp(t) | Key::Int(t) => write!(f, "{t}"),
            Key::Text(s) => f.write_str(s),
        }
    }
}

/// The checkpoint: the last `(cursor, id)` pair stored, as versioned JSON
/// such as `{"version":"1","cursor":{"timestamp":1700000000000000},"id":{"int":42}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version")]
pub enum Checkpoint {
    /// The first format.
    #[serde(rename = "1")]
    V1 {
        /// The cursor column's value.
        cursor: Key,
        /// The id column's value.
        id: Key,
    },
}

impl Checkpoint {
    /// Parses a stored checkpoint; a malformed one is `invalid` (reset it
    /// with `DELETE /v1/connectors/NAME/checkpoint`).
    pub fn parse(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|e| {
            Error::invalid(format!(
                "checkpoint {text:?} is not a postgres-table checkpoint ({e}); reset or set it"
            ))
        })
    }
}

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| std::fmt::Error)?)
    }
}

/// Checks an identifier: an ASCII letter or `_`, then letters, digits, `_`.
fn column(key: &str, name: &str) -> Result<String, Error> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(Error::invalid(format!(
            "config key `{key}`: `{name}` is not a plain identifier (letters, digits, `_`)"
        )));
    }
    Ok(name.to_string())
}

/// `"name"` or `"schema"."name"`, after checking each part.
fn quote_table(table: &str) -> Result<String, Error> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 {
        return Err(Error::invalid(format!(
            "config key `table`: `{table}` is not `name` or `schema.name`"
        )));
    }
    let quoted = parts
        .iter()
        .map(|p| column("table", p).map(|p| quote(&p)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(quoted.join("."))
}

/// A checked identifier in double quotes (it holds no quote to escape).
fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// `0s`, `500ms`, `30s`, `5m`, `2h`, `1d` in microseconds.
fn parse_lag(text: &str) -> Result<i64, Error> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let per: i64 = match unit.trim() {
        "ms" => 1_000,
        "s" | "" if n == "0" => 1_000_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => 0,
    };
    match n.parse::<i64>() {
        Ok(n) if per > 0 => n.checked_mul(per).ok_or(()),
        _ => Err(()),
    }
    .map_err(|()| {
        Error::invalid(format!(
            "config key `lag`: `{text}` is not a duration such as \"30s\", \"5m\" or \"0s\""
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(partition: Option<&str>, partitions: Option<&str>) -> Settings {
        Settings::new(
            "main",
            "public.orders",
            "updated_at",
            "id",
            2,
            "0s",
            partition,
            partitions,
        )
        .unwrap()
    }

    #[test]
    fn identifiers_are_checked_and_quoted() {
        assert_eq!(
            quote_table("public.orders").unwrap(),
            "\"public\".\"orders\""
        );
        for bad in ["orders; DROP TABLE x", "a.b.c", "\"x\"", "", "1abc"] {
            assert!(quote_table(bad).is_err(), "{bad}");
        }
        assert!(column("id_column", "id) OR (1=1").is_err());
    }

    #[test]
    fn keyset_statement() {
        let s = settings(None, None);
        let (sql, params) = s.statement(None, None);
        assert_eq!(
            sql,
            "SELECT * FROM \"public\".\"orders\" ORDER BY \"updated_at\", \"id\" LIMIT 3"
        );
        assert!(params.is_empty());
        let cp = Checkpoint::V1 {
            cursor: Key::Timestamp(5),
            id: Key::Int(9),
        };
        let (sql, params) = s.statement(Some(&cp), None);
        assert!(
            sql.contains("WHERE (\"updated_at\", \"id\") > ($1, $2) ORDER BY"),
            "{sql}"
        );
        assert_eq!(params, vec![Value::Timestamp(5), Value::Int(9)]);

        let p = settings(Some("region"), Some("eu, us"));
        assert_eq!(p.partitions, vec!["eu", "us"]);
        let (sql, params) = p.statement(Some(&cp), Some("eu"));
        assert!(sql.contains("AND \"region\"::text = $3"), "{sql}");
        assert_eq!(params[2], Value::from("eu"));
    }

    #[test]
    fn lag_bounds_the_cursor() {
        let mut s = settings(None, None);
        s.lag_micros = parse_lag("5m").unwrap();
        let (sql, params) = s.statement(None, None);
        assert!(
            sql.contains("WHERE \"updated_at\" <= now() - $1 * interval"),
            "{sql}"
        );
        assert_eq!(params, vec![Value::Int(300_000_000)]);
        assert_eq!(parse_lag("0s").unwrap(), 0);
        assert_eq!(parse_lag("500ms").unwrap(), 500_000);
        assert!(parse_lag("soon").is_err());
    }

    #[test]
    fn batch_checkpoints_the_last_pair_and_reads_one_past() {
        let s = settings(None, None);
        let rows = Rows::new(
            vec!["id".into(), "updated_at".into()],
            (1..=3)
                .map(|i| vec![Value::Int(i), Value::Timestamp(7_000_000)])
                .collect(),
        );
        let batch = s.batch_of(&rows).unwrap();
        assert_eq!(batch.events().len(), 2);
        assert!(batch.get_has_more());
        let cp = Checkpoint::parse(batch.get_checkpoint().unwrap()).unwrap();
        assert_eq!(
            cp,
            Checkpoint::V1 {
                cursor: Key::Timestamp(7_000_000),
                id: Key::Int(2)
            }
        );
        assert_eq!(
            batch.get_checkpoint().unwrap(),
            r#"{"version":"1","cursor":{"timestamp":7000000},"id":{"int":2}}"#
        );
    }
}
