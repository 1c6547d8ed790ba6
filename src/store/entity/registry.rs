//! `registries`: one row per registry integration.

use sea_orm::entity::prelude::*;

/// A stored registry. Times are microseconds since the Unix epoch in a
/// BIGINT: exact and identical on SQLite, PostgreSQL and MySQL (MySQL's
/// DATETIME would drop sub-seconds, its TIMESTAMP ends in 2038).
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "registries")]
pub struct Model {
    /// UUIDv7: time-ordered, so ordering by id is creation order.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub provider: String,
    /// Normalised address (`host[:port]`, or `http://host[:port]`).
    pub address: String,
    pub namespace: String,
    pub region: String,
    pub repository: String,
    pub username: String,
    /// AES-256-GCM `nonce || ciphertext`, bound to the id; NULL when none.
    pub secret_ciphertext: Option<Vec<u8>>,
    /// Fingerprint of the key that sealed `secret_ciphertext`.
    pub secret_key_id: Option<String>,
    pub all_projects: bool,
    pub tls_verify: bool,
    pub ca_cert_pem: String,
    pub create_time_us: i64,
    pub update_time_us: i64,
    pub updated_by: String,
    /// Incremented by every update; the etag is derived from it.
    pub revision: i64,
    /// `CredentialMode` name; `''` (rows from before the column) means the
    /// provider's default.
    pub credential_mode: String,
    /// Cloud instance id; `''` when none is given.
    pub instance_id: String,
    /// Forward proxy `scheme://host:port`; `''` for none.
    pub proxy_url: String,
    /// Proxy basic-auth username; `''` for none.
    pub proxy_username: String,
    /// Hosts reached without the proxy, comma-separated; NULL or `''` for
    /// none.
    pub proxy_no_proxy: Option<String>,
    /// The proxy password, sealed like `secret_ciphertext` (bound to
    /// `<id>#proxy-password`); NULL when none.
    pub proxy_password_ciphertext: Option<Vec<u8>>,
    /// Fingerprint of the key that sealed `proxy_password_ciphertext`.
    pub proxy_password_key_id: Option<String>,
    /// Requests per second in millionths; 0 means unlimited.
    pub budget_micro_rps: i64,
    /// Most requests in flight; 0 means unlimited.
    pub budget_max_concurrent: i32,
}

// Debug by hand: the ciphertext is not secret, but it is noise in logs.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("registries")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("address", &self.address)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
