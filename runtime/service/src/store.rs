//! The data directory's SQLite database → users' records, the index of their due timers, the
//! deployments, the service's own state, the commands since it, the outbox and the sinks'
//! cursors (docs/state.md).
//!
//! A group commit writes the commands it applied (the messages as the programs read them,
//! clock advances, deployments, lifecycle moves) and the actions they produced: a few rows,
//! appended. A checkpoint — every second, and at the stop — writes the records of the users
//! touched since the last one (each with the key of its first timer, which the `users_due`
//! index orders), the deployments made since, and the service's state, which names the last
//! command it holds.
//! A start reads the deployments and the state, and applies the commands after it: users come
//! back as those commands, timers and reads need them.
//!
//! **Invariant:** the stored state is one the service was in between two commands, and the
//! commands after it are every command applied since; an action is in the outbox iff the
//! command that made it is stored.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use journey_runtime::vm::state::HistoryRow;

use crate::datadir::{database, APPLICATION_ID};

/// How hard a commit presses to disk (SQLite's `synchronous`, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sync {
    /// Each commit is on disk before it is answered: survives a power cut.
    Full,
    /// Commits reach the OS before they are answered: survive the process being killed, not a
    /// power cut.
    Normal,
}

/// One command as stored: schema 1's log (read once, to move to schema 2), or a command
/// after the last checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub seq: i64,
    pub kind: String,
    /// The engine time the command was applied at (milliseconds since the epoch).
    pub at: i64,
    pub body: Vec<u8>,
}

/// An action of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Its position in the outbox (delivery order).
    pub n: i64,
    /// Its stable id: the idempotency key sinks pass on.
    pub id: String,
    pub json: String,
}

/// An action to write to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub id: String,
    /// The command that produced it.
    pub seq: i64,
    /// When it was made (engine time).
    pub at: i64,
    pub user: String,
    pub json: String,
}

/// A user's record as stored, with the key of its first timer (`None`: no timer).
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub name: String,
    pub record: Vec<u8>,
    pub due: Option<(i64, u64)>,
    /// Kept events the store does not have yet: (deployment, row).
    pub history: Vec<(i64, HistoryRow)>,
    /// Kept events that left: (deployment, kept type, those numbered before this; `None`:
    /// every type's, all of them).
    pub history_drops: Vec<(i64, u32, Option<u64>)>,
}

/// A user whose first timer is due: its name and the timer's key.
pub type DueUser = (String, (i64, u64));

/// What one group commit writes.
#[derive(Debug, Default)]
pub struct Commit {
    /// Commands applied: (seq, kind, time, body): a request's messages as the programs read
    /// them (kept for audit too), or a clock advance.
    pub commands: Vec<(i64, &'static str, i64, Vec<u8>)>,
    /// Deployments made: (number, bytecode).
    pub deployments: Vec<(i64, Vec<u8>)>,
    pub users: Vec<UserRow>,
    /// Users whose state in a deployment started or stopped having work (instances, pending
    /// entries, timers other than schedules): (deployment, name, has work).
    pub work: Vec<(i64, String, bool)>,
    /// The service's own state (`core::Core::state`); `None`: unchanged.
    pub state: Option<Vec<u8>>,
    pub actions: Vec<Action>,
}

impl Commit {
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
            && self.deployments.is_empty()
            && self.users.is_empty()
            && self.work.is_empty()
            && self.state.is_none()
            && self.actions.is_empty()
    }
}

pub struct Store {
    db: Connection,
}

/// The schema this binary writes: 3 keys users' records by name alone (one B-tree, where 2
/// had a row id and an index of names: rewritten at the first start); 2 keeps users' state; 1
/// kept the command log (read once at the first start of a binary that knows 2, then dropped).
pub const SCHEMA_VERSION: i64 = 3;

/// Users' records by name, after `CREATE TABLE [IF NOT EXISTS]` (the index of their due
/// timers beside it).
const USERS: &str = "users (
    name TEXT PRIMARY KEY,
    record BLOB NOT NULL,
    due_at INTEGER,
    due_seq INTEGER) WITHOUT ROWID;";

/// The index of users' due timers, after `CREATE INDEX [IF NOT EXISTS]`.
const USERS_DUE: &str = "users_due ON users(due_at, due_seq, name) WHERE due_at IS NOT NULL;";

/// The outbox table, after `CREATE TABLE [IF NOT EXISTS]`.
const OUTBOX: &str = "outbox (
                 n INTEGER PRIMARY KEY,
                 id TEXT NOT NULL,
                 seq INTEGER NOT NULL,
                 user TEXT NOT NULL,
                 action TEXT NOT NULL,
                 at INTEGER NOT NULL DEFAULT 0);";

/// The page cache of the service's main connection, in bytes.
pub const PAGE_CACHE: usize = 64 << 20;

fn sql(e: rusqlite::Error) -> String {
    e.to_string()
}

impl Store {
    /// Opens (creating if needed) the database in `dir`, its tables made ready. A service's
    /// start opens it once, after `datadir::lock` and `datadir::inspect`; its other
    /// connections `attach`.
    pub fn open(dir: &Path, sync: Sync) -> Result<Store, String> {
        let db = Store::connect(dir, sync)?;
        let path = database(dir);
        let at = |e: rusqlite::Error| format!("`{}`: {e}", path.display());
        // Users' records are read and written at random: SQLite's own page cache (64 MiB)
        // spares most of those reads a system call.
        db.execute_batch(&format!("PRAGMA cache_size = -{};", PAGE_CACHE >> 10))
            .map_err(at)?;
        let version: i64 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(at)?;
        if version > SCHEMA_VERSION {
            return Err(format!(
                "`{}` was written by a newer journey-runtime (schema {version}; this one knows {SCHEMA_VERSION})",
                path.display()
            ));
        }
        db.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS {OUTBOX}
             CREATE INDEX IF NOT EXISTS outbox_by_user ON outbox(user, n);
             CREATE TABLE IF NOT EXISTS cursors (
                 sink TEXT PRIMARY KEY,
                 delivered INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS commands (
                 seq INTEGER PRIMARY KEY,
                 kind TEXT NOT NULL,
                 at INTEGER NOT NULL,
                 body BLOB NOT NULL);
             CREATE INDEX IF NOT EXISTS commands_by_time ON commands(at);
             CREATE TABLE IF NOT EXISTS deployments (
                 n INTEGER PRIMARY KEY,
                 bytes BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS {USERS}
             CREATE INDEX IF NOT EXISTS {USERS_DUE}
             CREATE TABLE IF NOT EXISTS history (
                 user TEXT NOT NULL,
                 deployment INTEGER NOT NULL,
                 slot INTEGER NOT NULL,
                 ordinal INTEGER NOT NULL,
                 at INTEGER NOT NULL,
                 fields BLOB NOT NULL,
                 PRIMARY KEY (user, deployment, slot, ordinal)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS work (
                 deployment INTEGER NOT NULL,
                 name TEXT NOT NULL,
                 PRIMARY KEY (deployment, name)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (
                 key TEXT PRIMARY KEY,
                 value BLOB NOT NULL);
             PRAGMA application_id = {APPLICATION_ID};
             COMMIT;"
        ))
        .map_err(at)?;
        // Schema 1's outbox has no time: actions from then count as old.
        let has_at: bool = db
            .prepare("SELECT 1 FROM pragma_table_info('outbox') WHERE name = 'at'")
            .and_then(|mut q| q.exists([]))
            .map_err(at)?;
        if !has_at {
            db.execute_batch("ALTER TABLE outbox ADD COLUMN at INTEGER NOT NULL DEFAULT 0;")
                .map_err(at)?;
        }
        // Schema 2's users, keyed by a row id too: rewritten in one transaction.
        let has_id: bool = db
            .prepare("SELECT 1 FROM pragma_table_info('users') WHERE name = 'id'")
            .and_then(|mut q| q.exists([]))
            .map_err(at)?;
        if has_id {
            db.execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 ALTER TABLE users RENAME TO users_2;
                 DROP INDEX users_due;
                 CREATE TABLE {USERS}
                 INSERT INTO users (name, record, due_at, due_seq)
                     SELECT name, record, due_at, due_seq FROM users_2;
                 DROP TABLE users_2;
                 CREATE INDEX {USERS_DUE}
                 COMMIT;"
            ))
            .map_err(at)?;
        }
        if version < SCHEMA_VERSION && !Store::has_log(&db).map_err(at)? {
            db.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))
                .map_err(at)?;
        }
        Ok(Store { db })
    }

    /// Another connection to the database `open` made ready (a sink's, the checkpoints').
    pub fn attach(dir: &Path, sync: Sync) -> Result<Store, String> {
        Ok(Store {
            db: Store::connect(dir, sync)?,
        })
    }

    fn connect(dir: &Path, sync: Sync) -> Result<Connection, String> {
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
            "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync};
             PRAGMA foreign_keys = OFF;"
        ))
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
        Ok(db)
    }

    fn has_log(db: &Connection) -> rusqlite::Result<bool> {
        db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'log'")?
            .exists([])
    }

    /// Leaves WAL checkpoints to `checkpoint` (called from elsewhere), so that commits do not
    /// pay for copying the log back into the database.
    pub fn without_autocheckpoint(self) -> Result<Store, String> {
        self.db
            .execute_batch("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;")
            .map_err(sql)?;
        Ok(self)
    }

    /// Copies what the WAL holds back into the database, as far as readers allow (passive: it
    /// never waits for the writer).
    pub fn checkpoint(&self) -> Result<(), String> {
        self.db
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(sql)
    }

    // ------------------------------------------------------------ schema 1

    /// Whether the database holds schema 1's command log, still to be moved to schema 2.
    pub fn legacy_log(&self) -> Result<bool, String> {
        Store::has_log(&self.db).map_err(sql)
    }

    /// Hands every command of schema 1's log to `visit`, in order, a row at a time.
    pub fn each_logged(
        &self,
        visit: &mut dyn FnMut(&Logged) -> Result<(), String>,
    ) -> Result<(), String> {
        each_command(
            &self.db,
            "SELECT seq, kind, at, body FROM log WHERE seq > ?1 ORDER BY seq",
            i64::MIN,
            visit,
        )
    }

    /// Schema 1 → 2: `commit` (the state the log built), the log's inputs kept for audit, the
    /// log dropped, in one transaction.
    pub fn finish_migration(&mut self, commit: &Commit) -> Result<(), String> {
        let tx = self.db.transaction().map_err(sql)?;
        write(&tx, commit)?;
        // (Schema 1's outbox named the log's rows: it is made anew without the reference.)
        tx.execute_batch(&format!(
            "INSERT OR IGNORE INTO commands (seq, kind, at, body)
                 SELECT seq, kind, at, body FROM log WHERE kind = 'input';
             ALTER TABLE outbox RENAME TO outbox_1;
             DROP INDEX outbox_by_user;
             CREATE TABLE {OUTBOX}
             INSERT INTO outbox (n, id, seq, user, action, at)
                 SELECT n, id, seq, user, action, at FROM outbox_1;
             DROP TABLE outbox_1;
             CREATE INDEX outbox_by_user ON outbox(user, n);
             DROP TABLE log;
             PRAGMA user_version = {SCHEMA_VERSION};"
        ))
        .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    // ------------------------------------------------------------ state

    /// The service's own state, as last committed.
    pub fn state(&self) -> Result<Option<Vec<u8>>, String> {
        self.db
            .query_row("SELECT value FROM meta WHERE key = 'core'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql)
    }

    /// Every deployment, in order: (number, bytecode).
    pub fn deployments(&self) -> Result<Vec<(i64, Vec<u8>)>, String> {
        let mut query = self
            .db
            .prepare("SELECT n, bytes FROM deployments ORDER BY n")
            .map_err(sql)?;
        let rows = query
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql)
    }

    /// A user's record, if the store has one.
    pub fn user(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        self.db
            .prepare_cached("SELECT record FROM users WHERE name = ?1")
            .and_then(|mut q| q.query_row([name], |r| r.get(0)).optional())
            .map_err(sql)
    }

    /// A user's kept events: (deployment, row), in key order.
    pub fn history(&self, name: &str) -> Result<Vec<(i64, HistoryRow)>, String> {
        let mut query = self
            .db
            .prepare_cached(
                "SELECT deployment, slot, ordinal, at, fields FROM history WHERE user = ?1
                 ORDER BY deployment, slot, ordinal",
            )
            .map_err(sql)?;
        let rows = query
            .query_map([name], |r| {
                Ok((
                    r.get(0)?,
                    HistoryRow {
                        slot: r.get(1)?,
                        ordinal: r.get::<_, i64>(2)? as u64,
                        at: r.get(3)?,
                        fields: r.get(4)?,
                    },
                ))
            })
            .map_err(sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql)
    }

    /// Up to `limit` users whose first timer's key is after `after` and due at or before
    /// `until`, in key order: (name, key).
    pub fn due(&self, after: (i64, u64), until: i64, limit: usize) -> Result<Vec<DueUser>, String> {
        let mut query = self
            .db
            .prepare_cached(
                "SELECT name, due_at, due_seq FROM users
                 WHERE due_at >= ?1 AND due_at <= ?3 AND (due_at > ?1 OR due_seq > ?2)
                 ORDER BY due_at, due_seq LIMIT ?4",
            )
            .map_err(sql)?;
        let rows = query
            .query_map(params![after.0, after.1 as i64, until, limit as i64], |r| {
                Ok((r.get(0)?, (r.get(1)?, r.get::<_, i64>(2)? as u64)))
            })
            .map_err(sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql)
    }

    /// When the first stored timer whose key is after `after` is due, if any is.
    pub fn first_due_after(&self, after: (i64, u64)) -> Result<Option<i64>, String> {
        self.db
            .prepare_cached(
                "SELECT due_at FROM users
                 WHERE due_at >= ?1 AND (due_at > ?1 OR due_seq > ?2)
                 ORDER BY due_at, due_seq LIMIT 1",
            )
            .and_then(|mut q| {
                q.query_row(params![after.0, after.1 as i64], |r| r.get(0))
                    .optional()
            })
            .map_err(sql)
    }

    /// The users with work in deployment `n`, in name order: all, or the first `limit`.
    pub fn working(&self, n: i64, limit: Option<usize>) -> Result<Vec<String>, String> {
        let limit = limit.map_or(-1, |l| l as i64);
        let mut query = self
            .db
            .prepare_cached("SELECT name FROM work WHERE deployment = ?1 ORDER BY name LIMIT ?2")
            .map_err(sql)?;
        let rows = query
            .query_map(params![n, limit], |r| r.get(0))
            .map_err(sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql)
    }

    /// Hands every command after `after` to `visit`, in order, a row at a time.
    pub fn commands_after(
        &self,
        after: i64,
        visit: &mut dyn FnMut(&Logged) -> Result<(), String>,
    ) -> Result<(), String> {
        each_command(
            &self.db,
            "SELECT seq, kind, at, body FROM commands WHERE seq > ?1 ORDER BY seq",
            after,
            visit,
        )
    }

    /// Writes a group commit: all of it or none.
    pub fn commit(&mut self, commit: &Commit) -> Result<(), String> {
        let tx = self.db.transaction().map_err(sql)?;
        write(&tx, commit)?;
        tx.commit().map_err(sql)
    }

    /// Forgets the commands up to the checkpoint `checkpoint` but inputs made since `before`
    /// (kept for audit), and actions every sink in `sinks` has delivered that were made before
    /// `before`: what the store keeps grows with live state, not with history. Answers how
    /// many rows went.
    pub fn prune(&self, before: i64, checkpoint: i64, sinks: &[String]) -> Result<usize, String> {
        let mut gone = self
            .db
            .execute(
                "DELETE FROM commands WHERE seq <= ?1 AND (kind != 'input' OR at < ?2)",
                params![checkpoint, before],
            )
            .map_err(sql)?;
        let mut delivered = i64::MAX;
        for sink in sinks {
            delivered = delivered.min(self.cursor(sink)?);
        }
        gone += self
            .db
            .execute(
                "DELETE FROM outbox WHERE n <= ?1 AND at < ?2",
                params![delivered, before],
            )
            .map_err(sql)?;
        Ok(gone)
    }

    // ------------------------------------------------------------ outbox

    /// Up to `limit` actions after `after` in the outbox, in order.
    pub fn outbox_after(&self, after: i64, limit: usize) -> Result<Vec<Outgoing>, String> {
        let mut query = self
            .db
            .prepare_cached("SELECT n, id, action FROM outbox WHERE n > ?1 ORDER BY n LIMIT ?2")
            .map_err(sql)?;
        let rows = query
            .query_map(params![after, limit as i64], |r| {
                Ok(Outgoing {
                    n: r.get(0)?,
                    id: r.get(1)?,
                    json: r.get(2)?,
                })
            })
            .map_err(sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql)
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
            .map_err(sql)
    }

    pub fn set_cursor(&self, sink: &str, delivered: i64) -> Result<(), String> {
        self.db
            .execute(
                "INSERT INTO cursors (sink, delivered) VALUES (?1, ?2)
                 ON CONFLICT(sink) DO UPDATE SET delivered = excluded.delivered",
                params![sink, delivered],
            )
            .map(drop)
            .map_err(sql)
    }

    /// A user's latest actions, newest first.
    pub fn recent_actions(&self, user: &str, limit: usize) -> Result<Vec<String>, String> {
        let mut query = self
            .db
            .prepare_cached("SELECT action FROM outbox WHERE user = ?1 ORDER BY n DESC LIMIT ?2")
            .map_err(sql)?;
        let rows = query
            .query_map(params![user, limit as i64], |r| r.get(0))
            .map_err(sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql)
    }
}

/// Hands the commands `select` finds after `after` to `visit`, a row at a time (a log is
/// never held in memory whole).
fn each_command(
    db: &Connection,
    select: &str,
    after: i64,
    visit: &mut dyn FnMut(&Logged) -> Result<(), String>,
) -> Result<(), String> {
    let mut query = db.prepare(select).map_err(sql)?;
    let mut rows = query.query([after]).map_err(sql)?;
    while let Some(row) = rows.next().map_err(sql)? {
        let command = Logged {
            seq: row.get(0).map_err(sql)?,
            kind: row.get(1).map_err(sql)?,
            at: row.get(2).map_err(sql)?,
            body: row.get(3).map_err(sql)?,
        };
        visit(&command)?;
    }
    Ok(())
}

/// Writes `commit` inside the transaction `tx`.
fn write(tx: &rusqlite::Transaction, commit: &Commit) -> Result<(), String> {
    {
        let mut commands = tx
            .prepare_cached("INSERT INTO commands (seq, kind, at, body) VALUES (?1, ?2, ?3, ?4)")
            .map_err(sql)?;
        for (seq, kind, at, body) in &commit.commands {
            commands
                .execute(params![seq, kind, at, body])
                .map_err(sql)?;
        }
        let mut deployments = tx
            .prepare_cached("INSERT INTO deployments (n, bytes) VALUES (?1, ?2)")
            .map_err(sql)?;
        for (n, bytes) in &commit.deployments {
            deployments.execute(params![n, bytes]).map_err(sql)?;
        }
        let mut users = tx
            .prepare_cached(
                "INSERT INTO users (name, record, due_at, due_seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET record = excluded.record,
                     due_at = excluded.due_at, due_seq = excluded.due_seq",
            )
            .map_err(sql)?;
        let mut kept = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO history (user, deployment, slot, ordinal, at, fields)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(sql)?;
        let mut dropped = tx
            .prepare_cached(
                "DELETE FROM history WHERE user = ?1 AND deployment = ?2 AND slot = ?3
                 AND ordinal < ?4",
            )
            .map_err(sql)?;
        let mut retired = tx
            .prepare_cached("DELETE FROM history WHERE user = ?1 AND deployment = ?2")
            .map_err(sql)?;
        for user in &commit.users {
            let (at, seq) = match user.due {
                Some((at, seq)) => (Some(at), Some(seq as i64)),
                None => (None, None),
            };
            users
                .execute(params![user.name, user.record, at, seq])
                .map_err(sql)?;
            for (deployment, slot, before) in &user.history_drops {
                match before {
                    Some(before) => dropped
                        .execute(params![user.name, deployment, slot, *before as i64])
                        .map_err(sql)?,
                    None => retired
                        .execute(params![user.name, deployment])
                        .map_err(sql)?,
                };
            }
            for (deployment, row) in &user.history {
                kept.execute(params![
                    user.name,
                    deployment,
                    row.slot,
                    row.ordinal as i64,
                    row.at,
                    row.fields
                ])
                .map_err(sql)?;
            }
        }
        let mut working = tx
            .prepare_cached("INSERT OR IGNORE INTO work (deployment, name) VALUES (?1, ?2)")
            .map_err(sql)?;
        let mut idle = tx
            .prepare_cached("DELETE FROM work WHERE deployment = ?1 AND name = ?2")
            .map_err(sql)?;
        for (deployment, name, has_work) in &commit.work {
            if *has_work {
                working.execute(params![deployment, name]).map_err(sql)?;
            } else {
                idle.execute(params![deployment, name]).map_err(sql)?;
            }
        }
        if let Some(state) = &commit.state {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('core', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut q| q.execute([state]))
            .map_err(sql)?;
        }
        let mut outbox = tx
            .prepare_cached(
                "INSERT INTO outbox (id, seq, user, action, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(sql)?;
        for a in &commit.actions {
            outbox
                .execute(params![a.id, a.seq, a.user, a.json, a.at])
                .map_err(sql)?;
        }
    }
    Ok(())
}
