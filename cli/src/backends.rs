//! The backends of a job, built once from its settings: both stores, the
//! queue and the state store (with one embedded database shared when the
//! queue and the state live in the same file).
//!
//! SQS, DynamoDB and Secrets Manager are reached through the AWS SDK's
//! default chain, which honours `AWS_ENDPOINT_URL_SQS`,
//! `AWS_ENDPOINT_URL_DYNAMODB` and the like. Nothing here makes a request:
//! a store or queue that is unreachable fails at its first use. Each store
//! is wrapped once in the retrying layer, so nothing above retries a store
//! call by itself.

use std::path::Path;
use std::sync::Arc;

use ferry_core::bandwidth::SharedBandwidth;
use ferry_core::config::{Ledger, QueueLocation, Settings, Side, StateLocation, TransferConfig};
use ferry_core::db::Db;
use ferry_core::queue::{EmbeddedQueue, JobQueue, SqsQueue};
use ferry_core::state::{DynamoStateStore, EmbeddedStateStore, StateStore};
use ferry_core::store::{ObjectStore, RetryingStore};

/// Errors of opening a job's queue and state store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The embedded state file.
    #[error(transparent)]
    Db(#[from] ferry_core::db::DbError),
    /// The SQS queue.
    #[error(transparent)]
    Queue(#[from] ferry_core::queue::QueueError),
    /// The DynamoDB table.
    #[error(transparent)]
    State(#[from] ferry_core::state::StateError),
}

/// A job's queue and state store.
#[derive(Clone)]
pub struct LedgerBackends {
    /// The job queue.
    pub queue: Arc<dyn JobQueue>,
    /// The state store.
    pub state: Arc<dyn StateStore>,
    /// The state store's side of the fleet-wide bandwidth limit.
    pub bandwidth: Arc<dyn SharedBandwidth>,
}

impl LedgerBackends {
    /// Opens the queue and the state store of `ledger`.
    pub async fn open(ledger: &Ledger, t: &TransferConfig) -> Result<Self, OpenError> {
        let mut db: Option<Db> = None;
        let mut embedded = |path: &Path| -> Result<Db, OpenError> {
            match &db {
                Some(d) if d.path() == path => Ok(d.clone()),
                _ => {
                    let d = Db::open(path)?;
                    db = Some(d.clone());
                    Ok(d)
                }
            }
        };
        let needs_aws =
            matches!(ledger.state, StateLocation::Dynamo { .. }) || matches!(ledger.queue, QueueLocation::Sqs { .. });
        let sdk = match needs_aws {
            true => Some(ferry_core::aws::sdk_config(None).await),
            false => None,
        };
        let (state, bandwidth): (Arc<dyn StateStore>, Arc<dyn SharedBandwidth>) = match &ledger.state {
            StateLocation::Embedded(p) => {
                let s = Arc::new(EmbeddedStateStore::new(embedded(p)?));
                (s.clone(), s)
            }
            StateLocation::Dynamo { table } => {
                let s = Arc::new(DynamoStateStore::new(sdk.as_ref().expect("loaded"), table));
                (s.clone(), s)
            }
        };
        let queue: Arc<dyn JobQueue> = match &ledger.queue {
            QueueLocation::Embedded(p) => Arc::new(EmbeddedQueue::new(embedded(p)?, t.max_receives)),
            QueueLocation::Sqs { url } => Arc::new(SqsQueue::new(sdk.as_ref().expect("loaded"), url)),
        };
        Ok(Self {
            queue,
            state,
            bandwidth,
        })
    }
}

/// Everything a job runs against.
#[derive(Clone)]
pub struct Backends {
    /// The source store.
    pub source: Arc<dyn ObjectStore>,
    /// The destination store.
    pub destination: Arc<dyn ObjectStore>,
    /// The job queue.
    pub queue: Arc<dyn JobQueue>,
    /// The state store.
    pub state: Arc<dyn StateStore>,
    /// The state store's side of the fleet-wide bandwidth limit.
    pub bandwidth: Arc<dyn SharedBandwidth>,
}

impl Backends {
    /// Builds the stores, the queue and the state store of `settings`.
    pub async fn open(settings: &Settings) -> Result<Self, OpenError> {
        let ledger = LedgerBackends::open(&settings.ledger, &settings.transfer).await?;
        Ok(Self {
            source: Self::store(&settings.source, &settings.transfer).await,
            destination: Self::store(&settings.destination, &settings.transfer).await,
            queue: ledger.queue,
            state: ledger.state,
            bandwidth: ledger.bandwidth,
        })
    }
}

impl Backends {
    /// The store of one side, its calls retried for retryable errors
    /// (`retries` tries each, see [`RetryingStore`]).
    pub async fn store(side: &Side, t: &TransferConfig) -> Arc<dyn ObjectStore> {
        RetryingStore::wrap(side.open().await, t.retries)
    }
}

/// The queue's own delivery limit, with a warning when it leaves churn room
/// to push healthy jobs into the dead-letter queue, or when there is none.
pub async fn delivery_limit(queue: &dyn JobQueue) -> Result<Option<u32>, OpenError> {
    let limit = queue.max_receives().await?;
    match limit {
        Some(n) if n < 3 => tracing::warn!(
            queue = %queue.describe(),
            max_receives = n,
            "The queue parks a message as dead after fewer than 3 deliveries: a worker that dies or stops can push a healthy job into the dead-letter queue. Raise maxReceiveCount (infra/ uses 10)."
        ),
        Some(_) => {}
        None => tracing::warn!(
            queue = %queue.describe(),
            "The queue has no redrive policy: jobs given up are kept in the ledger only (status names them). Give it a dead-letter queue (infra/, or ferry-finder --create-resources)."
        ),
    }
    Ok(limit)
}

/// Creates the SQS queue (with its dead-letter queue) and the DynamoDB table
/// of a job when they are missing; embedded ones need nothing. For trying the
/// fleet against local servers; production resources come from `infra/`.
pub async fn create_resources(settings: &Settings) -> Result<Vec<String>, OpenError> {
    let mut made = Vec::new();
    let sdk = ferry_core::aws::sdk_config(None).await;
    let ledger = &settings.ledger;
    if let QueueLocation::Sqs { .. } = &ledger.queue {
        let name = ledger.queue.name();
        let url = SqsQueue::create(&sdk, &name, settings.transfer.max_receives).await?;
        made.push(format!("queue {url} (dead-letter queue {name}-dlq)"));
    }
    if let StateLocation::Dynamo { table } = &ledger.state {
        DynamoStateStore::create_table(&sdk, table).await?;
        made.push(format!("DynamoDB table {table}"));
    }
    Ok(made)
}
