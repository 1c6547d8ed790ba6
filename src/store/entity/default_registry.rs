//! `default_registry`: at most one row (`id = 1`) naming the default.
//!
//! "At most one default" is a property of the schema, not of careful code:
//! the table's primary key admits one row, and setting the default is a
//! single upsert of that row, so concurrent calls on any backend serialise
//! on it and the last one wins.

use sea_orm::entity::prelude::*;

/// The default registry.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "default_registry")]
pub struct Model {
    /// Always 1.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub registry_id: String,
    pub set_by: String,
    pub set_time_us: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
