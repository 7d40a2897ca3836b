//! SQLite plumbing shared by the MSD metadata and Last.fm tags databases: opening read-only
//! with errors that name the file, checking the expected schema, lenient cell reading, and
//! writing a database atomically.

use crate::error::{Error, Result};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row};
use std::path::Path;

/// An rusqlite error on `path` as a format error naming the file.
pub fn failed(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::format(path, format!("SQLite error: {e}"))
}

/// Open `path` read-only, checking that it is an SQLite database with `tables`, each having
/// the listed columns. `what` names the expected file in messages ("track_metadata.db").
pub fn open(path: &Path, what: &str, tables: &[(&str, &[&str])]) -> Result<Connection> {
    match std::fs::metadata(path) {
        Err(e) => return Err(Error::io(path, e)),
        Ok(m) if m.is_dir() => {
            return Err(Error::invalid(format!(
                "{} is a directory; expected the SQLite file {what}",
                path.display()
            )));
        }
        Ok(_) => {}
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(failed(path))?;
    // Opening is lazy: the first query is what finds a corrupt or non-SQLite file.
    let present: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| Error::format(path, format!("not a readable SQLite database ({e}); expected {what}")))?;
    for (table, columns) in tables {
        if !present.iter().any(|p| p.eq_ignore_ascii_case(table)) {
            return Err(Error::format(
                path,
                format!("has no table {table:?} (tables: {present:?}); is this {what}?"),
            ));
        }
        let have: Vec<String> = conn
            .prepare(&format!("PRAGMA table_info(\"{table}\")"))
            .and_then(|mut s| s.query_map([], |r| r.get(1))?.collect())
            .map_err(failed(path))?;
        for column in *columns {
            if !have.iter().any(|h| h.eq_ignore_ascii_case(column)) {
                return Err(Error::format(
                    path,
                    format!("table {table} has no column {column:?} (columns: {have:?}); is this {what}?"),
                ));
            }
        }
    }
    Ok(conn)
}

/// A cell as text: NULL is "", numbers are printed, invalid UTF-8 is replaced.
pub fn text(row: &Row<'_>, i: usize) -> rusqlite::Result<String> {
    Ok(match row.get_ref(i)? {
        ValueRef::Null => String::new(),
        ValueRef::Integer(v) => v.to_string(),
        ValueRef::Real(v) => v.to_string(),
        ValueRef::Text(b) | ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
    })
}

/// A cell as a number: integers, reals and numeric text; `None` for NULL or anything else.
pub fn number(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<f64>> {
    Ok(match row.get_ref(i)? {
        ValueRef::Integer(v) => Some(v as f64),
        ValueRef::Real(v) => Some(v),
        ValueRef::Text(b) => std::str::from_utf8(b).ok().and_then(|s| s.trim().parse().ok()),
        ValueRef::Null | ValueRef::Blob(_) => None,
    })
}

/// Create the database `path` atomically: `fill` writes a fresh database under a temporary
/// name in one transaction, which is synced and renamed over `path` only if all went well.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>) -> Result<()> {
    let tmp = crate::io::temp_sibling(path)?;
    let _ = std::fs::remove_file(&tmp);
    let result = (|| -> Result<()> {
        let mut conn = Connection::open(&tmp).map_err(failed(path))?;
        // A fresh file that replaces the target only when complete needs no journal.
        conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
            .map_err(failed(path))?;
        let tx = conn.transaction().map_err(failed(path))?;
        fill(&tx).map_err(failed(path))?;
        tx.commit().map_err(failed(path))?;
        conn.close().map_err(|(_, e)| failed(path)(e))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
