//! `tokio-postgres` errors as [`WarehouseError`]s that carry the server's words.

use tokio_postgres::error::ErrorPosition;

use crate::WarehouseError;

/// An error from running a statement: the server's message, SQLSTATE, detail, hint and the
/// line and column it points at in `sql` (a statement that held `sql` after `offset`
/// characters); or, when the connection failed, a [`WarehouseError::Connection`].
pub(crate) fn sql_error(
    target: &str,
    sql: Option<(&str, usize)>,
    err: &tokio_postgres::Error,
) -> WarehouseError {
    let Some(db) = err.as_db_error() else {
        return connection_error(target, err);
    };
    let mut message = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    if let (Some((sql, offset)), Some(ErrorPosition::Original(position))) = (sql, db.position())
        && let Some(position) = (*position as usize).checked_sub(offset)
        && position > 0
    {
        message.push_str(&locate(sql, position));
    }
    if let Some(detail) = db.detail() {
        message.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = db.hint() {
        message.push_str(&format!("; hint: {hint}"));
    }
    WarehouseError::Query(message)
}

/// The connection could not be opened or broke.
pub(crate) fn connection_error(target: &str, err: &tokio_postgres::Error) -> WarehouseError {
    if let Some(db) = err.as_db_error() {
        // Authentication, a missing database, too many connections.
        return WarehouseError::Connection(format!(
            "postgres warehouse {target}: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        ));
    }
    let mut message = format!("postgres warehouse {target}: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    WarehouseError::Connection(message)
}

/// ` at line L, column C: <that line>` for a 1-based character position in `sql`.
fn locate(sql: &str, position: usize) -> String {
    let before: String = sql.chars().take(position.saturating_sub(1)).collect();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let text = sql.lines().nth(line - 1).unwrap_or_default().trim();
    format!(" at line {line}, column {column}: `{text}`")
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn positions_become_lines_and_columns() {
        let sql = "select 1,\n  2 frm t";
        assert_eq!(locate(sql, 15), " at line 2, column 5: `2 frm t`");
        assert_eq!(locate(sql, 1), " at line 1, column 1: `select 1,`");
        assert_eq!(locate(sql, 999), " at line 2, column 10: `2 frm t`");
    }
}
