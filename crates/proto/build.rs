//! Generates the Rust code for every `.proto` under `proto/` with protox (a pure-Rust protobuf
//! compiler), so a fresh machine needs no `protoc`. The encoded descriptor set, with imports and
//! comments, is written next to the code for gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "tenantry/registry/v1/registry.proto",
        "tenantry/membership/v1/membership.proto",
        "tenantry/invitation/v1/invitation.proto",
        "tenantry/notification/v1/notification.proto",
        "tenantry/events/v1/events.proto",
        "tenantry/audit/v1/audit.proto",
    ];
    println!("cargo:rerun-if-changed={}", root.display());

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(files)?;
    let descriptor_set = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("tenantry_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptor_set)?;
    Ok(())
}
