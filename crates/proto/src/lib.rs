//! The Tenantry v1 API as Rust types, generated at build time from `proto/`.
//!
//! Each module mirrors one protobuf package. [`FILE_DESCRIPTOR_SET`] holds every file (with the
//! well-known types it imports and its comments) for gRPC server reflection.

#![allow(
    clippy::large_enum_variant,
    clippy::doc_lazy_continuation,
    missing_docs
)]

mod event_types;

pub use event_types::{EventPayload, EventType};

/// Encoded `google.protobuf.FileDescriptorSet` of the whole v1 API, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tenantry_descriptor.bin"));

pub mod registry {
    pub mod v1 {
        tonic::include_proto!("tenantry.registry.v1");
    }
}

pub mod membership {
    pub mod v1 {
        tonic::include_proto!("tenantry.membership.v1");
    }
}

pub mod invitation {
    pub mod v1 {
        tonic::include_proto!("tenantry.invitation.v1");
    }
}

pub mod notification {
    pub mod v1 {
        tonic::include_proto!("tenantry.notification.v1");
    }
}

pub mod audit {
    pub mod v1 {
        tonic::include_proto!("tenantry.audit.v1");
    }
}

pub mod events {
    pub mod v1 {
        tonic::include_proto!("tenantry.events.v1");
    }
}
