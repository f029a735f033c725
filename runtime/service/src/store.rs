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

impl Store {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path, sync: Sync) -> Result<Store, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the data directory `{}`: {e}", dir.display()))?;
        let path = dir.join("journey.db");
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
        db.execute_batch(
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
             PRAGMA user_version = 1;",
        )
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
