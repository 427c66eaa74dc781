//! ferry-core: the domain types, configuration, trait seams and backends shared by
//! the finder, the workers and the events bridge.
//!
//! The seams are small async traits, one per external service:
//!
//! * [`store::ObjectStore`] — an object store: [`store::S3Store`] (AWS and every
//!   S3-compatible vendor), [`store::LocalStore`] (a directory) and
//!   [`store::MemoryStore`] (tests).
//! * [`queue::JobQueue`] — where jobs wait: [`queue::EmbeddedQueue`] (SQLite)
//!   and [`queue::SqsQueue`].
//! * [`state::StateStore`] — per-object progress and leases, per-run counters:
//!   [`state::EmbeddedStateStore`] (SQLite) and [`state::DynamoStateStore`].
//!
//! Store credentials may come from Secrets Manager ([`secrets`]).
//!
//! No SDK type appears in a trait signature; each backend converts its wire types.
#![warn(missing_docs)]

pub mod aws;
pub mod bandwidth;
pub mod body;
pub mod checksum;
pub mod config;
pub mod db;
pub mod diff;
pub mod etag;
pub mod events;
pub mod file_hashes;
pub mod filter;
pub mod job;
pub mod lease;
pub mod location;
pub mod metrics;
pub mod plan;
pub mod queue;
pub mod ranges;
pub mod retry;
pub mod schedule;
pub mod secrets;
pub mod state;
pub mod store;
pub mod telemetry;

/// Milliseconds since the Unix epoch, the time unit of every persisted timestamp.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
