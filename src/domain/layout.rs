//! Where an image lives in a registry: each provider's name layout, and
//! the tag or digest a reference ends with.

use super::provider::Provider;
use super::reference::ImageReference;
use super::registry::{RegistrySpec, is_path_component};
use crate::error::{Error, Result};

/// The repository path (without host) of `image` in the registry:
/// - Nexus: `repository/namespace/image` (path-based routing to the
///   Docker repository named in `repository`);
/// - ECR: `namespace/image`, or just `image` when no namespace is set;
/// - every other provider: `namespace/image` (Docker Hub's host is
///   `docker.io`).
///
/// `image` is a service name (`api`) or a path below the namespace
/// (`backend/api`); it must not carry a host, tag or digest.
pub fn repository_path(spec: &RegistrySpec, image: &str, field: &str) -> Result<String> {
    let image = check_image(image, field)?;
    let mut parts: Vec<&str> = Vec::new();
    if spec.provider == Provider::Nexus && !spec.repository.is_empty() {
        parts.push(&spec.repository);
    }
    if !spec.namespace.is_empty() {
        parts.push(&spec.namespace);
    }
    parts.push(image);
    Ok(parts.join("/"))
}

/// `image` checked as [`repository_path`] checks it, before any registry
/// is known (trimmed of spaces and `/`); errors name `field`.
pub fn check_image<'a>(image: &'a str, field: &str) -> Result<&'a str> {
    let image = image.trim().trim_matches('/');
    if image.is_empty() {
        return Err(Error::invalid(
            field,
            "is required (a service name such as `api`, or a path)",
        ));
    }
    if image.contains(['@', ':']) {
        return Err(Error::invalid(
            field,
            "must be a repository path without tag or digest; put those in tag/digest",
        ));
    }
    for comp in image.split('/') {
        if !is_path_component(comp) {
            return Err(Error::invalid(
                field,
                format!(
                    "component `{comp}` is not valid: use lowercase letters and digits, separated by `.`, `_`, `__` or `-`"
                ),
            ));
        }
    }
    Ok(image)
}

/// The fully qualified reference `host[:port]/path[:tag][@digest]`, checked
/// against the reference grammar (length limits, lowercase rules).
pub fn reference(
    spec: &RegistrySpec,
    path: &str,
    tag: Option<&str>,
    digest: Option<&str>,
) -> Result<ImageReference> {
    let host = spec.address.host_port();
    let mut s = format!("{host}/{path}");
    if let Some(t) = tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = digest {
        s.push('@');
        s.push_str(d);
    }
    let r = ImageReference::parse(&s)
        .map_err(|e| Error::invalid("image", format!("makes an invalid reference: {e}")))?;
    // docker reads a first component without `.` or `:` (except
    // `localhost`) as a Docker Hub namespace: for a registry at `registry`
    // (or `registry:443`), `registry/team/api` is docker.io/registry/team/api,
    // an image someone else may own.
    if r.domain != host {
        return Err(Error::invalid(
            "image",
            format!(
                "makes the reference `{s}`, which docker reads as `{r}`, not as an image on `{host}`; \
                 give the registry address a dotted host name or a non-default port"
            ),
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RegistryInput, validate};
    use crate::secret::Secret;

    fn spec(provider: Provider, address: &str, namespace: &str, repository: &str) -> RegistrySpec {
        let mut i = RegistryInput {
            provider: Some(provider),
            address: address.into(),
            namespace: namespace.into(),
            repository: repository.into(),
            username: "u".into(),
            secret: Some(Secret::new("p")),
            all_projects: true,
            ..Default::default()
        };
        if matches!(provider, Provider::Swr | Provider::Ecr) {
            i.region = "us-east-1".into();
        }
        validate(&i, false, "r").expect("valid spec")
    }

    #[test]
    fn provider_layouts() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let rows = [
            (
                "harbor",
                spec(
                    Provider::Harbor,
                    "https://harbor.example.com:5000/",
                    "team",
                    "",
                ),
                "api",
                Some("1.0"),
                None,
                "harbor.example.com:5000/team/api:1.0",
            ),
            (
                "docker hub",
                spec(Provider::DockerHub, "", "acme", ""),
                "api",
                Some("1.0"),
                None,
                "docker.io/acme/api:1.0",
            ),
            (
                "ecr without namespace",
                spec(Provider::Ecr, "1.dkr.ecr.us-east-1.amazonaws.com", "", ""),
                "api",
                Some("t"),
                None,
                "1.dkr.ecr.us-east-1.amazonaws.com/api:t",
            ),
            (
                "ecr with namespace",
                spec(
                    Provider::Ecr,
                    "1.dkr.ecr.us-east-1.amazonaws.com",
                    "team",
                    "",
                ),
                "api",
                Some("t"),
                None,
                "1.dkr.ecr.us-east-1.amazonaws.com/team/api:t",
            ),
            (
                "nexus",
                spec(
                    Provider::Nexus,
                    "nexus.example.com",
                    "team",
                    "docker-hosted",
                ),
                "api",
                Some("t"),
                None,
                "nexus.example.com/docker-hosted/team/api:t",
            ),
            (
                "jfrog",
                spec(Provider::Jfrog, "acme.jfrog.io", "docker-local", ""),
                "api",
                Some("t"),
                None,
                "acme.jfrog.io/docker-local/api:t",
            ),
            (
                "gar",
                spec(Provider::Gar, "us-docker.pkg.dev", "proj/repo", ""),
                "api",
                Some("t"),
                None,
                "us-docker.pkg.dev/proj/repo/api:t",
            ),
            (
                "path image",
                spec(Provider::Other, "[::1]:5000", "ci", ""),
                "backend/api",
                Some("t"),
                None,
                "[::1]:5000/ci/backend/api:t",
            ),
            (
                "tag and digest",
                spec(Provider::Harbor, "h.example.com", "team", ""),
                "api",
                Some("t"),
                Some(d),
                "h.example.com/team/api:t@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ];
        for (name, spec, image, tag, digest, want) in rows {
            let path = repository_path(&spec, image, "image").expect(name);
            let r = reference(&spec, &path, tag, digest).expect(name);
            assert_eq!(r.fully_qualified(), want, "{name}");
        }
    }

    #[test]
    fn bad_images() {
        let s = spec(Provider::Harbor, "h.example.com", "team", "");
        for bad in ["", "Api", "api:1.0", "api@sha256:00", "a//b", "-api"] {
            assert!(repository_path(&s, bad, "image").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn never_names_another_registry() {
        // `registry/team/api` would be Docker Hub's `registry` namespace.
        for address in ["registry", "https://registry:443"] {
            let s = spec(Provider::Harbor, address, "team", "");
            let err = reference(&s, "team/api", Some("1"), None).expect_err(address);
            assert!(
                err.to_string().contains("docker.io/registry/team/api:1"),
                "{err}"
            );
        }
        for (address, want) in [
            ("localhost", "localhost"),
            ("registry:5000", "registry:5000"),
        ] {
            let s = spec(Provider::Harbor, address, "team", "");
            let r = reference(&s, "team/api", Some("1"), None).expect(address);
            assert_eq!(r.domain, want);
        }
    }
}
