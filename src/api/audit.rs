//! AuditService handlers: convert, delegate to [`crate::audit::Audit`],
//! convert back.

use tonic::{Request, Response, Status};

use super::AppState;
use super::convert::timestamp;
use super::middleware::caller;
use crate::audit::Filters;
use crate::error::Error;
use crate::pb::{self, audit_service_server::AuditService};

/// The AuditService handler.
#[derive(Clone)]
pub struct AuditApi {
    state: AppState,
}

impl AuditApi {
    /// Handler over the shared state.
    pub fn new(state: AppState) -> Self {
        AuditApi { state }
    }
}

/// Microseconds since the epoch of a protobuf timestamp.
fn micros(t: Option<prost_types::Timestamp>, field: &str) -> Result<Option<i64>, Error> {
    let Some(t) = t else { return Ok(None) };
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Error::invalid(field, "nanos must be 0 to 999,999,999"));
    }
    t.seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(i64::from(t.nanos / 1000)))
        .map(Some)
        .ok_or_else(|| Error::invalid(field, "is out of range"))
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let filters = Filters {
            actor: r.actor,
            registry_id: r.registry_id,
            project: r.project,
            action: r.action,
            outcome: r.outcome,
            start_us: micros(r.start_time, "start_time")?,
            end_us: micros(r.end_time, "end_time")?,
        };
        let (events, next_page_token) = self
            .state
            .audit()?
            .list(&caller.principal, filters, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: events
                .into_iter()
                .map(|e| pb::AuditEvent {
                    id: e.id,
                    time: Some(timestamp(e.time_us)),
                    actor: e.actor,
                    action: e.action,
                    registry_id: e.registry_id.unwrap_or_default(),
                    project: e.project.unwrap_or_default(),
                    outcome: e.outcome,
                    request_id: e.request_id,
                    detail: e.detail,
                })
                .collect(),
            next_page_token,
        }))
    }
}
