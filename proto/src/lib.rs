//! The pdp API contract, generated from the `.proto` files beside this crate.
//!
//! Services implement the generated servers; the gateway reads [`FILE_DESCRIPTOR_SET`] to
//! transcode REST/JSON and to write the OpenAPI document, so a new RPC with a `google.api.http`
//! rule needs no code outside its service.

/// The encoded `google.protobuf.FileDescriptorSet` of every pdp proto and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/pdp_descriptor.bin"));

/// The AsyncAPI document of pdp's events: `asyncapi/template.yaml` with each event type's message
/// and JSON Schema, generated from the event messages. `asyncapi/pdp.yaml` is a copy of it.
pub const ASYNCAPI: &str = include_str!(concat!(env!("OUT_DIR"), "/asyncapi.yaml"));

/// A message that is the data of one or more event types (its `pdp.events.v1.event_type`
/// options); the build generates the impls.
pub trait EventPayload: prost::Message + Default {
    /// The message's full protobuf name.
    const FULL_NAME: &'static str;
    /// The event types whose data it is.
    const TYPES: &'static [&'static str];
}

/// An event type and the message its data is. Producers and consumers name a type only through
/// the constants the build generates (`pdp::planning::v1::PLAN_APPROVED`), so the type and its
/// data cannot drift apart.
pub struct EventType<P> {
    name: &'static str,
    payload: std::marker::PhantomData<fn() -> P>,
}

impl<P> EventType<P> {
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            payload: std::marker::PhantomData,
        }
    }

    /// `pdp.<service>.<aggregate>.<verb>`.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<P> Clone for EventType<P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for EventType<P> {}

impl<P> std::fmt::Debug for EventType<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

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
            include!(concat!(env!("OUT_DIR"), "/pdp.planning.v1.events.rs"));
        }
    }
    pub mod agreements {
        pub mod v1 {
            tonic::include_proto!("pdp.agreements.v1");
            include!(concat!(env!("OUT_DIR"), "/pdp.agreements.v1.events.rs"));
        }
    }
    pub mod selection {
        pub mod v1 {
            tonic::include_proto!("pdp.selection.v1");
            include!(concat!(env!("OUT_DIR"), "/pdp.selection.v1.events.rs"));
        }
    }
    pub mod requests {
        pub mod v1 {
            tonic::include_proto!("pdp.requests.v1");
            include!(concat!(env!("OUT_DIR"), "/pdp.requests.v1.events.rs"));
        }
    }
    pub mod exchange {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/pdp.exchange.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/pdp.exchange.v1.events.rs"));
        }
    }
    pub mod products {
        pub mod v1 {
            tonic::include_proto!("pdp.products.v1");
            include!(concat!(env!("OUT_DIR"), "/pdp.products.v1.events.rs"));
        }
    }
    pub mod termination {
        pub mod v1 {
            tonic::include_proto!("pdp.termination.v1");
            include!(concat!(env!("OUT_DIR"), "/pdp.termination.v1.events.rs"));
        }
    }
    pub mod oversight {
        pub mod v1 {
            tonic::include_proto!("pdp.oversight.v1");
            include!(concat!(env!("OUT_DIR"), "/pdp.oversight.v1.events.rs"));
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

    #[test]
    fn the_committed_asyncapi_document_is_the_generated_one() {
        let committed = include_str!("../asyncapi/pdp.yaml");
        assert!(
            committed == super::ASYNCAPI,
            "proto/asyncapi/pdp.yaml differs from what the protos and asyncapi/template.yaml \
             generate: run `make asyncapi` and commit the result"
        );
    }

    #[test]
    fn each_event_type_names_its_message_once() {
        use super::EventPayload;
        use super::pdp::planning::v1 as planning;
        assert_eq!(
            planning::PLAN_BECAME_EFFECTIVE.name(),
            "pdp.planning.plan.became_effective"
        );
        assert_eq!(
            planning::PlanTookEffect::TYPES,
            ["pdp.planning.plan.became_effective"]
        );
        assert!(planning::PlanChanged::TYPES.contains(&planning::PLAN_APPROVED.name()));
        let doc: serde_json::Value = serde_yaml::from_str(super::ASYNCAPI).unwrap();
        let schema = &doc["components"]["schemas"]["PlanTookEffect"];
        assert_eq!(schema["properties"]["resource_ids"]["type"], "array");
        assert_eq!(
            schema["properties"]["mode"]["enum"][1],
            "AUTHORIZATION_MODE_WHOLE"
        );
        assert_eq!(
            doc["channels"]["planning"]["messages"]["planBecameEffective"]["$ref"],
            "#/components/messages/planBecameEffective"
        );
    }
}
