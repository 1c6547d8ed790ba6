//! Property tests of the grammars berth applies to caller input: image
//! references, registry addresses and tag templates. Whatever the input,
//! none of them may panic, and what they accept must read back unchanged
//! when written out again: a value that changes on every round trip names a
//! different image or registry each time it is stored and reloaded.
//!
//! Each property runs 512 cases by default so the file takes seconds;
//! `PROPTEST_CASES=100000 cargo nextest run -E 'binary(properties)'` searches
//! deeper. `scripts/fuzz` is the coverage-guided counterpart (`fuzz/`).

use berth::domain::reference::{ImageReference, NAME_MAX_LEN, ReferenceError, is_valid_tag};
use berth::domain::tag_template::{self, MAX_TAG_LEN, TemplateVars, VARIABLES};
use berth::domain::{Provider, RegistryAddress, RegistryInput, layout, validate};
use berth::secret::Secret;
use proptest::collection::{hash_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};

/// 512 cases per property unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        // A failure prints its minimal input: pin it in the table test of
        // the module concerned rather than in a regressions file here.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// --- generators: arbitrary text ----------------------------------------------

/// Any string: unicode, control characters, up to 4096 characters.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        vec(any::<char>(), 0..4096).prop_map(String::from_iter),
    ]
}

/// Reference syntax and the words the parser treats specially, glued in
/// any order, so arbitrary input reaches the deep branches (and `Ok`).
const REFERENCE_PIECES: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "localhost",
    "library/",
    "example.com",
    "Example.COM",
    "[::1]",
    "[",
    "]",
    "/",
    "/",
    ":",
    ":",
    "@",
    ".",
    "_",
    "__",
    "-",
    "5000",
    "a",
    "b0",
    "nginx",
    "latest",
    "A",
    "sha256:",
    "sha512:",
    "md5:",
    "e3b0c44298fc1c149afbf4c8996fb924",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    " ",
    "\t",
    "é",
    "\u{0}",
];

/// Reference-shaped text: mostly the right alphabet, sometimes not.
fn reference_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9./:@_\\[\\]-]{0,300}",
        vec(select(REFERENCE_PIECES), 0..24).prop_map(|p| p.concat()),
        mutated(valid_reference().prop_map(|v| v.input)),
    ]
}

/// `base` with one character inserted, removed or replaced: the inputs one
/// typo away from valid, where a grammar's edge cases live.
fn mutated(base: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        select(vec!['/', ':', '@', '.', '-', '_', '[', ']', 'A', '0', ' ']),
        any::<char>(),
    ];
    (base, any::<Index>(), ch, 0..3u8).prop_map(|(mut s, at, c, op)| {
        let mut chars: Vec<char> = s.chars().collect();
        let i = at.index(chars.len() + 1);
        match op {
            0 => chars.insert(i, c),
            1 if i < chars.len() => _ = chars.remove(i),
            _ if i < chars.len() => chars[i] = c,
            _ => chars.push(c),
        }
        s = chars.into_iter().collect();
        s
    })
}

// --- generators: valid references, from the grammar ---------------------------

/// A reference written from the grammar, with the parse it must have.
#[derive(Debug, Clone)]
struct Valid {
    input: String,
    want: ImageReference,
}

fn with_port(host: String, port: Option<String>) -> String {
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// Domains docker recognises as such: dotted hosts, `localhost`, anything
/// with a port, IPv6 literals, Docker Hub and its legacy name.
fn domain() -> impl Strategy<Value = String> {
    const LABEL: &str = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?";
    const PORT: &str = "[0-9]{1,5}";
    prop_oneof![
        (vec(LABEL, 2..5), option::of(PORT)).prop_map(|(l, p)| with_port(l.join("."), p)),
        (LABEL, PORT).prop_map(|(h, p)| format!("{h}:{p}")),
        option::of(PORT).prop_map(|p| with_port("localhost".into(), p)),
        (
            prop_oneof![
                "[0-9a-fA-F]{1,4}(:[0-9a-fA-F]{0,4}){1,7}",
                Just("::1".into())
            ],
            option::of(PORT),
        )
            .prop_map(|(ip, p)| with_port(format!("[{ip}]"), p)),
        Just("docker.io".into()),
        Just("index.docker.io".into()),
    ]
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or dashes.
fn component() -> impl Strategy<Value = String> {
    const RUN: &str = "[a-z0-9]{1,8}";
    let sep = prop_oneof![
        Just(".".to_owned()),
        Just("_".to_owned()),
        Just("__".to_owned()),
        "-{1,3}",
    ];
    (RUN, vec((sep, RUN), 0..4)).prop_map(|(first, rest)| {
        rest.into_iter()
            .fold(first, |acc, (sep, run)| acc + &sep + &run)
    })
}

fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
}

fn digest() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}")),
        "[0-9a-f]{96}".prop_map(|h| format!("sha384:{h}")),
        "[0-9a-f]{128}".prop_map(|h| format!("sha512:{h}")),
    ]
}

fn valid_reference() -> impl Strategy<Value = Valid> {
    (
        option::of(domain()),
        prop_oneof![
            9 => vec(component(), 1..10),
            // Long enough to cross the 255-character name limit.
            1 => vec("[a-z0-9]{40,130}", 1..4),
        ],
        option::of(tag()),
        option::of(digest()),
    )
        .prop_map(|(domain, components, tag, digest)| {
            let path = components.join("/");
            // Without a domain, a first component with a `.` would be read
            // as one (`a.b/c` is registry a.b): name Docker Hub explicitly.
            let domain = match domain {
                None if components.len() > 1 && components[0].contains('.') => {
                    Some("docker.io".to_owned())
                }
                d => d,
            };
            let mut input = domain.iter().map(|d| format!("{d}/")).collect::<String>();
            input.push_str(&path);
            if let Some(t) = &tag {
                input.push(':');
                input.push_str(t);
            }
            if let Some(d) = &digest {
                input.push('@');
                input.push_str(d);
            }
            let domain = match domain.as_deref() {
                None | Some("index.docker.io") => "docker.io".to_owned(),
                Some(d) => d.to_owned(),
            };
            let path = if domain == "docker.io" && components.len() == 1 {
                format!("library/{path}")
            } else {
                path
            };
            let tag = match (tag, &digest) {
                (None, None) => Some("latest".to_owned()),
                (t, _) => t,
            };
            let want = ImageReference {
                domain,
                path,
                tag,
                digest,
            };
            Valid { input, want }
        })
}

// --- generators: addresses and templates ------------------------------------

/// Address-shaped text: schemes (good, bad, mixed case), hosts (Docker Hub's
/// aliases, IPv6, odd labels), ports (default, zero, signed, too big) and
/// what may not follow (paths, queries, credentials), with stray whitespace.
fn address_like() -> impl Strategy<Value = String> {
    let space = select(vec!["", "", " ", "\n", "\t"]);
    let scheme = select(vec![
        "", "", "", "https://", "https://", "http://", "HTTP://", "HtTpS://", "ftp://", "://",
    ]);
    let host = prop_oneof![
        3 => "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?){0,3}",
        3 => select(vec![
            "docker.io",
            "Docker.IO",
            "index.docker.io",
            "registry-1.docker.io",
            "registry.hub.docker.com",
            "index.docker.io/v1",
            "localhost",
            "[::1]",
            "[0:0::1]",
            "[::ffff:10.0.0.1]",
            "[fe80::1%eth0]",
            "[::1",
            "::1",
            "a_b.com",
            "-a.com",
            "a..b",
            "ünï.com",
        ])
        .prop_map(str::to_owned),
        1 => "[a-zA-Z0-9.:\\[\\]_-]{0,40}",
    ];
    let port = select(vec![
        "", "", "", ":", ":0", ":80", ":443", ":5000", ":0443", ":+5", ":65535", ":65536",
    ]);
    let suffix = select(vec![
        "", "", "", "", "", "/", "/", "//", "/v1", "/v1/", "/team", "?x=1", "#f",
    ]);
    let user = select(vec!["", "", "", "", "", "", "", "u:p@"]);
    (space.clone(), scheme, user, host, port, suffix, space)
        .prop_map(|(a, b, c, d, e, f, g)| format!("{a}{b}{c}{d}{e}{f}{g}"))
}

/// Template-shaped text: known and unknown variables, literals, stray and
/// nested braces, and any character at all.
fn template_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => select(&VARIABLES[..]).prop_map(|v| format!("{{{v}}}")),
        6 => "[A-Za-z0-9_.-]{0,12}",
        1 => select(vec!["{", "}", "{}", "{{BRANCH}}", "{branch}", "{FOO}"]).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    vec(piece, 0..10).prop_map(|p| p.concat())
}

/// Values for most variables (any text: unicode, slashes, empty, long) plus
/// a few keys that are not variables.
fn template_vars() -> impl Strategy<Value = TemplateVars> {
    let value = prop_oneof![
        "[A-Za-z0-9/._ -]{0,40}",
        any::<String>(),
        vec(any::<char>(), 0..200).prop_map(String::from_iter),
    ];
    let known = vec(option::weighted(0.9, value.clone()), VARIABLES.len());
    let extra = hash_map(any::<String>(), value, 0..3);
    (known, extra).prop_map(|(known, mut values)| {
        for (name, v) in VARIABLES.iter().zip(known) {
            if let Some(v) = v {
                values.insert((*name).to_owned(), v);
            }
        }
        TemplateVars::new(values)
    })
}

// --- checks --------------------------------------------------------------------

/// What every reference `parse` returns must satisfy: its invariants hold,
/// and its fully qualified and familiar forms parse back to it.
fn check_reference(r: &ImageReference) -> Result<(), TestCaseError> {
    prop_assert!(r.tag.is_some() || r.digest.is_some(), "{r:?} has neither");
    prop_assert!(r.name().len() <= NAME_MAX_LEN, "{r:?} is too long");
    let fq = r.fully_qualified();
    prop_assert_eq!(&r.to_string(), &fq);
    let again = ImageReference::parse(&fq);
    prop_assert_eq!(again.as_ref(), Ok(r), "parse(fully_qualified = {:?})", fq);
    let familiar = r.familiar();
    let again = ImageReference::parse(&familiar);
    prop_assert_eq!(again.as_ref(), Ok(r), "parse(familiar = {:?})", familiar);
    Ok(())
}

/// `parse` must not panic, nor must the error's message; whatever it
/// accepts must pass [`check_reference`].
fn check_reference_input(s: &str) -> Result<(), TestCaseError> {
    match ImageReference::parse(s) {
        Ok(r) => check_reference(&r),
        Err(e) => {
            let _ = e.to_string();
            Ok(())
        }
    }
}

/// `parse` must not panic, and normalising twice must change nothing: the
/// stored (displayed) form parses back to the same address.
fn check_address_input(s: &str) -> Result<(), TestCaseError> {
    let Ok(a) = RegistryAddress::parse(s) else {
        return Ok(());
    };
    let shown = a.to_string();
    prop_assert_eq!(
        RegistryAddress::parse(&shown),
        Ok(a),
        "from {:?} via {:?}",
        s,
        shown
    );
    Ok(())
}

/// `render` must not panic; what it renders must be a valid docker tag;
/// a template `validate` rejects must fail to render with the same error.
fn check_template(template: &str, vars: &TemplateVars) -> Result<(), TestCaseError> {
    let rendered = tag_template::render(template, vars);
    match &rendered {
        Ok(tag) => {
            prop_assert!(!tag.is_empty() && tag.len() <= MAX_TAG_LEN, "{tag:?}");
            let r = ImageReference::parse(&format!("example.com/app:{tag}"));
            prop_assert_eq!(
                r.map(|r| r.tag),
                Ok(Some(tag.clone())),
                "{:?} rendered an invalid tag",
                template
            );
        }
        Err(e) => _ = e.to_string(),
    }
    if let Err(e) = tag_template::validate(template) {
        prop_assert_eq!(rendered, Err(e));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn reference_parse_never_panics_and_what_it_accepts_round_trips(s in any_text()) {
        check_reference_input(&s)?;
    }

    #[test]
    fn reference_shaped_text_never_panics_and_round_trips(s in reference_like()) {
        check_reference_input(&s)?;
    }

    #[test]
    fn grammar_built_references_parse_as_the_grammar_says_and_round_trip(v in valid_reference()) {
        let got = ImageReference::parse(&v.input);
        let len = v.want.name().len();
        if len > NAME_MAX_LEN {
            prop_assert_eq!(got, Err(ReferenceError::NameTooLong { len }));
        } else {
            prop_assert_eq!(got.as_ref(), Ok(&v.want), "input {:?}", v.input);
            check_reference(&v.want)?;
        }
    }

    #[test]
    fn a_tag_is_valid_alone_exactly_when_a_reference_accepts_it(
        t in prop_oneof![any_text(), tag(), "[A-Za-z0-9_.@:/ -]{0,140}"]
    ) {
        // check_tag (ResolveImage, CopyImage) uses is_valid_tag; it used
        // to parse a whole reference around the tag.
        let in_a_reference =
            !t.contains('@') && ImageReference::parse(&format!("berth.invalid/x:{t}")).is_ok();
        prop_assert_eq!(is_valid_tag(&t), in_a_reference, "tag {:?}", t);
    }

    #[test]
    fn address_parse_never_panics_on_any_text(s in any_text()) {
        check_address_input(&s)?;
    }

    #[test]
    fn address_normalisation_is_idempotent(s in address_like()) {
        check_address_input(&s)?;
    }

    #[test]
    fn registry_address_names_itself_in_image_references(s in address_like(), ns in component()) {
        // A registry's address must stay its domain in the references berth
        // builds for it (`registry/team/api` is Docker Hub's `registry`).
        let input = RegistryInput {
            provider: Some(Provider::Harbor),
            address: s,
            namespace: ns,
            username: "u".into(),
            secret: Some(Secret::new("p")),
            all_projects: true,
            ..Default::default()
        };
        let Ok(spec) = validate(&input, false, "registry") else {
            return Ok(());
        };
        if let Ok(r) = layout::reference(&spec, "team/api", Some("1"), None) {
            prop_assert_eq!(r.domain, spec.address.host_port());
        }
    }

    #[test]
    fn template_render_never_panics_on_any_text(t in any_text(), vars in template_vars()) {
        check_template(&t, &vars)?;
    }

    #[test]
    fn rendered_templates_are_valid_docker_tags(t in template_like(), vars in template_vars()) {
        check_template(&t, &vars)?;
    }
}
