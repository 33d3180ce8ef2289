//! The route table: every RPC with a `google.api.http` rule in the descriptor set becomes a
//! route, with no code per endpoint.

use actix_web::http::Method;
use pdp_proto::google::api::{HttpRule, http_rule::Pattern};
use prost_reflect::{
    DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor, Value,
};

use super::template::{PartCount, PathTemplate, RequestPath, TemplateError};

/// Where the request body goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyBinding {
    /// No body.
    None,
    /// `body: "*"`: the whole request message.
    Whole,
    /// `body: "field"`: one field of the request message.
    Field(String),
    /// A client-streaming RPC whose `body: "field"` is a `google.api.HttpBody`: the raw body,
    /// streamed as it arrives, each piece in the field of one message (the first message also
    /// carries the path's variables).
    Stream(String),
}

/// The message a streamed body travels in.
pub const HTTP_BODY: &str = "google.api.HttpBody";

#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    pub template: PathTemplate,
    pub body: BodyBinding,
    pub rpc: MethodDescriptor,
    /// Derived once from the above, since every request asks for them.
    derived: Derived,
}

#[derive(Debug, Clone)]
struct Derived {
    operation: String,
    grpc_path: http::uri::PathAndQuery,
    service: String,
    public: bool,
    specificity: usize,
}

impl Route {
    fn new(
        method: Method,
        template: PathTemplate,
        body: BodyBinding,
        rpc: MethodDescriptor,
    ) -> Self {
        let operation = format!("{}/{}", rpc.parent_service().full_name(), rpc.name());
        let grpc_path = http::uri::PathAndQuery::try_from(format!("/{operation}"))
            .expect("a service's full name and a method name make a valid path");
        let file = rpc.parent_service().parent_file();
        let package = file.package_name();
        let service = package.split('.').nth(1).unwrap_or(package).to_string();
        let public = template.to_string().contains("/public/");
        // More literal segments win when two templates match one path (`/widgets:search` over
        // `/widgets/{id}`).
        let specificity = template
            .openapi_path()
            .split('/')
            .filter(|s| !s.starts_with('{') && !s.is_empty())
            .count()
            + usize::from(template.verb().is_some());
        Self {
            method,
            template,
            body,
            rpc,
            derived: Derived {
                operation,
                grpc_path,
                service,
                public,
                specificity,
            },
        }
    }

    /// The operation that authorization and audit name: `pdp.planning.v1.PlanService/SubmitPlan`.
    pub fn operation(&self) -> &str {
        &self.derived.operation
    }

    /// The gRPC path: `/pdp.planning.v1.PlanService/SubmitPlan`.
    pub fn grpc_path(&self) -> &http::uri::PathAndQuery {
        &self.derived.grpc_path
    }

    /// The service's package segment (`planning` in `pdp.planning.v1`), which names the
    /// upstream.
    pub fn service(&self) -> &str {
        &self.derived.service
    }

    /// Public routes (`…/public/…`) need no token.
    pub fn is_public(&self) -> bool {
        self.derived.public
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{operation}: {reason}")]
    Rule { operation: String, reason: String },
}

#[derive(Debug)]
pub enum Resolution<'a> {
    Found(&'a Route, Vec<(String, String)>),
    /// The path exists, with other methods.
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// The routes a path can match, by its number of parts: every request is tried against
    /// these few instead of all routes (a scan of all 158 was 3 % of the gateway's worker CPU).
    candidates: Candidates,
}

/// Indices into `routes`, in their order.
#[derive(Debug, Clone, Default)]
struct Candidates {
    /// Routes whose paths have exactly the key's number of parts.
    by_parts: std::collections::HashMap<usize, Vec<usize>>,
    /// Routes ending in `**`, with the least number of parts each takes.
    open_ended: Vec<(usize, usize)>,
}

impl Candidates {
    fn of(routes: &[Route]) -> Self {
        let mut candidates = Self::default();
        for (i, route) in routes.iter().enumerate() {
            match route.template.parts() {
                PartCount::Exactly(n) => candidates.by_parts.entry(n).or_default().push(i),
                PartCount::AtLeast(n) => candidates.open_ended.push((i, n)),
            }
        }
        candidates
    }

    /// The routes a path of `parts` parts may match; the order among them is not kept.
    fn for_parts(&self, parts: usize) -> impl Iterator<Item = usize> + '_ {
        let exact = self.by_parts.get(&parts).into_iter().flatten().copied();
        let open = self
            .open_ended
            .iter()
            .filter(move |(_, least)| parts >= *least)
            .map(|(i, _)| *i);
        exact.chain(open)
    }
}

impl RouteTable {
    /// Builds routes from every method of every service in `pool` that carries an HTTP rule.
    pub fn from_pool(pool: &DescriptorPool) -> Result<Self, RouteError> {
        let Some(extension) = pool.get_extension_by_name("google.api.http") else {
            return Ok(Self::default());
        };
        let mut routes = Vec::new();
        for service in pool.services() {
            for rpc in service.methods() {
                let options = rpc.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                let Value::Message(rule) = options.get_extension(&extension).into_owned() else {
                    continue;
                };
                let rule: HttpRule = rule.transcode_to().map_err(|e| RouteError::Rule {
                    operation: rpc.full_name().to_string(),
                    reason: e.to_string(),
                })?;
                add_rule(&mut routes, &rpc, &rule)?;
                for extra in &rule.additional_bindings {
                    add_rule(&mut routes, &rpc, extra)?;
                }
            }
        }
        Ok(Self::new(routes))
    }

    fn new(routes: Vec<Route>) -> Self {
        let candidates = Candidates::of(&routes);
        Self { routes, candidates }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn resolve(&self, method: &Method, path: &str) -> Resolution<'_> {
        let Some(path) = RequestPath::new(path) else {
            return Resolution::NotFound;
        };
        // Of the routes that match, the most specific wins, and of those the first in the table.
        let mut best: Option<(usize, Vec<(String, String)>)> = None;
        let mut allowed = Vec::new();
        for i in self.candidates.for_parts(path.part_count()) {
            let route = &self.routes[i];
            if !route.template.fits(&path) {
                continue;
            }
            if route.method != *method {
                allowed.push((i, route.method.clone()));
                continue;
            }
            let wins = best.as_ref().is_none_or(|(b, _)| {
                let b_specificity = self.routes[*b].derived.specificity;
                route.derived.specificity > b_specificity
                    || (route.derived.specificity == b_specificity && i < *b)
            });
            if wins && let Some(vars) = route.template.bind(&path) {
                best = Some((i, vars));
            }
        }
        match best {
            Some((i, vars)) => Resolution::Found(&self.routes[i], vars),
            None if !allowed.is_empty() => {
                allowed.sort_by_key(|(i, _)| *i);
                Resolution::MethodNotAllowed(allowed.into_iter().map(|(_, m)| m).collect())
            }
            None => Resolution::NotFound,
        }
    }
}

fn add_rule(
    routes: &mut Vec<Route>,
    rpc: &MethodDescriptor,
    rule: &HttpRule,
) -> Result<(), RouteError> {
    let fail = |reason: String| RouteError::Rule {
        operation: rpc.full_name().to_string(),
        reason,
    };
    let (method, path) = match &rule.pattern {
        Some(Pattern::Get(p)) => (Method::GET, p),
        Some(Pattern::Post(p)) => (Method::POST, p),
        Some(Pattern::Put(p)) => (Method::PUT, p),
        Some(Pattern::Delete(p)) => (Method::DELETE, p),
        Some(Pattern::Patch(p)) => (Method::PATCH, p),
        Some(Pattern::Custom(c)) => (
            Method::from_bytes(c.kind.as_bytes()).map_err(|e| fail(e.to_string()))?,
            &c.path,
        ),
        None => return Err(fail("http rule without a pattern".into())),
    };
    let template = PathTemplate::parse(path)?;
    let input = rpc.input();
    for field in template.fields() {
        check_field_path(&input, field)
            .map_err(|reason| fail(format!("path variable {field}: {reason}")))?;
    }
    let body = match rule.body.as_str() {
        "" => BodyBinding::None,
        "*" => BodyBinding::Whole,
        field => {
            let f = input.get_field_by_name(field).ok_or_else(|| {
                fail(format!(
                    "body field `{field}` is not in {}",
                    input.full_name()
                ))
            })?;
            if !matches!(f.kind(), Kind::Message(_)) || f.is_list() || f.is_map() {
                return Err(fail(format!(
                    "body field `{field}` must be a singular message"
                )));
            }
            let raw = matches!(f.kind(), Kind::Message(m) if m.full_name() == HTTP_BODY);
            if rpc.is_client_streaming() && raw {
                BodyBinding::Stream(field.to_string())
            } else {
                BodyBinding::Field(field.to_string())
            }
        }
    };
    // Only a raw body streams; anything else would need a JSON framing no client knows.
    if rpc.is_client_streaming() != matches!(body, BodyBinding::Stream(_)) {
        return Err(fail(format!(
            "a client-streaming RPC takes its body, and only it, as a {HTTP_BODY} field"
        )));
    }
    routes.push(Route::new(method, template, body, rpc.clone()));
    Ok(())
}

/// The field a dotted path (`widget.id`) names in `message`, or why there is none.
pub fn field_at(message: &MessageDescriptor, path: &str) -> Result<FieldDescriptor, String> {
    let mut current = message.clone();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let field = current
            .get_field_by_name(part)
            .ok_or_else(|| format!("no field `{part}` in {}", current.full_name()))?;
        if parts.peek().is_none() {
            return Ok(field);
        }
        match field.kind() {
            Kind::Message(m) => current = m,
            _ => return Err(format!("`{part}` is not a message")),
        }
    }
    Err("empty field path".into())
}

fn check_field_path(message: &MessageDescriptor, path: &str) -> Result<(), String> {
    let field = field_at(message, path)?;
    if field.is_list() || field.is_map() {
        return Err(format!("`{}` is repeated", field.name()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(pdp_proto::FILE_DESCRIPTOR_SET).unwrap()
    }

    /// What `resolve` answered before routes were indexed by their number of parts: every
    /// route tried, the most specific first in the table winning.
    fn scan<'a>(table: &'a RouteTable, method: &Method, path: &str) -> Option<&'a Route> {
        let path = RequestPath::new(path)?;
        let mut best: Option<&Route> = None;
        for route in &table.routes {
            if route.method == *method
                && route.template.bind(&path).is_some()
                && best.is_none_or(|b| route.derived.specificity > b.derived.specificity)
            {
                best = Some(route);
            }
        }
        best
    }

    fn found<'a>(resolution: Resolution<'a>) -> Option<&'a Route> {
        match resolution {
            Resolution::Found(route, _) => Some(route),
            _ => None,
        }
    }

    #[test]
    fn every_route_of_pdp_resolves_as_a_scan_of_all_routes_would() {
        let table = RouteTable::from_pool(&pool()).unwrap();
        assert!(table.routes.len() > 100, "{}", table.routes.len());
        for route in &table.routes {
            let path = route
                .template
                .openapi_path()
                .split('/')
                .map(|part| match part.split_once('}') {
                    Some((_, rest)) if part.starts_with('{') => format!("x-1{rest}"),
                    _ => part.to_string(),
                })
                .collect::<Vec<_>>()
                .join("/");
            let resolved = found(table.resolve(&route.method, &path));
            let scanned = scan(&table, &route.method, &path);
            assert_eq!(
                resolved.map(Route::operation),
                scanned.map(Route::operation),
                "{} {path}",
                route.method
            );
            assert!(
                resolved.is_some(),
                "{} {path} resolves to nothing",
                route.method
            );
        }
    }

    #[test]
    fn a_route_ending_in_rest_takes_paths_of_any_longer_length() {
        let rpc = pool().services().next().unwrap().methods().next().unwrap();
        let route = |method: Method, template: &str| {
            Route::new(
                method,
                PathTemplate::parse(template).unwrap(),
                BodyBinding::None,
                rpc.clone(),
            )
        };
        let table = RouteTable::new(vec![
            route(Method::GET, "/files/{name=**}"),
            route(Method::GET, "/files/{name}/meta"),
            route(Method::DELETE, "/files/{name}"),
        ]);
        let template = |r: Resolution<'_>| found(r).map(|r| r.template.to_string());
        assert_eq!(
            template(table.resolve(&Method::GET, "/files/a/meta")).as_deref(),
            Some("/files/{name}/meta"),
            "more literal segments win"
        );
        for path in ["/files/a", "/files/a/b/c/d"] {
            assert_eq!(
                template(table.resolve(&Method::GET, path)).as_deref(),
                Some("/files/{name=**}"),
                "{path}"
            );
        }
        match table.resolve(&Method::POST, "/files/a") {
            Resolution::MethodNotAllowed(allowed) => {
                assert_eq!(
                    allowed,
                    vec![Method::GET, Method::DELETE],
                    "in the table's order"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            table.resolve(&Method::GET, "/folders/a"),
            Resolution::NotFound
        ));
    }
}
