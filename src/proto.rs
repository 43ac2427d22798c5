//! The generated gRPC code of `proto/` and its encoded descriptor set (for reflection).

/// `task.proto`: the API this service serves.
pub mod task {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("task");
}

/// `processor.proto`: the Processor's API this service calls.
pub mod processor {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("processor");
}

/// The encoded `FileDescriptorSet` of the API served (`task.proto`), for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
