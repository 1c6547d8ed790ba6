//! Registry addresses, normalised once at the edge.
//!
//! Rules (documented in the README):
//! - The scheme is optional; `https` is assumed. `http://` means plain HTTP
//!   and is kept in the normalised form; any other scheme is rejected.
//! - The host is lowercased; IPv6 literals must be in brackets.
//! - The port is kept, except the scheme's default (443, 80), which is
//!   dropped so `r.example.com:443` and `r.example.com` are one registry.
//! - A trailing `/` is removed. Any other path, query, fragment or user
//!   info is rejected: a namespace belongs in `namespace`, credentials in
//!   `username`/`secret`.

use std::fmt;
use std::net::Ipv6Addr;

/// How berth talks to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// TLS (the default).
    Https,
    /// Plain HTTP; only when the address says `http://`.
    Http,
}

/// A validated, normalised registry address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAddress {
    scheme: Scheme,
    host: String,
    port: Option<u16>,
}

/// Docker Hub's other names, all meaning `docker.io`.
const DOCKER_HUB_ALIASES: [&str; 5] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
    "index.docker.io/v1",
];

impl RegistryAddress {
    /// Parses and normalises an address. The error says what is wrong.
    pub fn parse(input: &str) -> Result<Self, String> {
        let s = input.trim();
        if s.is_empty() {
            return Err("is required".into());
        }
        if s.len() > 300 {
            return Err("must be at most 300 characters".into());
        }
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("must not contain spaces or control characters".into());
        }
        let lower = s.to_ascii_lowercase();
        let (scheme, rest) = if let Some(r) = lower.strip_prefix("https://") {
            (Scheme::Https, &s[s.len() - r.len()..])
        } else if let Some(r) = lower.strip_prefix("http://") {
            (Scheme::Http, &s[s.len() - r.len()..])
        } else if lower.contains("://") {
            return Err("scheme must be https:// or http://".into());
        } else {
            (Scheme::Https, s)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if DOCKER_HUB_ALIASES.contains(&rest.to_ascii_lowercase().as_str()) {
            return Ok(Self::docker_hub());
        }
        if rest.contains(['?', '#']) {
            return Err("must not contain a query or fragment".into());
        }
        if rest.contains('@') {
            return Err("must not contain credentials; use username and secret".into());
        }
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !path.is_empty() {
            return Err(format!(
                "must be a host with an optional port, without a path (got path `{path}`); put the namespace in `namespace`"
            ));
        }
        let (host, port) = split_host_port(hostport)?;
        let port = match (scheme, port) {
            (Scheme::Https, Some(443)) | (Scheme::Http, Some(80)) => None,
            (_, p) => p,
        };
        // Checked again without the default port, or `index.docker.io:443`
        // would normalise to `index.docker.io`, which reads back as docker.io.
        if port.is_none() && DOCKER_HUB_ALIASES.contains(&host.as_str()) {
            return Ok(Self::docker_hub());
        }
        Ok(RegistryAddress { scheme, host, port })
    }

    /// The canonical Docker Hub address.
    pub fn docker_hub() -> Self {
        RegistryAddress {
            scheme: Scheme::Https,
            host: "docker.io".into(),
            port: None,
        }
    }

    /// `host[:port]`, as used in image references and docker auth keys.
    pub fn host_port(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// The host alone, lowercase (IPv6 literals in brackets), no port.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The scheme berth uses to reach the registry.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
}

impl fmt::Display for RegistryAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scheme == Scheme::Http {
            f.write_str("http://")?;
        }
        f.write_str(&self.host_port())
    }
}

fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or("has an IPv6 literal without a closing `]`")?;
        let ip: Ipv6Addr = rest[..end]
            .parse()
            .map_err(|_| format!("`{}` is not a valid IPv6 address", &rest[..end]))?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("has unexpected text after the IPv6 literal".into()),
        };
        (format!("[{ip}]"), port)
    } else {
        if s.matches(':').count() > 1 {
            return Err("IPv6 addresses must be written in brackets, e.g. `[::1]:5000`".into());
        }
        let (h, p) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        validate_hostname(h)?;
        (h.to_ascii_lowercase(), p)
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => Some(n),
            _ => return Err(format!("port `{p}` must be a number from 1 to 65535")),
        },
    };
    Ok((host, port))
}

fn validate_hostname(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("host is empty".into());
    }
    if h.len() > 253 {
        return Err("host must be at most 253 characters".into());
    }
    for label in h.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("host `{h}` is not a valid host name"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        let cases = [
            ("plain host", "registry.example.com", "registry.example.com"),
            (
                "https scheme dropped",
                "https://Registry.Example.com/",
                "registry.example.com",
            ),
            (
                "port kept",
                "https://r.example.com:5000",
                "r.example.com:5000",
            ),
            (
                "default https port dropped",
                "r.example.com:443",
                "r.example.com",
            ),
            ("http kept", "HTTP://10.0.0.5:5000/", "http://10.0.0.5:5000"),
            (
                "default http port dropped",
                "http://r.local:80",
                "http://r.local",
            ),
            ("ipv6 with port", "[::1]:5000", "[::1]:5000"),
            ("ipv6 normalised", "https://[0:0::1]", "[::1]"),
            ("localhost", "localhost:5000", "localhost:5000"),
            ("whitespace trimmed", "  r.example.com \n", "r.example.com"),
            (
                "docker hub v1 url",
                "https://index.docker.io/v1/",
                "docker.io",
            ),
            ("docker hub api host", "registry-1.docker.io", "docker.io"),
            (
                "docker hub with default port",
                "https://index.docker.io:443/",
                "docker.io",
            ),
        ];
        for (name, input, want) in cases {
            let got = RegistryAddress::parse(input).map(|a| a.to_string());
            assert_eq!(got.as_deref(), Ok(want), "{name}");
        }
    }

    #[test]
    fn rejects() {
        let cases = [
            ("empty", ""),
            ("path", "r.example.com/team"),
            ("ftp", "ftp://r.example.com"),
            ("userinfo", "https://u:p@r.example.com"),
            ("bad port", "r.example.com:99999"),
            ("port zero", "r.example.com:0"),
            ("signed port", "r.example.com:+5"),
            ("bare ipv6", "::1"),
            ("unclosed ipv6", "[::1:5000"),
            ("bad label", "-r.example.com"),
            ("underscore", "r_x.example.com"),
            ("query", "r.example.com?x=1"),
            ("space inside", "r.exa mple.com"),
            ("empty label", "r..example.com"),
        ];
        for (name, input) in cases {
            assert!(RegistryAddress::parse(input).is_err(), "{name}: {input:?}");
        }
    }

    #[test]
    fn host_port_has_no_scheme() {
        let a = RegistryAddress::parse("http://r.local:5000").expect("valid");
        assert_eq!(a.host_port(), "r.local:5000");
        assert_eq!(a.scheme(), Scheme::Http);
    }
}
