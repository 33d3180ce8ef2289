//! A service's gRPC endpoint, and this worker thread's HTTP/2 connection to it.
//!
//! The gateway's HTTP workers are threads with runtimes of their own, and a call is cheapest
//! when it stays on the thread that took the request: each worker opens its own connection the
//! first time it calls an endpoint. A call goes straight onto that connection with the `h2`
//! crate: a tonic `Channel` (a buffer task in front of hyper's client, which hands each request
//! to its connection task and spawns another task to await the answer) cost three task hand-offs
//! per call, and the gateway makes one call per request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tonic::codegen::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Window sizes as hyper's client sets them (h2's own 64 KiB would make a large answer wait
/// for window updates).
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// Where one service answers: `http://planning.pdp-harbin:50051`.
#[derive(Debug, Clone)]
pub struct Upstream {
    url: Arc<str>,
    origin: http::Uri,
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an http:// URL with a host")]
pub struct InvalidEndpoint(pub String);

thread_local! {
    /// This thread's connections, by endpoint URL. Keyed by URL rather than by route, so that a
    /// route applied again (a watcher's re-list) keeps its connections; the handful of
    /// endpoints an instance has bounds it.
    static CONNECTIONS: RefCell<HashMap<Arc<str>, Connection>> = RefCell::new(HashMap::new());
}

/// Tells one connection from the next to the same endpoint, so that a closed one never
/// forgets its successor.
static GENERATION: AtomicU64 = AtomicU64::new(0);

impl Upstream {
    pub fn new(url: &str) -> Result<Self, InvalidEndpoint> {
        let invalid = || InvalidEndpoint(url.to_string());
        let origin: http::Uri = url.parse().map_err(|_| invalid())?;
        if origin.scheme() != Some(&http::uri::Scheme::HTTP) {
            return Err(invalid());
        }
        if origin.host().is_none_or(str::is_empty) {
            return Err(invalid());
        }
        Ok(Self {
            url: url.into(),
            origin,
        })
    }

    /// `host:port`, the port defaulted as the scheme says.
    fn address(&self) -> String {
        let host = self.origin.host().unwrap_or_default();
        format!("{host}:{}", self.origin.port_u16().unwrap_or(80))
    }

    /// Scheme and authority, which every call's URI carries.
    pub fn origin(&self) -> &http::Uri {
        &self.origin
    }

    /// The endpoint's host, as a trace names the server.
    pub fn host(&self) -> &str {
        self.origin.host().unwrap_or_default()
    }

    /// This thread's connection to the endpoint, opened on first use on this thread's runtime
    /// (so it must be called inside one, as every request handler is).
    pub async fn connection(&self) -> Result<Connection, std::io::Error> {
        if let Some(open) = CONNECTIONS.with(|c| c.borrow().get(&self.url).cloned()) {
            return Ok(open);
        }
        let opened = self.connect().await?;
        // Two requests may have connected at once: the first kept wins, the other's connection
        // closes when its handle is dropped.
        Ok(CONNECTIONS.with(|c| {
            c.borrow_mut()
                .entry(self.url.clone())
                .or_insert(opened)
                .clone()
        }))
    }

    async fn connect(&self) -> Result<Connection, std::io::Error> {
        let stream = tokio::net::TcpStream::connect(self.address()).await?;
        stream.set_nodelay(true)?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(std::io::Error::other)?;
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        let url = self.url.clone();
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(upstream = %url, error = %err, "upstream connection closed");
            }
            forget(&url, generation);
        });
        Ok(Connection {
            send,
            url: self.url.clone(),
            generation,
        })
    }
}

/// Drops this thread's connection to `url` if it is still `generation`: the next call opens a
/// new one.
fn forget(url: &str, generation: u64) {
    CONNECTIONS.with(|c| {
        let mut connections = c.borrow_mut();
        if connections
            .get(url)
            .is_some_and(|open| open.generation == generation)
        {
            connections.remove(url);
        }
    });
}

/// One HTTP/2 connection to an upstream, as the service tonic's client calls through.
#[derive(Debug, Clone)]
pub struct Connection {
    send: h2::client::SendRequest<Bytes>,
    url: Arc<str>,
    generation: u64,
}

impl Service<http::Request<tonic::body::Body>> for Connection {
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Ready when the peer accepts one more stream; an error means the connection is gone.
        self.send.poll_ready(cx).map_err(|err| {
            forget(&self.url, self.generation);
            err.into()
        })
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let (head, body) = request.into_parts();
        let opened = self
            .send
            .send_request(http::Request::from_parts(head, ()), false);
        Box::pin(async move {
            let (answer, mut stream) = opened?;
            // A unary call's body is one encoded message, ready at once: sent as one DATA frame
            // that ends the stream.
            let message = body.collect().await?.to_bytes();
            stream.send_data(message, true)?;
            Ok(answer.await?.map(|stream| ResponseBody {
                stream,
                data_done: false,
            }))
        })
    }
}

/// An answer's body: its DATA frames, then its trailers (where gRPC puts the status).
#[derive(Debug)]
pub struct ResponseBody {
    stream: h2::RecvStream,
    data_done: bool,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.stream.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Read, so the peer may send as much again.
                    let _ = this.stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => this.data_done = true,
            }
        }
        match ready!(this.stream.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(err) => Poll::Ready(Some(Err(err))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_with_a_host_are_endpoints() {
        for bad in [
            "not a url",
            "https://planning:50051",
            "planning:50051",
            "/planning",
        ] {
            assert!(Upstream::new(bad).is_err(), "{bad}");
        }
        let upstream = Upstream::new("http://planning.pdp-harbin:50051").unwrap();
        assert_eq!(upstream.address(), "planning.pdp-harbin:50051");
        assert_eq!(
            Upstream::new("http://planning").unwrap().address(),
            "planning:80"
        );
    }

    #[tokio::test]
    async fn each_thread_keeps_one_connection_and_forgets_a_closed_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // A bare HTTP/2 server that accepts connections and closes each on demand.
        let (close, mut closing) = tokio::sync::mpsc::channel::<()>(1);
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let mut connection = h2::server::handshake(socket).await.unwrap();
                tokio::select! {
                    _ = async { while connection.accept().await.is_some() {} } => {}
                    _ = closing.recv() => {}
                }
            }
        });
        let upstream = Upstream::new(&format!("http://{address}")).unwrap();
        let first = upstream.connection().await.unwrap();
        let again = upstream.connection().await.unwrap();
        assert_eq!(
            first.generation, again.generation,
            "one connection per thread"
        );

        close.send(()).await.unwrap();
        // The connection task notices the close and forgets the connection.
        for _ in 0..100 {
            if CONNECTIONS.with(|c| c.borrow().is_empty()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let next = upstream.connection().await.unwrap();
        assert_ne!(
            next.generation, first.generation,
            "a new connection after a close"
        );
    }

    #[tokio::test]
    async fn an_endpoint_nobody_listens_on_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let upstream = Upstream::new(&format!("http://{address}")).unwrap();
        assert!(upstream.connection().await.is_err());
    }
}
