//! The pdp API contract, generated from the `.proto` files beside this crate.
//!
//! Services implement the generated servers; the gateway reads [`FILE_DESCRIPTOR_SET`] to
//! transcode REST/JSON and to write the OpenAPI document, so a new RPC with a `google.api.http`
//! rule needs no code outside its service.

/// The encoded `google.protobuf.FileDescriptorSet` of every pdp proto and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/pdp_descriptor.bin"));

pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
}

pub mod pdp {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("pdp.common.v1");
        }
    }
    pub mod planning {
        pub mod v1 {
            tonic::include_proto!("pdp.planning.v1");
        }
    }
    pub mod agreements {
        pub mod v1 {
            tonic::include_proto!("pdp.agreements.v1");
        }
    }
    pub mod selection {
        pub mod v1 {
            tonic::include_proto!("pdp.selection.v1");
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn descriptor_set_holds_every_pdp_file_and_http_rules() {
        let fds = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let names: Vec<_> = fds.file.iter().filter_map(|f| f.name.as_deref()).collect();
        assert!(names.contains(&"pdp/common/v1/common.proto"), "{names:?}");
        assert!(names.contains(&"google/api/annotations.proto"), "{names:?}");
    }
}
