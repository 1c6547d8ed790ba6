//! Tag templates such as `{TIMESTAMP}-{TASK_ID}-{BRANCH}`, rendered into a
//! valid docker tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
//!
//! Rules, in the order they are checked:
//! 1. Syntax (no values needed, see [`validate`]): `{NAME}` must be one of
//!    [`VARIABLES`] (case-sensitive); braces must pair up and not nest. There
//!    is no escape for a literal brace because a tag can never contain one.
//!    Text outside variables must already be tag characters, and the template
//!    must not start with `.` or `-`: what the user typed is never rewritten.
//! 2. Every variable used must have a value; an empty value is allowed.
//! 3. Values are made tag-safe: `/` becomes `-` (`feature/login` ->
//!    `feature-login`, as docker users expect), and every other character
//!    outside `[A-Za-z0-9_.-]` becomes `-` too (one per character; case is
//!    kept since tags are case-sensitive).
//! 4. If the result starts with `.` or `-` (only possible via a value, or a
//!    literal preceded by empty values), that first character becomes `_`.
//!    Replacing keeps the length and the rest of the text intact; stripping
//!    could leave nothing.
//! 5. An empty result, or one over 128 characters, is an error: truncating
//!    silently could make two builds share a tag.

use std::collections::HashMap;

/// The variables a template may use.
pub const VARIABLES: [&str; 7] = [
    "TIMESTAMP",
    "TASK_ID",
    "BRANCH",
    "PR",
    "COMMIT_ID",
    "SERVICE",
    "PROJECT",
];

/// Maximum length of a docker tag.
pub const MAX_TAG_LEN: usize = 128;

/// Values for template variables, keyed by variable name (e.g. `BRANCH`).
/// Keys that are not in [`VARIABLES`] are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateVars {
    values: HashMap<String, String>,
}

impl TemplateVars {
    /// Wraps a name -> value map.
    pub fn new(values: HashMap<String, String>) -> Self {
        Self { values }
    }

    /// The value of variable `name` (case-sensitive), if one was given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
}

impl From<HashMap<String, String>> for TemplateVars {
    /// Same as [`TemplateVars::new`].
    fn from(values: HashMap<String, String>) -> Self {
        Self::new(values)
    }
}

/// Why a template cannot be rendered. Offsets are byte offsets into the
/// template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template is the empty string.
    #[error("tag template is empty")]
    EmptyTemplate,
    /// `{NAME}` where NAME is not in [`VARIABLES`].
    #[error(
        "unknown variable {{{name}}} at byte {offset} of the tag template; known (case-sensitive): \
         TIMESTAMP, TASK_ID, BRANCH, PR, COMMIT_ID, SERVICE, PROJECT"
    )]
    UnknownVariable { name: String, offset: usize },
    /// `{}`.
    #[error("empty variable name {{}} at byte {offset} of the tag template")]
    EmptyVariableName { offset: usize },
    /// A `{` never closed, a `}` never opened, or a `{` inside a variable.
    #[error("unbalanced {brace:?} at byte {offset} of the tag template: {reason}")]
    UnbalancedBrace {
        brace: char,
        offset: usize,
        reason: &'static str,
    },
    /// Text outside variables that is not allowed in a tag.
    #[error(
        "tag template has {found:?} at byte {offset} outside a variable; only letters, \
         digits, '_', '.' and '-' are allowed there"
    )]
    InvalidLiteral { found: char, offset: usize },
    /// The template's own text starts with `.` or `-`.
    #[error("tag template starts with {found:?}; a tag must start with a letter, digit or '_'")]
    InvalidStart { found: char },
    /// A variable is used but no value was given for it.
    #[error("tag template uses {{{name}}} at byte {offset}, but no value for {name} was given")]
    MissingVariable { name: String, offset: usize },
    /// The rendered tag is empty.
    #[error("rendered tag is empty")]
    EmptyResult,
    /// The rendered tag (in `tag`, kept out of the message because it is
    /// long) is over [`MAX_TAG_LEN`]; it is never truncated.
    #[error("rendered tag is {len} characters long; a tag must not be more than 128")]
    TooLong { tag: String, len: usize },
}

/// A piece of a parsed template.
enum Segment<'a> {
    Literal(&'a str),
    Variable { name: &'a str, offset: usize },
}

/// Checks a template's syntax without values (e.g. when it is configured),
/// so typos surface before the first build.
pub fn validate(template: &str) -> Result<(), TemplateError> {
    parse(template).map(|_| ())
}

/// Renders `template` with `vars` into a valid docker tag (see the module
/// docs for the rules).
pub fn render(template: &str, vars: &TemplateVars) -> Result<String, TemplateError> {
    render_with(template, |name| vars.get(name))
}

/// [`render`] with each variable's value from `value` (`None`: no value).
pub fn render_with<'v>(
    template: &str,
    value: impl Fn(&str) -> Option<&'v str>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    for segment in parse(template)? {
        match segment {
            Segment::Literal(text) => out.push_str(text),
            Segment::Variable { name, offset } => {
                let value = value(name).ok_or_else(|| TemplateError::MissingVariable {
                    name: name.to_owned(),
                    offset,
                })?;
                out.extend(value.chars().map(|c| if is_tag_char(c) { c } else { '-' }));
            }
        }
    }
    // Literals and sanitised values are ASCII, so bytes == characters.
    if out.is_empty() {
        return Err(TemplateError::EmptyResult);
    }
    if out.starts_with(['.', '-']) {
        out.replace_range(..1, "_");
    }
    if out.len() > MAX_TAG_LEN {
        let len = out.len();
        return Err(TemplateError::TooLong { tag: out, len });
    }
    Ok(out)
}

/// Characters a tag may contain anywhere (its first one is stricter).
fn is_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn parse(template: &str) -> Result<Vec<Segment<'_>>, TemplateError> {
    if template.is_empty() {
        return Err(TemplateError::EmptyTemplate);
    }
    if let Some(found) = template.chars().next().filter(|c| matches!(c, '.' | '-')) {
        return Err(TemplateError::InvalidStart { found });
    }
    // `{` and `}` are one byte, so `i + 1` after either is a char boundary;
    // `get` keeps the slicing panic-free regardless.
    let slice = |from: usize, to: usize| template.get(from..to).unwrap_or_default();
    let unbalanced = |brace, offset, reason| TemplateError::UnbalancedBrace {
        brace,
        offset,
        reason,
    };
    let mut segments = Vec::new();
    let mut literal_start = 0;
    let mut open: Option<usize> = None; // offset of the `{` being read
    for (i, c) in template.char_indices() {
        match (c, open) {
            ('{', None) => {
                if i > literal_start {
                    segments.push(Segment::Literal(slice(literal_start, i)));
                }
                open = Some(i);
            }
            ('{', Some(_)) => return Err(unbalanced('{', i, "variables cannot nest")),
            ('}', None) => return Err(unbalanced('}', i, "no '{' opens it")),
            ('}', Some(offset)) => {
                let name = slice(offset + 1, i);
                if name.is_empty() {
                    return Err(TemplateError::EmptyVariableName { offset });
                }
                if !VARIABLES.contains(&name) {
                    let name = name.to_owned();
                    return Err(TemplateError::UnknownVariable { name, offset });
                }
                segments.push(Segment::Variable { name, offset });
                open = None;
                literal_start = i + 1;
            }
            (_, Some(_)) => {} // part of a variable name, checked at `}`
            (found, None) if !is_tag_char(found) => {
                return Err(TemplateError::InvalidLiteral { found, offset: i });
            }
            (_, None) => {}
        }
    }
    if let Some(offset) = open {
        return Err(unbalanced('{', offset, "it is never closed with '}'"));
    }
    if literal_start < template.len() {
        segments.push(Segment::Literal(slice(literal_start, template.len())));
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> TemplateVars {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        TemplateVars::from(map)
    }

    const CI: &[(&str, &str)] = &[
        ("TIMESTAMP", "20261128"),
        ("TASK_ID", "42"),
        ("BRANCH", "feature/login"),
        ("PR", "17"),
        ("COMMIT_ID", "9fceb02d0ae598e95dc970b74767f19372d61af8"),
        ("SERVICE", "api"),
        ("PROJECT", "shop"),
    ];

    /// (case name, template, values, expected tag or error).
    type Row<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Result<&'a str, TemplateError>,
    );

    #[test]
    fn table() {
        use TemplateError as E;
        let long = "x".repeat(129);
        let max = "x".repeat(128);
        let too_long = || E::TooLong {
            tag: long.clone(),
            len: 129,
        };
        let unknown = |name: &str, offset| E::UnknownVariable {
            name: name.into(),
            offset,
        };
        let missing = |name: &str, offset| E::MissingVariable {
            name: name.into(),
            offset,
        };
        let brace = |brace, offset, reason| E::UnbalancedBrace {
            brace,
            offset,
            reason,
        };
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("timestamp task branch", "{TIMESTAMP}-{TASK_ID}-{BRANCH}", CI.to_vec(), Ok("20261128-42-feature-login")),
            ("full commit id", "{COMMIT_ID}", CI.to_vec(), Ok("9fceb02d0ae598e95dc970b74767f19372d61af8")),
            ("short commit with literal", "sha-{COMMIT_ID}", vec![("COMMIT_ID", "9fceb02")], Ok("sha-9fceb02")),
            ("pr build", "pr{PR}.{TASK_ID}", CI.to_vec(), Ok("pr17.42")),
            ("service and project", "{PROJECT}_{SERVICE}", CI.to_vec(), Ok("shop_api")),
            ("literal only", "stable", vec![], Ok("stable")),
            ("repeated variable", "{TASK_ID}{TASK_ID}", CI.to_vec(), Ok("4242")),
            ("extra values ignored", "{PR}", vec![("PR", "1"), ("OTHER", "x")], Ok("1")),
            ("case kept", "{BRANCH}", vec![("BRANCH", "Main")], Ok("Main")),
            ("nested branch", "{BRANCH}", vec![("BRANCH", "user/feat/x")], Ok("user-feat-x")),
            ("spaces and punctuation", "{BRANCH}", vec![("BRANCH", "feat: add #1")], Ok("feat--add--1")),
            ("non-ascii, one dash per char", "{BRANCH}", vec![("BRANCH", "fix-ünï")], Ok("fix--n-")),
            ("leading dash from value", "{BRANCH}", vec![("BRANCH", "-x")], Ok("_x")),
            ("leading slash from value", "{BRANCH}", vec![("BRANCH", "/x")], Ok("_x")),
            ("leading dot from value", "{BRANCH}", vec![("BRANCH", ".hidden")], Ok("_hidden")),
            ("empty value then literal dash", "{PR}-{TASK_ID}", vec![("PR", ""), ("TASK_ID", "42")], Ok("_42")),
            ("empty value allowed", "v{PR}", vec![("PR", "")], Ok("v")),
            ("exactly 128", "{BRANCH}", vec![("BRANCH", max.as_str())], Ok(max.as_str())),
            ("too long value", "{BRANCH}", vec![("BRANCH", long.as_str())], Err(too_long())),
            ("too long literal", long.as_str(), vec![], Err(too_long())),
            ("unknown variable", "{TIMESTAMP}-{FOO}", CI.to_vec(), Err(unknown("FOO", 12))),
            ("lowercase name is unknown", "{branch}", CI.to_vec(), Err(unknown("branch", 0))),
            ("unknown before missing", "{PR}{NOPE}", vec![], Err(unknown("NOPE", 4))),
            ("missing variable", "{TASK_ID}-{PR}", vec![("TASK_ID", "42")], Err(missing("PR", 10))),
            ("open brace only", "{", CI.to_vec(), Err(brace('{', 0, "it is never closed with '}'"))),
            ("close brace only", "}", CI.to_vec(), Err(brace('}', 0, "no '{' opens it"))),
            ("unclosed variable", "v-{BRANCH", CI.to_vec(), Err(brace('{', 2, "it is never closed with '}'"))),
            ("nested braces", "{{BRANCH}}", CI.to_vec(), Err(brace('{', 1, "variables cannot nest"))),
            ("stray close", "{PR}}", CI.to_vec(), Err(brace('}', 4, "no '{' opens it"))),
            ("empty name", "v{}", CI.to_vec(), Err(E::EmptyVariableName { offset: 1 })),
            ("space in literal", "v {PR}", CI.to_vec(), Err(E::InvalidLiteral { found: ' ', offset: 1 })),
            ("slash in literal", "v/{PR}", CI.to_vec(), Err(E::InvalidLiteral { found: '/', offset: 1 })),
            ("non-ascii literal", "é{PR}", CI.to_vec(), Err(E::InvalidLiteral { found: 'é', offset: 0 })),
            ("literal starts with dash", "-{PR}", CI.to_vec(), Err(E::InvalidStart { found: '-' })),
            ("literal starts with dot", ".{PR}", CI.to_vec(), Err(E::InvalidStart { found: '.' })),
            ("empty template", "", CI.to_vec(), Err(E::EmptyTemplate)),
            ("empty result", "{PR}", vec![("PR", "")], Err(E::EmptyResult)),
        ];
        for (name, template, values, want) in rows {
            let want = want.map(str::to_owned);
            assert_eq!(render(template, &vars(&values)), want, "case {name:?}");
            if let Ok(tag) = want {
                // Every rendered tag must be accepted by the reference grammar.
                let r = super::super::reference::ImageReference::parse(&format!("app:{tag}"));
                assert_eq!(
                    r.map(|r| r.tag),
                    Ok(Some(tag)),
                    "case {name:?}: not a valid tag"
                );
            }
        }
    }

    #[test]
    fn validate_checks_syntax_without_values() {
        assert_eq!(validate("{TIMESTAMP}-{TASK_ID}-{BRANCH}"), Ok(()));
        assert!(matches!(
            validate("{NOPE}"),
            Err(TemplateError::UnknownVariable { .. })
        ));
        assert!(matches!(
            validate("{"),
            Err(TemplateError::UnbalancedBrace { .. })
        ));
    }

    #[test]
    fn messages_name_the_problem() {
        let none = TemplateVars::default();
        let rows = [
            ("unknown", "{FOO}", "unknown variable {FOO} at byte 0"),
            (
                "missing",
                "x{PR}",
                "uses {PR} at byte 1, but no value for PR was given",
            ),
            ("brace", "ab{", "unbalanced '{' at byte 2"),
            ("literal", "a b", "' ' at byte 1 outside a variable"),
            ("too long", &"y".repeat(200), "is 200 characters long"),
        ];
        for (name, template, want) in rows {
            let msg = render(template, &none).map_err(|e| e.to_string());
            assert!(
                msg.as_ref().is_err_and(|m| m.contains(want)),
                "case {name:?}: {msg:?}"
            );
        }
    }
}
