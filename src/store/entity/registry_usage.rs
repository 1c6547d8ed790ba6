//! `registry_usage`: current uses of registries (see RecordRegistryUsage).

use sea_orm::entity::prelude::*;

/// One use.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "registry_usage")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub registry_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub project: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user: String,
    pub recorded_by: String,
    pub record_time_us: i64,
    pub expire_time_us: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
