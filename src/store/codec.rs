//! How values cross into the database: timestamps and unsigned integers.
//!
//! PostgreSQL stores `TIMESTAMP WITH TIME ZONE`; SQLite has no time type, so
//! tidegate writes UTC text in one fixed, sortable format (the same as the
//! SQLite schema's defaults), which keeps `recorded_at < $1` correct there.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef, Postgres};
use sqlx::sqlite::{Sqlite, SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Type};

/// A point in time as stored in either database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ts(pub(crate) DateTime<Utc>);

impl Ts {
    /// The SQLite text form: `2026-01-31T12:00:00.000Z`.
    fn sqlite_text(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <DateTime<Utc> as Decode<Postgres>>::decode(value).map(Ts)
    }
}

impl Type<Sqlite> for Ts {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <DateTime<Utc> as Type<Sqlite>>::compatible(ty) || <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for Ts {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(self.sqlite_text(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        <DateTime<Utc> as Decode<Sqlite>>::decode(value).map(Ts)
    }
}

/// A counter or size for an `INTEGER` column, saturating at its largest value.
pub(crate) fn int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// An `INTEGER` column read back as a count, refusing negative values an operator may have typed.
pub(crate) fn count(column: &'static str, value: i32) -> Result<u32, sqlx::Error> {
    u32::try_from(value).map_err(|_| bad_value(column, format!("{value} is negative")))
}

/// A bigint aggregate (COUNT, SUM) read back as a count.
pub(crate) fn total(column: &'static str, value: i64) -> Result<u64, sqlx::Error> {
    u64::try_from(value).map_err(|_| bad_value(column, format!("{value} is negative")))
}

/// A decoding error naming the column.
pub(crate) fn bad_value(column: &'static str, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: message.into(),
    }
}
