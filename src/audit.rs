//! The audit use case behind AuditService: who may read the log, and its
//! filters and pages. Entries are written by the store (changes) and by
//! [`crate::images`] (credential issuance).

use crate::auth::{Principal, Role};
use crate::domain::registry::check_project_key;
use crate::error::{Error, Result};
use crate::store::{AuditQuery, AuditRecord, Store};

/// Default and maximum page sizes of ListAuditEvents.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// See [`DEFAULT_PAGE_SIZE`].
pub const MAX_PAGE_SIZE: u64 = 1000;

/// The audit log.
#[derive(Clone)]
pub struct Audit {
    store: Store,
}

/// The filters of ListAuditEvents, as given (empty = any).
#[derive(Debug, Default, Clone)]
pub struct Filters {
    /// Actor.
    pub actor: String,
    /// Registry id.
    pub registry_id: String,
    /// Project.
    pub project: String,
    /// Action.
    pub action: String,
    /// Outcome.
    pub outcome: String,
    /// At or after (µs).
    pub start_us: Option<i64>,
    /// Before (µs).
    pub end_us: Option<i64>,
}

/// Actions berth records.
pub const ACTIONS: [&str; 6] = [
    "registry.create",
    "registry.update",
    "registry.delete",
    "registry.set_default",
    "credentials.issue",
    "image.copy",
];
/// Outcomes berth records.
pub const OUTCOMES: [&str; 4] = ["ok", "granted", "denied", "failed"];

impl Audit {
    /// The log in `store`.
    pub fn new(store: Store) -> Self {
        Audit { store }
    }

    /// ListAuditEvents: newest first.
    pub async fn list(
        &self,
        who: &Principal,
        f: Filters,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<AuditRecord>, String)> {
        who.require_all(Role::Admin, "read the audit log")?;
        let opt = |s: &str| {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_string())
        };
        let actor = opt(&f.actor);
        if actor.as_ref().is_some_and(|a| a.len() > 256) {
            return Err(Error::invalid("actor", "must be at most 256 characters"));
        }
        let registry_id = match opt(&f.registry_id) {
            None => None,
            Some(id) => Some(
                uuid::Uuid::parse_str(&id)
                    .map(|u| u.hyphenated().to_string())
                    .map_err(|_| Error::invalid("registry_id", "is not a registry id (a UUID)"))?,
            ),
        };
        let project = opt(&f.project);
        if let Some(p) = &project {
            check_project_key(p).map_err(|why| Error::invalid("project", why))?;
        }
        let action = opt(&f.action);
        if let Some(a) = &action
            && !ACTIONS.contains(&a.as_str())
        {
            return Err(Error::invalid(
                "action",
                format!("must be one of {}", ACTIONS.join(", ")),
            ));
        }
        let outcome = opt(&f.outcome);
        if let Some(o) = &outcome
            && !OUTCOMES.contains(&o.as_str())
        {
            return Err(Error::invalid(
                "outcome",
                format!("must be one of {}", OUTCOMES.join(", ")),
            ));
        }
        if let (Some(s), Some(e)) = (f.start_us, f.end_us)
            && e <= s
        {
            return Err(Error::invalid("end_time", "must be after start_time"));
        }
        let limit = match page_size {
            n if n < 0 => return Err(Error::invalid("page_size", "must not be negative")),
            0 => DEFAULT_PAGE_SIZE,
            n => (n as u64).min(MAX_PAGE_SIZE),
        };
        let filter = format!(
            "{}|{}|{}|{}|{}|{}|{}",
            actor.as_deref().unwrap_or(""),
            registry_id.as_deref().unwrap_or(""),
            project.as_deref().unwrap_or(""),
            action.as_deref().unwrap_or(""),
            outcome.as_deref().unwrap_or(""),
            f.start_us.map(|v| v.to_string()).unwrap_or_default(),
            f.end_us.map(|v| v.to_string()).unwrap_or_default(),
        );
        let before_id = match page_token {
            "" => None,
            t => Some(
                crate::paging::decode(t, &filter, "the filters")?
                    .parse::<i64>()
                    .map_err(|_| {
                        Error::invalid("page_token", "is not a token returned by a previous call")
                    })?,
            ),
        };
        let mut events = self
            .store
            .list_audit(&AuditQuery {
                actor,
                registry_id,
                project,
                action,
                outcome,
                start_us: f.start_us,
                end_us: f.end_us,
                before_id,
                limit: limit + 1,
            })
            .await?;
        let next = if events.len() as u64 > limit {
            events.truncate(limit as usize);
            events
                .last()
                .map(|e| crate::paging::encode(&e.id.to_string(), &filter))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((events, next))
    }
}
