//! The wire contract between front-ends, `mailrootctl` and the store node.
//!
//! Nothing but the generated types lives here, plus the names of the metadata headers every
//! caller must send (so both sides agree on them in one place).

pub mod v1 {
    tonic::include_proto!("mailroot.v1");
}

/// Metadata header carrying the cluster auth GUID on every `Store` call.
pub const AUTH_GUID_HEADER: &str = "x-mailroot-auth-guid";
/// Metadata header carrying the machine-readable reason of an error status.
pub const ERROR_REASON_HEADER: &str = "x-mailroot-error";
/// Largest gRPC message either side accepts: a maximum-size mail (25 MB) plus room.
pub const MAX_GRPC_MESSAGE: usize = 64 * 1024 * 1024;
