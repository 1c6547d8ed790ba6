//! The gRPC layer: handlers convert protobuf to domain values, delegate,
//! and convert back. No SQL, HTTP or validation rules live here.

pub mod convert;
pub mod image;
pub mod registry;

use std::sync::{Arc, OnceLock};

use tonic::{Request, Status};

use crate::images::Images;
use crate::registries::Registries;

/// The use cases, available once the store is open.
pub struct Ready {
    /// Registry management.
    pub registries: Registries,
    /// Images and credentials.
    pub images: Images,
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

    /// The image use cases, or UNAVAILABLE while starting.
    pub fn images(&self) -> Result<&Images, Status> {
        Ok(&self.get()?.images)
    }
}

/// Metadata key naming the caller for `updated_by`, until authentication
/// provides an identity.
pub const ACTOR_HEADER: &str = "x-berth-actor";

/// The caller's name from `x-berth-actor`, or `anonymous`.
pub fn actor<T>(req: &Request<T>) -> Result<String, Status> {
    let Some(v) = req.metadata().get(ACTOR_HEADER) else {
        return Ok("anonymous".into());
    };
    let s = v
        .to_str()
        .map_err(|_| crate::error::Error::invalid(ACTOR_HEADER, "must be printable ASCII"))?
        .trim();
    if s.is_empty() || s.len() > 256 {
        return Err(
            crate::error::Error::invalid(ACTOR_HEADER, "must be 1 to 256 characters").into(),
        );
    }
    Ok(s.to_string())
}
