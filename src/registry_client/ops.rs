//! The registry operations berth uses: ping, catalog, tags, digests and
//! manifests.

use std::time::Instant;

use reqwest::header::{CONTENT_TYPE, LINK};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use super::{ClientError, RegistryClient};

/// Manifest media types berth accepts, most specific first.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The most bytes berth reads of a manifest or image config.
const MAX_DOCUMENT: usize = 4 * 1024 * 1024;
/// The most pages of tags berth follows.
const MAX_TAG_PAGES: usize = 100;

/// Outcome of pinging `/v2/`.
#[derive(Debug, Clone)]
pub struct Ping {
    /// Round trip of the unauthenticated ping.
    pub latency_ms: u64,
}

/// Single-platform manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    /// One image.
    Image,
    /// A multi-platform index / manifest list.
    Index,
}

/// One platform of an index.
#[derive(Debug, Clone, Default)]
pub struct PlatformInfo {
    /// e.g. linux.
    pub os: String,
    /// e.g. amd64.
    pub architecture: String,
    /// e.g. v8.
    pub variant: String,
    /// Manifest digest.
    pub digest: String,
}

/// What GetImage reports.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// Manifest digest.
    pub digest: String,
    /// Manifest media type.
    pub media_type: String,
    /// Image or index.
    pub kind: ManifestKind,
    /// Config + layers (summed over platforms for an index).
    pub size: i64,
    /// Platforms of an index.
    pub platforms: Vec<PlatformInfo>,
    /// Config `created` (of the first platform for an index).
    pub created: Option<String>,
    /// Config labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(serde::Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: String,
}

#[derive(serde::Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(serde::Deserialize, Default)]
struct ImageConfig {
    created: Option<String>,
    #[serde(default)]
    config: Option<ContainerConfig>,
}

#[derive(serde::Deserialize, Default)]
struct ContainerConfig {
    #[serde(rename = "Labels", default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

pub(super) fn repo_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

impl RegistryClient {
    /// Unauthenticated `GET /v2/`: reachable, TLS verified, and how fast.
    pub async fn ping(&self) -> Result<Ping, ClientError> {
        let start = Instant::now();
        let url = format!("{}/v2/", self.base);
        let resp = self
            .send_with_retries(Method::GET, &url, &[], None, &super::Extra::default())
            .await?;
        let s = resp.status();
        if !(s.is_success() || s == StatusCode::UNAUTHORIZED) {
            return Err(ClientError::Protocol(format!(
                "/v2/ answered {s}; is this a registry?"
            )));
        }
        Ok(Ping {
            latency_ms: start.elapsed().as_millis() as u64,
        })
    }

    /// `GET /v2/` with credentials: Ok when they are accepted.
    pub async fn check_credentials(&self) -> Result<(), ClientError> {
        let url = format!("{}/v2/", self.base);
        let resp = self.send(Method::GET, &url, "", &[]).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(ClientError::Protocol(format!(
                "/v2/ answered {}",
                resp.status()
            )))
        }
    }

    /// One page of the catalog after `last`; `true` if there are more.
    pub async fn catalog(
        &self,
        n: usize,
        last: Option<&str>,
    ) -> Result<(Vec<String>, bool), ClientError> {
        let mut url = reqwest::Url::parse(&format!("{}/v2/_catalog", self.base))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        url.query_pairs_mut().append_pair("n", &n.to_string());
        if let Some(l) = last {
            url.query_pairs_mut().append_pair("last", l);
        }
        let resp = self
            .send(Method::GET, url.as_str(), "registry:catalog:*", &[])
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(ClientError::NotFound(
                "this registry does not offer a catalog".into(),
            ));
        }
        let more = resp.headers().contains_key(LINK);
        #[derive(serde::Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let body: Catalog = read_json(resp).await?;
        let mut repos = body.repositories.unwrap_or_default();
        repos.truncate(n);
        Ok((repos, more))
    }

    /// Every tag of `repo`, following `Link` pages.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, ClientError> {
        let mut url = format!("{}/v2/{repo}/tags/list?n=1000", self.base);
        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let resp = self.send(Method::GET, &url, &repo_scope(repo), &[]).await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Err(ClientError::NotFound(format!(
                    "repository {repo} not found"
                )));
            }
            let next = resp
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            #[derive(serde::Deserialize)]
            struct Tags {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let body: Tags = read_json(resp).await?;
            tags.extend(body.tags.unwrap_or_default());
            match next {
                Some(n) if n.starts_with('/') => url = format!("{}{n}", self.base),
                Some(n) if n.starts_with(&self.base) => url = n,
                Some(_) => {
                    return Err(ClientError::Protocol(
                        "tag paging points to another host".into(),
                    ));
                }
                None => return Ok(tags),
            }
        }
        Err(ClientError::Protocol(format!(
            "more than {MAX_TAG_PAGES} pages of tags"
        )))
    }

    /// The manifest digest of `repo:reference`, by HEAD where the registry
    /// sends `Docker-Content-Digest`, else by hashing the manifest.
    pub async fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<String, ClientError> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self
            .send(Method::HEAD, &url, &repo_scope(repo), &MANIFEST_TYPES)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(ClientError::NotFound(format!(
                "{repo}:{reference} not found"
            )));
        }
        if let Some(d) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| d.starts_with("sha256:") && d.len() == 71)
        {
            return Ok(d.to_string());
        }
        let (bytes, _) = self.manifest(repo, reference).await?;
        Ok(sha256_digest(&bytes))
    }

    /// The raw manifest and its media type.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, String), ClientError> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self
            .send(Method::GET, &url, &repo_scope(repo), &MANIFEST_TYPES)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(ClientError::NotFound(format!(
                "{repo}:{reference} not found"
            )));
        }
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = read_limited(resp).await?;
        Ok((bytes, media_type))
    }

    async fn config(&self, repo: &str, digest: &str) -> Result<ImageConfig, ClientError> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let resp = self.send(Method::GET, &url, &repo_scope(repo), &[]).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(ClientError::NotFound(format!(
                "config blob {digest} not found"
            )));
        }
        let bytes = read_limited(resp).await?;
        if sha256_digest(&bytes) != digest {
            return Err(ClientError::Protocol(format!(
                "config blob does not match its digest {digest}"
            )));
        }
        Ok(serde_json::from_slice(&bytes).unwrap_or_default())
    }

    /// Manifest facts of `repo:reference`.
    pub async fn image(&self, repo: &str, reference: &str) -> Result<ImageInfo, ClientError> {
        let (bytes, header_type) = self.manifest(repo, reference).await?;
        let digest = sha256_digest(&bytes);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(ClientError::Protocol(format!(
                "manifest does not match the digest {reference}"
            )));
        }
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|_| ClientError::Protocol("the manifest is not valid JSON".into()))?;
        let media_type = if m.media_type.is_empty() {
            header_type
        } else {
            m.media_type.clone()
        };
        if m.manifests.is_empty() {
            let (size, created, labels) = self.image_facts(repo, &m).await?;
            return Ok(ImageInfo {
                digest,
                media_type,
                kind: ManifestKind::Image,
                size,
                platforms: Vec::new(),
                created,
                labels,
            });
        }
        let mut size = 0;
        let mut created = None;
        let mut labels = Default::default();
        let mut platforms = Vec::new();
        for (i, d) in m.manifests.iter().enumerate() {
            let (child, _) = self.manifest(repo, &d.digest).await?;
            let child: Manifest = serde_json::from_slice(&child).map_err(|_| {
                ClientError::Protocol(format!("manifest {} is not valid JSON", d.digest))
            })?;
            let (s, c, l) = self.image_facts(repo, &child).await?;
            size += s;
            if i == 0 {
                created = c;
                labels = l;
            }
            let p = d.platform.as_ref();
            platforms.push(PlatformInfo {
                os: p.map(|p| p.os.clone()).unwrap_or_default(),
                architecture: p.map(|p| p.architecture.clone()).unwrap_or_default(),
                variant: p.map(|p| p.variant.clone()).unwrap_or_default(),
                digest: d.digest.clone(),
            });
        }
        Ok(ImageInfo {
            digest,
            media_type,
            kind: ManifestKind::Index,
            size,
            platforms,
            created,
            labels,
        })
    }

    async fn image_facts(
        &self,
        repo: &str,
        m: &Manifest,
    ) -> Result<
        (
            i64,
            Option<String>,
            std::collections::BTreeMap<String, String>,
        ),
        ClientError,
    > {
        let config = m
            .config
            .as_ref()
            .ok_or_else(|| ClientError::Protocol("image manifest without a config".into()))?;
        let size = config.size + m.layers.iter().map(|l| l.size).sum::<i64>();
        let cfg = self.config(repo, &config.digest).await?;
        let labels = cfg.config.and_then(|c| c.labels).unwrap_or_default();
        Ok((size, cfg.created, labels))
    }
}

/// `sha256:<hex>` of bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| super::transport_error(&e))? {
        if out.len() + chunk.len() > MAX_DOCUMENT {
            return Err(ClientError::Protocol(format!(
                "document larger than {MAX_DOCUMENT} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<T, ClientError> {
    let bytes = read_limited(resp).await?;
    serde_json::from_slice(&bytes)
        .map_err(|_| ClientError::Protocol("answer is not the expected JSON".into()))
}

/// The `rel="next"` target of a `Link` header.
fn next_link(h: &str) -> Option<String> {
    h.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.replace(' ', "").contains("rel=\"next\"") {
            return None;
        }
        let t = target.trim();
        Some(t.strip_prefix('<')?.strip_suffix('>')?.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(next_link(r#"<x>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn digests() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
