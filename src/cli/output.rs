//! Printing answers as tables or JSON.

use serde_json::{Value, json};

use super::Format;
use crate::pb;

/// Prints in the chosen format.
pub struct Output {
    format: Format,
}

/// A gRPC error as a one-line CLI error, with field violations.
pub fn status(s: tonic::Status) -> anyhow::Error {
    use tonic_types::StatusExt;
    let mut msg = format!("{:?}: {}", s.code(), s.message());
    if let Some(b) = s.get_details_bad_request() {
        for v in b.field_violations {
            msg.push_str(&format!("\n  {}: {}", v.field, v.description));
        }
    }
    anyhow::anyhow!(msg)
}

fn provider_name(v: i32) -> &'static str {
    pb::Provider::try_from(v)
        .map(|p| p.as_str_name())
        .unwrap_or("UNKNOWN")
}

fn ts(t: &Option<prost_types::Timestamp>) -> Value {
    match t {
        Some(t) => chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
            .map(|d| Value::String(d.to_rfc3339()))
            .unwrap_or(Value::Null),
        None => Value::Null,
    }
}

fn registry_json(r: &pb::Registry) -> Value {
    let scope = r.scope.clone().unwrap_or_default();
    let tls = r.tls.clone().unwrap_or_default();
    json!({
        "id": r.id, "provider": provider_name(r.provider), "address": r.address,
        "namespace": r.namespace, "region": r.region, "repository": r.repository,
        "username": r.username, "hasSecret": r.has_secret, "isDefault": r.is_default,
        "scope": {"allProjects": scope.all_projects, "projects": scope.projects},
        "tls": {"verify": tls.verify.unwrap_or(true), "caCertPem": tls.ca_cert_pem},
        "createTime": ts(&r.create_time), "updateTime": ts(&r.update_time),
        "updatedBy": r.updated_by, "etag": r.etag,
        "credentialMode": pb::CredentialMode::try_from(r.credential_mode)
            .map(|m| m.as_str_name().to_owned())
            .unwrap_or_else(|_| r.credential_mode.to_string()),
        "instanceId": r.instance_id,
        // The proxy password is never returned; only whether one is stored.
        "proxy": r.proxy.as_ref().map(|p| json!({
            "url": p.url, "username": p.username, "hasPassword": p.has_password,
            "noProxy": p.no_proxy,
        })),
        "budget": r.budget.as_ref().map(|b| json!({
            "requestsPerSecond": b.requests_per_second, "maxConcurrent": b.max_concurrent,
        })),
    })
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

impl Output {
    /// Output in `format`.
    pub fn new(format: Format) -> Self {
        Output { format }
    }

    fn json(&self, v: Value) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(&v)?);
        Ok(())
    }

    /// Several registries.
    pub fn registries(&self, rs: &[pb::Registry]) -> anyhow::Result<()> {
        if self.format == Format::Json {
            return self.json(Value::Array(rs.iter().map(registry_json).collect()));
        }
        let rows = rs
            .iter()
            .map(|r| {
                let scope = r.scope.clone().unwrap_or_default();
                vec![
                    r.id.clone(),
                    provider_name(r.provider).to_string(),
                    r.address.clone(),
                    r.namespace.clone(),
                    if scope.all_projects {
                        "*".into()
                    } else {
                        scope.projects.join(",")
                    },
                    if r.is_default {
                        "yes".into()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        table(
            &[
                "ID",
                "PROVIDER",
                "ADDRESS",
                "NAMESPACE",
                "PROJECTS",
                "DEFAULT",
            ],
            rows,
        );
        Ok(())
    }

    /// One registry.
    pub fn registry(&self, r: &pb::Registry) -> anyhow::Result<()> {
        if self.format == Format::Json {
            return self.json(registry_json(r));
        }
        self.registries(std::slice::from_ref(r))
    }

    /// A resolved reference.
    pub fn resolved(&self, r: &pb::ResolveImageResponse) -> anyhow::Result<()> {
        if self.format == Format::Json {
            return self.json(json!({"reference": r.reference, "registryId": r.registry_id, "tag": r.tag, "digest": r.digest}));
        }
        println!("{}", r.reference);
        Ok(())
    }

    /// Tags, one per line.
    pub fn tags(&self, tags: &[String]) -> anyhow::Result<()> {
        if self.format == Format::Json {
            return self.json(json!(tags));
        }
        for t in tags {
            println!("{t}");
        }
        Ok(())
    }

    /// Credentials (the table hides the password).
    pub fn credentials(&self, r: &pb::GetCredentialsResponse) -> anyhow::Result<()> {
        if self.format == Format::Json {
            return self.json(json!({
                "registryId": r.registry_id, "username": r.username, "password": r.password,
                "serverAddress": r.server_address, "expireTime": ts(&r.expire_time),
                "dockerConfigJson": r.docker_config_json, "kubernetesSecretYaml": r.kubernetes_secret_yaml,
                "insecure": r.insecure, "caCertPem": r.ca_cert_pem,
            }));
        }
        let expires = ts(&r.expire_time).as_str().unwrap_or("never").to_string();
        table(
            &["SERVER", "USERNAME", "PASSWORD", "EXPIRES", "INSECURE"],
            vec![vec![
                r.server_address.clone(),
                r.username.clone(),
                "(use -o json or --only)".into(),
                expires,
                r.insecure.to_string(),
            ]],
        );
        Ok(())
    }

    /// A connection report.
    pub fn connection(&self, r: &pb::TestConnectionResponse) -> anyhow::Result<()> {
        if self.format == Format::Json {
            return self.json(json!({
                "reachable": r.reachable, "tlsVerified": r.tls_verified, "tlsError": r.tls_error,
                "credentialsAccepted": r.credentials_accepted, "latencyMs": r.latency_ms, "message": r.message,
            }));
        }
        table(
            &["REACHABLE", "TLS", "CREDENTIALS", "LATENCY", "MESSAGE"],
            vec![vec![
                r.reachable.to_string(),
                if r.tls_verified {
                    "verified".into()
                } else if r.tls_error.is_empty() {
                    "not verified".into()
                } else {
                    r.tls_error.clone()
                },
                if r.credentials_accepted {
                    "accepted".into()
                } else {
                    "rejected".into()
                },
                format!("{} ms", r.latency_ms),
                r.message.clone(),
            ]],
        );
        Ok(())
    }
}
