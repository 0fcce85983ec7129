//! Generates the gRPC code from `proto/mailroot.proto` with `protox` (a pure-Rust protobuf
//! compiler), so no system `protoc` is needed on developer machines or in CI.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/mailroot.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    // `bytes` fields as `bytes::Bytes`: message bodies are shared, not copied, between the
    // decoder, retries and the object store.
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
