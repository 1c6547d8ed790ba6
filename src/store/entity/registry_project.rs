//! `registry_projects`: the projects in a registry's scope (when it is not
//! all projects), indexed by project so "registries for project X" is one
//! indexed lookup.

use sea_orm::entity::prelude::*;

/// One (registry, project) pair.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "registry_projects")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub registry_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub project: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
