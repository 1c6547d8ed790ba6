//! Compiles `proto/` with protox (no protoc needed) and tonic-prost-build,
//! and writes the file descriptor set that server reflection serves.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/berth/v1/types.proto",
        "proto/berth/v1/registry.proto",
        "proto/berth/v1/image.proto",
        "proto/berth/v1/audit.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("berth_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        // Registry carries a write-only secret: its Debug is written by hand
        // (src/api/convert.rs) so that no `{:?}` can ever print it.
        .skip_debug([".berth.v1.Registry", ".berth.v1.ProxySettings"])
        .compile_fds(fds)?;
    Ok(())
}
