//! Contract suites of kit, one binary: each suite's test functions run against every
//! implementation of the trait they test.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

mod dead_letters;
mod event_log;
mod outbox;
mod retention;
mod store;
mod support;
