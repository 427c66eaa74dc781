//! What the finder's in-process tests share: backends over two stores and
//! the embedded queue and state in one file, and a stop that never comes.

use std::path::Path;
use std::sync::Arc;

use ferry_cli::Backends;
use ferry_core::db::Db;
use ferry_core::queue::EmbeddedQueue;
use ferry_core::state::EmbeddedStateStore;
use ferry_core::store::ObjectStore;

/// Backends over `src` and `dst`, the queue and state in `DIR/state.sqlite`.
pub fn backends(dir: &Path, src: Arc<dyn ObjectStore>, dst: Arc<dyn ObjectStore>) -> Backends {
    let db = Db::open(&dir.join("state.sqlite")).unwrap();
    Backends {
        source: src,
        destination: dst,
        queue: Arc::new(EmbeddedQueue::new(db.clone(), 10)),
        state: Arc::new(EmbeddedStateStore::new(db.clone())),
        bandwidth: Arc::new(EmbeddedStateStore::new(db)),
    }
}

/// A stop signal that is never sent.
pub fn no_stop() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    rx
}
