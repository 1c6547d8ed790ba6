//! The policy: which identity has which roles on which projects. A TOML
//! file, re-read while berth runs:
//!
//! ```toml
//! [[grant]]
//! identity = "spiffe://example.org/ns/ci/sa/workflow-runner"
//! roles = ["reader", "credentials"]
//! projects = ["team-a", "team-b"]
//!
//! [[grant]]
//! identity = "platform-admin"
//! roles = ["admin", "reader"]
//! projects = ["*"]          # every project, including future ones
//! ```
//!
//! Several grants for one identity add up. An identity with no grant may
//! call only ParseImageReference and ListProviders.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::{Grants, Projects, Role};
use crate::domain::registry::check_project_key;

/// The parsed policy.
#[derive(Debug, Default)]
pub struct Policy {
    by_identity: HashMap<String, Arc<Grants>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    grant: Vec<GrantEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantEntry {
    identity: String,
    roles: Vec<String>,
    projects: Vec<String>,
}

impl Policy {
    /// Parses a policy file.
    pub fn parse(text: &str) -> anyhow::Result<Policy> {
        let file: File = toml::from_str(text).context("not a valid policy")?;
        let mut by_identity: HashMap<String, Grants> = HashMap::new();
        for (i, g) in file.grant.iter().enumerate() {
            let n = i + 1;
            let identity = g.identity.trim();
            if identity.is_empty() || identity.len() > 256 {
                bail!("grant {n}: `identity` must be 1 to 256 characters");
            }
            if g.roles.is_empty() {
                bail!("grant {n} ({identity}): `roles` is empty");
            }
            let projects =
                parse_projects(&g.projects).with_context(|| format!("grant {n} ({identity})"))?;
            let entry = by_identity.entry(identity.to_string()).or_default();
            for r in &g.roles {
                let role = Role::parse(r).with_context(|| {
                    format!(
                        "grant {n} ({identity}): unknown role `{r}` (roles: admin, reader, credentials)"
                    )
                })?;
                entry.add(role, &projects);
            }
        }
        Ok(Policy {
            by_identity: by_identity
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
        })
    }

    /// What `identity` may do (nothing when the policy does not name it).
    pub fn grants(&self, identity: &str) -> Option<Arc<Grants>> {
        self.by_identity.get(identity).cloned()
    }

    /// Whether the policy names `identity`.
    pub fn names(&self, identity: &str) -> bool {
        self.by_identity.contains_key(identity)
    }
}

fn parse_projects(list: &[String]) -> anyhow::Result<Projects> {
    if list.is_empty() {
        bail!("`projects` is empty (use [\"*\"] for all projects)");
    }
    if list.iter().any(|p| p == "*") {
        if list.len() > 1 {
            bail!("`projects` mixes \"*\" with project keys");
        }
        return Ok(Projects::All);
    }
    let mut set = BTreeSet::new();
    for p in list {
        check_project_key(p).map_err(|why| anyhow::anyhow!("project `{p}`: {why}"))?;
        set.insert(p.clone());
    }
    Ok(Projects::Some(set))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_add_up_per_identity() {
        let p = Policy::parse(
            r#"
            [[grant]]
            identity = "runner"
            roles = ["reader", "credentials"]
            projects = ["a"]

            [[grant]]
            identity = "runner"
            roles = ["reader"]
            projects = ["b"]

            [[grant]]
            identity = "root"
            roles = ["admin"]
            projects = ["*"]
            "#,
        )
        .expect("valid");
        let g = p.grants("runner").expect("named");
        assert!(g.reader.includes("a") && g.reader.includes("b"));
        assert!(g.credentials.includes("a") && !g.credentials.includes("b"));
        assert_eq!(g.admin, Projects::None);
        assert_eq!(p.grants("root").expect("named").admin, Projects::All);
        assert!(p.grants("stranger").is_none());
        assert!(
            Policy::parse("")
                .expect("empty is valid")
                .grants("x")
                .is_none()
        );
    }

    #[test]
    fn mistakes_are_explained() {
        for (text, want) in [
            (
                "[[grant]]\nidentity='a'\nroles=['owner']\nprojects=['*']",
                "unknown role `owner`",
            ),
            (
                "[[grant]]\nidentity='a'\nroles=['admin']\nprojects=[]",
                "`projects` is empty",
            ),
            (
                "[[grant]]\nidentity='a'\nroles=['admin']\nprojects=['*','b']",
                "mixes",
            ),
            (
                "[[grant]]\nidentity='a'\nroles=['admin']\nprojects=['no spaces']",
                "project `no spaces`",
            ),
            (
                "[[grant]]\nidentity=''\nroles=['admin']\nprojects=['*']",
                "identity",
            ),
            (
                "[[grant]]\nidentity='a'\nrole=['admin']\nprojects=['*']",
                "not a valid policy",
            ),
        ] {
            let e = format!("{:#}", Policy::parse(text).expect_err(text));
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
