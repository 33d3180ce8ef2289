//! `make bench`: the gateway's overhead per request — JWT verification, casbin, rate limits,
//! transcoding, the gRPC call and the audit record — against calling the same gRPC service
//! directly, at the same fixed concurrency, in one run.
//!
//! `BENCH_CONCURRENCY` (default `1,32`), `BENCH_ROUNDS` (default 3) and `BENCH_SECONDS` (default
//! 5) set the load; see `common/rounds.rs`.

/// The allocator the `pdp` binary runs with, so that the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer};
use pdp_gateway::audit::OutboxAudit;
use pdp_gateway::auth::{DevKey, JwtAuthenticator};
use pdp_gateway::authz::CasbinAuthorizer;
use pdp_gateway::limits::{Limit, LocalLimiter};
use pdp_gateway::tenants::Tenants;
use pdp_gateway::transcode::routes::RouteTable;
use pdp_gateway::{Gateway, SingleInstance};
use pdp_kit::clock::SystemClock;
use pdp_kit::identity::{Identity, IdentityKey, RequireIdentity};
use tonic::{Request, Response, Status};

#[allow(clippy::all, missing_debug_implementations)]
mod widgets {
    tonic::include_proto!("pdp.testing.v1");
}
use widgets::widget_service_server::{WidgetService, WidgetServiceServer};
use widgets::*;

const DESCRIPTOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/testing_descriptor.bin"));

struct Widgets;

#[tonic::async_trait]
impl WidgetService for Widgets {
    async fn get_widget(&self, r: Request<GetWidgetRequest>) -> Result<Response<Widget>, Status> {
        let r = r.into_inner();
        Ok(Response::new(Widget {
            id: r.id,
            tenant: r.tenant,
            display_name: "pump station telemetry".into(),
            ..Default::default()
        }))
    }
    async fn list_widgets(
        &self,
        _: Request<ListWidgetsRequest>,
    ) -> Result<Response<ListWidgetsResponse>, Status> {
        Err(Status::unimplemented("bench"))
    }
    async fn create_widget(
        &self,
        _: Request<CreateWidgetRequest>,
    ) -> Result<Response<Widget>, Status> {
        Err(Status::unimplemented("bench"))
    }
    async fn update_widget(
        &self,
        _: Request<UpdateWidgetRequest>,
    ) -> Result<Response<Widget>, Status> {
        Err(Status::unimplemented("bench"))
    }
    async fn submit_widget(
        &self,
        _: Request<SubmitWidgetRequest>,
    ) -> Result<Response<Widget>, Status> {
        Err(Status::unimplemented("bench"))
    }
    async fn get_public_widget(
        &self,
        _: Request<GetWidgetRequest>,
    ) -> Result<Response<Widget>, Status> {
        Err(Status::unimplemented("bench"))
    }
    async fn internal_only(
        &self,
        _: Request<GetWidgetRequest>,
    ) -> Result<Response<Widget>, Status> {
        Err(Status::unimplemented("bench"))
    }
    async fn upload_attachment(
        &self,
        _: Request<tonic::Streaming<UploadAttachmentRequest>>,
    ) -> Result<Response<Widget>, Status> {
        Err(Status::unimplemented("bench"))
    }
}

#[path = "common/rounds.rs"]
mod rounds;
use rounds::{Cpu, Figures, Rounds, concurrencies, setting};

/// Runs `call` from `concurrency` tasks for `seconds`, collecting each latency.
async fn load<F, Fut>(concurrency: usize, seconds: u64, call: F) -> Figures
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    call().await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    let elapsed = started.elapsed();
    all.sort();
    Figures::new(
        all.len() as f64 / elapsed.as_secs_f64(),
        all[all.len() / 2].as_secs_f64() * 1000.0,
        all[all.len() * 99 / 100].as_secs_f64() * 1000.0,
    )
}

fn main() {
    let seconds = setting("BENCH_SECONDS", 5);
    let rounds = setting("BENCH_ROUNDS", 3);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let key = IdentityKey::new(
            b"bench-identity-key-bench-identity",
            chrono::Duration::seconds(300),
            Arc::new(SystemClock),
        );

        // The service, as every pdp service runs: behind the identity check.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let grpc_addr = listener.local_addr().expect("addr");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(WidgetServiceServer::with_interceptor(
                    Widgets,
                    RequireIdentity(key.clone()),
                ))
                .serve_with_incoming(pdp_kit::service::nodelay(listener)),
        );
        let channel = tonic::transport::Channel::from_shared(format!("http://{grpc_addr}"))
            .expect("url")
            .connect_lazy();

        // The gateway with its real parts: dev JWT, casbin, limits, audit into SQLite.
        let dir = tempfile::tempdir().expect("temp dir");
        let dev_key = DevKey::load_or_create(dir.path()).expect("dev key");
        let token = dev_key.issue(
            "bench",
            "org",
            &["operator".into()],
            &"230100".parse().expect("code"),
            chrono::Duration::hours(1),
        );
        let store = pdp_kit::store::Store::open(
            &dir.path().join("platform.db").to_string_lossy(),
            "platform",
            1,
        )
        .expect("store");
        store
            .migrate(&[pdp_kit::store::KIT_MIGRATIONS])
            .expect("migrate");
        let (audit, _writer) =
            OutboxAudit::spawn(store, tokio_util::sync::CancellationToken::new());
        let tenants = Tenants::shipped();
        let authorizer =
            CasbinAuthorizer::new("p, operator, *, pdp.testing.v1.*/*, read", &tenants)
                .await
                .expect("policy");
        let pool = prost_reflect::DescriptorPool::decode(DESCRIPTOR).expect("descriptors");
        let gateway = Arc::new(Gateway {
            tenants,
            routes: RouteTable::from_pool(&pool).expect("routes"),
            authenticator: Arc::new(JwtAuthenticator::dev(&dev_key)),
            authorizer: Arc::new(authorizer),
            upstreams: Arc::new(SingleInstance(HashMap::from([(
                "testing".to_string(),
                pdp_gateway::upstream::Upstream::new(&format!("http://{grpc_addr}")).expect("url"),
            )]))),
            identity_key: key.clone(),
            upstream_timeout: Duration::from_secs(10),
            audit: Arc::new(audit),
            limiter: Arc::new(LocalLimiter::default()),
            tenant_limit: Limit {
                per_second: 1e9,
                burst: 1_000_000_000,
            },
            subject_limit: Limit {
                per_second: 1e9,
                burst: 1_000_000_000,
            },
            max_body_bytes: 1 << 20,
            max_upload_bytes: 1 << 30,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            idempotency: Arc::new(pdp_gateway::idempotency::LocalIdempotency::default()),
        });
        let configure = gateway.configure();
        let server = HttpServer::new(move || App::new().configure(configure.clone()))
            .workers(2)
            .bind("127.0.0.1:0")
            .expect("bind");
        let http_addr = server.addrs()[0];
        tokio::spawn(server.run());

        let identity = Identity {
            subject: "bench".into(),
            organization: "org".into(),
            roles: vec!["operator".into()],
            tenant: "230100".parse().expect("code"),
            division: None,
        };
        let direct = {
            let channel = channel.clone();
            let key = key.clone();
            move || {
                let mut client = widgets_client(channel.clone());
                let mut request = Request::new(GetWidgetRequest {
                    tenant: "230100".into(),
                    id: "w-1".into(),
                });
                key.sign_into(&identity, request.metadata_mut());
                async move {
                    client.unary(request).await;
                }
            }
        };
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let uri: http::Uri = format!("http://{http_addr}/api/v1/tenants/230100/widgets/w-1")
            .parse()
            .expect("uri");
        let via_gateway = move || {
            let request = http::Request::get(uri.clone())
                .header("authorization", format!("Bearer {token}"))
                .body(http_body_util::Empty::new())
                .expect("request");
            let http = http.clone();
            async move {
                let response = http.request(request).await.expect("gateway answers");
                assert_eq!(response.status(), 200);
                use http_body_util::BodyExt;
                response.into_body().collect().await.expect("body");
            }
        };

        // Warm both paths, then measure.
        load(32, 1, direct.clone()).await;
        load(32, 1, via_gateway.clone()).await;
        for concurrency in concurrencies() {
            println!(
                "GetWidget at concurrency {concurrency}, {rounds} rounds of {seconds} s per path"
            );
            let mut compared = Rounds::default();
            // The load generator runs in this process too: its CPU counts on both paths.
            let pid = std::process::id();
            for _ in 0..rounds {
                let before = Cpu::of(pid);
                let d = load(concurrency as usize, seconds, direct.clone()).await;
                let d = d.with_cpu(before, Cpu::of(pid), seconds);
                let before = Cpu::of(pid);
                let g = load(concurrency as usize, seconds, via_gateway.clone()).await;
                let g = g.with_cpu(before, Cpu::of(pid), seconds);
                compared.add(&d, &g);
            }
            println!("{}", compared.summary());
        }
    });
}

/// A plain gRPC client of GetWidget (the generated client is not built for tests).
fn widgets_client(channel: tonic::transport::Channel) -> DirectClient {
    DirectClient(tonic::client::Grpc::new(channel))
}

struct DirectClient(tonic::client::Grpc<tonic::transport::Channel>);

impl DirectClient {
    async fn unary(&mut self, request: Request<GetWidgetRequest>) {
        self.0.ready().await.expect("ready");
        let path = http::uri::PathAndQuery::from_static("/pdp.testing.v1.WidgetService/GetWidget");
        let codec = tonic_prost::ProstCodec::<GetWidgetRequest, Widget>::default();
        self.0
            .unary(request, path, codec)
            .await
            .expect("direct call");
    }
}
