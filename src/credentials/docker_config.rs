//! Docker `config.json` and Kubernetes `kubernetes.io/dockerconfigjson`
//! secrets, in the exact format docker and the kubelet read.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

/// A docker `config.json` holding one login per server:
/// `{"auths": {"<server>": {"auth": base64("user:password")}}}`,
/// pretty-printed with servers in sorted order so that the same input always
/// gives the same bytes (no needless secret updates).
///
/// Each tuple is `(server key, username, password)`; a later tuple replaces
/// an earlier one with the same server key. Only `auth` is written, as
/// `docker login` does. The result contains the passwords: never log it.
pub fn docker_config_json(auths: &[(&str, &str, &str)]) -> String {
    let sorted: BTreeMap<&str, (&str, &str)> = auths
        .iter()
        .map(|&(server, user, password)| (server, (user, password)))
        .collect();
    // Built in sorted order, so the output is sorted whether or not
    // serde_json's `preserve_order` feature is enabled in the build.
    let mut servers = serde_json::Map::new();
    for (server, (user, password)) in sorted {
        let auth = B64.encode(format!("{user}:{password}"));
        servers.insert(server.to_owned(), serde_json::json!({ "auth": auth }));
    }
    let config = serde_json::json!({ "auths": servers });
    // `{:#}` is serde_json's infallible pretty printer.
    format!("{config:#}")
}

/// The `auths` keys one login is written under, so every client finds it.
/// A registry is looked up by its `host[:port]`. Docker Hub has several
/// names and each tool asks for a different one: the docker CLI and crane
/// (go-containerregistry) `https://index.docker.io/v1/`, skopeo, podman and
/// buildah (containers/image) `docker.io` then the legacy key, older tools
/// `index.docker.io`, and containerd's CRI plugin the API host
/// `registry-1.docker.io`. Writing all of them costs a few bytes and saves
/// "pull access denied" in whichever tool a job uses.
pub fn server_keys(provider: crate::domain::Provider, host: &str) -> Vec<String> {
    if provider == crate::domain::Provider::DockerHub || host == "docker.io" {
        return [
            "docker.io",
            "https://index.docker.io/v1/",
            "index.docker.io",
            "registry-1.docker.io",
        ]
        .map(str::to_owned)
        .to_vec();
    }
    vec![host.to_owned()]
}

/// A `v1` Kubernetes `Secret` of type `kubernetes.io/dockerconfigjson`
/// carrying `docker_config_json`, labelled as managed by berth, as YAML.
///
/// Every string value is a double-quoted YAML scalar, so names or
/// namespaces with YAML-significant characters cannot change the document's
/// structure. The result contains the passwords: never log it.
pub fn kubernetes_secret_yaml(name: &str, namespace: &str, docker_config_json: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Secret\n\
         metadata:\n\
         \x20 name: {name}\n\
         \x20 namespace: {namespace}\n\
         \x20 labels:\n\
         \x20   app.kubernetes.io/managed-by: \"berth\"\n\
         type: kubernetes.io/dockerconfigjson\n\
         data:\n\
         \x20 .dockerconfigjson: {data}\n",
        name = yaml_quote(name),
        namespace = yaml_quote(namespace),
        data = yaml_quote(&B64.encode(docker_config_json)),
    )
}

/// A YAML double-quoted scalar. Only printable characters (YAML 1.2
/// `c-printable`, minus the BOM) are written as they are; `"` and `\` and
/// everything else are escaped, so any input stays one scalar.
fn yaml_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fefe}' => out.push(c),
            '\u{ff00}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}' => out.push(c),
            // Writing to a String cannot fail.
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Longest Kubernetes object name we produce: a DNS-1123 label, so the name
/// is also valid where only labels are accepted.
const MAX_NAME: usize = 63;

/// A deterministic Kubernetes secret name for a registry:
/// `berth-<host, sanitised>-<first 8 hex of sha256(registry_id)>`.
///
/// The name is lowercase `[a-z0-9-]`, starts and ends with an alphanumeric
/// and is at most 63 characters. The host part is only for people reading
/// `kubectl get secrets`; uniqueness comes from the registry id hash, so two
/// registries on one host get different names.
pub fn secret_name(registry_id: &str, host: &str) -> String {
    let hash = hex::encode(Sha256::digest(registry_id.as_bytes()));
    let hash = &hash[..8];
    let mut sanitised = String::with_capacity(host.len());
    for c in host.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            sanitised.push(c);
        } else if !sanitised.is_empty() && !sanitised.ends_with('-') {
            // Dots, colons, brackets and anything else become one dash.
            sanitised.push('-');
        }
    }
    // "berth-" + host + "-" + 8 hex.
    let budget = MAX_NAME - "berth-".len() - 1 - hash.len();
    sanitised.truncate(budget); // ASCII only, so any index is a boundary
    let host_part = sanitised.trim_end_matches('-');
    if host_part.is_empty() {
        format!("berth-{hash}")
    } else {
        format!("berth-{host_part}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_is_standard_sorted_and_deterministic() {
        let a = docker_config_json(&[
            ("registry.example.com:5000", "bob", "p:w\"d"),
            ("123.dkr.ecr.eu-west-1.amazonaws.com", "AWS", "tok"),
        ]);
        let b = docker_config_json(&[
            ("123.dkr.ecr.eu-west-1.amazonaws.com", "AWS", "tok"),
            ("registry.example.com:5000", "bob", "p:w\"d"),
        ]);
        assert_eq!(a, b);
        let v: serde_json::Value = serde_json::from_str(&a).expect("valid JSON");
        let auths = v["auths"].as_object().expect("auths object");
        let keys: Vec<&String> = auths.keys().collect();
        assert_eq!(
            keys,
            [
                "123.dkr.ecr.eu-west-1.amazonaws.com",
                "registry.example.com:5000"
            ]
        );
        let entry = auths["registry.example.com:5000"]
            .as_object()
            .expect("entry");
        assert_eq!(entry.len(), 1, "only `auth`: {entry:?}");
        let auth = B64
            .decode(entry["auth"].as_str().expect("str"))
            .expect("b64");
        assert_eq!(auth, b"bob:p:w\"d");
        assert!(a.contains('\n'), "pretty-printed");
        assert_eq!(docker_config_json(&[]), "{\n  \"auths\": {}\n}");
    }

    /// Minimal reader for the YAML subset we emit: `key: value` lines with
    /// two-space indents, values plain or double-quoted. Our escapes are
    /// JSON-compatible below U+10000, so serde_json unquotes them.
    fn read_yaml(doc: &str) -> Vec<(String, String)> {
        let mut path: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for line in doc.lines() {
            let indent = line.len() - line.trim_start().len();
            assert_eq!(indent % 2, 0, "{line:?}");
            path.truncate(indent / 2);
            let (key, value) = line.trim_start().split_once(':').expect("key: value");
            let value = value.trim();
            if value.is_empty() {
                path.push(key.to_owned());
                continue;
            }
            let value = if value.starts_with('"') {
                serde_json::from_str::<String>(value).expect("quoted scalar")
            } else {
                value.to_owned()
            };
            let mut full = path.clone();
            full.push(key.to_owned());
            out.push((full.join("/"), value));
        }
        out
    }

    #[test]
    fn kubernetes_secret_round_trips() {
        let config = docker_config_json(&[("r.example.com", "u", "p")]);
        let yaml = kubernetes_secret_yaml("berth-r-example-com-12345678", "ci-jobs", &config);
        let fields = read_yaml(&yaml);
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{k} missing in\n{yaml}"))
        };
        assert_eq!(get("apiVersion"), "v1");
        assert_eq!(get("kind"), "Secret");
        assert_eq!(get("type"), "kubernetes.io/dockerconfigjson");
        assert_eq!(get("metadata/name"), "berth-r-example-com-12345678");
        assert_eq!(get("metadata/namespace"), "ci-jobs");
        assert_eq!(get("metadata/labels/app.kubernetes.io/managed-by"), "berth");
        let data = B64.decode(get("data/.dockerconfigjson")).expect("base64");
        assert_eq!(String::from_utf8(data).expect("utf8"), config);
        assert_eq!(fields.len(), 7);
    }

    #[test]
    fn yaml_quoting_keeps_hostile_values_in_one_scalar() {
        let hostile = "a\"b\\c: #d\n  kind: Evil\u{7f}\u{85}\u{feff}é";
        let yaml = kubernetes_secret_yaml(hostile, "ns", "{}");
        assert_eq!(yaml.lines().count(), 10, "{yaml}");
        let fields = read_yaml(&yaml);
        assert!(fields.contains(&("metadata/name".into(), hostile.into())));
        assert!(fields.contains(&("kind".into(), "Secret".into())));
        assert_eq!(yaml_quote("\u{1f600}"), "\"\u{1f600}\"");
        assert_eq!(yaml_quote("\u{1}"), "\"\\u0001\"");
    }

    fn assert_dns_label(name: &str) {
        assert!(name.len() <= 63, "{name} too long");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
        assert!(
            name.starts_with(|c: char| c.is_ascii_alphanumeric()),
            "{name}"
        );
        assert!(
            name.ends_with(|c: char| c.is_ascii_alphanumeric()),
            "{name}"
        );
    }

    #[test]
    fn secret_names_are_dns_labels() {
        // $ printf %s reg-1 | sha256sum | cut -c1-8
        let hash = &hex::encode(Sha256::digest(b"reg-1"))[..8];
        assert_eq!(
            secret_name("reg-1", "Registry.Example.COM:5000"),
            format!("berth-registry-example-com-5000-{hash}")
        );
        assert_eq!(
            secret_name("reg-1", "[2001:db8::1]:5000"),
            format!("berth-2001-db8-1-5000-{hash}")
        );
        assert_eq!(secret_name("reg-1", "[::1]"), format!("berth-1-{hash}"));
        assert_eq!(secret_name("reg-1", "[::]:80"), format!("berth-80-{hash}"));
        assert_eq!(secret_name("reg-1", ""), format!("berth-{hash}"));
        let long = format!("{}.example.com", "a".repeat(100));
        let dashy = format!("{}.example.com", "a-".repeat(60));
        for host in [
            long.as_str(),
            &dashy,
            "ÄÖ.test",
            "--x--",
            "a.b-.c",
            "[fe80::1%eth0]:443",
        ] {
            assert_dns_label(&secret_name("reg-1", host));
        }
        assert_eq!(secret_name("reg-1", &long).len(), 63);
        assert_ne!(secret_name("reg-1", "h"), secret_name("reg-2", "h"));
        assert_eq!(secret_name("reg-1", "h"), secret_name("reg-1", "h"));
    }

    #[test]
    fn docker_hub_is_written_under_every_name_tools_look_up() {
        use crate::domain::Provider;
        let keys = server_keys(Provider::DockerHub, "docker.io");
        for k in [
            "docker.io",
            "https://index.docker.io/v1/",
            "index.docker.io",
            "registry-1.docker.io",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
        // An OTHER registry that is Docker Hub gets the same.
        assert_eq!(server_keys(Provider::Other, "docker.io"), keys);
        assert_eq!(
            server_keys(Provider::Harbor, "harbor.example.com:8443"),
            ["harbor.example.com:8443"]
        );
        let json = docker_config_json(
            &keys
                .iter()
                .map(|k| (k.as_str(), "u", "p"))
                .collect::<Vec<_>>(),
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(parsed["auths"].as_object().map(|o| o.len()), Some(4));
    }
}
