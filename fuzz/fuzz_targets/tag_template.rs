//! `tag_template::render` on any template and values: it must not panic,
//! and what it renders must be a valid docker tag.
#![no_main]

use std::collections::HashMap;

use berth::domain::reference::ImageReference;
use berth::domain::tag_template::{self, MAX_TAG_LEN, TemplateVars, VARIABLES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (String, [Option<String>; 7])| {
    let (template, values) = input;
    let values: HashMap<String, String> = VARIABLES
        .iter()
        .zip(values)
        .filter_map(|(name, v)| Some(((*name).to_owned(), v?)))
        .collect();
    let rendered = tag_template::render(&template, &TemplateVars::new(values));
    match &rendered {
        Ok(tag) => {
            assert!(
                !tag.is_empty() && tag.len() <= MAX_TAG_LEN,
                "{template:?}: {tag:?}"
            );
            let r = ImageReference::parse(&format!("example.com/app:{tag}"));
            assert_eq!(r.map(|r| r.tag), Ok(Some(tag.clone())), "{template:?}");
        }
        Err(e) => _ = e.to_string(),
    }
    if let Err(e) = tag_template::validate(&template) {
        assert_eq!(rendered, Err(e), "{template:?}");
    }
});
