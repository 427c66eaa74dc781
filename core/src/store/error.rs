use std::path::PathBuf;

/// Errors of an [`ObjectStore`](super::ObjectStore) call. Each variant names the
/// object or setting involved so the message tells the user what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key does not exist.
    #[error("{store}: no such key {key:?}")]
    NotFound {
        /// Store description.
        store: String,
        /// The key.
        key: String,
    },
    /// The bucket does not exist.
    #[error("{store}: bucket {bucket:?} does not exist (check the bucket name, region and endpoint)")]
    NoSuchBucket {
        /// Store description.
        store: String,
        /// The bucket.
        bucket: String,
    },
    /// The object changed since it was discovered (if-match failed).
    #[error("{store}: {key:?} changed since it was listed (expected ETag {expected})")]
    PreconditionFailed {
        /// Store description.
        store: String,
        /// The key.
        key: String,
        /// The ETag that was expected.
        expected: String,
    },
    /// The multipart upload no longer exists.
    #[error("{store}: multipart upload {upload_id} of {key:?} no longer exists")]
    NoSuchUpload {
        /// Store description.
        store: String,
        /// The key.
        key: String,
        /// The upload id.
        upload_id: String,
    },
    /// The store rejected a body whose Content-MD5 did not match.
    #[error("{store}: the body of {key:?} did not match its Content-MD5 (corrupted in transit)")]
    BadDigest {
        /// Store description.
        store: String,
        /// The key.
        key: String,
    },
    /// The key cannot be stored here (local stores: escapes the root, or is not a valid path).
    #[error("{store}: key {key:?} is refused: {reason}")]
    InvalidKey {
        /// Store description.
        store: String,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The object is archived (S3 Glacier Flexible Retrieval, Deep Archive, an
    /// archive tier of another vendor) and must be restored before it can be read.
    #[error(
        "{store}: {key:?} is archived ({code}): restore it (S3 RestoreObject, or the vendor's restore) and run again"
    )]
    RestoreNeeded {
        /// Store description.
        store: String,
        /// The key.
        key: String,
        /// The store's error code.
        code: String,
    },
    /// Credentials are missing, wrong or not allowed to do this.
    #[error("{store}: access denied during {operation} ({code}): check the credentials, profile and permissions")]
    AccessDenied {
        /// Store description.
        store: String,
        /// The operation.
        operation: &'static str,
        /// The store's error code.
        code: String,
    },
    /// The store asked to slow down (503 SlowDown, 429).
    #[error("{store}: throttled during {operation} ({code})")]
    Throttled {
        /// Store description.
        store: String,
        /// The operation.
        operation: &'static str,
        /// The store's error code.
        code: String,
    },
    /// The store could not be reached or the connection failed.
    #[error("{store}: cannot reach the endpoint during {operation}: {message}")]
    Unreachable {
        /// Store description.
        store: String,
        /// The operation.
        operation: &'static str,
        /// What failed.
        message: String,
    },
    /// A local file operation failed.
    #[error("{path}: {source}{}", io_hint(source))]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store cannot do this operation at all (a local directory asked
    /// for a server-side copy).
    #[error("{store}: {operation} is not supported by this store")]
    Unsupported {
        /// Store description.
        store: String,
        /// The operation.
        operation: &'static str,
    },
    /// Any other answer of the store.
    #[error("{store}: {operation} failed: {code}: {message}")]
    Backend {
        /// Store description.
        store: String,
        /// The operation.
        operation: &'static str,
        /// The store's error code or HTTP status.
        code: String,
        /// The store's message.
        message: String,
        /// Whether trying again may succeed (5xx, timeouts).
        retryable: bool,
    },
}

impl StoreError {
    /// Whether the same call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Throttled { .. } | StoreError::Unreachable { .. } | StoreError::BadDigest { .. } => true,
            StoreError::Backend { retryable, .. } => *retryable,
            StoreError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    /// A short stable code for telemetry and summaries.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "not_found",
            StoreError::NoSuchBucket { .. } => "no_such_bucket",
            StoreError::PreconditionFailed { .. } => "source_changed",
            StoreError::NoSuchUpload { .. } => "no_such_upload",
            StoreError::BadDigest { .. } => "bad_digest",
            StoreError::InvalidKey { .. } => "invalid_key",
            StoreError::RestoreNeeded { .. } => "restore_needed",
            StoreError::AccessDenied { .. } => "access_denied",
            StoreError::Throttled { .. } => "throttled",
            StoreError::Unreachable { .. } => "unreachable",
            StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => "disk_full",
            StoreError::Io { .. } => "io",
            StoreError::Unsupported { .. } => "unsupported",
            StoreError::Backend { .. } => "backend",
        }
    }
}

/// What to do about a local file error, when there is something to say.
fn io_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::StorageFull => {
            " (the destination's file system is full: free space and run again; \
             parts already written are kept and the transfer resumes)"
        }
        std::io::ErrorKind::PermissionDenied => " (check the directory's owner and permissions)",
        _ => "",
    }
}
