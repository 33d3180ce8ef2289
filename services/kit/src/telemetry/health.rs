//! `/healthz` (the process runs), `/readyz` (the store and the event log answer) and `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type Advice = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// The dependencies a process needs before it takes traffic, and what its operators should know
/// without the process being taken out of service (advice).
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(String, Arc<dyn Fn() -> CheckFuture + Send + Sync>)>,
    advice: Vec<(String, Advice)>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.checks.iter().map(|(n, _)| n).collect();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

impl Readiness {
    pub fn check<F, Fut>(mut self, name: &str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name.to_string(), Arc::new(move || Box::pin(check()))));
        self
    }

    /// Something `/readyz` reports under `advice` when `advise` says so, without failing.
    pub fn advise<F>(mut self, name: &str, advise: F) -> Self
    where
        F: Fn() -> Option<String> + Send + Sync + 'static,
    {
        self.advice.push((name.to_string(), Arc::new(advise)));
        self
    }

    /// What the advisers say now, by name.
    pub fn advice(&self) -> serde_json::Map<String, serde_json::Value> {
        self.advice
            .iter()
            .filter_map(|(name, advise)| Some((name.clone(), advise()?.into())))
            .collect()
    }

    /// Runs every check (each bounded by two seconds) and reports each by name.
    pub async fn evaluate(&self) -> (bool, serde_json::Value) {
        let mut ready = true;
        let mut report = serde_json::Map::new();
        for (name, check) in &self.checks {
            let outcome = match tokio::time::timeout(Duration::from_secs(2), check()).await {
                Ok(Ok(())) => "ok".to_string(),
                Ok(Err(e)) => e,
                Err(_) => "timed out".to_string(),
            };
            ready &= outcome == "ok";
            report.insert(name.clone(), serde_json::Value::String(outcome));
        }
        (ready, serde_json::Value::Object(report))
    }
}

/// Mounts the three endpoints on an actix app.
pub fn routes(readiness: Readiness) -> impl FnOnce(&mut web::ServiceConfig) {
    routes_for(readiness, true)
}

/// `/healthz` and `/readyz`, and `/metrics` when `with_metrics`: a public listener (the gateway's)
/// leaves the metrics to an internal one ([`metrics_routes`]).
pub fn routes_for(
    readiness: Readiness,
    with_metrics: bool,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(readiness))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz));
        if with_metrics {
            cfg.route("/metrics", web::get().to(metrics));
        }
    }
}

/// `/metrics` alone, for an internal listener.
pub fn metrics_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let (ready, checks) = readiness.evaluate().await;
    let mut body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": checks,
    });
    let advice = readiness.advice();
    if !advice.is_empty() {
        body["advice"] = advice.into();
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(super::metrics::render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{App, test};

    #[actix_web::test]
    async fn ready_only_when_every_check_answers() {
        let readiness = Readiness::default()
            .check("store", || async { Ok(()) })
            .check("event_log", || async {
                Err("connection refused".to_string())
            })
            .advise("calendar", || Some("no schedule for 2027".to_string()))
            .advise("quiet", || None);
        let app = test::init_service(App::new().configure(routes(readiness))).await;

        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
        assert_eq!(resp.status(), 200);

        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
        assert_eq!(resp.status(), 503);
        let body: serde_json::Value = test::read_body_json(resp).await;
        assert_eq!(body["checks"]["event_log"], "connection refused");
        assert_eq!(body["checks"]["store"], "ok");
        assert_eq!(body["advice"]["calendar"], "no schedule for 2027");
        assert!(body["advice"].get("quiet").is_none(), "{body}");

        let advised = Readiness::default()
            .check("store", || async { Ok(()) })
            .advise("calendar", || Some("no schedule for 2027".to_string()));
        let app2 = test::init_service(App::new().configure(routes(advised))).await;
        let resp =
            test::call_service(&app2, test::TestRequest::get().uri("/readyz").to_request()).await;
        assert_eq!(resp.status(), 200, "advice never makes a process unready");

        super::super::metrics::OUTBOX_PENDING
            .with_label_values(&["health_test"])
            .set(7);
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
        let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
        assert!(
            text.contains("pdp_outbox_pending{store=\"health_test\"} 7"),
            "{text}"
        );
    }
}
