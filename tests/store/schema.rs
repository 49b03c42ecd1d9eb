//! Reading a migrated schema back, and the plan's columns to hold it against.
#![allow(unreachable_pub)]

use sqlx::Row as _;
use tidegate::store::{Pool, Store};

/// One column, as the plan writes it or as a database reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub table: String,
    pub name: String,
    /// The plan's spelling (`DECIMAL(5,2)`) or the database's (`numeric(5,2)`, `REAL`).
    pub ty: String,
    pub not_null: bool,
    pub primary_key: bool,
    pub default: Option<String>,
}

/// The plan's columns, parsed from the fixture, in table and column order.
pub fn plan_columns() -> Vec<Column> {
    let mut columns = Vec::new();
    let mut table = None;
    for line in include_str!("../fixtures/plan_tables.sql").lines() {
        let line = line.split("--").next().unwrap_or_default().trim();
        if let Some(rest) = line.strip_prefix("CREATE TABLE IF NOT EXISTS ") {
            table = rest.split_whitespace().next().map(str::to_owned);
            continue;
        }
        if line.starts_with(')') || line.is_empty() {
            continue;
        }
        let table = table.clone().expect("a column line follows a CREATE TABLE");
        columns.push(parse_column(table, line.trim_end_matches(',')));
    }
    columns
}

fn parse_column(table: String, line: &str) -> Column {
    let (name, rest) = line.split_once(' ').expect("a column has a type");
    let keywords = [" NOT NULL", " UNIQUE", " DEFAULT ", " PRIMARY KEY"];
    let ty_end = keywords
        .iter()
        .filter_map(|k| rest.find(k))
        .min()
        .unwrap_or(rest.len());
    Column {
        table,
        name: name.to_owned(),
        ty: rest[..ty_end].trim().to_owned(),
        not_null: rest.contains("NOT NULL") || rest.contains("PRIMARY KEY"),
        primary_key: rest.contains("PRIMARY KEY"),
        default: rest
            .split_once(" DEFAULT ")
            .map(|(_, d)| d.trim().to_owned()),
    }
}

/// The columns of `table` as the database reports them, in column order.
pub async fn db_columns(store: &Store, table: &str) -> Vec<Column> {
    match store.pool() {
        Pool::Postgres(pool) => {
            let rows = sqlx::query(
                "SELECT c.column_name::text AS name, c.data_type::text AS ty, \
                 c.character_maximum_length::int AS len, c.numeric_precision::int AS prec, \
                 c.numeric_scale::int AS scale, c.is_nullable::text AS nullable, \
                 c.column_default::text AS dflt, \
                 EXISTS (SELECT 1 FROM information_schema.table_constraints t \
                   JOIN information_schema.key_column_usage k \
                   ON k.constraint_name = t.constraint_name AND k.table_name = t.table_name \
                   WHERE t.table_name = c.table_name AND t.constraint_type = 'PRIMARY KEY' \
                   AND k.column_name = c.column_name) AS pk \
                 FROM information_schema.columns c \
                 WHERE c.table_schema = current_schema() AND c.table_name = $1 \
                 ORDER BY c.ordinal_position",
            )
            .bind(table)
            .fetch_all(pool)
            .await
            .unwrap();
            rows.iter()
                .map(|row| {
                    let mut ty: String = row.get("ty");
                    if let Some(len) = row.get::<Option<i32>, _>("len") {
                        ty = format!("{ty}({len})");
                    } else if ty == "numeric" {
                        let prec: i32 = row.get("prec");
                        let scale: i32 = row.get("scale");
                        ty = format!("numeric({prec},{scale})");
                    }
                    Column {
                        table: table.to_owned(),
                        name: row.get("name"),
                        ty,
                        not_null: row.get::<String, _>("nullable") == "NO",
                        primary_key: row.get("pk"),
                        default: row.get("dflt"),
                    }
                })
                .collect()
        }
        Pool::Sqlite(pool) => {
            let rows = sqlx::query(&format!("PRAGMA table_info({table})"))
                .fetch_all(pool)
                .await
                .unwrap();
            rows.iter()
                .map(|row| {
                    let primary_key = row.get::<i64, _>("pk") > 0;
                    Column {
                        table: table.to_owned(),
                        name: row.get("name"),
                        ty: row.get("type"),
                        // An INTEGER PRIMARY KEY is the rowid: never NULL, though not flagged so.
                        not_null: row.get::<i64, _>("notnull") == 1 || primary_key,
                        primary_key,
                        default: row.get("dflt_value"),
                    }
                })
                .collect()
        }
    }
}

/// A plan column as PostgreSQL reports it when migrated faithfully.
pub fn on_postgres(c: &Column) -> Column {
    let ty = c.ty.as_str();
    let (ty, default) = if ty == "BIGSERIAL" {
        (
            "bigint".to_owned(),
            Some(format!("nextval('{}_id_seq'::regclass)", c.table)),
        )
    } else {
        let ty = if let Some(args) = ty.strip_prefix("DECIMAL") {
            format!("numeric{args}")
        } else if let Some(args) = ty.strip_prefix("VARCHAR") {
            format!("character varying{args}")
        } else {
            ty.to_lowercase()
        };
        let default = c.default.as_ref().map(|d| match d.as_str() {
            "NOW()" => "now()".to_owned(),
            text if text.starts_with('\'') => format!("{text}::character varying"),
            other => other.to_owned(),
        });
        (ty, default)
    };
    Column {
        ty,
        default,
        ..c.clone()
    }
}

/// A plan column as SQLite reports it with the nearest types.
pub fn on_sqlite(c: &Column) -> Column {
    let ty = match c.ty.as_str() {
        "BIGSERIAL" | "INTEGER" => "INTEGER",
        "BOOLEAN" => "BOOLEAN",
        other if other.starts_with("DECIMAL") => "REAL",
        _ => "TEXT",
    };
    let default = c.default.as_ref().map(|d| match d.as_str() {
        "NOW()" => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')".to_owned(),
        other => other.to_owned(),
    });
    Column {
        ty: ty.to_owned(),
        default,
        ..c.clone()
    }
}

/// Everything that makes up the schema, as comparable text.
pub async fn snapshot(store: &Store) -> Vec<String> {
    match store.pool() {
        Pool::Postgres(pool) => {
            let queries = [
                "SELECT table_name::text || '.' || column_name::text || ' ' || data_type::text \
                 || ' ' || is_nullable::text || ' ' || COALESCE(column_default::text, '-') \
                 FROM information_schema.columns WHERE table_schema = current_schema() \
                 ORDER BY table_name, ordinal_position",
                "SELECT indexname::text || ' ' || indexdef FROM pg_indexes \
                 WHERE schemaname = current_schema() ORDER BY indexname",
                "SELECT routine_name::text || ' ' || data_type::text \
                 FROM information_schema.routines \
                 WHERE routine_schema = current_schema() ORDER BY routine_name",
                "SELECT conrelid::regclass::text || ' ' || conname::text || ' ' \
                 || pg_get_constraintdef(oid) FROM pg_constraint \
                 WHERE connamespace = current_schema()::regnamespace ORDER BY 1",
            ];
            let mut lines = Vec::new();
            for q in queries {
                let rows: Vec<(String,)> = sqlx::query_as(q).fetch_all(pool).await.unwrap();
                lines.extend(rows.into_iter().map(|(l,)| l));
            }
            lines
        }
        Pool::Sqlite(pool) => {
            let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
                "SELECT type, name, sql FROM sqlite_master \
                 WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            rows.into_iter()
                .map(|(t, n, s)| format!("{t} {n} {}", s.unwrap_or_default()))
                .collect()
        }
    }
}

/// The tables present, by name.
pub async fn tables(store: &Store) -> Vec<String> {
    let rows: Vec<(String,)> = match store.pool() {
        Pool::Postgres(pool) => sqlx::query_as(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() ORDER BY 1",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        Pool::Sqlite(pool) => sqlx::query_as(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY 1",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
    };
    rows.into_iter().map(|(t,)| t).collect()
}

/// Runs a statement as an operator would in psql or sqlite3.
pub async fn execute(store: &Store, sql: &str) -> u64 {
    match store.pool() {
        Pool::Postgres(pool) => sqlx::query(sql)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected(),
        Pool::Sqlite(pool) => sqlx::query(sql)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected(),
    }
}

/// A single integer read with a query.
pub async fn scalar(store: &Store, sql: &str) -> i64 {
    match store.pool() {
        Pool::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        Pool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}
