//! `RegistryAddress::parse` on any input: it must not panic, normalising
//! twice must change nothing, and building an image reference on the
//! address must not panic either.
#![no_main]

use berth::domain::RegistryAddress;
use berth::domain::reference::ImageReference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let Ok(a) = RegistryAddress::parse(&input) else {
        return;
    };
    let shown = a.to_string();
    assert_eq!(
        RegistryAddress::parse(&shown).as_ref(),
        Ok(&a),
        "{input:?} via {shown:?}"
    );
    let _ = ImageReference::parse(&format!("{}/team/api:1", a.host_port()));
});
