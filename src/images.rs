//! The image use cases behind ImageService: which registry a call means,
//! references, credentials per provider and reads from the registry.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::auth::{Caller, Principal, Role};
use crate::credentials::{self, CredentialError, Credentials};
use crate::domain::reference::ImageReference;
use crate::domain::registry::check_project_key;
use crate::domain::tag_filter::{self, TagFilter, TagOrder};
use crate::domain::tag_template;
use crate::domain::{Provider, RegistrySpec, layout};
use crate::error::{Error, Result};
use crate::registry_client::{ClientError, ClientOptions, ClientPool, ImageInfo, RegistryClient};
use crate::secret::Secret;
use crate::store::{AuditEntry, ListQuery, RegistryRecord, Store};

/// A registry chosen for a call, with its decrypted secret.
pub struct Target {
    /// The registry.
    pub record: RegistryRecord,
    /// Its secret, if one is stored.
    pub secret: Option<Secret>,
    /// Its proxy password, if one is stored.
    pub proxy_password: Option<Secret>,
}

/// What ResolveImage asks for.
#[derive(Debug, Default)]
pub struct ResolveRequest {
    /// Registry id, or empty for the project's default.
    pub registry_id: String,
    /// The project asking.
    pub project: String,
    /// Service name or path.
    pub image: String,
    /// Tag or tag template.
    pub tag: String,
    /// Digest.
    pub digest: String,
    /// Template variables.
    pub variables: HashMap<String, String>,
    /// Ask the registry for the digest.
    pub pin_digest: bool,
}

/// What ResolveImage answers.
#[derive(Debug)]
pub struct Resolved {
    /// Fully qualified reference.
    pub reference: String,
    /// Registry used.
    pub registry_id: String,
    /// Rendered tag ("" when only a digest was given).
    pub tag: String,
    /// Digest, if given or pinned.
    pub digest: String,
}

/// Credentials as handed out.
pub struct Issued {
    /// Registry used.
    pub registry_id: String,
    /// Its provider.
    pub provider: Provider,
    /// The login.
    pub credentials: Credentials,
    /// docker `config.json`.
    pub docker_config_json: String,
    /// Kubernetes Secret manifest.
    pub kubernetes_secret_yaml: String,
    /// Whether callers must treat the registry as insecure.
    pub insecure: bool,
    /// CA to trust.
    pub ca_cert_pem: String,
    /// The proxy to reach the registry through, if any.
    pub proxy: Option<crate::domain::Proxy>,
    /// Its password.
    pub proxy_password: Option<Secret>,
}

/// Result of TestConnection.
#[derive(Debug, Default)]
pub struct ConnectionReport {
    /// `/v2/` answered.
    pub reachable: bool,
    /// TLS verified (or not applicable).
    pub tls_verified: bool,
    /// Why TLS failed.
    pub tls_error: String,
    /// Credentials accepted.
    pub credentials_accepted: bool,
    /// Ping latency.
    pub latency_ms: i64,
    /// Summary.
    pub message: String,
}

/// The image service's state: the store, pooled registry clients and the
/// credential minters.
#[derive(Clone)]
pub struct Images {
    store: Store,
    pool: Arc<ClientPool>,
    minter: Arc<credentials::Minter>,
    /// GetCredentials answers without waiting for its audit record.
    queue_audit: bool,
    /// GetCredentials' documents, rendered once per login (see
    /// `credentials::render`).
    renders: Arc<credentials::render::Renders>,
}

/// Page size limits of the registry listing calls.
const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;
/// ListTags by creation time reads one manifest and config per tag; above
/// this many tags the caller must filter first.
const MAX_NEWEST_TAGS: usize = 200;

impl Images {
    /// Image use cases over `store`, minting with `minter`, reaching
    /// registries with `options`.
    pub fn new(store: Store, minter: credentials::Minter, options: ClientOptions) -> Self {
        Images {
            store,
            pool: Arc::new(ClientPool::new(options)),
            minter: Arc::new(minter),
            queue_audit: false,
            renders: Arc::default(),
        }
    }

    /// Whether GetCredentials answers before its audit record is stored
    /// (`--audit-credentials async`).
    pub fn with_queued_audit(mut self, queued: bool) -> Self {
        self.queue_audit = queued;
        self
    }

    /// Waits until every queued audit record is stored (clean shutdown).
    pub async fn flush_audit(&self) -> Result<()> {
        self.store.flush_audit().await
    }

    /// Drops what this replica cached for a registry (pooled client,
    /// minted tokens). Called for every change-feed event that changes or
    /// deletes it, on every replica. The caches are keyed by revision too,
    /// so this frees memory and stops a deleted registry's token from
    /// lingering; it is not what keeps answers correct.
    pub fn forget(&self, registry_id: &str) {
        self.pool.remove(registry_id);
        self.minter.forget(registry_id);
    }

    /// ParseImageReference.
    pub fn parse(&self, reference: &str) -> Result<ImageReference> {
        ImageReference::parse(reference).map_err(|e| Error::invalid("reference", e.to_string()))
    }

    /// The registry a call means: `registry_id` (which must include the
    /// project in its scope), or the project's default; the caller must
    /// hold `role` on the project.
    pub async fn target(
        &self,
        who: &Principal,
        role: Role,
        registry_id: &str,
        project: &str,
    ) -> Result<Target> {
        let project = check_project(project)?;
        who.require(role, project)?;
        if registry_id.is_empty() {
            let Some(default) = self.store.get_default().await? else {
                return Err(Error::NotFound(
                    "no default registry is set; pass registry_id".into(),
                ));
            };
            if !default.spec.scope.includes(project) {
                return Err(Error::NotFound(format!(
                    "the default registry is not available to project `{project}`; pass registry_id"
                )));
            }
            return self.load(who, &default.id, project).await;
        }
        let id = registry_id_of(registry_id)?;
        self.load(who, &id, project).await
    }

    /// Loads registry `id` for `project`. A caller who cannot list every
    /// registry learns nothing from the answer: a missing registry and one
    /// outside the project's scope give the same PERMISSION_DENIED.
    async fn load(&self, who: &Principal, id: &str, project: &str) -> Result<Target> {
        let hidden = || {
            Error::PermissionDenied(format!(
                "registry {id} is not available to project `{project}`"
            ))
        };
        let (record, secrets) = match self.store.get_with_secret(id).await {
            Err(Error::NotFound(_)) if !who.sees_everything() => return Err(hidden()),
            other => other?,
        };
        if !record.spec.scope.includes(project) {
            if !who.sees_everything() {
                return Err(hidden());
            }
            return Err(Error::PermissionDenied(format!(
                "registry {id} is not available to project `{project}`: its scope does not include it"
            )));
        }
        Ok(Target {
            record,
            secret: secrets.secret,
            proxy_password: secrets.proxy_password,
        })
    }

    /// ResolveImage.
    pub async fn resolve(&self, who: &Principal, req: ResolveRequest) -> Result<Resolved> {
        let target = self
            .target(who, Role::Reader, &req.registry_id, &req.project)
            .await?;
        let spec = &target.record.spec;
        let path = layout::repository_path(spec, &req.image, "image")?;
        let tag = match req.tag.trim() {
            "" => None,
            t if t.contains(['{', '}']) => Some(self.render_tag(t, &req, &path)?),
            t => Some(t.to_string()),
        };
        let mut digest = match req.digest.trim() {
            "" => None,
            d => Some(d.to_string()),
        };
        if tag.is_none() && digest.is_none() {
            return Err(Error::invalid(
                "tag",
                "a tag, tag template or digest is required",
            ));
        }
        // Each on its own first: the whole reference can only blame `image`.
        if let Some(t) = &tag {
            check_tag(t)?;
        }
        if let Some(d) = &digest {
            check_digest(d)?;
        }
        // Validate the shape before asking the registry anything.
        layout::reference(spec, &path, tag.as_deref(), digest.as_deref())?;
        if req.pin_digest {
            let reference = tag.as_deref().or(digest.as_deref()).unwrap_or("latest");
            let path = path.as_str();
            let pinned = self
                .with_client(&target, move |c| async move {
                    c.manifest_digest(path, reference).await
                })
                .await?;
            if let Some(given) = &digest
                && *given != pinned
            {
                return Err(Error::FailedPrecondition(format!(
                    "{path}:{reference} is {pinned}, not the given digest {given}"
                )));
            }
            digest = Some(pinned);
        }
        let r = layout::reference(spec, &path, tag.as_deref(), digest.as_deref())?;
        Ok(Resolved {
            reference: r.fully_qualified(),
            registry_id: target.record.id,
            tag: tag.unwrap_or_default(),
            digest: digest.unwrap_or_default(),
        })
    }

    fn render_tag(&self, template: &str, req: &ResolveRequest, path: &str) -> Result<String> {
        // The caller's values win; SERVICE, PROJECT and TIMESTAMP have
        // defaults. Nothing is copied, and the clock is read (once) only
        // when the template uses TIMESTAMP without a value: this is on
        // ResolveImage's hot path.
        let service = path.rsplit('/').next().unwrap_or(path);
        let timestamp = std::cell::OnceCell::new();
        tag_template::render_with(template, |name| {
            if let Some(v) = req.variables.get(name) {
                return Some(v.as_str());
            }
            match name {
                "SERVICE" => Some(service),
                "PROJECT" => Some(req.project.as_str()),
                "TIMESTAMP" => Some(
                    timestamp
                        .get_or_init(|| Utc::now().format("%Y%m%d%H%M%S").to_string())
                        .as_str(),
                ),
                _ => None,
            }
        })
        .map_err(|e| Error::invalid("tag", e.to_string()))
    }

    /// GetCredentials: by registry id, by an image reference's domain, or
    /// the project's default. Every call, granted or not, is written to the
    /// audit log.
    pub async fn credentials(
        &self,
        caller: &Caller,
        registry_id: &str,
        project: &str,
        image_reference: &str,
        kubernetes_namespace: &str,
    ) -> Result<Issued> {
        let result = self
            .issue(
                &caller.principal,
                registry_id,
                project,
                image_reference,
                kubernetes_namespace,
            )
            .await;
        let project = project.trim();
        let (outcome, registry, detail) = match &result {
            Ok(i) => (
                "granted",
                Some(i.registry_id.clone()),
                format!(
                    "provider={}{}",
                    i.provider,
                    i.credentials
                        .expires_at
                        .map(|t| format!(" expires={}", t.to_rfc3339()))
                        .unwrap_or_default()
                ),
            ),
            Err(e) => (
                if matches!(e, Error::PermissionDenied(_)) {
                    "denied"
                } else {
                    "failed"
                },
                registry_id_of(registry_id).ok(),
                e.to_string(),
            ),
        };
        let entry = AuditEntry {
            actor: caller.principal.name.clone(),
            action: "credentials.issue",
            registry_id: registry,
            project: check_project(project).ok().map(str::to_owned),
            outcome,
            request_id: caller.request_id.clone(),
            detail,
        };
        let recorded = if self.queue_audit {
            self.store.record_queued(entry).await
        } else {
            self.store.record(entry).await
        };
        if let Err(e) = recorded {
            // Credentials must not leave without their audit record.
            tracing::error!(error = %e, "could not write the audit record of a credential issuance");
            return Err(e);
        }
        result
    }

    async fn issue(
        &self,
        who: &Principal,
        registry_id: &str,
        project: &str,
        image_reference: &str,
        kubernetes_namespace: &str,
    ) -> Result<Issued> {
        let namespace = match kubernetes_namespace.trim() {
            "" => "default",
            n if is_dns_label(n) => n,
            _ => {
                return Err(Error::invalid(
                    "kubernetes_namespace",
                    "must be a Kubernetes namespace name (DNS-1123 label)",
                ));
            }
        };
        let target = if registry_id.is_empty() && !image_reference.is_empty() {
            self.target_for_reference(who, image_reference, project)
                .await?
        } else {
            self.target(who, Role::Credentials, registry_id, project)
                .await?
        };
        let creds = self.mint(&target).await?;
        let spec = &target.record.spec;
        let host = spec.address.host_port();
        let rendered =
            self.renders
                .render(&target.record.id, spec.provider, &host, namespace, &creds);
        tracing::info!(registry_id = %target.record.id, project, provider = %spec.provider, "credentials issued");
        Ok(Issued {
            registry_id: target.record.id.clone(),
            provider: spec.provider,
            insecure: !spec.tls.verify || spec.address.scheme() == crate::domain::Scheme::Http,
            ca_cert_pem: spec.tls.ca_cert_pem.clone(),
            credentials: creds,
            docker_config_json: rendered.docker_config_json.clone(),
            kubernetes_secret_yaml: rendered.kubernetes_secret_yaml.clone(),
            proxy: spec.proxy.clone(),
            proxy_password: target.proxy_password.clone(),
        })
    }

    /// The registry in the project's scope whose address is the reference's
    /// domain; with several (one per namespace), the one whose namespace
    /// the path lives under.
    async fn target_for_reference(
        &self,
        who: &Principal,
        reference: &str,
        project: &str,
    ) -> Result<Target> {
        let project = check_project(project)?;
        who.require(Role::Credentials, project)?;
        let r = ImageReference::parse(reference)
            .map_err(|e| Error::invalid("image_reference", e.to_string()))?;
        let candidates = self
            .store
            .list(&ListQuery {
                project: Some(project.to_string()),
                provider: None,
                limit: 10_000,
                after_id: None,
                visible_to: None,
            })
            .await?;
        let best = candidates
            .into_iter()
            .filter(|c| c.spec.address.host_port() == r.domain)
            .max_by_key(|c| {
                let ns = &c.spec.namespace;
                let under =
                    !ns.is_empty() && (r.path == *ns || r.path.starts_with(&format!("{ns}/")));
                (under, ns.len())
            })
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no registry for `{}` is available to project `{project}`",
                    r.domain
                ))
            })?;
        self.load(who, &best.id, project).await
    }

    /// Mints the docker login for a registry, per provider.
    async fn mint(&self, target: &Target) -> Result<Credentials> {
        self.minter
            .mint(&target.record, target.secret.as_ref())
            .await
            .map_err(credential_error)
    }

    /// The store (for the audit records of other image use cases).
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The options registry clients use.
    pub(crate) fn client_options(&self) -> &ClientOptions {
        self.pool.options()
    }

    /// The pooled client for `target`, with freshly minted credentials.
    pub(crate) async fn client(&self, target: &Target) -> Result<Arc<RegistryClient>> {
        Ok(self.client_and_login(target).await?.0)
    }

    /// The pooled client for `target` and the login just set on it.
    async fn client_and_login(
        &self,
        target: &Target,
    ) -> Result<(Arc<RegistryClient>, Credentials)> {
        let rec = &target.record;
        let client = self.pool.get(
            &rec.id,
            rec.revision,
            &rec.spec,
            target.proxy_password.as_ref(),
        )?;
        let creds = self.mint(target).await?;
        set_login(&client, &creds);
        Ok((client, creds))
    }

    /// Runs the registry read `op` with the pooled client for `target`,
    /// logged in. When the registry refuses the login (401, or a 403 such as
    /// ECR's "Your authorization token has expired") and the login is a
    /// cloud token from the cache (ECR, ACR/TCR access keys), the token is
    /// dropped, a new one is minted and set, and `op` runs once more; a
    /// second refusal is the usual error. Static logins are not retried:
    /// minting them again would give the same refused password.
    pub(crate) async fn with_client<T, F, Fut>(&self, target: &Target, op: F) -> Result<T>
    where
        F: Fn(Arc<RegistryClient>) -> Fut,
        Fut: Future<Output = std::result::Result<T, ClientError>>,
    {
        let (client, creds) = self.client_and_login(target).await?;
        match op(Arc::clone(&client)).await {
            Err(ClientError::Unauthorized(why))
                if credentials::Minter::uses_token_cache(
                    &target.record,
                    target.secret.as_ref(),
                ) =>
            {
                self.renew_refused(target, &client, &creds, &why).await?;
                Ok(op(client).await?)
            }
            other => Ok(other?),
        }
    }

    /// Replaces the cached token the registry refused with a new one (unless
    /// the cache keeps it, see [`credentials::Minter::forget_refused`]), and
    /// sets the current one on `client`.
    async fn renew_refused(
        &self,
        target: &Target,
        client: &RegistryClient,
        refused: &Credentials,
        why: &str,
    ) -> Result<()> {
        let dropped = self.minter.forget_refused(&target.record, refused).await;
        tracing::info!(
            registry_id = %target.record.id,
            provider = %target.record.spec.provider,
            reason = why,
            dropped,
            "the registry refused a cached token; retrying once with the current one"
        );
        metrics::counter!("berth_token_retries_total", "provider" => target.record.spec.provider.to_string())
            .increment(1);
        let creds = self.mint(target).await?;
        set_login(client, &creds);
        Ok(())
    }

    /// ListRepositories: one page of the registry's catalog.
    pub async fn list_repositories(
        &self,
        who: &Principal,
        registry_id: &str,
        project: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<String>, String)> {
        let target = self.target(who, Role::Reader, registry_id, project).await?;
        let n = page(page_size)?;
        let last = match page_token {
            "" => None,
            t => Some(decode_token(t)?),
        };
        let last = last.as_deref();
        let (repos, more) = self
            .with_client(&target, move |c| async move { c.catalog(n, last).await })
            .await?;
        let next = match (more, repos.last()) {
            (true, Some(l)) => encode_token(l),
            _ => String::new(),
        };
        Ok((repos, next))
    }

    /// ListTags.
    #[allow(clippy::too_many_arguments)]
    pub async fn list_tags(
        &self,
        who: &Principal,
        registry_id: &str,
        project: &str,
        image: &str,
        glob: &str,
        regex: &str,
        order: TagOrder,
        page_size: i32,
    ) -> Result<Vec<String>> {
        let target = self.target(who, Role::Reader, registry_id, project).await?;
        let path = layout::repository_path(&target.record.spec, image, "image")?;
        let filter = TagFilter::new(glob, regex)?;
        let n = page(page_size)?;
        let path = path.as_str();
        let mut tags: Vec<String> = self
            .with_client(&target, move |c| async move { c.tags(path).await })
            .await?
            .into_iter()
            .filter(|t| filter.matches(t))
            .collect();
        tag_filter::sort_tags(&mut tags, order);
        if order == TagOrder::Newest {
            if tags.len() > MAX_NEWEST_TAGS {
                return Err(Error::FailedPrecondition(format!(
                    "{} tags match; ordering by creation time reads each image, so narrow them to at most {MAX_NEWEST_TAGS} with glob or regex",
                    tags.len()
                )));
            }
            let names = &tags;
            let mut dated = self
                .with_client(&target, move |c| async move {
                    let mut dated = Vec::with_capacity(names.len());
                    for t in names {
                        let created = c
                            .image(path, t)
                            .await?
                            .created
                            .and_then(|c| c.parse::<DateTime<Utc>>().ok());
                        dated.push((created, t.clone()));
                    }
                    Ok(dated)
                })
                .await?;
            // Newest first; images without `created` last.
            dated.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            tags = dated.into_iter().map(|(_, t)| t).collect();
        }
        tags.truncate(n);
        Ok(tags)
    }

    /// GetImage.
    pub async fn image(
        &self,
        who: &Principal,
        registry_id: &str,
        project: &str,
        image: &str,
        reference: &str,
    ) -> Result<ImageInfo> {
        let target = self.target(who, Role::Reader, registry_id, project).await?;
        let path = layout::repository_path(&target.record.spec, image, "image")?;
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(Error::invalid(
                "reference",
                "is required (a tag or a digest)",
            ));
        }
        // Check the tag or digest by the reference grammar.
        let (tag, digest) = if reference.contains(':') {
            (None, Some(reference))
        } else {
            (Some(reference), None)
        };
        layout::reference(&target.record.spec, &path, tag, digest)
            .map_err(|_| Error::invalid("reference", "is not a valid tag or digest"))?;
        let path = path.as_str();
        self.with_client(
            &target,
            move |c| async move { c.image(path, reference).await },
        )
        .await
    }

    /// TestConnection for a stored registry.
    pub async fn test_stored(
        &self,
        who: &Principal,
        registry_id: &str,
    ) -> Result<ConnectionReport> {
        let id = registry_id_of(registry_id)?;
        let (record, secrets) = self.store.get_with_secret(&id).await?;
        if !who.may_see(&record.spec.scope) {
            return Err(crate::store::not_found(&id));
        }
        Ok(self
            .test(&Target {
                record,
                secret: secrets.secret,
                proxy_password: secrets.proxy_password,
            })
            .await)
    }

    /// TestConnection for an unsaved registry.
    pub async fn test_spec(
        &self,
        who: &Principal,
        spec: RegistrySpec,
        secret: Option<Secret>,
        proxy_password: Option<Secret>,
    ) -> Result<ConnectionReport> {
        // Testing unsaved settings is part of creating a registry.
        who.require_any(Role::Admin, "test unsaved registry settings")?;
        let record = RegistryRecord {
            id: uuid::Uuid::new_v4().to_string(),
            spec,
            has_secret: secret.is_some(),
            has_proxy_password: proxy_password.is_some(),
            is_default: false,
            create_time_us: 0,
            update_time_us: 0,
            updated_by: String::new(),
            revision: 0,
        };
        Ok(self
            .test(&Target {
                record,
                secret,
                proxy_password,
            })
            .await)
    }

    async fn test(&self, target: &Target) -> ConnectionReport {
        use crate::registry_client::ClientError as C;
        let spec = &target.record.spec;
        let mut report = ConnectionReport::default();
        // Through the registry's proxy and within its budget, like every
        // other call (an unsaved registry has neither: revision 0).
        let reach = crate::registry_client::Reach {
            proxy: spec.proxy.as_ref(),
            proxy_password: target.proxy_password.as_ref(),
            limiter: (target.record.revision > 0)
                .then(|| self.pool.limiter(&target.record.id, spec.budget))
                .flatten(),
        };
        let client = match RegistryClient::with_reach(
            &spec.address,
            &spec.tls,
            reach,
            self.pool.options().clone(),
        ) {
            Ok(c) => c,
            Err(e) => {
                report.message = e.to_string();
                return report;
            }
        };
        match client.ping().await {
            Ok(p) => {
                report.reachable = true;
                report.tls_verified = true;
                report.latency_ms = p.latency_ms as i64;
            }
            Err(C::Tls(why)) => {
                report.reachable = true;
                report.tls_error = why.clone();
                report.message = format!("TLS failed: {why}");
                return report;
            }
            Err(e) => {
                report.message = e.to_string();
                return report;
            }
        }
        if !spec.tls.verify || spec.address.scheme() == crate::domain::Scheme::Http {
            // Nothing was verified: say so rather than claim it.
            report.tls_verified = false;
        }
        let creds = match self.mint(target).await {
            Ok(c) => c,
            Err(e) => {
                report.message = format!("could not mint credentials: {e}");
                return report;
            }
        };
        set_login(&client, &creds);
        let mut checked = client.check_credentials().await;
        // A cached cloud token refused: say whether a new one works.
        if let Err(C::Unauthorized(why)) = &checked
            && credentials::Minter::uses_token_cache(&target.record, target.secret.as_ref())
        {
            if let Err(e) = self.renew_refused(target, &client, &creds, why).await {
                report.message = format!("could not mint credentials: {e}");
                return report;
            }
            checked = client.check_credentials().await;
        }
        match checked {
            Ok(()) => {
                report.credentials_accepted = true;
                report.message = "registry reachable and credentials accepted".into();
            }
            Err(C::Unauthorized(why)) => report.message = format!("credentials rejected: {why}"),
            Err(e) => report.message = e.to_string(),
        }
        report
    }
}

/// A registry id in the form berth stores (lowercase, hyphenated): UUIDs
/// are case-insensitive, and the database compares ids as strings.
pub(crate) fn registry_id_of(id: &str) -> Result<String> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| Error::invalid("registry_id", "is not a registry id (a UUID)"))
}

/// A tag, checked by the reference grammar.
pub(crate) fn check_tag(tag: &str) -> Result<()> {
    if !crate::domain::reference::is_valid_tag(tag) {
        return Err(Error::invalid(
            "tag",
            "is not a valid tag: 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`",
        ));
    }
    Ok(())
}

/// A digest, checked by the reference grammar.
pub(crate) fn check_digest(digest: &str) -> Result<()> {
    if ImageReference::parse(&format!("berth.invalid/x@{digest}")).is_err() {
        return Err(Error::invalid(
            "digest",
            "is not a valid digest: `sha256:` and 64 lowercase hex digits (or sha384, sha512)",
        ));
    }
    Ok(())
}

pub(crate) fn check_project(project: &str) -> Result<&str> {
    let p = project.trim();
    if p.is_empty() {
        return Err(Error::invalid("project", "is required"));
    }
    check_project_key(p).map_err(|why| Error::invalid("project", why))?;
    Ok(p)
}

fn page(page_size: i32) -> Result<usize> {
    match page_size {
        n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
        0 => Ok(DEFAULT_PAGE),
        n => Ok((n as usize).min(MAX_PAGE)),
    }
}

fn encode_token(last: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("r1|{last}"))
}

fn decode_token(t: &str) -> Result<String> {
    use base64::Engine as _;
    let bad = || Error::invalid("page_token", "is not a token returned by a previous call");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    s.strip_prefix("r1|").map(str::to_string).ok_or_else(bad)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Logs `client` in with `creds` (anonymously when there is no user).
fn set_login(client: &RegistryClient, creds: &Credentials) {
    client.set_credentials(
        (!creds.username.is_empty()).then(|| (creds.username.clone(), creds.password.clone())),
    );
}

fn credential_error(e: CredentialError) -> Error {
    match e {
        CredentialError::InvalidKey(m) => {
            Error::FailedPrecondition(format!("the stored key is not usable: {m}"))
        }
        CredentialError::Rejected(m) => {
            Error::FailedPrecondition(format!("the provider refused the stored keys: {m}"))
        }
        CredentialError::Unavailable(m) => {
            Error::Unavailable(format!("the provider's token service is unavailable: {m}"))
        }
        CredentialError::BadResponse(m) => {
            Error::FailedPrecondition(format!("the provider answered something unexpected: {m}"))
        }
    }
}
