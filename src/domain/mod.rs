//! Domain rules in plain Rust: providers, addresses, the registry resource,
//! its validation and update masks, image references, provider name
//! layouts and tag templates. Nothing here knows about gRPC, SQL or HTTP.

pub mod address;
pub mod descriptor;
pub mod instance;
pub mod layout;
pub mod network;
pub mod provider;
pub mod reference;
pub mod registry;
pub mod tag_filter;
pub mod tag_template;
pub mod update;

pub use address::{RegistryAddress, Scheme};
pub use network::{Budget, Proxy};
pub use provider::{CredentialMode, Need, Provider, Rules};
pub use registry::{RegistryInput, RegistrySpec, Scope, Tls, validate, validate_with};
pub use update::{Changes, SecretChange, apply_mask, apply_mask_full};
