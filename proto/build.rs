//! Generates the gRPC code from `proto/mailroot.proto` with `protox` (a pure-Rust protobuf
//! compiler), so no system `protoc` is needed on developer machines or in CI.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/mailroot.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
