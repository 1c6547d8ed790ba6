//! Container image references (`[domain/]path[:tag][@digest]`), parsed and
//! normalised the way docker, containerd and skopeo do it: the grammar of the
//! CNCF `distribution/reference` Go package, `ParseNormalizedNamed` followed
//! by `TagNameOnly`, with digests checked like `go-digest`.
//!
//! The grammar is hand-written instead of using regexes so every error can say
//! what is wrong and at which byte of the input.
//!
//! Deliberate differences from the Go code; each one only rejects more:
//! - Length: the whole normalised name (`domain/path`) must be at most 255
//!   characters. distribution/reference v0.6+ counts only the path, but
//!   containerd's copy and older docker count the whole name, so this is the
//!   limit every client accepts.
//! - A first component that looks like a domain (has `.`/`:`, is `localhost`
//!   or has uppercase) but is not a valid one, e.g. `a_b.com/app`, is an
//!   error. Go silently re-reads it as a path with an *empty* domain.
//! - Whitespace, control and non-ASCII characters get their own error; Go
//!   reports them as a generic "invalid reference format".
//! - [`ImageReference::familiar`] keeps `docker.io/` when dropping it would
//!   make the path's first component read as a domain (`docker.io/a.b/c`);
//!   Go's `FamiliarString` drops it and the result names another registry.

use std::fmt;
use std::str::FromStr;

/// Registry used when a reference names none (Docker Hub).
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's old name, rewritten to [`DEFAULT_DOMAIN`].
pub const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Namespace of Docker Hub's official images (`nginx` is `library/nginx`).
pub const OFFICIAL_REPO_PREFIX: &str = "library/";
/// Tag added when a reference has neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// Maximum length of the normalised `domain/path`.
pub const NAME_MAX_LEN: usize = 255;
/// Maximum length of a tag.
pub const TAG_MAX_LEN: usize = 128;

/// Digest algorithms docker accepts (those go-digest registers), with the
/// exact number of lowercase hex characters each one needs.
const DIGEST_ALGORITHMS: [(&str, usize); 3] = [("sha256", 64), ("sha384", 96), ("sha512", 128)];

/// Why a string is not a valid image reference. Offsets are byte offsets
/// into the string given to [`ImageReference::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The input was empty.
    #[error("image reference is empty")]
    Empty,
    /// A character no part of a reference allows.
    #[error(
        "image reference contains {found:?} at byte {offset}; whitespace, control \
         and non-ASCII characters are not allowed"
    )]
    InvalidCharacter { offset: usize, found: char },
    /// 64 lowercase hex characters alone: docker reads this as an image ID.
    #[error("{0:?} is a 64-character hex image ID, not a repository name")]
    ImageId(String),
    /// The registry part (before the first `/`) is not a valid host[:port].
    #[error("invalid registry domain {domain:?} at byte {offset}: {reason}")]
    InvalidDomain {
        domain: String,
        offset: usize,
        reason: &'static str,
    },
    /// A `/`-separated component of the repository path breaks the grammar.
    #[error("invalid repository path component {component:?} at byte {offset}: {reason}")]
    InvalidPathComponent {
        component: String,
        offset: usize,
        reason: &'static str,
    },
    /// The repository path has an uppercase letter.
    #[error("repository name {path:?} must be lowercase (uppercase letter at byte {offset})")]
    Uppercase { path: String, offset: usize },
    /// The tag (after `:`) breaks the grammar `[A-Za-z0-9_][A-Za-z0-9_.-]*`.
    #[error("invalid tag {tag:?} at byte {offset}: {reason}")]
    InvalidTag {
        tag: String,
        offset: usize,
        reason: &'static str,
    },
    /// The tag is longer than [`TAG_MAX_LEN`].
    #[error(
        "tag at byte {offset} is {len} characters long; a tag must not be more than 128 characters"
    )]
    TagTooLong { len: usize, offset: usize },
    /// The digest (after `@`) is malformed.
    #[error("invalid digest {digest:?} at byte {offset}: {reason}")]
    InvalidDigest {
        digest: String,
        offset: usize,
        reason: &'static str,
    },
    /// The digest is well formed but its algorithm is not one docker accepts.
    #[error(
        "unsupported digest algorithm {algorithm:?} at byte {offset}; \
         supported: sha256, sha384, sha512"
    )]
    UnsupportedDigest { algorithm: String, offset: usize },
    /// The normalised `domain/path` is longer than [`NAME_MAX_LEN`].
    #[error("repository name must not be more than 255 characters (normalised name is {len})")]
    NameTooLong { len: usize },
}

/// A parsed, normalised image reference.
///
/// Invariant when built by [`ImageReference::parse`]: every field is valid
/// and at least one of `tag` and `digest` is set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// Registry host with optional port, e.g. `docker.io`, `localhost:5000`.
    pub domain: String,
    /// Repository path, e.g. `library/nginx`, `team/api`.
    pub path: String,
    /// Tag, e.g. `latest`.
    pub tag: Option<String>,
    /// Digest, e.g. `sha256:<64 hex>`.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parses and normalises a reference like docker does: `nginx` becomes
    /// `docker.io/library/nginx:latest`; `index.docker.io` becomes
    /// `docker.io`. A digest-only reference gets no default tag.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if let Some((offset, found)) = s.char_indices().find(|&(_, c)| !c.is_ascii_graphic()) {
            return Err(ReferenceError::InvalidCharacter { offset, found });
        }
        // From here on the input is printable ASCII: byte offsets are char
        // offsets, and every index is a char boundary.
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ReferenceError::ImageId(s.to_owned()));
        }

        let (explicit_domain, rest, rest_off) = split_domain(s);
        let (path, suffix) = match rest.find([':', '@']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (tag, digest) = match suffix.strip_prefix(':') {
            Some(after) => match after.split_once('@') {
                Some((t, d)) => (Some(t), Some(d)),
                None => (Some(after), None),
            },
            None => (None, suffix.strip_prefix('@')),
        };

        // Same order as Go: the lowercase check comes before the grammar, so
        // `user/App` gets the helpful message, not a generic one.
        if let Some(i) = path.find(|c: char| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                path: path.to_owned(),
                offset: rest_off + i,
            });
        }
        let domain = match explicit_domain {
            Some(d) => {
                validate_domain(d)?;
                if d == LEGACY_DEFAULT_DOMAIN {
                    DEFAULT_DOMAIN
                } else {
                    d
                }
            }
            None => DEFAULT_DOMAIN,
        };
        validate_path(path, rest_off)?;
        let tag_off = rest_off + path.len() + 1;
        if let Some(t) = tag {
            validate_tag(t, tag_off)?;
        }
        if let Some(d) = digest {
            let digest_off = tag.map_or(tag_off, |t| tag_off + t.len() + 1);
            validate_digest(d, digest_off)?;
        }

        // Official images live under `library/`, but only on Docker Hub.
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{path}")
        } else {
            path.to_owned()
        };
        let len = domain.len() + 1 + path.len();
        if len > NAME_MAX_LEN {
            return Err(ReferenceError::NameTooLong { len });
        }
        let tag = match (tag, digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (t, _) => t.map(str::to_owned),
        };
        Ok(Self {
            domain: domain.to_owned(),
            path,
            tag,
            digest: digest.map(str::to_owned),
        })
    }

    /// `domain/path`, e.g. `docker.io/library/nginx`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `domain/path[:tag][@digest]`, e.g. `docker.io/library/nginx:latest`.
    pub fn fully_qualified(&self) -> String {
        self.with_suffix(self.name())
    }

    /// Docker's short form: `docker.io/` and a lone `library/` are dropped,
    /// e.g. `nginx:latest`, `user/app:1`, `ghcr.io/org/app:1`. Parsing it
    /// gives this reference back.
    pub fn familiar(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.fully_qualified();
        }
        let short = match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(name) if !name.contains('/') => name,
            _ => self.path.as_str(),
        };
        // `docker.io/a.b/c` must not become `a.b/c`: that names registry a.b.
        let first = short.split('/').next().unwrap_or_default();
        if short.contains('/') && (first.contains('.') || first == "localhost") {
            return self.fully_qualified();
        }
        self.with_suffix(short.to_owned())
    }

    fn with_suffix(&self, mut out: String) -> String {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
        out
    }
}

impl fmt::Display for ImageReference {
    /// Same as [`ImageReference::fully_qualified`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fully_qualified())
    }
}

impl FromStr for ImageReference {
    type Err = ReferenceError;

    /// Same as [`ImageReference::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Docker's `splitDockerDomain`: the first `/`-separated component is a
/// registry iff it contains `.` or `:`, is `localhost`, or has uppercase
/// (repository paths never do). A reference without `/` never names a
/// registry, so `localhost:5000` is the image `localhost`, tag `5000`.
/// Returns (domain, rest, byte offset of rest).
fn split_domain(s: &str) -> (Option<&str>, &str, usize) {
    match s.split_once('/') {
        Some((first, rest))
            if first == "localhost"
                || first.contains(['.', ':'])
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest, first.len() + 1)
        }
        _ => (None, s, 0),
    }
}

/// `host[:port]`: host is DNS-like labels `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`
/// joined by `.`, or an IPv6 literal `[hex and colons]`; port is digits.
/// The domain always starts at byte 0 of the input.
fn validate_domain(domain: &str) -> Result<(), ReferenceError> {
    let err = |offset, reason| {
        Err(ReferenceError::InvalidDomain {
            domain: domain.to_owned(),
            offset,
            reason,
        })
    };
    let (port, port_off) = if let Some(inner_and_rest) = domain.strip_prefix('[') {
        let Some((inner, after)) = inner_and_rest.split_once(']') else {
            return err(0, "IPv6 address is missing its closing ']'");
        };
        if inner.is_empty() {
            return err(1, "IPv6 address in brackets is empty");
        }
        if let Some(i) = inner.find(|c: char| !(c.is_ascii_hexdigit() || c == ':')) {
            return err(1 + i, "an IPv6 address may only contain hex digits and ':'");
        }
        (after, inner.len() + 2)
    } else {
        let (host, port) = match domain.find(':') {
            Some(i) => domain.split_at(i),
            None => (domain, ""),
        };
        let mut off = 0;
        for label in host.split('.') {
            if label.is_empty() {
                return err(off, "empty label (leading, trailing or doubled '.')");
            }
            if let Some(i) = label.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
                return err(off + i, "only letters, digits, '-' and '.' are allowed");
            }
            if label.starts_with('-') {
                return err(off, "a label must not start with '-'");
            }
            if label.ends_with('-') {
                return err(off + label.len() - 1, "a label must not end with '-'");
            }
            off += label.len() + 1;
        }
        (port, host.len())
    };
    if port.is_empty() {
        return Ok(());
    }
    let Some(digits) = port.strip_prefix(':') else {
        return err(port_off, "only ':port' may follow the IPv6 address");
    };
    if digits.is_empty() {
        return err(port_off, "port number is missing after ':'");
    }
    match digits.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => err(port_off + 1 + i, "a port must be digits only"),
        None => Ok(()),
    }
}

/// Path components joined by `/`, each `[a-z0-9]+` runs separated by `.`,
/// `_`, `__` or one or more `-`.
fn validate_path(path: &str, base: usize) -> Result<(), ReferenceError> {
    if path.is_empty() {
        return Err(ReferenceError::InvalidPathComponent {
            component: String::new(),
            offset: base,
            reason: "repository path is missing",
        });
    }
    let mut off = base;
    for component in path.split('/') {
        validate_component(component, off)?;
        off += component.len() + 1;
    }
    Ok(())
}

fn validate_component(component: &str, base: usize) -> Result<(), ReferenceError> {
    let err = |i: usize, reason| {
        Err(ReferenceError::InvalidPathComponent {
            component: component.to_owned(),
            offset: base + i,
            reason,
        })
    };
    if component.is_empty() {
        return err(0, "empty component (leading, trailing or doubled '/')");
    }
    let mut run_start = None; // where the current separator run began
    for (i, b) in component.bytes().enumerate() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => {
                if let Some(start) = run_start.take()
                    && !is_separator(component.get(start..i))
                {
                    return err(start, "separator must be '.', '_', '__' or '-'s");
                }
            }
            b'.' | b'_' | b'-' if i == 0 => return err(0, "must start with a-z or 0-9"),
            b'.' | b'_' | b'-' => _ = run_start.get_or_insert(i),
            _ => return err(i, "only a-z, 0-9 and separators are allowed"),
        }
    }
    match run_start {
        Some(start) => err(start, "must not end with a separator"),
        None => Ok(()),
    }
}

/// Docker allows one `.`, one or two `_`, or any number of `-` between
/// alphanumerics (dash runs so hostnames fit; `__` for old names).
fn is_separator(sep: Option<&str>) -> bool {
    matches!(sep, Some("." | "_" | "__")) || sep.is_some_and(|s| s.bytes().all(|b| b == b'-'))
}

/// Whether `tag` is a valid tag on its own:
/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, exactly what [`ImageReference::parse`]
/// accepts after a `:`.
pub fn is_valid_tag(tag: &str) -> bool {
    validate_tag(tag, 0).is_ok()
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn validate_tag(tag: &str, base: usize) -> Result<(), ReferenceError> {
    let err = |i: usize, reason| {
        Err(ReferenceError::InvalidTag {
            tag: tag.to_owned(),
            offset: base + i,
            reason,
        })
    };
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match tag.bytes().next() {
        None => return err(0, "tag is empty (nothing after ':')"),
        Some(b) if !is_word(b) => return err(0, "must start with a letter, digit or '_'"),
        Some(_) => {}
    }
    if let Some(i) = tag
        .bytes()
        .position(|b| !is_word(b) && b != b'.' && b != b'-')
    {
        return err(i, "only letters, digits, '_', '.' and '-' are allowed");
    }
    if tag.len() > TAG_MAX_LEN {
        return Err(ReferenceError::TagTooLong {
            len: tag.len(),
            offset: base,
        });
    }
    Ok(())
}

/// `algorithm:hex`, where the algorithm is `[a-z][a-z0-9]*` components joined
/// by `+`, `.`, `_` or `-` and hex is at least 32 characters (the intersection
/// of distribution/reference's and go-digest's grammars). Then, like
/// go-digest, only sha256/sha384/sha512 with exact lowercase hex lengths.
fn validate_digest(digest: &str, base: usize) -> Result<(), ReferenceError> {
    let err = |i: usize, reason| {
        Err(ReferenceError::InvalidDigest {
            digest: digest.to_owned(),
            offset: base + i,
            reason,
        })
    };
    if digest.is_empty() {
        return err(0, "digest is empty (nothing after '@')");
    }
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return err(0, "expected <algorithm>:<hex>, e.g. sha256:<64 hex>");
    };
    if algorithm.is_empty() {
        return err(0, "digest algorithm is missing before ':'");
    }
    let mut component_start = true;
    for (i, b) in algorithm.bytes().enumerate() {
        match b {
            b'a'..=b'z' => component_start = false,
            b'0'..=b'9' if !component_start => {}
            b'+' | b'.' | b'_' | b'-' if !component_start => component_start = true,
            _ if component_start => return err(i, "algorithm parts start with a-z"),
            _ => return err(i, "algorithm allows only a-z, 0-9, '+', '.', '_', '-'"),
        }
    }
    if component_start {
        return err(
            algorithm.len() - 1,
            "algorithm must not end with a separator",
        );
    }
    let enc_off = algorithm.len() + 1;
    if let Some(i) = encoded.find(|c: char| !c.is_ascii_hexdigit()) {
        return err(enc_off + i, "the encoded digest must be hexadecimal");
    }
    if encoded.len() < 32 {
        return err(
            enc_off,
            "the encoded digest must be at least 32 hex characters",
        );
    }
    let Some(&(_, want)) = DIGEST_ALGORITHMS.iter().find(|(a, _)| *a == algorithm) else {
        return Err(ReferenceError::UnsupportedDigest {
            algorithm: algorithm.to_owned(),
            offset: base,
        });
    };
    if encoded.len() != want {
        return err(enc_off, "wrong length: sha256/384/512 take 64/96/128 hex");
    }
    match encoded.find(|c: char| c.is_ascii_uppercase()) {
        Some(i) => err(enc_off + i, "digest hex must be lowercase"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H64: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// One case per line: `name | input | expected [| extra]`. Expected is
    /// `<domain> <fully qualified>` (which pins path, tag and digest too) or
    /// `!<ErrorVariant>`. The optional extra is the expected `familiar()` for
    /// valid rows, a fragment of the error message for invalid ones. Tokens:
    /// `<sha256>`/`<sha512>` = valid digest, `<sp>`, `<tab>`, `<nl>`, `<bel>`,
    /// `<c*N>` = `c` N times.
    const CASES: &str = r#"
familiar name | nginx | docker.io docker.io/library/nginx:latest | nginx:latest
familiar with tag | nginx:1.25 | docker.io docker.io/library/nginx:1.25 | nginx:1.25
library given | library/nginx | docker.io docker.io/library/nginx:latest | nginx:latest
docker.io without library | docker.io/nginx | docker.io docker.io/library/nginx:latest
legacy index domain | index.docker.io/library/nginx | docker.io docker.io/library/nginx:latest
legacy index, no library | index.docker.io/nginx:1 | docker.io docker.io/library/nginx:1
hub user repo | user/app | docker.io docker.io/user/app:latest | user/app:latest
hub nested repo | user/team/app:v2 | docker.io docker.io/user/team/app:v2 | user/team/app:v2
nested library keeps prefix | library/a/b | docker.io docker.io/library/a/b:latest | library/a/b:latest
localhost is a domain | localhost/app | localhost localhost/app:latest | localhost/app:latest
localhost port and tag | localhost:5000/app:tag | localhost:5000 localhost:5000/app:tag
ipv4 port nested path | 127.0.0.1:5000/a/b/c:t | 127.0.0.1:5000 127.0.0.1:5000/a/b/c:t
ipv6 with port | [::1]:5000/app | [::1]:5000 [::1]:5000/app:latest
ipv6 without port | [2001:db8::1]/app | [2001:db8::1] [2001:db8::1]/app:latest
tag and digest | registry.example.com:5000/team/api:20261128-42-main@<sha256> | registry.example.com:5000 registry.example.com:5000/team/api:20261128-42-main@<sha256>
digest only, no default tag | nginx@<sha256> | docker.io docker.io/library/nginx@<sha256> | nginx@<sha256>
sha512 digest | ghcr.io/org/app@<sha512> | ghcr.io ghcr.io/org/app@<sha512> | ghcr.io/org/app@<sha512>
uppercase domain | UPPER.example.com/app | UPPER.example.com UPPER.example.com/app:latest
uppercase first component is a domain | Foo/bar | Foo Foo/bar:latest
hyphenated host | my-registry.local/x | my-registry.local my-registry.local/x:latest
no slash is never a domain | example.com:5000 | docker.io docker.io/library/example.com:5000
dash run separator | a--b | docker.io docker.io/library/a--b:latest
double underscore | a__b | docker.io docker.io/library/a__b:latest
dot and underscore separators | x/a.b_c/d-e | docker.io docker.io/x/a.b_c/d-e:latest
dotted path on hub keeps domain | docker.io/foo.com/bar | docker.io docker.io/foo.com/bar:latest | docker.io/foo.com/bar:latest
localhost path on hub | docker.io/localhost/x | docker.io docker.io/localhost/x:latest | docker.io/localhost/x:latest
uppercase tag allowed | nginx:V1_RC-1.0 | docker.io docker.io/library/nginx:V1_RC-1.0
tag may start with _ | nginx:_x | docker.io docker.io/library/nginx:_x
128-char tag | nginx:<t*128> | docker.io docker.io/library/nginx:<t*128>
255-char name | <a*237> | docker.io docker.io/library/<a*237>:latest
empty string |  | !Empty | image reference is empty
leading space | <sp>nginx | !InvalidCharacter | ' ' at byte 0
inner space | nginx :1 | !InvalidCharacter | ' ' at byte 5
tab | nginx<tab> | !InvalidCharacter
newline | nginx<nl> | !InvalidCharacter
control char | ngi<bel>nx | !InvalidCharacter | '\u{7}' at byte 3
non-ascii | ngïnx | !InvalidCharacter | 'ï' at byte 2
64-hex image id | <e*64> | !ImageId | image ID
uppercase path | user/App | !Uppercase | repository name "user/App" must be lowercase
uppercase familiar name | Nginx | !Uppercase | at byte 0
trailing colon | nginx: | !InvalidTag | tag is empty
empty tag before digest | nginx:@<sha256> | !InvalidTag
tag starts with dot | nginx:.x | !InvalidTag | invalid tag ".x" at byte 6
tag starts with dash | nginx:-x | !InvalidTag
tag with colon | nginx:a:b | !InvalidTag | at byte 7
tag with slash | a/b:t/c | !InvalidTag
129-char tag | nginx:<t*129> | !TagTooLong | 129 characters long
uppercase digest algorithm | nginx@SHA256:<e*64> | !InvalidDigest
algorithm starts with digit | nginx@1sha:<e*64> | !InvalidDigest
algorithm ends with separator | nginx@sha256+:<e*64> | !InvalidDigest
unsupported algorithm | nginx@md5:<e*32> | !UnsupportedDigest | "md5"
short hex | nginx@sha256:abc | !InvalidDigest | at least 32 hex characters
sha256 of 40 hex | nginx@sha256:<e*40> | !InvalidDigest | wrong length
uppercase hex | nginx@sha256:<E*64> | !InvalidDigest | must be lowercase
non-hex encoded | nginx@sha256:<z*64> | !InvalidDigest | hexadecimal
digest without colon | nginx@sha256 | !InvalidDigest
empty digest | nginx@ | !InvalidDigest
double slash | a//b | !InvalidPathComponent | component "" at byte 2
leading dash | -a | !InvalidPathComponent
triple underscore | a___b | !InvalidPathComponent | component "a___b" at byte 1
double dot | a..b | !InvalidPathComponent
trailing separator | a- | !InvalidPathComponent
trailing slash | user/app/ | !InvalidPathComponent
bad character | nginx! | !InvalidPathComponent | at byte 5
domain without path | docker.io/ | !InvalidPathComponent | path is missing
256-char name | <a*238> | !NameTooLong | must not be more than 255 characters
256-char name with domain | r.example.com/<a*242> | !NameTooLong | is 256
domain label starts with dash | -bad.com/app | !InvalidDomain
domain with underscore | a_b.com/app | !InvalidDomain | domain "a_b.com" at byte 1
port not numeric | localhost:abc/app | !InvalidDomain | at byte 10
empty port | localhost:/app | !InvalidDomain
empty host | :5000/app | !InvalidDomain
ipv6 unclosed | [::1/app | !InvalidDomain
ipv6 bad char | [::g]:5000/app | !InvalidDomain | at byte 3
"#;

    struct Case {
        name: &'static str,
        input: String,
        want: Result<(String, String), String>,
        extra: Option<String>,
    }

    /// Expands the input tokens described on [`CASES`].
    fn expand(s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some((before, after)) = rest.split_once('<') {
            let (token, after) = after.split_once('>').unwrap();
            out.push_str(before);
            out.push_str(&match token {
                "sha256" => format!("sha256:{H64}"),
                "sha512" => format!("sha512:{H64}{H64}"),
                "sp" => " ".into(),
                "tab" => "\t".into(),
                "nl" => "\n".into(),
                "bel" => "\u{7}".into(),
                _ => {
                    let (c, n) = token.split_once('*').unwrap();
                    c.repeat(n.parse().unwrap())
                }
            });
            rest = after;
        }
        out + rest
    }

    fn cases() -> Vec<Case> {
        let rows = CASES.lines().filter(|l| !l.is_empty());
        rows.map(|line| {
            let cols: Vec<&str> = line.split(" | ").collect();
            assert!(matches!(cols.len(), 3 | 4), "malformed row {line:?}");
            let want = match cols[2].strip_prefix('!') {
                Some(variant) => Err(variant.to_owned()),
                None => {
                    let (domain, fq) = cols[2].split_once(' ').unwrap();
                    Ok((domain.to_owned(), expand(fq)))
                }
            };
            let (name, input, extra) = (cols[0], expand(cols[1]), cols.get(3));
            let extra = extra.map(|e| expand(e));
            Case {
                name,
                input,
                want,
                extra,
            }
        })
        .collect()
    }

    #[test]
    fn table() {
        let cases = cases();
        assert!(cases.len() >= 40, "only {} cases", cases.len());
        for Case {
            name,
            input,
            want,
            extra,
        } in cases
        {
            match (ImageReference::parse(&input), want) {
                (Ok(r), Ok((domain, fq))) => {
                    assert_eq!(r.domain, domain, "case {name:?}: domain");
                    assert_eq!(r.fully_qualified(), fq, "case {name:?}: fully qualified");
                    assert_eq!(r.to_string(), fq, "case {name:?}: Display");
                    assert_eq!(r.name(), format!("{domain}/{}", r.path), "case {name:?}");
                    if let Some(familiar) = extra {
                        assert_eq!(r.familiar(), familiar, "case {name:?}: familiar");
                    }
                }
                (Err(e), Err(variant)) => {
                    let debug = format!("{e:?}");
                    assert!(debug.starts_with(&variant), "case {name:?}: got {debug}");
                    let msg = e.to_string();
                    let fragment = extra.unwrap_or_default();
                    assert!(
                        msg.contains(&fragment),
                        "case {name:?}: {msg:?} lacks {fragment:?}"
                    );
                }
                (got, want) => panic!("case {name:?}: {input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn round_trip() {
        for Case { name, input, .. } in cases() {
            let Ok(r) = ImageReference::parse(&input) else {
                continue;
            };
            let fq = ImageReference::parse(&r.fully_qualified());
            assert_eq!(fq.as_ref(), Ok(&r), "case {name:?}: parse(fully_qualified)");
            let familiar = ImageReference::parse(&r.familiar());
            assert_eq!(familiar.as_ref(), Ok(&r), "case {name:?}: parse(familiar)");
            assert_eq!(
                input.parse::<ImageReference>(),
                Ok(r),
                "case {name:?}: FromStr"
            );
        }
    }
}
