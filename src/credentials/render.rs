//! The docker `config.json` and Kubernetes Secret of a login, rendered once
//! and reused while the login stays the same.
//!
//! GetCredentials returns both documents on every call, and for a given
//! registry, namespace and login they are the same bytes every time.
//! Rendering them (JSON, base64 twice, YAML quoting, a SHA-256 for the
//! secret name) was a third of the call's CPU in the profile
//! (BENCHMARKS.md). An entry is reused only when everything the documents
//! are made of is equal, so a rotated password, a new ECR token or a moved
//! address renders afresh without any invalidation hook.
//!
//! The memo holds passwords, as the registry cache beside it holds
//! decrypted secrets: in this process's memory only, zeroed when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zeroize::Zeroize;

use super::{Credentials, docker_config};
use crate::domain::Provider;

/// Most memoised documents. Namespaces are the caller's choice, so the map
/// is bounded: when full it starts again (a miss costs one rendering).
const MAX_ENTRIES: usize = 4096;

/// One login's documents.
pub struct Rendered {
    provider: Provider,
    host: String,
    username: String,
    password: String,
    /// docker `config.json`.
    pub docker_config_json: String,
    /// The `kubernetes.io/dockerconfigjson` Secret, as YAML.
    pub kubernetes_secret_yaml: String,
}

impl Drop for Rendered {
    fn drop(&mut self) {
        self.password.zeroize();
        self.docker_config_json.zeroize();
        self.kubernetes_secret_yaml.zeroize();
    }
}

impl Rendered {
    fn renders(&self, provider: Provider, host: &str, creds: &Credentials) -> bool {
        self.provider == provider
            && self.host == host
            && self.username == creds.username
            && self.password == creds.password.expose()
    }
}

/// Documents by registry id, then Kubernetes namespace: looked up with the
/// call's `&str`s, so a hit allocates nothing (a `(String, String)` key
/// would cost two allocations per call).
#[derive(Default)]
pub struct Renders {
    map: Mutex<Memo>,
}

#[derive(Default)]
struct Memo {
    by_registry: HashMap<String, HashMap<String, Arc<Rendered>>>,
    /// Documents held, over all registries.
    entries: usize,
}

impl Renders {
    /// The documents of `creds` for registry `registry_id` (its `provider`
    /// at `host`), in Kubernetes namespace `namespace`: the memoised ones
    /// when they were made of the same values, else rendered now.
    pub fn render(
        &self,
        registry_id: &str,
        provider: Provider,
        host: &str,
        namespace: &str,
        creds: &Credentials,
    ) -> Arc<Rendered> {
        if let Ok(memo) = self.map.lock()
            && let Some(r) = memo
                .by_registry
                .get(registry_id)
                .and_then(|namespaces| namespaces.get(namespace))
            && r.renders(provider, host, creds)
        {
            return r.clone();
        }
        let rendered = Arc::new(render(registry_id, provider, host, namespace, creds));
        if let Ok(mut memo) = self.map.lock() {
            let memo = &mut *memo;
            let known = memo
                .by_registry
                .get(registry_id)
                .is_some_and(|namespaces| namespaces.contains_key(namespace));
            if !known && memo.entries >= MAX_ENTRIES {
                memo.by_registry.clear();
                memo.entries = 0;
            }
            let namespaces = memo.by_registry.entry(registry_id.to_owned()).or_default();
            if namespaces
                .insert(namespace.to_owned(), rendered.clone())
                .is_none()
            {
                memo.entries += 1;
            }
        }
        rendered
    }

    /// Memoised documents (for tests and metrics).
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.entries).unwrap_or(0)
    }

    /// Whether nothing is memoised.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn render(
    registry_id: &str,
    provider: Provider,
    host: &str,
    namespace: &str,
    creds: &Credentials,
) -> Rendered {
    let keys = docker_config::server_keys(provider, host);
    let entries: Vec<(&str, &str, &str)> = if creds.username.is_empty() {
        Vec::new()
    } else {
        keys.iter()
            .map(|k| (k.as_str(), creds.username.as_str(), creds.password.expose()))
            .collect()
    };
    let docker_config_json = docker_config::docker_config_json(&entries);
    let name = docker_config::secret_name(registry_id, host);
    let kubernetes_secret_yaml =
        docker_config::kubernetes_secret_yaml(&name, namespace, &docker_config_json);
    Rendered {
        provider,
        host: host.to_owned(),
        username: creds.username.clone(),
        password: creds.password.expose().to_owned(),
        docker_config_json,
        kubernetes_secret_yaml,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn login(user: &str, password: &str) -> Credentials {
        Credentials {
            username: user.into(),
            password: Secret::new(password.to_string()),
            server_address: "r.example.com".into(),
            expires_at: None,
        }
    }

    /// `memo`'s documents of `user`:`password` for registry `id`.
    fn via(
        memo: &Renders,
        (id, provider, host, ns): (&str, Provider, &str, &str),
        (user, password): (&str, &str),
    ) -> Arc<Rendered> {
        memo.render(id, provider, host, ns, &login(user, password))
    }

    const BASE: (&str, Provider, &str, &str) = ("id1", Provider::Harbor, "r.example.com", "ci");

    #[test]
    fn same_login_is_rendered_once_and_equals_a_fresh_rendering() {
        let memo = Renders::default();
        let a = via(&memo, BASE, ("u", "p"));
        let b = via(&memo, BASE, ("u", "p"));
        assert!(Arc::ptr_eq(&a, &b));
        let fresh = render(
            "id1",
            Provider::Harbor,
            "r.example.com",
            "ci",
            &login("u", "p"),
        );
        assert_eq!(a.docker_config_json, fresh.docker_config_json);
        assert_eq!(a.kubernetes_secret_yaml, fresh.kubernetes_secret_yaml);
    }

    #[test]
    fn anything_the_documents_are_made_of_renders_afresh() {
        let memo = Renders::default();
        let base = via(&memo, BASE, ("u", "p"));
        for other in [
            via(&memo, BASE, ("u", "p2")),
            via(&memo, BASE, ("u2", "p")),
            via(
                &memo,
                ("id1", Provider::Harbor, "r2.example.com", "ci"),
                ("u", "p"),
            ),
            via(
                &memo,
                ("id1", Provider::DockerHub, "r.example.com", "ci"),
                ("u", "p"),
            ),
            via(
                &memo,
                ("id1", Provider::Harbor, "r.example.com", "prod"),
                ("u", "p"),
            ),
            via(
                &memo,
                ("id2", Provider::Harbor, "r.example.com", "ci"),
                ("u", "p"),
            ),
        ] {
            assert!(!Arc::ptr_eq(&base, &other));
            assert_ne!(
                (&base.docker_config_json, &base.kubernetes_secret_yaml),
                (&other.docker_config_json, &other.kubernetes_secret_yaml)
            );
        }
        // The rotated password is in the new document, not the old one.
        let rotated = via(&memo, BASE, ("u", "new"));
        let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "u:new");
        assert!(rotated.docker_config_json.contains(&auth));
    }

    #[test]
    fn the_memo_is_bounded() {
        let memo = Renders::default();
        for i in 0..MAX_ENTRIES + 10 {
            let ns = format!("ns{i}");
            via(
                &memo,
                ("id1", Provider::Harbor, "r.example.com", &ns),
                ("u", "p"),
            );
        }
        assert!(memo.len() <= MAX_ENTRIES);
        assert!(!memo.is_empty());
        // Counted per document, over registries too; a re-rendered one
        // replaces its entry.
        let memo = Renders::default();
        for id in ["id1", "id2"] {
            for ns in ["a", "b"] {
                via(
                    &memo,
                    (id, Provider::Harbor, "r.example.com", ns),
                    ("u", "p"),
                );
            }
        }
        via(
            &memo,
            ("id1", Provider::Harbor, "r.example.com", "a"),
            ("u", "p2"),
        );
        assert_eq!(memo.len(), 4);
    }
}
