//! The embedded SQLite file that holds the embedded queue and state store.
//!
//! One file per job (by default per source/destination pair), opened in WAL
//! mode with a busy timeout so several `ferry-worker` processes on one machine
//! can share it. Every call runs on the blocking pool; write transactions use
//! `BEGIN IMMEDIATE` so two processes never both read-then-write the same row.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Errors of the embedded database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The file could not be opened or created.
    #[error("cannot open the state file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A statement failed.
    #[error("state file {path}: {source}")]
    Sql {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A blocking task was cancelled.
    #[error("state file {path}: the database task did not finish")]
    Join {
        /// The file.
        path: PathBuf,
    },
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'ready',      -- ready | dead
    visible_at INTEGER NOT NULL,              -- ms since epoch
    receives INTEGER NOT NULL DEFAULT 0,
    owner TEXT,                               -- host:pid of the current claim
    last_error TEXT,
    enqueued_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(state, visible_at);
CREATE TABLE IF NOT EXISTS objects(
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    run TEXT,
    src_etag TEXT,
    src_size INTEGER,
    upload_id TEXT,
    part_size INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    lease_until INTEGER,
    lease_etag TEXT,
    event_seq TEXT,
    dest_etag TEXT,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY(bucket, key)
);
CREATE INDEX IF NOT EXISTS objects_run ON objects(run, status);
CREATE TABLE IF NOT EXISTS parts(
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY(bucket, key, number)
);
CREATE TABLE IF NOT EXISTS runs(
    id TEXT PRIMARY KEY,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    found INTEGER NOT NULL DEFAULT 0,
    enqueued INTEGER NOT NULL DEFAULT 0,
    identical INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    planned_bytes INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    gone INTEGER NOT NULL DEFAULT 0,
    listed_at INTEGER
);
CREATE TABLE IF NOT EXISTS file_hashes(
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    md5 BLOB NOT NULL,
    crc64nvme INTEGER NOT NULL,                -- u64 bits
    crc64ecma INTEGER NOT NULL,                -- u64 bits
    hashed_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS file_part_etags(
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    part_size INTEGER NOT NULL,
    etag TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bandwidth(
    name TEXT PRIMARY KEY,
    limit_text TEXT,
    tat_us INTEGER NOT NULL DEFAULT 0
);
"#;

/// Columns added after the first release: (table, column, declaration).
/// Files written by an older build get them on open.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("objects", "lease_etag", "TEXT"),
    ("objects", "event_seq", "TEXT"),
    ("runs", "planned_bytes", "INTEGER NOT NULL DEFAULT 0"),
    ("runs", "skipped", "INTEGER NOT NULL DEFAULT 0"),
    ("runs", "gone", "INTEGER NOT NULL DEFAULT 0"),
    ("runs", "listed_at", "INTEGER"),
    ("objects", "checksum", "TEXT"),
    ("objects", "dest_version", "TEXT"),
    // 1 for a run begun by `run_start` (a finder's), 0 for counters only
    // (a gateway token's usage): only the first kind is "the latest run".
    ("runs", "begun", "INTEGER NOT NULL DEFAULT 0"),
];

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, decl) in ADDED_COLUMNS {
        let mut st = conn.prepare(&format!("PRAGMA table_info({table})"))?;
        let names: Vec<String> = st.query_map([], |r| r.get(1))?.collect::<rusqlite::Result<_>>()?;
        if !names.iter().any(|n| n == column) {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    Ok(())
}

/// A shared handle on the embedded SQLite file.
#[derive(Debug, Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

impl Db {
    /// Opens (creating if needed) the file and its schema.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let open_err = |source| DbError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| open_err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        migrate(&conn).map_err(open_err)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut c).map_err(|source| DbError::Sql {
                path: (*path).clone(),
                source,
            })
        })
        .await
        .map_err(|_| DbError::Join {
            path: (*self.path).clone(),
        })?
    }
}

/// This process's identity for claims: `host:pid`. Tasks inside one process
/// append `#n` to tell themselves apart.
pub fn owner_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        format!("{host}:{}", std::process::id())
    })
    .clone()
}

/// True when `owner` names a process on this host that no longer runs, so its
/// claims can be taken over without waiting for the lease to lapse.
pub fn owner_is_dead(owner: &str) -> bool {
    crate::lease::LeaseHolder::parse(owner).process_is_gone()
}
