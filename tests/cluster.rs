//! pdp the way a province runs it: every service its own `pdp serve` process, in cluster mode, on
//! PostgreSQL, the Kafka-compatible broker, Redis and the S3-API store, as two instances (the
//! shared provincial one and Harbin's municipal one) behind one `pdp gateway`
//! (`support::cluster`). The whole authorization (`authorization::lifecycle`) runs through the
//! gateway for a Harbin authorization, ending in an early termination; the province receives
//! Harbin's filing from the other instance on the way.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

mod authorization;
mod support;
use authorization::{Ending, Options, Platform};
use support::cluster::{Cluster, Setup};
use support::servers::Servers;
use support::*;

#[test]
fn the_whole_authorization_across_separate_services_and_two_instances() {
    authorization::lifecycle(
        Options {
            on_kafka: true,
            ending: Ending::Termination,
        },
        |run| {
            Box::new(Separate(Cluster::start(&Setup {
                config: run.config,
                shift: Some(run.shift),
                env: &[],
                run: run.name,
                servers: &Servers::from_env(),
            })))
        },
    );
}

struct Separate(Cluster);

impl Platform for Separate {
    fn port(&self) -> u16 {
        self.0.gateway.http_port
    }

    fn token(&self, tenant: &str, role: &str, org: &str) -> String {
        self.0.token(tenant, role, org)
    }

    fn metrics(&self) -> String {
        self.0.harbin_metrics()
    }

    fn dead_letters(&self) -> String {
        let out = pdp(
            &["events", "dead-letters"],
            &[("PDP_STORE__URL", &self.0.harbin.store_url)],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sandbox_objects(&self, prefix: &str) -> Vec<String> {
        self.0.harbin_sandbox_objects(prefix)
    }

    fn stop(self: Box<Self>) {
        self.0.stop();
    }
}
