//! The sandbox's engine (原始数据不出域、数据可用不可见, 第四条, 第十六条, 第二十二条): an
//! operator's SQL runs on Apache DataFusion over the Parquet files of the resources its grant
//! names, in an object store (a directory in dev, S3-compatible in a cluster); each table shows
//! only the granted fields, masked ones as keyed digests; and nothing leaves unless its logical
//! plan passes [`disclosure::control`]: aggregates only, of groups of at least `k` records,
//! with calibrated noise. `CREATE TABLE workspace.<name> AS SELECT …` keeps row-level work inside
//! instead ([`engine::Derived`]): the host names where a grant's workspace lies, and later
//! statements read its tables as `workspace.<name>` under the same control. Where the data lies
//! is [`store`]'s: a directory, or a bucket of any S3-compatible store. Where the data is read
//! is an [`Engine`]'s: DataFusion in the host's process, or a [`ballista`] cluster.
//!
//! A library the requests service hosts behind its grants; its own crate so that DataFusion, a
//! large build, is compiled once and its rules are tested without a store.

pub mod ballista;
pub mod disclosure;
pub mod engine;
pub mod load;
pub mod load_parquet;
mod noise;
pub mod store;

pub use disclosure::{Policy, Refusal};
pub use engine::{Answer, Engine, InProcess, Limits, Rules, Sandbox, SandboxError, Table};
pub use object_store;
