//! The gRPC layer: handlers convert protobuf to domain values, delegate,
//! and convert back. No SQL, HTTP or validation rules live here.

pub mod convert;
pub mod image;
pub mod registry;

use std::sync::{Arc, OnceLock};

use tonic::{Request, Status};

use crate::registries::Registries;

/// What handlers share. The registries are set once migrations have been
/// applied; until then every call answers UNAVAILABLE (and health says
/// NOT_SERVING).
#[derive(Clone, Default)]
pub struct AppState {
    registries: Arc<OnceLock<Registries>>,
}

impl AppState {
    /// Marks berth ready.
    pub fn set_ready(&self, registries: Registries) {
        let _ = self.registries.set(registries);
    }

    /// The registries, or UNAVAILABLE while starting.
    pub fn registries(&self) -> Result<&Registries, Status> {
        self.registries
            .get()
            .ok_or_else(|| Status::unavailable("berth is starting: migrations are not applied yet"))
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
        .map_err(|_| Status::invalid_argument("metadata x-berth-actor must be printable ASCII"))?
        .trim();
    if s.is_empty() || s.len() > 256 {
        return Err(Status::invalid_argument(
            "metadata x-berth-actor must be 1 to 256 characters",
        ));
    }
    Ok(s.to_string())
}
