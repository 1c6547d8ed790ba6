//! Domain rules in plain Rust: providers, addresses, the registry resource,
//! its validation and update masks. Nothing here knows about gRPC or SQL.

pub mod address;
pub mod provider;
pub mod registry;
pub mod update;

pub use address::{RegistryAddress, Scheme};
pub use provider::{Need, Provider, Rules};
pub use registry::{RegistryInput, RegistrySpec, Scope, Tls, validate};
pub use update::{SecretChange, apply_mask};
