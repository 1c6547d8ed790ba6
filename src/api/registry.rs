//! RegistryService handlers: convert, delegate to [`Registries`], convert
//! back.

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::AppState;
use super::convert::{provider, registry_input, registry_to_pb, usage_to_pb, watch_item_to_pb};
use super::middleware::caller;
use crate::error::Error;
use crate::feed::WatchRequest;
use crate::pb::{self, registry_service_server::RegistryService};

/// The RegistryService handler.
#[derive(Clone)]
pub struct RegistryApi {
    state: AppState,
}

impl RegistryApi {
    /// Handler over the shared state.
    pub fn new(state: AppState) -> Self {
        RegistryApi { state }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// The stream WatchRegistries answers with.
pub type WatchStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<pb::WatchRegistriesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    type WatchRegistriesStream = WatchStream;

    async fn watch_registries(
        &self,
        req: Request<pb::WatchRegistriesRequest>,
    ) -> Reply<Self::WatchRegistriesStream> {
        let caller = caller(&req)?;
        let feed = self.state.feed()?.clone();
        let r = req.into_inner();
        let items = crate::feed::watch(
            feed,
            &caller,
            WatchRequest {
                from_revision: r.from_revision,
                initial_state: r.initial_state,
                project: r.project,
            },
        )
        .await?;
        let span = tracing::Span::current();
        Ok(Response::new(Box::pin(items.map(move |item| {
            let _enter = span.enter();
            item.map(watch_item_to_pb).map_err(Status::from)
        }))))
    }

    async fn create_registry(
        &self,
        req: Request<pb::CreateRegistryRequest>,
    ) -> Reply<pb::Registry> {
        let caller = caller(&req)?;
        let registry = req
            .into_inner()
            .registry
            .ok_or_else(|| Error::invalid("registry", "is required"))?;
        let make_default = registry.is_default;
        let input = registry_input(registry)?;
        let rec = self
            .state
            .registries()?
            .create(input, make_default, &caller)
            .await?;
        Ok(Response::new(registry_to_pb(rec)))
    }

    async fn get_registry(&self, req: Request<pb::GetRegistryRequest>) -> Reply<pb::Registry> {
        let caller = caller(&req)?;
        let rec = self
            .state
            .registries()?
            .get(&req.get_ref().id, &caller)
            .await?;
        Ok(Response::new(registry_to_pb(rec)))
    }

    async fn list_registries(
        &self,
        req: Request<pb::ListRegistriesRequest>,
    ) -> Reply<pb::ListRegistriesResponse> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let provider = provider(r.provider, "provider")?;
        let page = self
            .state
            .registries()?
            .list(&r.project, provider, r.page_size, &r.page_token, &caller)
            .await?;
        Ok(Response::new(pb::ListRegistriesResponse {
            registries: page.registries.into_iter().map(registry_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn update_registry(
        &self,
        req: Request<pb::UpdateRegistryRequest>,
    ) -> Reply<pb::Registry> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let registry = r
            .registry
            .ok_or_else(|| Error::invalid("registry", "is required"))?;
        let id = registry.id.clone();
        let etag = registry.etag.clone();
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        // The provider may be absent from the patch when the mask leaves it
        // out; registry_input only rejects unknown numbers.
        let patch = registry_input(registry)?;
        let rec = self
            .state
            .registries()?
            .update(&id, patch, &mask, &etag, &caller)
            .await?;
        Ok(Response::new(registry_to_pb(rec)))
    }

    async fn delete_registry(
        &self,
        req: Request<pb::DeleteRegistryRequest>,
    ) -> Reply<pb::DeleteRegistryResponse> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        self.state
            .registries()?
            .delete(&r.id, &r.etag, r.force, &caller)
            .await?;
        Ok(Response::new(pb::DeleteRegistryResponse {}))
    }

    async fn set_default_registry(
        &self,
        req: Request<pb::SetDefaultRegistryRequest>,
    ) -> Reply<pb::Registry> {
        let caller = caller(&req)?;
        let rec = self
            .state
            .registries()?
            .set_default(&req.get_ref().id, &caller)
            .await?;
        Ok(Response::new(registry_to_pb(rec)))
    }

    async fn record_registry_usage(
        &self,
        req: Request<pb::RecordRegistryUsageRequest>,
    ) -> Reply<pb::RegistryUsage> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let ttl = match r.ttl {
            None => None,
            Some(d) => Some(
                std::time::Duration::try_from(d)
                    .map_err(|_| Error::invalid("ttl", "must not be negative"))?,
            ),
        };
        let used = self
            .state
            .registries()?
            .record_usage(&r.registry_id, &r.project, &r.user, ttl, &caller)
            .await?;
        Ok(Response::new(usage_to_pb(used)))
    }

    async fn list_registry_usage(
        &self,
        req: Request<pb::ListRegistryUsageRequest>,
    ) -> Reply<pb::ListRegistryUsageResponse> {
        let caller = caller(&req)?;
        let uses = self
            .state
            .registries()?
            .list_usage(&req.get_ref().registry_id, &caller)
            .await?;
        Ok(Response::new(pb::ListRegistryUsageResponse {
            usages: uses.into_iter().map(usage_to_pb).collect(),
        }))
    }

    async fn list_providers(
        &self,
        _req: Request<pb::ListProvidersRequest>,
    ) -> Reply<pb::ListProvidersResponse> {
        let providers = crate::domain::Provider::ALL
            .into_iter()
            .map(|p| super::convert::descriptor_to_pb(p.descriptor()))
            .collect();
        Ok(Response::new(pb::ListProvidersResponse { providers }))
    }

    async fn get_default_registry(
        &self,
        req: Request<pb::GetDefaultRegistryRequest>,
    ) -> Reply<pb::Registry> {
        let caller = caller(&req)?;
        let rec = self
            .state
            .registries()?
            .get_default(&req.get_ref().project, &caller.principal)
            .await?;
        Ok(Response::new(registry_to_pb(rec)))
    }
}
