//! sea-orm entities: one file per table.

pub mod audit_event;
pub mod default_registry;
pub mod registry;
pub mod registry_event;
pub mod registry_project;
pub mod registry_revision;
pub mod registry_usage;
