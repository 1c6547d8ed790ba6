//! `registry_events`: the change feed (see the migration for why revisions
//! come from a counter row).

use sea_orm::entity::prelude::*;

/// One committed change.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "registry_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub revision: i64,
    pub time_us: i64,
    pub kind: String,
    pub registry_id: String,
    pub actor: String,
    pub changed: String,
    pub previous_default: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub snapshot: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
