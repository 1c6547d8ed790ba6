//! `WWW-Authenticate` challenges of the Docker Registry v2 API.

/// An authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="…"`: send the username and password.
    Basic,
    /// `Bearer realm="…",service="…",scope="…"`: get a token from `realm`.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter, if given.
        service: Option<String>,
        /// `scope` parameter, if given.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value. Unknown schemes give `None`.
pub fn parse(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = params(rest);
            let get = |k: &str| {
                params
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            };
            Some(Challenge::Bearer {
                realm: get("realm")?,
                service: get("service"),
                scope: get("scope"),
            })
        }
        _ => None,
    }
}

/// `k="v", k2=v2` pairs; quoted values may hold commas and escaped quotes.
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((name.trim().to_string(), value.trim().to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let cases = [
            (
                "basic",
                r#"Basic realm="Registry Realm""#,
                Some(Challenge::Basic),
            ),
            (
                "bearer full",
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
                Some(Challenge::Bearer {
                    realm: "https://auth.docker.io/token".into(),
                    service: Some("registry.docker.io".into()),
                    scope: Some("repository:samalba/my-app:pull,push".into()),
                }),
            ),
            (
                "bearer spaced, unquoted",
                r#"bearer realm=https://r/t , service="s""#,
                Some(Challenge::Bearer {
                    realm: "https://r/t".into(),
                    service: Some("s".into()),
                    scope: None,
                }),
            ),
            ("bearer without realm", r#"Bearer service="s""#, None),
            ("unknown", "Negotiate abc", None),
            ("empty", "", None),
        ];
        for (name, input, want) in cases {
            assert_eq!(parse(input), want, "{name}");
        }
    }
}
