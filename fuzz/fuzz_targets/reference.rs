//! `ImageReference::parse` on any input: it must not panic, and whatever it
//! accepts must parse back to itself from its fully qualified and familiar
//! forms (the properties of tests/properties.rs, searched by coverage).
#![no_main]

use berth::domain::reference::{ImageReference, NAME_MAX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let r = match ImageReference::parse(&input) {
        Ok(r) => r,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(r.tag.is_some() || r.digest.is_some(), "{input:?}: {r:?}");
    assert!(r.name().len() <= NAME_MAX_LEN, "{input:?}: {r:?}");
    let fq = r.fully_qualified();
    assert_eq!(
        ImageReference::parse(&fq).as_ref(),
        Ok(&r),
        "{input:?} via {fq:?}"
    );
    let familiar = r.familiar();
    assert_eq!(
        ImageReference::parse(&familiar).as_ref(),
        Ok(&r),
        "{input:?} via {familiar:?}"
    );
});
