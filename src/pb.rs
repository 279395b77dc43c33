//! Generated protobuf and tonic code (flyteidl v1 subset and flyteidl2.auth), and the encoded
//! descriptor set served by reflection.

#![allow(clippy::all, missing_docs)]

pub mod flyteidl {
    pub mod admin {
        tonic::include_proto!("flyteidl.admin");
    }
    pub mod service {
        tonic::include_proto!("flyteidl.service");
    }
}

pub mod flyteidl2 {
    pub mod auth {
        tonic::include_proto!("flyteidl2.auth");
    }
}

/// Every proto file of the service and its imports, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flyteauth_descriptor.bin"));
