//! ferry-worker: the transfer engine ([`engine`]), its part planner
//! ([`plan`]) and the worker loop ([`runner`]). `ferry-finder --workers N`
//! runs the same loop in-process; [`Worker::new`] builds both from a job's
//! settings and its backends, opened once by the binary
//! ([`ferry_cli::Backends`]).

pub mod completions;
pub mod engine;
pub mod health;
pub use ferry_core::plan;
pub mod runner;

use std::sync::Arc;

use ferry_cli::{Backends, OpenError};
use ferry_core::bandwidth::{FleetPacer, Pacer, Pacing};
use ferry_core::config::Settings;
use ferry_core::diff::CompareMode;

use crate::engine::{Engine, EngineConfig};
use crate::runner::RunnerConfig;

/// The engine and the runner settings of a job.
pub struct Worker {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Runner settings.
    pub runner: RunnerConfig,
}

impl Worker {
    /// Builds the engine over `backends` and reads the queue's delivery
    /// limit; list jobs are run by `lister` (none: they fail).
    pub async fn new(
        settings: &Settings,
        backends: &Backends,
        lister: Option<Arc<dyn crate::engine::listing::RangeLister>>,
    ) -> Result<Self, OpenError> {
        let max_receives = ferry_cli::backends::delivery_limit(&*backends.queue).await?;
        let t = &settings.transfer;
        let cfg = EngineConfig {
            multipart_threshold: t.multipart_threshold.as_u64(),
            part_size: t.part_size.as_u64(),
            concurrency: t.concurrency,
            max_in_flight: t.max_in_flight.as_u64(),
            lease: t.lease,
            giant_threshold: t.giant_threshold.as_u64(),
            giant_span: t.giant_span.as_u64(),
        };
        let mut engine = Engine::new(
            backends.source.clone(),
            backends.destination.clone(),
            backends.state.clone(),
            settings.destination.bucket(),
            settings.put.clone(),
            cfg,
        );
        engine = engine.with_tags(settings.tags.clone());
        if let Some(l) = lister {
            engine = engine.with_lister(l, backends.queue.clone());
        }
        if let Some(ss) = &settings.server_side {
            engine = engine.copy_server_side(ss.clone());
        }
        engine = engine.paced_by(Pacing {
            process: settings.bwlimit.clone().map(|t| Arc::new(Pacer::new(t))),
            fleet: Some(Arc::new(FleetPacer::new(
                backends.bandwidth.clone(),
                settings.ledger.queue.name(),
            ))),
        });
        if settings.source.is_local() && settings.compare_mode() == CompareMode::Checksum {
            let db = ferry_core::db::Db::open(&settings.file_hashes_path)?;
            engine = engine.keep_checksums_in(ferry_core::file_hashes::FileHashes::new(db));
        }
        let runner = RunnerConfig {
            workers: t.workers.max(1),
            lease: t.lease,
            max_receives: max_receives.unwrap_or(u32::MAX),
            max_attempts: t.max_attempts.max(1),
            grace: t.shutdown_grace,
            events: settings.event_context(),
        };
        Ok(Self {
            engine: Arc::new(engine),
            runner,
        })
    }
}
