//! Contract suites of kit, one binary: each suite's test functions run against every
//! implementation of the trait they test.

mod event_log;
mod outbox;
mod store;
mod support;
