//! The gRPC layer: handlers convert protobuf to domain values, delegate,
//! and convert back. No SQL, HTTP or validation rules live here.

pub mod audit;
pub mod convert;
pub mod image;
pub mod middleware;
pub mod registry;

use std::sync::{Arc, OnceLock};

use tonic::Status;

use crate::images::Images;
use crate::registries::Registries;

/// The use cases, available once the store is open.
pub struct Ready {
    /// The audit log.
    pub audit: crate::audit::Audit,
    /// Registry management.
    pub registries: Registries,
    /// Images and credentials.
    pub images: Images,
    /// The change feed.
    pub feed: std::sync::Arc<crate::feed::Feed>,
}

/// What handlers share. The use cases are set once migrations have been
/// applied; until then every call answers UNAVAILABLE (and health says
/// NOT_SERVING).
#[derive(Clone, Default)]
pub struct AppState {
    ready: Arc<OnceLock<Ready>>,
}

impl AppState {
    /// Marks berth ready.
    pub fn set_ready(&self, ready: Ready) {
        let _ = self.ready.set(ready);
    }

    fn get(&self) -> Result<&Ready, Status> {
        self.ready.get().ok_or_else(|| {
            crate::error::Error::Unavailable(
                "berth is starting: migrations are not applied yet".into(),
            )
            .into()
        })
    }

    /// The registries, or UNAVAILABLE while starting.
    pub fn registries(&self) -> Result<&Registries, Status> {
        Ok(&self.get()?.registries)
    }

    /// The audit log, or UNAVAILABLE while starting.
    pub fn audit(&self) -> Result<&crate::audit::Audit, Status> {
        Ok(&self.get()?.audit)
    }

    /// The change feed, or UNAVAILABLE while starting.
    pub fn feed(&self) -> Result<&std::sync::Arc<crate::feed::Feed>, Status> {
        Ok(&self.get()?.feed)
    }

    /// The image use cases, or UNAVAILABLE while starting.
    pub fn images(&self) -> Result<&Images, Status> {
        Ok(&self.get()?.images)
    }
}

pub use middleware::ACTOR_HEADER;
