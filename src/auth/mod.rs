//! Who is calling and what they may do.
//!
//! Authentication happens once per RPC in [`crate::api::middleware`]: the
//! caller is the client certificate's identity (mutual TLS) or the identity
//! of a bearer token from the tokens file ([`tokens`]). The
//! [`policy`] gives each identity roles, each limited to projects, and
//! every use case asks the [`Principal`] one question before acting.
//!
//! The rules (plain Rust, unit-tested below):
//! - `reader` sees a registry when its scope shares a project with the
//!   reader's projects (a registry for all projects is seen by every
//!   reader); reads of images name a project the reader holds.
//! - `credentials` gets credentials for a project it holds, from a
//!   registry whose scope includes that project.
//! - `admin` manages registries whose whole scope lies inside the admin's
//!   projects; a registry for all projects, the default registry and the
//!   audit log need `admin` on all projects.
//! - With authentication off (local use), every caller may do everything.

pub mod policy;
pub mod tokens;
pub mod watch;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::domain::Scope;
use crate::error::Error;

/// A role a policy grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Create, update, delete registries; set the default; read the audit.
    Admin,
    /// Get and list registries; resolve images, list tags, read manifests.
    Reader,
    /// GetCredentials.
    Credentials,
}

impl Role {
    /// The role's name in policies and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reader => "reader",
            Role::Credentials => "credentials",
        }
    }

    /// Parses a policy's role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "reader" => Some(Role::Reader),
            "credentials" => Some(Role::Credentials),
            _ => None,
        }
    }
}

/// The projects a role applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Projects {
    /// No project: the role is not granted.
    #[default]
    None,
    /// These projects.
    Some(BTreeSet<String>),
    /// Every project, including future ones (`"*"` in a policy).
    All,
}

impl Projects {
    /// Whether `project` is included.
    pub fn includes(&self, project: &str) -> bool {
        match self {
            Projects::None => false,
            Projects::Some(set) => set.contains(project),
            Projects::All => true,
        }
    }

    /// Adds `other` to these projects.
    pub fn merge(&mut self, other: &Projects) {
        match (&mut *self, other) {
            (Projects::All, _) | (_, Projects::None) => {}
            (_, Projects::All) => *self = Projects::All,
            (Projects::None, Projects::Some(b)) => *self = Projects::Some(b.clone()),
            (Projects::Some(a), Projects::Some(b)) => a.extend(b.iter().cloned()),
        }
    }

    /// Whether a registry with `scope` shares at least one project with
    /// these.
    pub fn overlaps(&self, scope: &Scope) -> bool {
        match (self, scope) {
            (Projects::None, _) => false,
            (Projects::All, _) | (_, Scope::AllProjects) => true,
            (Projects::Some(mine), Scope::Projects(keys)) => keys.iter().any(|k| mine.contains(k)),
        }
    }

    /// Whether every project of `scope` is among these.
    pub fn covers(&self, scope: &Scope) -> bool {
        match (self, scope) {
            (Projects::All, _) => true,
            (Projects::Some(mine), Scope::Projects(keys)) => keys.iter().all(|k| mine.contains(k)),
            _ => false,
        }
    }
}

/// What one identity may do: the projects of each role.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants {
    /// Projects of `admin`.
    pub admin: Projects,
    /// Projects of `reader`.
    pub reader: Projects,
    /// Projects of `credentials`.
    pub credentials: Projects,
}

impl Grants {
    /// The projects of `role`.
    pub fn projects(&self, role: Role) -> &Projects {
        match role {
            Role::Admin => &self.admin,
            Role::Reader => &self.reader,
            Role::Credentials => &self.credentials,
        }
    }

    /// Grants `role` on `projects` in addition to what is there.
    pub fn add(&mut self, role: Role, projects: &Projects) {
        match role {
            Role::Admin => self.admin.merge(projects),
            Role::Reader => self.reader.merge(projects),
            Role::Credentials => self.credentials.merge(projects),
        }
    }
}

/// How much a caller may do.
#[derive(Debug, Clone)]
pub enum Access {
    /// Authentication is off: everything (local, loopback use).
    Unrestricted,
    /// What the policy grants the identity (possibly nothing).
    Granted(Arc<Grants>),
}

/// The authenticated caller of one RPC.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The identity: token identity, certificate SAN, or with
    /// authentication off `x-berth-actor` (default `anonymous`). Recorded
    /// as `updated_by` and in the audit log.
    pub name: String,
    /// What it may do.
    pub access: Access,
}

impl Principal {
    /// A caller with every right (authentication off).
    pub fn unrestricted(name: impl Into<String>) -> Self {
        Principal {
            name: name.into(),
            access: Access::Unrestricted,
        }
    }

    /// A caller with the given grants.
    pub fn granted(name: impl Into<String>, grants: Grants) -> Self {
        Principal {
            name: name.into(),
            access: Access::Granted(Arc::new(grants)),
        }
    }

    /// The projects `role` covers for this caller.
    pub fn projects(&self, role: Role) -> Projects {
        match &self.access {
            Access::Unrestricted => Projects::All,
            Access::Granted(g) => g.projects(role).clone(),
        }
    }

    fn has_all(&self, role: Role) -> bool {
        matches!(self.projects(role), Projects::All)
    }

    fn denied(&self, what: impl std::fmt::Display) -> Error {
        Error::PermissionDenied(format!("`{}` may not {what}", self.name))
    }

    /// Requires `role` on `project`.
    pub fn require(&self, role: Role, project: &str) -> Result<(), Error> {
        if self.projects(role).includes(project) {
            Ok(())
        } else {
            Err(self.denied(format_args!(
                "{} project `{project}` (needs the `{}` role on it)",
                verb(role),
                role.as_str()
            )))
        }
    }

    /// Requires `role` on every project.
    pub fn require_all(&self, role: Role, what: &str) -> Result<(), Error> {
        if self.has_all(role) {
            Ok(())
        } else {
            Err(self.denied(format_args!(
                "{what} (needs the `{}` role on all projects)",
                role.as_str()
            )))
        }
    }

    /// Whether the caller may read a registry with `scope`.
    pub fn may_see(&self, scope: &Scope) -> bool {
        self.projects(Role::Reader).overlaps(scope) || self.projects(Role::Admin).overlaps(scope)
    }

    /// Whether the caller sees every registry (so "not found" reveals
    /// nothing it could not list anyway).
    pub fn sees_everything(&self) -> bool {
        self.has_all(Role::Reader) || self.has_all(Role::Admin)
    }

    /// Requires `role` on at least one project.
    pub fn require_any(&self, role: Role, what: &str) -> Result<(), Error> {
        if matches!(self.projects(role), Projects::None) {
            Err(self.denied(format_args!("{what} (needs the `{}` role)", role.as_str())))
        } else {
            Ok(())
        }
    }

    /// Requires `admin` over the whole of `scope` (a registry the caller
    /// creates, or one it changes, before and after the change).
    pub fn require_manage(&self, scope: &Scope) -> Result<(), Error> {
        if self.projects(Role::Admin).covers(scope) {
            return Ok(());
        }
        let what = match scope {
            Scope::AllProjects => "manage a registry for all projects".to_string(),
            Scope::Projects(keys) => format!(
                "manage a registry for projects {} (needs `admin` on each)",
                keys.join(", ")
            ),
        };
        Err(self.denied(what))
    }

    /// The projects whose registries a listing may show: `None` for all.
    pub fn visible_projects(&self) -> Option<BTreeSet<String>> {
        let mut p = self.projects(Role::Reader);
        p.merge(&self.projects(Role::Admin));
        match p {
            Projects::All => None,
            Projects::Some(set) => Some(set),
            Projects::None => Some(BTreeSet::new()),
        }
    }
}

/// The caller of one RPC, as the use cases see it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who, and what they may do.
    pub principal: Principal,
    /// The request id (the caller's `x-request-id`, or generated).
    pub request_id: String,
}

impl Caller {
    /// A caller with every right, for tools and tests that run the use
    /// cases without the gRPC layer.
    pub fn unrestricted(name: &str) -> Caller {
        Caller {
            principal: Principal::unrestricted(name),
            request_id: String::new(),
        }
    }

    /// What the store records for a change made by this caller.
    pub fn actor(&self) -> crate::store::Actor {
        crate::store::Actor {
            name: self.principal.name.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

fn verb(role: Role) -> &'static str {
    match role {
        Role::Admin => "manage",
        Role::Reader => "read",
        Role::Credentials => "get credentials for",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(ps: &[&str]) -> Projects {
        Projects::Some(ps.iter().map(|s| s.to_string()).collect())
    }

    fn scope(ps: &[&str]) -> Scope {
        Scope::Projects(ps.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn merge_is_a_union() {
        let mut p = Projects::None;
        p.merge(&some(&["a"]));
        p.merge(&some(&["b"]));
        assert_eq!(p, some(&["a", "b"]));
        p.merge(&Projects::All);
        assert_eq!(p, Projects::All);
        p.merge(&some(&["c"]));
        assert_eq!(p, Projects::All);
    }

    #[test]
    fn readers_see_overlapping_scopes() {
        let mut g = Grants::default();
        g.add(Role::Reader, &some(&["a"]));
        let p = Principal::granted("r", g);
        assert!(p.may_see(&scope(&["a", "b"])));
        assert!(p.may_see(&Scope::AllProjects));
        assert!(!p.may_see(&scope(&["b"])));
        assert!(!p.sees_everything());
        assert!(p.require(Role::Reader, "a").is_ok());
        assert!(p.require(Role::Reader, "b").is_err());
        assert!(p.require(Role::Credentials, "a").is_err());
    }

    #[test]
    fn admins_manage_only_scopes_inside_their_projects() {
        let mut g = Grants::default();
        g.add(Role::Admin, &some(&["a", "b"]));
        let p = Principal::granted("adm", g);
        assert!(p.require_manage(&scope(&["a"])).is_ok());
        assert!(p.require_manage(&scope(&["a", "b"])).is_ok());
        assert!(p.require_manage(&scope(&["a", "c"])).is_err());
        assert!(p.require_manage(&Scope::AllProjects).is_err());
        assert!(p.require_all(Role::Admin, "set the default").is_err());
        // An admin of a project sees its registries.
        assert!(p.may_see(&scope(&["b"])));
    }

    #[test]
    fn nothing_granted_means_nothing_allowed() {
        let p = Principal::granted("nobody", Grants::default());
        assert!(!p.may_see(&Scope::AllProjects));
        assert_eq!(p.visible_projects(), Some(BTreeSet::new()));
        let e = p.require(Role::Reader, "a").expect_err("denied");
        assert!(matches!(e, Error::PermissionDenied(m) if m.contains("`nobody`")));
    }

    #[test]
    fn unrestricted_may_do_everything() {
        let p = Principal::unrestricted("dev");
        assert!(p.require_manage(&Scope::AllProjects).is_ok());
        assert!(p.require_all(Role::Admin, "x").is_ok());
        assert!(p.sees_everything());
        assert_eq!(p.visible_projects(), None);
    }
}
