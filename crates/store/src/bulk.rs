//! Many rows in one statement, the shape of every group-committed write.
//!
//! A `VALUES` list has one placeholder per cell, so every batch size is new
//! statement text, which PostgreSQL parses and plans each time: about 5 us
//! of server CPU per row (`records_cost` measures it). On PostgreSQL the
//! rows are therefore padded with all-NULL rows up to one of a few sizes and
//! the padding filtered out in the statement, so a handful of texts cover
//! every batch and each is prepared once per connection. (Rows as one JSON
//! parameter through `json_to_recordset` measured no better: the server
//! then parses the JSON instead.) SQLite keeps the plain `VALUES` list.

use crate::records::{Bind, Sql};
use sqlx::AnyPool;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    pub(crate) fn of(pool: &AnyPool) -> Self {
        if pool.connect_options().database_url.scheme().starts_with("sqlite") {
            Dialect::Sqlite
        } else {
            Dialect::Postgres
        }
    }
}

/// A column of a bulk insert and whether it holds text or an integer.
pub(crate) type Column = (&'static str, Kind);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Int,
}

/// Statement sizes on PostgreSQL: at most half again the rows sent, and few
/// enough texts per statement kind to stay in sqlx's statement cache (100).
const SIZES: &[usize] = &[1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512];

/// `INSERT INTO table (columns) <rows> <tail>`; each row has one bind per
/// column, in order, and a non-NULL first column. The flag says whether the
/// text is worth preparing.
pub(crate) fn insert<'a>(
    dialect: Dialect,
    table: &str,
    columns: &[Column],
    rows: impl ExactSizeIterator<Item = Vec<Bind<'a>>>,
    tail: &str,
) -> (Sql<'a>, bool) {
    let names = columns.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ");
    let mut sql = Sql::new(format!("INSERT INTO {table} ({names}) "));
    let padded = match dialect {
        Dialect::Sqlite => None,
        Dialect::Postgres => SIZES.iter().copied().find(|&size| size >= rows.len()),
    };
    let Some(size) = padded else {
        sql.push("VALUES ");
        push_values(&mut sql, rows);
        sql.push(tail);
        return (sql, false);
    };
    sql.push("SELECT * FROM ");
    push_padded(&mut sql, size, columns, rows);
    // Padding rows have a NULL first column; real rows never do.
    sql.push(&format!(" WHERE v.{} IS NOT NULL", columns[0].0));
    sql.push(tail);
    (sql, true)
}

/// `<head>(VALUES ...) AS v (columns)<tail>` on PostgreSQL, padded as
/// [`insert`] pads, for statements that join their rows (`UPDATE ... FROM`).
/// Padding rows are all NULL, so they match nothing. `None` past the largest
/// size: the caller then sends fewer rows per statement.
pub(crate) fn joined<'a>(
    mut sql: Sql<'a>,
    columns: &[Column],
    rows: impl ExactSizeIterator<Item = Vec<Bind<'a>>>,
    tail: &str,
) -> Option<Sql<'a>> {
    let size = SIZES.iter().copied().find(|&size| size >= rows.len())?;
    push_padded(&mut sql, size, columns, rows);
    sql.push(tail);
    Some(sql)
}

fn push_padded<'a>(sql: &mut Sql<'a>, size: usize, columns: &[Column], rows: impl ExactSizeIterator<Item = Vec<Bind<'a>>>) {
    let padding = size - rows.len();
    let nulls = || columns.iter().map(|(_, kind)| if *kind == Kind::Int { Bind::OptInt(None) } else { Bind::Text(None) }).collect();
    let names = columns.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ");
    sql.push("(VALUES ");
    push_values(sql, rows.chain((0..padding).map(|_| nulls())));
    sql.push(&format!(") AS v ({names})"));
}

fn push_values<'a>(sql: &mut Sql<'a>, rows: impl Iterator<Item = Vec<Bind<'a>>>) {
    for (i, row) in rows.enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.tuple(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[Column] = &[("a", Kind::Text), ("b", Kind::Int)];

    fn rows(n: usize) -> impl ExactSizeIterator<Item = Vec<Bind<'static>>> {
        (0..n).map(|i| vec![Bind::Text(Some("x")), Bind::Int(i as i64)]).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn postgres_pads_to_a_few_texts() {
        let (five, prepared) = insert(Dialect::Postgres, "t", COLUMNS, rows(5), " ON CONFLICT DO NOTHING");
        let (six, _) = insert(Dialect::Postgres, "t", COLUMNS, rows(6), " ON CONFLICT DO NOTHING");
        assert!(prepared);
        assert_eq!(five.text, six.text, "5 and 6 rows share the 6-row text");
        assert!(five.text.starts_with("INSERT INTO t (a, b) SELECT * FROM (VALUES ($1, $2), "));
        assert!(five.text.ends_with(" ($11, $12)) AS v (a, b) WHERE v.a IS NOT NULL ON CONFLICT DO NOTHING"));
        let texts: std::collections::HashSet<String> = (1..=512).map(|n| insert(Dialect::Postgres, "t", COLUMNS, rows(n), "").0.text).collect();
        assert_eq!(texts.len(), SIZES.len());
    }

    #[test]
    fn beyond_the_largest_size_and_on_sqlite_rows_go_unpadded() {
        let (big, prepared) = insert(Dialect::Postgres, "t", COLUMNS, rows(513), "");
        assert!(!prepared);
        assert!(big.text.starts_with("INSERT INTO t (a, b) VALUES ($1, $2), "));
        let (sql, prepared) = insert(Dialect::Sqlite, "t", COLUMNS, rows(1), "");
        assert!(!prepared);
        assert_eq!(sql.text, "INSERT INTO t (a, b) VALUES ($1, $2)");
    }
}
