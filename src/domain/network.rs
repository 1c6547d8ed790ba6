//! How berth reaches a registry over the network: an optional HTTP(S)
//! forward proxy and a request budget (rate and concurrency).

use crate::error::FieldViolation;

/// Limits on the proxy settings.
pub mod limits {
    /// Characters in a proxy URL.
    pub const URL: usize = 512;
    /// Characters in a proxy username.
    pub const USERNAME: usize = 256;
    /// Bytes in a proxy password.
    pub const PASSWORD: usize = 1024;
    /// Entries in a no-proxy list.
    pub const NO_PROXY: usize = 100;
    /// Characters in one no-proxy entry.
    pub const NO_PROXY_ENTRY: usize = 253;
    /// Highest requests per second.
    pub const RPS: f64 = 10_000.0;
    /// Highest concurrency cap.
    pub const CONCURRENT: u32 = 1000;
}

/// A validated proxy (its password is stored sealed, apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Normalised `scheme://host:port`.
    pub url: String,
    /// Basic-auth username ("" for none).
    pub username: String,
    /// Hosts reached directly.
    pub no_proxy: Vec<String>,
}

/// A request budget; zero fields mean unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Requests per second, in millionths (so that the spec stays `Eq`).
    pub micro_rps: u64,
    /// Most requests in flight.
    pub max_concurrent: u32,
}

impl Budget {
    /// Requests per second (0: unlimited).
    pub fn requests_per_second(&self) -> f64 {
        self.micro_rps as f64 / 1e6
    }

    /// Whether the budget limits anything.
    pub fn is_unlimited(&self) -> bool {
        self.micro_rps == 0 && self.max_concurrent == 0
    }
}

/// Validates the proxy fields; `None` when no proxy is configured.
/// `has_password` says whether a password is given or stays stored.
pub fn validate_proxy(
    url: &str,
    username: &str,
    has_password: bool,
    password_len: usize,
    no_proxy: &[String],
    prefix: &str,
    v: &mut Vec<FieldViolation>,
) -> Option<Proxy> {
    let f = |name: &str| format!("{prefix}.proxy.{name}");
    let url = url.trim();
    let username = username.trim();
    if url.is_empty() {
        if !username.is_empty() || has_password || !no_proxy.is_empty() {
            v.push(FieldViolation::new(
                f("url"),
                "is required when a proxy username, password or no_proxy is set",
            ));
        }
        return None;
    }
    let before = v.len();
    let normalised = match normalise_url(url) {
        Ok(u) => Some(u),
        Err(why) => {
            v.push(FieldViolation::new(f("url"), why));
            None
        }
    };
    if username.chars().count() > limits::USERNAME
        || username.chars().any(|c| c.is_control() || c == ':')
    {
        v.push(FieldViolation::new(
            f("username"),
            format!(
                "must be at most {} characters, without `:` or control characters",
                limits::USERNAME
            ),
        ));
    }
    if has_password && username.is_empty() {
        v.push(FieldViolation::new(
            f("password"),
            "needs proxy.username: basic authentication sends both",
        ));
    }
    if password_len > limits::PASSWORD {
        v.push(FieldViolation::new(
            f("password"),
            format!("must be at most {} bytes", limits::PASSWORD),
        ));
    }
    if no_proxy.len() > limits::NO_PROXY {
        v.push(FieldViolation::new(
            f("no_proxy"),
            format!("must list at most {} entries", limits::NO_PROXY),
        ));
    }
    let mut hosts = Vec::new();
    for (i, entry) in no_proxy.iter().enumerate() {
        let e = entry.trim().to_ascii_lowercase();
        let ok = !e.is_empty()
            && e.len() <= limits::NO_PROXY_ENTRY
            && e.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b".-_:*/[]".contains(&c));
        if ok {
            hosts.push(e);
        } else {
            v.push(FieldViolation::new(
                format!("{prefix}.proxy.no_proxy[{i}]"),
                "must be a host, `.domain`, IP address, CIDR or `*`",
            ));
        }
    }
    hosts.sort();
    hosts.dedup();
    match normalised {
        Some(url) if v.len() == before => Some(Proxy {
            url,
            username: username.to_string(),
            no_proxy: hosts,
        }),
        _ => None,
    }
}

/// `http(s)://host[:port]` → `http(s)://host:port` (lowercase host,
/// explicit port).
fn normalise_url(raw: &str) -> Result<String, String> {
    const FORM: &str = "must be `http://host:port` or `https://host:port`";
    if raw.len() > limits::URL {
        return Err(format!("must be at most {} characters", limits::URL));
    }
    let lower = raw.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!("{FORM}: the scheme must be http or https"));
    }
    let u = url::Url::parse(raw).map_err(|e| format!("{FORM}: {e}"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "{FORM}; put the credentials in proxy.username and proxy.password"
        ));
    }
    if !(u.path().is_empty() || u.path() == "/") || u.query().is_some() || u.fragment().is_some() {
        return Err(format!("{FORM}, without a path, query or fragment"));
    }
    // The url crate keeps a trailing `/` as the path; the raw text must
    // not carry anything after the authority but that.
    let after_scheme = &raw[raw.find("://").map_or(0, |i| i + 3)..];
    if after_scheme.trim_end_matches('/').contains('/') {
        return Err(format!("{FORM}, without a path"));
    }
    let host = u.host_str().filter(|h| !h.is_empty()).ok_or(FORM)?;
    let port = u.port_or_known_default().ok_or(FORM)?;
    Ok(format!("{}://{host}:{port}", u.scheme()))
}

/// Validates a budget: finite, non-negative, bounded.
pub fn validate_budget(
    rps: f64,
    max_concurrent: u32,
    prefix: &str,
    v: &mut Vec<FieldViolation>,
) -> Budget {
    let mut micro_rps = 0;
    if !rps.is_finite() || !(0.0..=limits::RPS).contains(&rps) {
        v.push(FieldViolation::new(
            format!("{prefix}.budget.requests_per_second"),
            format!("must be between 0 (unlimited) and {}", limits::RPS),
        ));
    } else if rps > 0.0 {
        // At least one millionth: a positive rate never rounds to
        // "unlimited".
        micro_rps = ((rps * 1e6).round() as u64).max(1);
    }
    if max_concurrent > limits::CONCURRENT {
        v.push(FieldViolation::new(
            format!("{prefix}.budget.max_concurrent"),
            format!("must be at most {} (0 means unlimited)", limits::CONCURRENT),
        ));
    }
    Budget {
        micro_rps,
        max_concurrent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(url: &str) -> (Option<Proxy>, Vec<String>) {
        let mut v = Vec::new();
        let p = validate_proxy(url, "", false, 0, &[], "r", &mut v);
        (p, v.into_iter().map(|v| v.field).collect())
    }

    #[test]
    fn proxy_urls() {
        for (raw, want) in [
            (
                "http://Proxy.example.com:3128",
                "http://proxy.example.com:3128",
            ),
            ("https://proxy.example.com", "https://proxy.example.com:443"),
            ("http://10.0.0.1:8080/", "http://10.0.0.1:8080"),
            ("http://[::1]:3128", "http://[::1]:3128"),
        ] {
            assert_eq!(proxy(raw).0.expect(raw).url, want);
        }
        for bad in [
            "proxy.example.com:3128",
            "socks5://p:1080",
            "http://user:pw@p:3128",
            "http://p:3128/path",
            "http://p:3128?x=1",
            "http://",
        ] {
            assert_eq!(proxy(bad).1, ["r.proxy.url"], "{bad}");
        }
    }

    #[test]
    fn proxy_fields_need_a_url_and_a_password_needs_a_username() {
        let mut v = Vec::new();
        assert!(validate_proxy("", "u", false, 0, &[], "r", &mut v).is_none());
        assert_eq!(v[0].field, "r.proxy.url");
        let mut v = Vec::new();
        validate_proxy("http://p:1", "", true, 3, &[], "r", &mut v);
        assert_eq!(v[0].field, "r.proxy.password");
        let mut v = Vec::new();
        let p = validate_proxy(
            "http://p:1",
            "u",
            true,
            3,
            &["b.example".into(), ".A.example".into(), "bad host".into()],
            "r",
            &mut v,
        );
        assert!(p.is_none());
        assert_eq!(v[0].field, "r.proxy.no_proxy[2]");
        let mut v = Vec::new();
        let p = validate_proxy(
            "http://p:1",
            "u",
            true,
            3,
            &["b.example".into(), ".A.example".into()],
            "r",
            &mut v,
        )
        .expect("valid");
        assert_eq!(p.no_proxy, [".a.example", "b.example"]);
    }

    #[test]
    fn budgets() {
        let mut v = Vec::new();
        let b = validate_budget(0.5, 2, "r", &mut v);
        assert!(v.is_empty());
        assert_eq!(b.micro_rps, 500_000);
        assert_eq!(b.requests_per_second(), 0.5);
        assert!(validate_budget(0.0, 0, "r", &mut v).is_unlimited());
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e9] {
            let mut v = Vec::new();
            validate_budget(bad, 0, "r", &mut v);
            assert_eq!(v[0].field, "r.budget.requests_per_second");
        }
        let mut v = Vec::new();
        validate_budget(1.0, 5000, "r", &mut v);
        assert_eq!(v[0].field, "r.budget.max_concurrent");
    }
}
