//! The one error type the domain and storage layers return, and the one
//! place that maps it to a `tonic::Status`.
//!
//! Messages are written for the caller and never contain a secret: the
//! variants carry only what the code put there, never a request value that
//! could be a password.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A field that failed validation: the field path (as in the proto, e.g.
/// `registry.address`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Proto field path, e.g. `registry.scope.projects[2]`.
    pub field: String,
    /// What is wrong, in a sentence.
    pub description: String,
}

impl FieldViolation {
    /// Builds a violation for `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Everything that can go wrong below the gRPC layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request is malformed; each violation names its field.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The named resource does not exist (or is not visible).
    #[error("{0}")]
    NotFound(String),
    /// A resource with the same identity exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// Optimistic concurrency failed (stale etag).
    #[error("{0}")]
    Aborted(String),
    /// The system is not in a state that allows the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller did not say who it is (or said it wrongly).
    #[error("{0}")]
    Unauthenticated(String),
    /// berth is at a limit (concurrent calls); retry shortly.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A dependency (database, registry) is not reachable right now.
    #[error("{0}")]
    Unavailable(String),
    /// A dependency did not answer in time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A watcher asked to resume from a revision the change feed no longer
    /// holds; it must list again (OUT_OF_RANGE, as etcd answers).
    #[error("{0}")]
    RevisionCompacted(String),
    /// A bug or an unexpected state; details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(v: &[FieldViolation]) -> String {
    v.iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// Stable, machine-readable reason for `google.rpc.ErrorInfo`.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::NotFound(_) => "NOT_FOUND",
            Error::AlreadyExists(_) => "ALREADY_EXISTS",
            Error::Aborted(_) => "ETAG_MISMATCH",
            Error::FailedPrecondition(_) => "FAILED_PRECONDITION",
            Error::PermissionDenied(_) => "PERMISSION_DENIED",
            Error::Unauthenticated(_) => "UNAUTHENTICATED",
            Error::ResourceExhausted(_) => "OVERLOADED",
            Error::Unavailable(_) => "UNAVAILABLE",
            Error::DeadlineExceeded(_) => "DEADLINE_EXCEEDED",
            Error::RevisionCompacted(_) => "REVISION_COMPACTED",
            Error::Internal(_) => "INTERNAL",
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        if is_connectivity(&e) {
            tracing::warn!(error = %e, "database unavailable");
            metrics::counter!("berth_database_errors_total", "kind" => "unavailable").increment(1);
            Error::Unavailable("the database is not reachable".into())
        } else {
            tracing::error!(error = %e, "database error");
            metrics::counter!("berth_database_errors_total", "kind" => "other").increment(1);
            Error::Internal("database error".into())
        }
    }
}

/// Whether `e` means the database cannot be reached right now (a retry
/// later can succeed), as opposed to a failed statement: no connection in
/// time, a connection lost mid-statement, a server shutting down.
pub fn is_connectivity(e: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as S;
    use sea_orm::{DbErr, RuntimeErr};
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Query(RuntimeErr::SqlxError(s)) | DbErr::Exec(RuntimeErr::SqlxError(s)) => {
            match &**s {
                S::Io(_)
                | S::Tls(_)
                | S::Protocol(_)
                | S::PoolTimedOut
                | S::PoolClosed
                | S::WorkerCrashed => true,
                // SQLSTATE class 08 (connection exception) and PostgreSQL's
                // 57P01-57P03 (shutting down, cannot connect now).
                S::Database(d) => d
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Registry failures, in the caller's terms: a registry that is down is
/// UNAVAILABLE, slow is DEADLINE_EXCEEDED, and one that refuses berth's TLS
/// or credentials, or answers nonsense, is FAILED_PRECONDITION (fix the
/// registry's settings, do not retry).
impl From<crate::registry_client::ClientError> for Error {
    fn from(e: crate::registry_client::ClientError) -> Self {
        use crate::registry_client::ClientError as C;
        match e {
            C::Unreachable(_) => Error::Unavailable(e.to_string()),
            C::Timeout(_) => Error::DeadlineExceeded(e.to_string()),
            C::NotFound(m) => Error::NotFound(m),
            C::Tls(_) | C::Unauthorized(_) | C::Protocol(_) => {
                Error::FailedPrecondition(e.to_string())
            }
        }
    }
}

/// A status travels in HTTP/2 headers, and clients refuse a header list
/// over their limit (16 KiB for tonic/hyper) by dropping the connection, so
/// the caller sees a transport error instead of the status. Messages and
/// descriptions may quote the caller's input (a 100 KB image name, a regex),
/// so they are cut to these many bytes, and field violations are listed
/// while they fit in [`MAX_VIOLATION_BYTES`] (the message counts the rest).
const MAX_MESSAGE: usize = 1024;
/// See [`MAX_MESSAGE`].
const MAX_VIOLATION_BYTES: usize = 4 * 1024;

/// `s`, cut to at most `max` bytes (on a character boundary) with `…`.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The domain/gRPC boundary: picks the code and adds rich details
/// (`google.rpc.BadRequest` for field violations, `google.rpc.ErrorInfo`
/// with a stable reason for everything).
impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::Aborted(_) => Code::Aborted,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Unavailable(_) => Code::Unavailable,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::RevisionCompacted(_) => Code::OutOfRange,
            Error::Internal(_) => Code::Internal,
        };
        let mut details = ErrorDetails::new();
        let mut omitted = 0;
        if let Error::InvalidArgument(violations) = &e {
            let mut budget = MAX_VIOLATION_BYTES;
            for (i, v) in violations.iter().enumerate() {
                let description = clip(&v.description, MAX_MESSAGE);
                // Plus a few bytes of protobuf framing per violation.
                let size = v.field.len() + description.len() + 8;
                if size > budget {
                    omitted = violations.len() - i;
                    break;
                }
                budget -= size;
                details.add_bad_request_violation(v.field.clone(), description);
            }
        }
        details.set_error_info(e.reason(), "berth", std::collections::HashMap::new());
        // Tell clients when a retry can help, and how soon.
        match &e {
            Error::Unavailable(_) => {
                details.set_retry_info(Some(std::time::Duration::from_secs(1)));
            }
            Error::Aborted(_) | Error::DeadlineExceeded(_) | Error::ResourceExhausted(_) => {
                details.set_retry_info(Some(std::time::Duration::from_millis(100)));
            }
            _ => {}
        }
        let mut message = match &e {
            Error::Internal(_) => "internal error".to_string(),
            other => clip(&other.to_string(), MAX_MESSAGE),
        };
        if omitted > 0 {
            message.push_str(&format!(" ({omitted} more field violations not listed)"));
        }
        Status::with_error_details(code, message, details)
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
