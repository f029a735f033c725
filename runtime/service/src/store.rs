//! The data directory's SQLite database → the command log, the outbox and the sinks' cursors.
//!
//! The engine is deterministic, so its whole state is a function of the commands it applied,
//! in order: the log keeps those commands (deployments, lifecycle changes, accepted inputs with
//! the time they were processed at, clock advances that fired timers) and a restart replays
//! them. The actions a command produced go into the outbox in the same transaction as the
//! command, so an accepted input and its actions are durable together or not at all.
//!
//! **Invariant:** a log row is written only for a command the engine applied without refusal,
//! and every outbox row belongs to the log row of the command that produced it.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

/// How hard a commit presses to disk (SQLite's `synchronous`, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sync {
    /// Each commit is on disk before it is answered: survives a power cut.
    Full,
    /// Commits reach the OS before they are answered: survive the process being killed, not a
    /// power cut.
    Normal,
}

/// One command of the log, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub seq: i64,
    pub kind: String,
    /// The engine time the command was applied at (milliseconds since the epoch).
    pub at: i64,
    pub body: Vec<u8>,
}

/// An action of the outbox. (Ids are unique by construction, `{seq}-{n}`: no index keeps them
/// so, which spares every insert a random B-tree walk.)
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Its position in the outbox (delivery order).
    pub n: i64,
    /// Its stable id: the idempotency key sinks pass on.
    pub id: String,
    pub json: String,
}

pub struct Store {
    db: Connection,
}

const SCHEMA_VERSION: i64 = 1;

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

/// Refuses a database file that is not a journey-runtime database, or that is damaged, before
/// anything writes to it: it is opened read-only, its application id (or, for a database of
/// schema 1, its tables) and schema version are checked, then `PRAGMA quick_check` runs.
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
    let problems: Vec<String> = db
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| {
            format!(
                "`{}` is damaged: {e}; restore it from a backup (docs/runtime.md, Backups)",
                path.display()
            )
        })?;
    if problems != ["ok"] {
        return Err(format!(
            "`{}` is damaged: {}; restore it from a backup (docs/runtime.md, Backups)",
            path.display(),
            problems.join("; ")
        ));
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
    std::fs::metadata(out)
        .map(|m| m.len())
        .map_err(|e| format!("`{}`: {e}", out.display()))
}

impl Store {
    /// Opens (creating if needed) the database in `dir`. The first opening of a service's
    /// start comes after `lock` and `inspect`; the others (sinks, checkpoints) open what those
    /// accepted.
    pub fn open(dir: &Path, sync: Sync) -> Result<Store, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the data directory `{}`: {e}", dir.display()))?;
        let path = database(dir);
        let db = Connection::open(&path)
            .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
        let sync = match sync {
            Sync::Full => "FULL",
            Sync::Normal => "NORMAL",
        };
        db.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 10000;"
        ))
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
        let version: i64 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| format!("`{}`: {e}", path.display()))?;
        if version > SCHEMA_VERSION {
            return Err(format!(
                "`{}` was written by a newer journey-runtime (schema {version}; this one knows {SCHEMA_VERSION})",
                path.display()
            ));
        }
        db.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS log (
                 seq INTEGER PRIMARY KEY,
                 kind TEXT NOT NULL,
                 at INTEGER NOT NULL,
                 body BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS outbox (
                 n INTEGER PRIMARY KEY,
                 id TEXT NOT NULL,
                 seq INTEGER NOT NULL REFERENCES log(seq),
                 user TEXT NOT NULL,
                 action TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS outbox_by_user ON outbox(user, n);
             CREATE TABLE IF NOT EXISTS cursors (
                 sink TEXT PRIMARY KEY,
                 delivered INTEGER NOT NULL);
             PRAGMA user_version = 1;
             PRAGMA application_id = {APPLICATION_ID};",
        ))
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
        Ok(Store { db })
    }

    /// Leaves WAL checkpoints to `checkpoint` (called from elsewhere), so that commits do not
    /// pay for copying the log back into the database.
    pub fn without_autocheckpoint(self) -> Result<Store, String> {
        self.db
            .execute_batch("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;")
            .map_err(|e| e.to_string())?;
        Ok(self)
    }

    /// Copies what the WAL holds back into the database, as far as readers allow (passive: it
    /// never waits for the writer).
    pub fn checkpoint(&self) -> Result<(), String> {
        self.db
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(|e| e.to_string())
    }

    /// Hands every command of the log before `before` (all of them: `None`) to `visit`, in
    /// order, one row at a time (the log is never held in memory whole).
    pub fn each_command(
        &self,
        before: Option<i64>,
        visit: &mut dyn FnMut(&Logged) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut query = self
            .db
            .prepare("SELECT seq, kind, at, body FROM log WHERE seq < ?1 ORDER BY seq")
            .map_err(|e| e.to_string())?;
        let mut rows = query
            .query([before.unwrap_or(i64::MAX)])
            .map_err(|e| e.to_string())?;
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            let command = Logged {
                seq: row.get(0).map_err(|e| e.to_string())?,
                kind: row.get(1).map_err(|e| e.to_string())?,
                at: row.get(2).map_err(|e| e.to_string())?,
                body: row.get(3).map_err(|e| e.to_string())?,
            };
            visit(&command)?;
        }
        Ok(())
    }

    /// The next sequence number the log will give.
    pub fn next_seq(&self) -> Result<i64, String> {
        self.db
            .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM log", [], |r| {
                r.get(0)
            })
            .map_err(|e| e.to_string())
    }

    /// Writes commands and their actions in one transaction: all of them or none.
    pub fn commit(&mut self, commands: &[Logged], actions: &[Action]) -> Result<(), String> {
        let tx = self.db.transaction().map_err(|e| e.to_string())?;
        {
            let mut log = tx
                .prepare_cached("INSERT INTO log (seq, kind, at, body) VALUES (?1, ?2, ?3, ?4)")
                .map_err(|e| e.to_string())?;
            for c in commands {
                log.execute(params![c.seq, c.kind, c.at, c.body])
                    .map_err(|e| e.to_string())?;
            }
            let mut outbox = tx
                .prepare_cached(
                    "INSERT INTO outbox (id, seq, user, action) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(|e| e.to_string())?;
            for a in actions {
                outbox
                    .execute(params![a.id, a.seq, a.user, a.json])
                    .map_err(|e| e.to_string())?;
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }

    /// Up to `limit` actions after `after` in the outbox, in order.
    pub fn outbox_after(&self, after: i64, limit: usize) -> Result<Vec<Outgoing>, String> {
        let mut query = self
            .db
            .prepare_cached("SELECT n, id, action FROM outbox WHERE n > ?1 ORDER BY n LIMIT ?2")
            .map_err(|e| e.to_string())?;
        let rows = query
            .query_map(params![after, limit as i64], |r| {
                Ok(Outgoing {
                    n: r.get(0)?,
                    id: r.get(1)?,
                    json: r.get(2)?,
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    }

    /// The last outbox position `sink` delivered (0: none).
    pub fn cursor(&self, sink: &str) -> Result<i64, String> {
        self.db
            .query_row(
                "SELECT delivered FROM cursors WHERE sink = ?1",
                [sink],
                |r| r.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(|e| e.to_string())
    }

    pub fn set_cursor(&self, sink: &str, delivered: i64) -> Result<(), String> {
        self.db
            .execute(
                "INSERT INTO cursors (sink, delivered) VALUES (?1, ?2)
                 ON CONFLICT(sink) DO UPDATE SET delivered = excluded.delivered",
                params![sink, delivered],
            )
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// How many actions the outbox holds, and the last position.
    pub fn outbox_size(&self) -> Result<(i64, i64), String> {
        self.db
            .query_row(
                "SELECT COUNT(*), COALESCE(MAX(n), 0) FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| e.to_string())
    }

    /// A user's latest actions, newest first.
    pub fn recent_actions(&self, user: &str, limit: usize) -> Result<Vec<String>, String> {
        let mut query = self
            .db
            .prepare_cached("SELECT action FROM outbox WHERE user = ?1 ORDER BY n DESC LIMIT ?2")
            .map_err(|e| e.to_string())?;
        let rows = query
            .query_map(params![user, limit as i64], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    }
}

/// An action to write to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub id: String,
    /// The log row of the command that produced it.
    pub seq: i64,
    pub user: String,
    pub json: String,
}
