//! A service's gRPC endpoint, connected once per gateway worker thread.
//!
//! A tonic `Channel` drives its HTTP/2 connection on the runtime that made it. The gateway's
//! HTTP workers are threads with runtimes of their own, so one channel shared by all of them made
//! every call hop to another thread and back (two wake-ups across threads per request). Each
//! worker now opens its own connection the first time it calls an endpoint, and a call stays on
//! the thread that took the request.

use std::cell::RefCell;
use std::collections::HashMap;

use tonic::transport::{Channel, Endpoint};

/// Where one service answers: `http://planning.pdp-harbin:50051`.
#[derive(Debug, Clone)]
pub struct Upstream {
    url: String,
    endpoint: Endpoint,
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a URL")]
pub struct InvalidEndpoint(pub String);

thread_local! {
    /// This thread's connections, by endpoint. Keyed by URL rather than by route, so that a
    /// route applied again (a watcher's re-list) keeps its connections; the handful of
    /// endpoints an instance has bounds it.
    static CONNECTIONS: RefCell<HashMap<String, Channel>> = RefCell::new(HashMap::new());
}

impl Upstream {
    pub fn new(url: &str) -> Result<Self, InvalidEndpoint> {
        let endpoint =
            Endpoint::from_shared(url.to_string()).map_err(|_| InvalidEndpoint(url.into()))?;
        Ok(Self {
            url: url.to_string(),
            endpoint,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// This thread's channel to the endpoint; connects on first use, on this thread's runtime
    /// (so it must be called inside one, as every request handler is).
    pub fn channel(&self) -> Channel {
        CONNECTIONS.with(|connections| {
            if let Some(channel) = connections.borrow().get(&self.url) {
                return channel.clone();
            }
            let channel = self.endpoint.clone().connect_lazy();
            connections
                .borrow_mut()
                .insert(self.url.clone(), channel.clone());
            channel
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_is_not_one_is_refused() {
        assert!(Upstream::new("not a url").is_err());
        assert_eq!(
            Upstream::new("http://planning:50051").unwrap().url(),
            "http://planning:50051"
        );
    }

    #[test]
    fn each_thread_has_its_own_connection_and_keeps_it() {
        let upstream = Upstream::new("http://127.0.0.1:9").unwrap();
        let on_thread = |upstream: Upstream| {
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    upstream.channel();
                    upstream.channel();
                    CONNECTIONS.with(|c| c.borrow().len())
                })
            })
            .join()
            .unwrap()
        };
        // One connection per endpoint on each thread, however often it is asked for.
        assert_eq!(on_thread(upstream.clone()), 1);
        assert_eq!(on_thread(upstream), 1);
    }
}
