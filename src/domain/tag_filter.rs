//! Filtering and ordering tags for ListTags.

use std::cmp::Ordering;

use crate::error::{Error, Result};

/// How to order tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOrder {
    /// Byte-wise lexical order.
    Lexical,
    /// Semantic versions, highest first (a leading `v` is allowed);
    /// other tags after them, lexically.
    Semver,
    /// Newest image first by the config's `created`; needs the registry.
    Newest,
}

/// A compiled tag filter: an optional glob and an optional regex; a tag
/// must match both.
#[derive(Debug)]
pub struct TagFilter {
    glob: Option<String>,
    regex: Option<regex::Regex>,
}

impl TagFilter {
    /// Compiles the filter; errors name the field.
    pub fn new(glob: &str, regex: &str) -> Result<Self> {
        if glob.len() > 256 {
            return Err(Error::invalid("glob", "must be at most 256 characters"));
        }
        let regex = match regex {
            "" => None,
            r => Some(
                regex::RegexBuilder::new(r)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        Error::invalid("regex", format!("is not a valid regular expression: {e}"))
                    })?,
            ),
        };
        Ok(TagFilter {
            glob: (!glob.is_empty()).then(|| glob.to_string()),
            regex,
        })
    }

    /// Whether `tag` passes.
    pub fn matches(&self, tag: &str) -> bool {
        self.glob.as_deref().is_none_or(|g| glob_match(g, tag))
            && self.regex.as_ref().is_none_or(|r| r.is_match(tag))
    }
}

/// `*` matches any run of characters, `?` one character; everything else
/// is literal. Linear-time two-pointer matcher (no backtracking blow-up).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn semver_of(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// Sorts tags lexically or by semver (Newest is sorted by the caller).
pub fn sort_tags(tags: &mut [String], order: TagOrder) {
    match order {
        TagOrder::Lexical | TagOrder::Newest => tags.sort(),
        TagOrder::Semver => tags.sort_by(|a, b| match (semver_of(a), semver_of(b)) {
            (Some(x), Some(y)) => y.cmp(&x).then_with(|| a.cmp(b)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => a.cmp(b),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let rows = [
            ("v1.*", "v1.2", true),
            ("v1.*", "v2.0", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*-main", "20261128-42-main", true),
            ("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
            ("exact", "exact", true),
        ];
        for (p, t, want) in rows {
            assert_eq!(glob_match(p, t), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn semver_order_puts_others_last() {
        let mut tags: Vec<String> = [
            "latest",
            "1.2.0",
            "1.10.0",
            "v2.0.0",
            "2.0.0-rc.1",
            "dev",
            "1.0.0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        sort_tags(&mut tags, TagOrder::Semver);
        assert_eq!(
            tags,
            [
                "v2.0.0",
                "2.0.0-rc.1",
                "1.10.0",
                "1.2.0",
                "1.0.0",
                "dev",
                "latest"
            ]
        );
        sort_tags(&mut tags, TagOrder::Lexical);
        assert_eq!(tags[0], "1.0.0");
    }

    #[test]
    fn filters_combine_and_bad_regex_names_field() {
        let f = TagFilter::new("1.*", "^1\\.[0-9]+\\.0$").expect("valid");
        assert!(f.matches("1.10.0") && !f.matches("1.2.1") && !f.matches("2.0.0"));
        let e = TagFilter::new("", "(").expect_err("bad regex");
        assert!(matches!(e, Error::InvalidArgument(v) if v[0].field == "regex"));
    }
}
