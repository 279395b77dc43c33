//! Compiles `proto/` with protox (pure Rust): no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/flyteidl/admin/common.proto",
        "proto/flyteidl/admin/project.proto",
        "proto/flyteidl/service/auth.proto",
        "proto/flyteidl/service/identity.proto",
        "proto/flyteidl/service/admin.proto",
        "proto/flyteidl2/auth/auth_service.proto",
        "proto/flyteidl2/auth/identity.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=migrations");
    let fds = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("flyteauth_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
