//! berth: the gRPC service that keeps a CI/CD platform's container image
//! registries.
//!
//! Read the modules in this order:
//! - [`config`]: flags and `BERTH_*` variables; [`telemetry`]: logging;
//!   [`metrics`]: Prometheus.
//! - [`server`]: builds the tonic server (reflection, health, tracing,
//!   shutdown) and opens the store.
//! - [`api`]: gRPC handlers; they convert protobuf and delegate.
//!   [`api::middleware`] authenticates every call and bounds it;
//!   [`auth`] holds identities, roles and the policy; [`transport`] the
//!   TLS listener.
//! - [`registries`]: what each registry RPC does, in domain terms.
//! - [`images`]: what each image RPC does; [`credentials`] mints logins;
//!   [`copy`]: CopyImage and DistributeImage.
//! - [`audit`]: reading the audit log the store writes.
//! - [`domain`]: providers, addresses, validation, update masks (plain Rust).
//! - [`store`]: sea-orm entities, migrations and queries (SQLite,
//!   PostgreSQL, MySQL/MariaDB); secrets are sealed by [`secret`] on the way
//!   in, with the key from [`keys`].
//! - [`registry_client`]: the Docker Registry v2 / OCI HTTP client.
//! - [`cli`]: `berth registry …` / `berth image …`, the operator's client.
//! - [`error`]: one error type and its mapping to `tonic::Status`.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod copy;
pub mod credentials;
pub mod domain;
pub mod error;
pub mod feed;
pub mod images;
pub mod keys;
pub mod metrics;
pub mod paging;
pub mod registries;
pub mod registry_client;
pub mod secret;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod transport;

/// Code generated from `proto/berth/v1/`: messages, clients and servers.
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("berth.v1");
}
