//! Compiles the test-only widget service (tests/proto) with protox, for the transcoding tests
//! that run against a real tonic server.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let file = root.join("tests/proto/pdp/testing/v1/widgets.proto");
    let mut compiler = protox::Compiler::new([root.join("tests/proto"), root.join("../proto")])?;
    compiler.include_imports(true).open_file(&file)?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // protox's own encoding keeps the `google.api.http` method options.
    std::fs::write(
        out.join("testing_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .extern_path(".google.api", "::pdp_proto::google::api")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=tests/proto");
    Ok(())
}
