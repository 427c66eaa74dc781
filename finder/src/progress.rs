//! Progress for a person: a bar (objects, bytes, throughput, ETA) on a
//! terminal, a log line every 10 seconds otherwise.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::bandwidth::{format_rate, Pacing};
use ferry_worker::engine::Stats;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Default)]
struct Planned {
    objects: AtomicU64,
    bytes: AtomicU64,
    identical: AtomicU64,
    listing_done: AtomicBool,
    finished: AtomicBool,
}

/// A progress display fed by the finder (planned work) and the engine (done work).
#[derive(Debug, Clone)]
pub struct Progress {
    planned: Arc<Planned>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts the display.
    pub fn start(tty: bool, stats: Arc<Stats>, pacing: Pacing) -> Self {
        let planned = Arc::new(Planned::default());
        let bar = tty.then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        let me = Self {
            planned: planned.clone(),
            bar: bar.clone(),
        };
        tokio::spawn(async move {
            let tick = if bar.is_some() {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(10)
            };
            loop {
                tokio::time::sleep(tick).await;
                if planned.finished.load(Ordering::Relaxed) {
                    break;
                }
                let (objs, bytes) = (
                    planned.objects.load(Ordering::Relaxed),
                    planned.bytes.load(Ordering::Relaxed),
                );
                let (done_objs, done_bytes) = (
                    stats.objects.load(Ordering::Relaxed),
                    stats.bytes.load(Ordering::Relaxed),
                );
                let listing = if planned.listing_done.load(Ordering::Relaxed) {
                    ""
                } else {
                    " (listing…)"
                };
                let limit = pacing.current();
                let limited = limit
                    .map(|r| format!(" · limit {}", format_rate(Some(r))))
                    .unwrap_or_default();
                match &bar {
                    Some(bar) => {
                        bar.set_length(bytes);
                        bar.set_position(done_bytes.min(bytes));
                        bar.set_message(format!("{done_objs}/{objs} objects{listing}{limited}"));
                    }
                    None => tracing::info!(
                        objects_done = done_objs,
                        objects_queued = objs,
                        bytes_done = done_bytes,
                        bytes_queued = bytes,
                        identical = planned.identical.load(Ordering::Relaxed),
                        limit_bytes_per_sec = limit,
                        "Progress."
                    ),
                }
            }
        });
        me
    }

    /// Adds planned work.
    pub fn add_planned(&self, objects: u64, bytes: u64, identical: u64) {
        self.planned.objects.fetch_add(objects, Ordering::Relaxed);
        self.planned.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.planned.identical.fetch_add(identical, Ordering::Relaxed);
    }

    /// The listing is complete.
    pub fn set_listing_done(&self) {
        self.planned.listing_done.store(true, Ordering::Relaxed);
    }

    /// Stops the display.
    pub fn finish(&self) {
        self.planned.finished.store(true, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
