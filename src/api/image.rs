//! ImageService handlers: convert, delegate to [`Images`], convert back.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::AppState;
use super::convert::{credential_mode, provider, timestamp_of};
use super::middleware::caller;
use crate::copy::{BlobState, Copier, Event, SourceSpec, TargetSpec, Update};
use crate::domain::RegistryInput;
use crate::domain::registry::validate_for_connection;
use crate::domain::tag_filter::TagOrder;
use crate::error::Error;
use crate::images::ResolveRequest;
use crate::pb::{self, image_service_server::ImageService};
use crate::secret::Secret;

/// The ImageService handler.
#[derive(Clone)]
pub struct ImageApi {
    state: AppState,
}

impl ImageApi {
    /// Handler over the shared state.
    pub fn new(state: AppState) -> Self {
        ImageApi { state }
    }
}

type Reply<T> = Result<Response<T>, Status>;
type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ImageService for ImageApi {
    type CopyImageStream = Streamed<pb::CopyImageResponse>;
    type DistributeImageStream = Streamed<pb::DistributeImageResponse>;

    async fn parse_image_reference(
        &self,
        req: Request<pb::ParseImageReferenceRequest>,
    ) -> Reply<pb::ParseImageReferenceResponse> {
        let r = self.state.images()?.parse(&req.get_ref().reference)?;
        Ok(Response::new(pb::ParseImageReferenceResponse {
            fully_qualified: r.fully_qualified(),
            familiar: r.familiar(),
            domain: r.domain,
            path: r.path,
            tag: r.tag.unwrap_or_default(),
            digest: r.digest.unwrap_or_default(),
        }))
    }

    async fn resolve_image(
        &self,
        req: Request<pb::ResolveImageRequest>,
    ) -> Reply<pb::ResolveImageResponse> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let resolved = self
            .state
            .images()?
            .resolve(
                &caller.principal,
                ResolveRequest {
                    registry_id: r.registry_id,
                    project: r.project,
                    image: r.image,
                    tag: r.tag,
                    digest: r.digest,
                    variables: r.variables,
                    pin_digest: r.pin_digest,
                },
            )
            .await?;
        Ok(Response::new(pb::ResolveImageResponse {
            reference: resolved.reference,
            registry_id: resolved.registry_id,
            tag: resolved.tag,
            digest: resolved.digest,
        }))
    }

    async fn get_credentials(
        &self,
        req: Request<pb::GetCredentialsRequest>,
    ) -> Reply<pb::GetCredentialsResponse> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let issued = self
            .state
            .images()?
            .credentials(
                &caller,
                &r.registry_id,
                &r.project,
                &r.image_reference,
                &r.kubernetes_namespace,
            )
            .await?;
        let c = issued.credentials;
        let proxy = issued.proxy.unwrap_or_else(|| crate::domain::Proxy {
            url: String::new(),
            username: String::new(),
            no_proxy: Vec::new(),
        });
        Ok(Response::new(pb::GetCredentialsResponse {
            proxy_url: proxy.url,
            proxy_username: proxy.username,
            proxy_password: issued
                .proxy_password
                .map(|p| p.expose().to_string())
                .unwrap_or_default(),
            no_proxy: proxy.no_proxy,
            username: c.username,
            password: c.password.expose().to_string(),
            server_address: c.server_address,
            expire_time: c.expires_at.map(timestamp_of),
            docker_config_json: issued.docker_config_json,
            kubernetes_secret_yaml: issued.kubernetes_secret_yaml,
            insecure: issued.insecure,
            ca_cert_pem: issued.ca_cert_pem,
            registry_id: issued.registry_id,
        }))
    }

    async fn list_repositories(
        &self,
        req: Request<pb::ListRepositoriesRequest>,
    ) -> Reply<pb::ListRepositoriesResponse> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let (repositories, next_page_token) = self
            .state
            .images()?
            .list_repositories(
                &caller.principal,
                &r.registry_id,
                &r.project,
                r.page_size,
                &r.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListRepositoriesResponse {
            repositories,
            next_page_token,
        }))
    }

    async fn list_tags(&self, req: Request<pb::ListTagsRequest>) -> Reply<pb::ListTagsResponse> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let order = match pb::TagOrder::try_from(r.order) {
            Ok(pb::TagOrder::Unspecified | pb::TagOrder::Lexical) => TagOrder::Lexical,
            Ok(pb::TagOrder::Semver) => TagOrder::Semver,
            Ok(pb::TagOrder::Newest) => TagOrder::Newest,
            Err(_) => {
                return Err(
                    Error::invalid("order", format!("unknown order value {}", r.order)).into(),
                );
            }
        };
        let tags = self
            .state
            .images()?
            .list_tags(
                &caller.principal,
                &r.registry_id,
                &r.project,
                &r.image,
                &r.glob,
                &r.regex,
                order,
                r.page_size,
            )
            .await?;
        Ok(Response::new(pb::ListTagsResponse { tags }))
    }

    async fn get_image(&self, req: Request<pb::GetImageRequest>) -> Reply<pb::GetImageResponse> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let info = self
            .state
            .images()?
            .image(
                &caller.principal,
                &r.registry_id,
                &r.project,
                &r.image,
                &r.reference,
            )
            .await?;
        let created = info
            .created
            .as_deref()
            .and_then(|c| c.parse::<chrono::DateTime<chrono::Utc>>().ok())
            .map(timestamp_of);
        Ok(Response::new(pb::GetImageResponse {
            digest: info.digest,
            media_type: info.media_type,
            size: info.size,
            platforms: info
                .platforms
                .into_iter()
                .map(|p| pb::Platform {
                    os: p.os,
                    architecture: p.architecture,
                    variant: p.variant,
                    digest: p.digest,
                })
                .collect(),
            created,
            labels: info.labels.into_iter().collect(),
        }))
    }

    async fn test_connection(
        &self,
        req: Request<pb::TestConnectionRequest>,
    ) -> Reply<pb::TestConnectionResponse> {
        let caller = caller(&req)?;
        let who = &caller.principal;
        let r = req.into_inner();
        let images = self.state.images()?;
        let report = match (r.registry_id.is_empty(), r.spec) {
            (false, None) => images.test_stored(who, &r.registry_id).await?,
            (true, Some(s)) => {
                // An unsaved registry is checked by the same rules as a
                // stored one, minus the fields a connection does not need.
                let proxy = s.proxy.unwrap_or_default();
                let input = RegistryInput {
                    proxy_url: proxy.url,
                    proxy_username: proxy.username,
                    proxy_password: (!proxy.password.is_empty())
                        .then(|| Secret::new(proxy.password)),
                    no_proxy: proxy.no_proxy,
                    provider: provider(s.provider, "spec.provider")?,
                    address: s.address,
                    region: s.region,
                    username: s.username,
                    secret: (!s.secret.is_empty()).then(|| Secret::new(s.secret)),
                    all_projects: true,
                    tls_verify: s.tls.as_ref().and_then(|t| t.verify),
                    ca_cert_pem: s.tls.map(|t| t.ca_cert_pem).unwrap_or_default(),
                    credential_mode: credential_mode(s.credential_mode, "spec.credential_mode")?,
                    instance_id: s.instance_id,
                    ..Default::default()
                };
                let secret = input.secret.clone();
                let proxy_password = input.proxy_password.clone();
                let spec = validate_for_connection(&input, "spec")?;
                images.test_spec(who, spec, secret, proxy_password).await?
            }
            _ => {
                return Err(
                    Error::invalid("registry_id", "give either registry_id or spec").into(),
                );
            }
        };
        Ok(Response::new(pb::TestConnectionResponse {
            reachable: report.reachable,
            tls_verified: report.tls_verified,
            tls_error: report.tls_error,
            credentials_accepted: report.credentials_accepted,
            latency_ms: report.latency_ms,
            message: report.message,
        }))
    }

    async fn copy_image(&self, req: Request<pb::CopyImageRequest>) -> Reply<Self::CopyImageStream> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let source = source_of(r.source)?;
        let Some(target) = r.target else {
            return Err(Error::invalid("target", "is required").into());
        };
        let stream = Copier::new(self.state.images()?.clone())
            .copy_image(&caller, source, target_of(target))
            .await?;
        Ok(Response::new(Box::pin(stream.map(|u| {
            u.map(|u| pb::CopyImageResponse {
                progress: Some(progress_of(u.event)),
            })
            .map_err(Status::from)
        }))))
    }

    async fn distribute_image(
        &self,
        req: Request<pb::DistributeImageRequest>,
    ) -> Reply<Self::DistributeImageStream> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let source = source_of(r.source)?;
        let targets = r.targets.into_iter().map(target_of).collect();
        let stream = Copier::new(self.state.images()?.clone())
            .distribute(&caller, source, targets)
            .await?;
        Ok(Response::new(Box::pin(stream.map(|u| {
            u.map(|Update { target, event }| pb::DistributeImageResponse {
                target_index: i32::try_from(target).unwrap_or(i32::MAX),
                progress: Some(progress_of(event)),
            })
            .map_err(Status::from)
        }))))
    }
}

fn source_of(s: Option<pb::ImageSource>) -> Result<SourceSpec, Status> {
    let s = s.ok_or_else(|| Status::from(Error::invalid("source", "is required")))?;
    Ok(SourceSpec {
        registry_id: s.registry_id,
        project: s.project,
        image: s.image,
        tag: s.tag,
        digest: s.digest,
    })
}

fn target_of(t: pb::CopyTarget) -> TargetSpec {
    TargetSpec {
        registry_id: t.registry_id,
        project: t.project,
        image: t.image,
        tag: t.tag,
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn bytes(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn progress_of(event: Event) -> pb::CopyProgress {
    use pb::copy_progress::Event as E;
    let event = match event {
        Event::Plan(p) => E::Plan(pb::CopyPlan {
            source_reference: p.source_reference,
            digest: p.digest,
            media_type: p.media_type,
            manifests: count(p.manifests),
            blobs: count(p.blobs),
            total_bytes: bytes(p.total_bytes),
        }),
        Event::Blob(b) => E::Blob(pb::BlobProgress {
            digest: b.digest,
            bytes_done: bytes(b.bytes_done),
            bytes_total: bytes(b.bytes_total),
            state: match b.state {
                BlobState::Transferring => pb::BlobState::Transferring,
                BlobState::Done => pb::BlobState::Done,
                BlobState::Skipped => pb::BlobState::Skipped,
                BlobState::Mounted => pb::BlobState::Mounted,
                BlobState::Retrying => pb::BlobState::Retrying,
            } as i32,
            attempt: i32::try_from(b.attempt).unwrap_or(i32::MAX),
            message: b.message,
        }),
        Event::Manifest {
            digest,
            media_type,
            reference,
        } => E::Manifest(pb::ManifestPushed {
            digest,
            media_type,
            reference,
        }),
        Event::Result(r) => E::Result(match r.outcome {
            Ok(c) => pb::CopyResult {
                code: tonic::Code::Ok as i32,
                error: String::new(),
                registry_id: r.registry_id,
                reference: c.reference,
                digest: c.digest,
                bytes_copied: bytes(c.bytes_copied),
                blobs_copied: i32::try_from(c.blobs_copied).unwrap_or(i32::MAX),
                blobs_skipped: i32::try_from(c.blobs_skipped).unwrap_or(i32::MAX),
                blobs_mounted: i32::try_from(c.blobs_mounted).unwrap_or(i32::MAX),
            },
            Err(e) => {
                // The one mapping of errors to codes and messages.
                let status = Status::from(e);
                pb::CopyResult {
                    code: status.code() as i32,
                    error: status.message().to_string(),
                    registry_id: r.registry_id,
                    ..Default::default()
                }
            }
        }),
    };
    pb::CopyProgress { event: Some(event) }
}
