//! The data directory → held by one process, checked before anything writes to it, and
//! copied while serving: its lock, the refusal of a database that is not ours or is damaged,
//! and backups.

use std::path::Path;

use rusqlite::Connection;

use crate::store::SCHEMA_VERSION;

/// `PRAGMA application_id` of a journey-runtime database ("JRNY"): a file without it is not
/// ours and is refused before anything is written to it.
pub const APPLICATION_ID: i64 = 0x4A52_4E59;

/// The tables a journey-runtime database holds (a database of schema 1 written before the
/// application id was set is recognised by them).
const TABLES: [&str; 3] = ["cursors", "log", "outbox"];

/// The database file in a data directory.
pub fn database(dir: &Path) -> std::path::PathBuf {
    dir.join("journey.db")
}

/// The exclusive hold of a data directory by one process, for as long as it lives.
///
/// **Invariant:** at most one process serves a data directory: the lock is taken before the
/// database is opened, and released only when the process ends (the kernel drops it then, even
/// after SIGKILL).
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

/// Takes the data directory `dir` (creating it if needed) for this process; another process
/// holding it is a clear refusal naming its pid.
pub fn lock(dir: &Path) -> Result<DirLock, String> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the data directory `{}`: {e}", dir.display()))?;
    let path = dir.join("journey.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let by = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            return Err(format!(
                "the data directory `{}` is in use by another journey-runtime{by}: one directory, one process",
                dir.display()
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(format!("cannot lock `{}`: {e}", path.display()))
        }
    }
    // The holder's pid, for the message above (the lock is what counts, not the text).
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(DirLock { _file: file })
}

/// Refuses a database file that is not a journey-runtime database, or that is damaged where a
/// start reads, before anything writes to it: it is opened read-only, its application id (or,
/// for a database of schema 1, its tables) and schema version are checked, then `PRAGMA
/// quick_check` runs on what a start reads (its schema, the service's state and the
/// deployments; the whole of a schema-1 database, whose log a start replays). The rest is
/// `check`ed while the service runs: a start reads a few kilobytes, whatever the history.
/// A file that does not exist (or is empty) is a new database.
pub fn inspect(path: &Path) -> Result<(), String> {
    use rusqlite::OpenFlags;
    let length = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
    };
    if length == 0 {
        return Ok(());
    }
    let not_ours = |why: &str| {
        format!(
            "`{}` is not a journey-runtime database ({why}); it was left untouched: give `--data` a directory of its own",
            path.display()
        )
    };
    let db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    let id: i64 = db
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| not_ours(&e.to_string()))?;
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| not_ours(&e.to_string()))?;
    if id != APPLICATION_ID {
        let mut tables: Vec<String> = db
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| not_ours(&e.to_string()))?;
        tables.sort();
        let legacy = id == 0 && version == 1 && tables == TABLES;
        if !legacy {
            return Err(not_ours(&format!("its application id is {id:#x}")));
        }
    }
    if version > SCHEMA_VERSION {
        return Err(format!(
            "`{}` was written by a newer journey-runtime (schema {version}; this one knows {SCHEMA_VERSION})",
            path.display()
        ));
    }
    if id != APPLICATION_ID {
        return quick_check(&db, path, None);
    }
    for table in START_TABLES {
        let exists = db
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")
            .and_then(|mut q| q.exists([table]))
            .map_err(|e| damaged(path, &e.to_string()))?;
        if exists {
            quick_check(&db, path, Some(table))?;
        }
    }
    Ok(())
}

/// The tables a start reads whole: the service's state and the deployments (a start then
/// reads the commands after its checkpoint, and users as inputs need them).
const START_TABLES: [&str; 2] = ["meta", "deployments"];

/// `PRAGMA quick_check` of the whole database at `path` (read-only, beside a service that
/// serves it): what a start leaves to the running service. `interrupt` is handed the
/// connection's interrupt handle, so that a stop need not wait for the check to end (an
/// interrupted check answers an error, which the stop that interrupted it disregards).
pub fn check(path: &Path, interrupt: impl FnOnce(rusqlite::InterruptHandle)) -> Result<(), String> {
    use rusqlite::OpenFlags;
    let db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    interrupt(db.get_interrupt_handle());
    quick_check(&db, path, None)
}

fn damaged(path: &Path, what: &str) -> String {
    format!(
        "`{}` is damaged: {what}; restore it from a backup (docs/runtime.md, Backups)",
        path.display()
    )
}

/// `PRAGMA quick_check` of one table and its indexes, or of the whole database.
fn quick_check(db: &Connection, path: &Path, table: Option<&str>) -> Result<(), String> {
    let pragma = match table {
        Some(table) => format!("PRAGMA quick_check(\"{table}\")"),
        None => "PRAGMA quick_check(5)".to_string(),
    };
    let problems: Vec<String> = db
        .prepare(&pragma)
        .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| damaged(path, &e.to_string()))?;
    if problems != ["ok"] {
        return Err(damaged(path, &problems.join("; ")));
    }
    Ok(())
}

/// `journey-runtime backup`: a consistent copy of the data directory's database at `out`, taken
/// while a service may be serving it (one read transaction, `VACUUM INTO`), then checked.
/// Answers the copy's size in bytes.
pub fn backup(dir: &Path, out: &Path) -> Result<u64, String> {
    use rusqlite::OpenFlags;
    let path = database(dir);
    if !path.exists() {
        return Err(format!(
            "`{}` holds no journey-runtime database",
            dir.display()
        ));
    }
    if out.exists() {
        return Err(format!(
            "`{}` exists already: a backup never overwrites a file",
            out.display()
        ));
    }
    inspect(&path)?;
    let out_text = out
        .to_str()
        .ok_or_else(|| format!("`{}` is not a UTF-8 path", out.display()))?;
    let db = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    db.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    db.execute("VACUUM INTO ?1", [out_text])
        .map_err(|e| format!("cannot write the backup `{}`: {e}", out.display()))?;
    inspect(out)?;
    check(out, |_| {})?;
    std::fs::metadata(out)
        .map(|m| m.len())
        .map_err(|e| format!("`{}`: {e}", out.display()))
}
