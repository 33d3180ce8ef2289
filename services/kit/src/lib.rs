//! pdp's shared runtime. Every service and the gateway build on these parts; none of them holds a
//! rule of the regulation (those live in the service that owns them).

pub mod audit;
pub mod calendar;
pub mod change;
pub mod clock;
pub mod config;
pub mod dead_letter;
pub mod error;
pub mod events;
pub mod grpc;
pub mod identity;
pub mod inbox;
pub mod outbox;
pub mod paging;
pub mod platform;
pub mod retention;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tenants;
#[cfg(feature = "testing")]
pub mod testing;
