//! Monitoring rules (预警规则, 第二十六条, 第二十七条) as data: which events a rule counts, per what
//! group, and when it fires. A deployment declares them in `oversight.rules` and, per tenant,
//! `oversight.tenant_rules`; unset, the shipped rules below apply. A rule that cannot be read
//! stops the service from starting, with the rule and the field named.

use std::collections::BTreeMap;

use pdp_kit::config::{ConditionConfig, MonitoringRuleConfig, OversightConfig};
use pdp_kit::events::Event;
use pdp_proto::pdp::oversight::v1 as api;
use serde_json::Value;

/// The longest window a rule may count over: a week.
pub const MAX_WINDOW_SECS: u32 = 7 * 24 * 3600;
/// The most windows a usual count is taken over.
pub const MAX_BASELINE_WINDOWS: u32 = 168;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Exists,
    Absent,
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Contains,
}

impl Op {
    fn parse(op: &str) -> Option<Self> {
        Some(match op {
            "exists" => Self::Exists,
            "absent" => Self::Absent,
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "gt" => Self::Gt,
            "gte" => Self::Gte,
            "lt" => Self::Lt,
            "lte" => Self::Lte,
            "contains" => Self::Contains,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
struct Condition {
    field: String,
    op: Op,
    value: String,
}

/// A value of an event by path: `$subject`, `$type`, or a dotted path into its data.
fn lookup<'e>(event: &'e Event, path: &str) -> Option<std::borrow::Cow<'e, Value>> {
    use std::borrow::Cow;
    match path {
        "$subject" => return Some(Cow::Owned(Value::String(event.subject.clone()))),
        "$type" => return Some(Cow::Owned(Value::String(event.event_type.clone()))),
        _ => {}
    }
    let mut at = &event.data;
    for part in path.split('.') {
        at = match at {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!at.is_null()).then_some(Cow::Borrowed(at))
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A number, also from proto3 JSON's int64-as-string.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl Condition {
    fn holds(&self, event: &Event) -> bool {
        let found = lookup(event, &self.field);
        let Some(found) = found else {
            return self.op == Op::Absent;
        };
        let other = match self.value.strip_prefix('$') {
            Some(path) => {
                let path = if matches!(path, "subject" | "type") {
                    &self.value
                } else {
                    path
                };
                match lookup(event, path) {
                    Some(v) => v.into_owned(),
                    None => return false,
                }
            }
            None => Value::String(self.value.clone()),
        };
        let compare = || number(&found)?.partial_cmp(&number(&other)?);
        use std::cmp::Ordering::*;
        match self.op {
            Op::Exists => true,
            Op::Absent => false,
            Op::Eq => text(&found) == text(&other),
            Op::Ne => text(&found) != text(&other),
            Op::Contains => text(&found).contains(&text(&other)),
            Op::Gt => compare() == Some(Greater),
            Op::Gte => matches!(compare(), Some(Greater | Equal)),
            Op::Lt => compare() == Some(Less),
            Op::Lte => matches!(compare(), Some(Less | Equal)),
        }
    }
}

/// A rule, read and checked.
#[derive(Debug, Clone)]
pub struct Rule {
    pub api: api::MonitoringRule,
    conditions: Vec<Condition>,
}

impl Rule {
    pub fn id(&self) -> &str {
        &self.api.id
    }

    /// The group `event` counts in when the rule counts it.
    pub fn group_of(&self, event: &Event) -> Option<String> {
        let wanted = &self.api.event_type;
        let typed = match wanted.strip_suffix('*') {
            Some(prefix) => event.event_type.starts_with(prefix),
            None => event.event_type == *wanted,
        };
        if !typed || !self.conditions.iter().all(|c| c.holds(event)) {
            return None;
        }
        Some(lookup(event, &self.api.group_by).map_or_else(String::new, |v| text(&v)))
    }

    /// Whether `count` in the window (and `usual`, the group's mean per window before it) fires.
    pub fn fires(&self, count: u32, usual: Option<f64>) -> bool {
        if count < self.api.threshold {
            return false;
        }
        match usual {
            Some(mean) if self.api.usual_factor > 0.0 => {
                f64::from(count) > self.api.usual_factor * mean.max(1.0)
            }
            _ => true,
        }
    }

    /// Whether the rule compares with the group's usual count.
    pub fn compares_with_usual(&self) -> bool {
        self.api.usual_factor > 0.0
    }
}

fn severity(s: &str) -> Option<api::Severity> {
    api::Severity::from_str_name(&format!("SEVERITY_{s}"))
        .filter(|s| *s != api::Severity::Unspecified)
}

/// A department by its short name (`CYBERSPACE`).
pub fn department(s: &str) -> Option<api::Department> {
    api::Department::from_str_name(&format!("DEPARTMENT_{s}"))
        .filter(|d| *d != api::Department::Unspecified)
}

/// Reads one configured rule; every problem, named by field.
pub fn read(config: &MonitoringRuleConfig) -> Result<Rule, Vec<String>> {
    let mut problems = Vec::new();
    let id_ok = !config.id.is_empty()
        && config.id.len() <= 63
        && config
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !id_ok {
        problems.push("id: 1 to 63 lower-case letters, digits and -".to_string());
    }
    if config.title.trim().is_empty() {
        problems.push("title: required".to_string());
    }
    if !config.event_type.starts_with("pdp.") {
        problems.push("event_type: a pdp event type, or a prefix of one ending in *".to_string());
    }
    if config.group_by.trim().is_empty() {
        problems.push("group_by: a path of the event (e.g. organization, $subject)".to_string());
    }
    if config.threshold == 0 {
        problems.push("threshold: at least 1".to_string());
    }
    if config.window_secs == 0 || config.window_secs > MAX_WINDOW_SECS {
        problems.push(format!("window_secs: 1 to {MAX_WINDOW_SECS}"));
    }
    if config.usual_factor < 0.0 || !config.usual_factor.is_finite() {
        problems.push("usual_factor: 0 (off) or more".to_string());
    }
    if config.usual_factor > 0.0 && !(1..=MAX_BASELINE_WINDOWS).contains(&config.baseline_windows) {
        problems.push(format!(
            "baseline_windows: 1 to {MAX_BASELINE_WINDOWS} when usual_factor is set"
        ));
    }
    let severity = severity(&config.severity);
    if severity.is_none() {
        problems.push(format!(
            "severity: `{}` is not LOW, MEDIUM, HIGH or CRITICAL",
            config.severity
        ));
    }
    let mut duties = Vec::new();
    for d in &config.duties {
        match department(d) {
            Some(d) => duties.push(d as i32),
            None => problems.push(format!("duties: `{d}` is not a supervising department")),
        }
    }
    let mut conditions = Vec::new();
    for (i, ConditionConfig { field, op, value }) in config.conditions.iter().enumerate() {
        match Op::parse(op) {
            Some(op) if !field.is_empty() => conditions.push(Condition {
                field: field.clone(),
                op,
                value: value.clone(),
            }),
            _ => problems.push(format!(
                "conditions[{i}]: a field and an op among exists, absent, eq, ne, gt, gte, lt, \
                 lte, contains"
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Rule {
        api: api::MonitoringRule {
            id: config.id.clone(),
            title: config.title.clone(),
            event_type: config.event_type.clone(),
            conditions: config
                .conditions
                .iter()
                .map(|c| api::Condition {
                    field: c.field.clone(),
                    op: c.op.clone(),
                    value: c.value.clone(),
                })
                .collect(),
            group_by: config.group_by.clone(),
            threshold: config.threshold,
            window_secs: config.window_secs,
            usual_factor: config.usual_factor,
            baseline_windows: config.baseline_windows,
            severity: severity.unwrap_or_default() as i32,
            duties,
            article: config.article.clone(),
        },
        conditions,
    })
}

/// The rules of every tenant served, read once at start.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    general: Vec<Rule>,
    by_tenant: BTreeMap<String, Vec<Rule>>,
}

impl Rules {
    /// Reads the configured rules (the shipped ones where none are set); the first problem
    /// stops the start.
    pub fn from_config(config: &OversightConfig) -> Result<Self, String> {
        let read_all = |list: &[MonitoringRuleConfig], key: &str| {
            let mut rules: Vec<Rule> = Vec::new();
            for (i, c) in list.iter().enumerate() {
                let rule = read(c)
                    .map_err(|p| format!("oversight.{key}[{i}] (`{}`): {}", c.id, p.join("; ")))?;
                if rules.iter().any(|r| r.id() == rule.id()) {
                    return Err(format!("oversight.{key}[{i}]: id `{}` is used twice", c.id));
                }
                rules.push(rule);
            }
            Ok::<_, String>(rules)
        };
        let general = match &config.rules {
            Some(list) => read_all(list, "rules")?,
            None => read_all(&shipped(), "rules (shipped)")?,
        };
        let mut by_tenant = BTreeMap::new();
        for (tenant, list) in &config.tenant_rules {
            let known = tenant
                .parse::<pdp_kit::identity::TenantCode>()
                .is_ok_and(|t| pdp_kit::tenants::is_known(&t));
            if !known {
                return Err(format!(
                    "oversight.tenant_rules.{tenant}: neither the province nor one of its cities"
                ));
            }
            let own = read_all(list, &format!("tenant_rules.{tenant}"))?;
            let mut merged: Vec<Rule> = general
                .iter()
                .filter(|g| !own.iter().any(|o| o.id() == g.id()))
                .cloned()
                .collect();
            merged.extend(own);
            by_tenant.insert(tenant.clone(), merged);
        }
        Ok(Self { general, by_tenant })
    }

    /// The rules of `tenant`.
    pub fn of(&self, tenant: &str) -> &[Rule] {
        self.by_tenant.get(tenant).unwrap_or(&self.general)
    }

    /// The longest a hit is needed: the longest window times its baseline, plus one.
    pub fn longest_memory_secs(&self) -> i64 {
        self.general
            .iter()
            .chain(self.by_tenant.values().flatten())
            .map(|r| i64::from(r.api.window_secs) * (i64::from(r.api.baseline_windows) + 1))
            .max()
            .unwrap_or(3600)
    }
}

// A row of the shipped table: every field named in place reads better than a builder.
#[allow(clippy::too_many_arguments)]
fn rule(
    id: &str,
    title: &str,
    event_type: &str,
    conditions: &[(&str, &str, &str)],
    group_by: &str,
    (threshold, window_secs): (u32, u32),
    severity: &str,
    duties: &[&str],
    article: &str,
) -> MonitoringRuleConfig {
    MonitoringRuleConfig {
        id: id.into(),
        title: title.into(),
        event_type: event_type.into(),
        conditions: conditions
            .iter()
            .map(|(field, op, value)| ConditionConfig {
                field: (*field).into(),
                op: (*op).into(),
                value: (*value).into(),
            })
            .collect(),
        group_by: group_by.into(),
        threshold,
        window_secs,
        severity: severity.into(),
        duties: duties.iter().map(|d| (*d).into()).collect(),
        article: article.into(),
        ..Default::default()
    }
}

/// The rules a deployment starts with.
pub fn shipped() -> Vec<MonitoringRuleConfig> {
    const SANDBOX: &str = "pdp.requests.action.recorded";
    const SECURITY: &[&str] = &["CYBERSPACE", "PUBLIC_SECURITY"];
    let mut above_usual = rule(
        "sandbox-queries-above-usual",
        "An operator's sandbox queries per hour far above its usual",
        SANDBOX,
        &[("action", "eq", "query.ran")],
        "organization",
        (50, 3600),
        "MEDIUM",
        SECURITY,
        "第二十六条",
    );
    above_usual.usual_factor = 5.0;
    above_usual.baseline_windows = 24;
    vec![
        rule(
            "sandbox-refusals",
            "Repeated refused sandbox queries by one operator (outside its grants, or held back \
             by disclosure control)",
            SANDBOX,
            &[
                ("action", "eq", "query.ran"),
                ("details.refused", "exists", ""),
            ],
            "organization",
            (5, 3600),
            "HIGH",
            SECURITY,
            "第十八条, 第二十六条",
        ),
        above_usual,
        rule(
            "disclosure-threshold-probing",
            "An operator's queries keep hitting the disclosure threshold (groups held back)",
            SANDBOX,
            &[
                ("action", "eq", "query.ran"),
                ("details.suppressed", "gt", "0"),
            ],
            "organization",
            (10, 3600),
            "MEDIUM",
            SECURITY,
            "第十八条, 第二十六条",
        ),
        rule(
            "gateway-denials",
            "Repeated refusals at the gateway for one subject",
            "pdp.gateway.request.audited",
            &[("decision", "eq", "deny")],
            "subject",
            (20, 600),
            "MEDIUM",
            &["CYBERSPACE"],
            "第二十六条",
        ),
        rule(
            "request-review-overdue",
            "A data request's review is past its period",
            "pdp.requests.review.overdue",
            &[],
            "$subject",
            (1, 3600),
            "LOW",
            &[],
            "第十七条",
        ),
        rule(
            "quality-ticket-overdue",
            "A data-quality ticket is past its period unanswered",
            "pdp.requests.ticket.overdue",
            &[],
            "provider",
            (1, 3600),
            "LOW",
            &[],
            "第十九条",
        ),
        rule(
            "revenue-above-permitted",
            "An operator's traded revenue passed what is permitted for the year",
            "pdp.products.revenue_cap.exceeded",
            &[],
            "operator",
            (1, 3600),
            "MEDIUM",
            &["DEVELOPMENT_REFORM", "FINANCE"],
            "第二十二条",
        ),
        rule(
            "termination-case-overdue",
            "A termination case is open past its deadline",
            "pdp.termination.case.overdue",
            &[],
            "operator",
            (1, 3600),
            "HIGH",
            &["CYBERSPACE"],
            "第二十九条",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;

    fn event(ty: &str, data: Value) -> Event {
        Event::new(
            "requests",
            &"230100".parse().unwrap(),
            "action",
            "recorded",
            "grants/1",
            Utc::now(),
            data,
        )
        .with_type(ty)
    }

    trait WithType {
        fn with_type(self, ty: &str) -> Self;
    }

    impl WithType for Event {
        fn with_type(mut self, ty: &str) -> Self {
            self.event_type = ty.into();
            self
        }
    }

    fn shipped_rule(id: &str) -> Rule {
        let c = shipped().into_iter().find(|r| r.id == id).unwrap();
        read(&c).unwrap()
    }

    #[test]
    fn the_shipped_rules_read() {
        let rules = Rules::from_config(&OversightConfig::default()).unwrap();
        assert_eq!(rules.of("230100").len(), shipped().len());
    }

    #[test]
    fn a_refused_query_counts_and_an_answered_one_does_not() {
        let r = shipped_rule("sandbox-refusals");
        let refused = event(
            "pdp.requests.action.recorded",
            json!({"action": "query.ran", "organization": "op-1",
                   "details": {"refused": "not an aggregate"}}),
        );
        assert_eq!(r.group_of(&refused).as_deref(), Some("op-1"));
        let answered = event(
            "pdp.requests.action.recorded",
            json!({"action": "query.ran", "organization": "op-1", "details": {"rows": 3}}),
        );
        assert_eq!(r.group_of(&answered), None);
        let other = event(
            "pdp.requests.action.recorded",
            json!({"action": "load.created", "organization": "op-1",
                   "details": {"refused": "x"}}),
        );
        assert_eq!(r.group_of(&other), None);
    }

    #[test]
    fn comparisons_take_numbers_and_other_fields() {
        let c = MonitoringRuleConfig {
            conditions: vec![ConditionConfig {
                field: "price.amountFen".into(),
                op: "gt".into(),
                value: "$ceiling".into(),
            }],
            ..rule(
                "price-above-ceiling",
                "A price above its ceiling",
                "pdp.products.*",
                &[],
                "operator",
                (1, 60),
                "HIGH",
                &["DEVELOPMENT_REFORM"],
                "",
            )
        };
        let r = read(&c).unwrap();
        let above = event(
            "pdp.products.product.priced",
            json!({"operator": "op", "price": {"amountFen": "1200"}, "ceiling": 1000}),
        );
        let below = event(
            "pdp.products.product.priced",
            json!({"operator": "op", "price": {"amountFen": "900"}, "ceiling": 1000}),
        );
        assert_eq!(r.group_of(&above).as_deref(), Some("op"));
        assert_eq!(r.group_of(&below), None);
        assert_eq!(
            r.group_of(&above.clone().with_type("pdp.planning.plan.approved")),
            None
        );
    }

    #[test]
    fn a_rule_fires_at_its_threshold_and_above_its_usual() {
        let r = shipped_rule("sandbox-refusals");
        assert!(!r.fires(4, None));
        assert!(r.fires(5, None));
        let u = shipped_rule("sandbox-queries-above-usual");
        // 60 queries in the hour against a usual 20: not five times.
        assert!(!u.fires(60, Some(20.0)));
        assert!(u.fires(120, Some(20.0)));
        // Below the threshold, whatever the usual.
        assert!(!u.fires(40, Some(0.0)));
    }

    #[test]
    fn a_rule_that_cannot_be_read_names_every_field() {
        let bad = MonitoringRuleConfig {
            id: "Bad Id".into(),
            event_type: "x".into(),
            severity: "URGENT".into(),
            duties: vec!["POLICE".into()],
            conditions: vec![ConditionConfig {
                field: "a".into(),
                op: "like".into(),
                value: String::new(),
            }],
            ..Default::default()
        };
        let problems = read(&bad).unwrap_err().join("\n");
        for field in [
            "id:",
            "title:",
            "event_type:",
            "group_by:",
            "threshold:",
            "window_secs:",
            "severity:",
            "duties:",
            "conditions[0]:",
        ] {
            assert!(problems.contains(field), "{field} in {problems}");
        }
    }

    #[test]
    fn a_tenants_rule_replaces_the_general_one_of_its_id() {
        let mut stricter = shipped()
            .into_iter()
            .find(|r| r.id == "sandbox-refusals")
            .unwrap();
        stricter.threshold = 2;
        let config = OversightConfig {
            tenant_rules: [("230100".to_string(), vec![stricter])].into(),
            ..Default::default()
        };
        let rules = Rules::from_config(&config).unwrap();
        let find = |t: &str| {
            rules
                .of(t)
                .iter()
                .find(|r| r.id() == "sandbox-refusals")
                .unwrap()
                .api
                .threshold
        };
        assert_eq!((find("230100"), find("230000")), (2, 5));
        assert_eq!(rules.of("230100").len(), shipped().len());
        let unknown = OversightConfig {
            tenant_rules: [("999999".to_string(), vec![])].into(),
            ..Default::default()
        };
        assert!(Rules::from_config(&unknown).unwrap_err().contains("999999"));
    }
}
