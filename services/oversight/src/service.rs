//! Oversight's operations, one struct for its five APIs: who may do what, shared checks, and
//! the alert every part raises. The parts are in `monitoring`, `inspections`, `records`,
//! `evaluations` and `disclosure`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pdp_kit::calendar::WorkingCalendar;
use pdp_kit::change::{Change, Recorder, timestamp};
use pdp_kit::clock::Clock;
use pdp_kit::config::OversightConfig;
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::{Identity, Role};
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, Store, TenantScope};
use pdp_proto::pdp::oversight::v1 as api;
use uuid::Uuid;

use crate::alert::AlertState;
use crate::rules::{self, Rules};
use crate::store::{self as db, Filter, Item};
use crate::{OversightError, SERVICE, TOPIC};

pub type Result<T> = std::result::Result<T, OversightError>;

pub const RECORDER: Recorder = Recorder {
    service: SERVICE,
    topic: TOPIC,
};

/// Who reads every oversight record of the tenant.
pub const STAFF: &[Role] = &Role::STAFF;
/// Who inspects, orders rectification and handles alerts.
pub const SUPERVISING: &[Role] = &[Role::ProvincialBureau, Role::CityBureau, Role::Supervisor];
pub const BUREAU: &[Role] = &Role::BUREAU;
/// Evidence an alert keeps: the first half and the latest half.
const EVIDENCE_KEPT: usize = 20;

#[derive(Debug, Clone)]
pub struct Oversight {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) calendar: Arc<WorkingCalendar>,
    pub(crate) rules: Arc<Rules>,
    /// The published evaluation criteria, read once at start.
    pub(crate) criteria: Arc<api::EvaluationCriteria>,
    pub(crate) config: Arc<OversightConfig>,
}

impl Operations for Oversight {
    type Error = OversightError;

    fn store(&self) -> &Store {
        &self.store
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}

impl Oversight {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        calendar: Arc<WorkingCalendar>,
        config: OversightConfig,
    ) -> std::result::Result<Self, String> {
        let rules = Rules::from_config(&config)?;
        let criteria = crate::evaluations::criteria(&config)?;
        Ok(Self {
            store,
            clock,
            calendar,
            rules: Arc::new(rules),
            criteria: Arc::new(criteria),
            config: Arc::new(config),
        })
    }

    /// The departments whose duties `who` sees: `None` for every duty (the bureaus, auditors,
    /// and a supervisor whose organization the deployment has not narrowed to departments).
    pub(crate) fn duties_of(&self, who: &Identity) -> Option<Vec<i32>> {
        if who.has_any(&[Role::ProvincialBureau, Role::CityBureau, Role::Auditor]) {
            return None;
        }
        let departments = self.config.supervisor_departments.get(&who.organization)?;
        Some(
            departments
                .iter()
                .filter_map(|d| rules::department(d))
                .map(|d| d as i32)
                .collect(),
        )
    }

    /// Whether `who` sees a record concerning `duties` (none: the bureau's own matter, which
    /// every supervisor of the tenant sees too).
    pub(crate) fn sees(&self, who: &Identity, duties: &[i32]) -> bool {
        match self.duties_of(who) {
            None => true,
            Some(mine) => duties.is_empty() || duties.iter().any(|d| mine.contains(d)),
        }
    }
}

impl Oversight {
    /// `T` `id` as `who` sees it: staff see every one, anyone else one of its own organization;
    /// another's is not found.
    pub(crate) async fn visible<T: Item + Send + 'static>(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        kind: &'static str,
    ) -> Result<T> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let mine = party_filter(who).map(str::to_string);
        self.in_scope(&scope, move |conn, scope, _| {
            match db::get::<T>(conn, scope, &id)? {
                Some(t) if mine.as_ref().is_none_or(|m| m == t.party()) => Ok(t),
                _ => Err(OversightError::not_found(kind, id)),
            }
        })
        .await
    }

    /// A page of `T` in `states` (any when empty), newest first: of the caller's own organization
    /// unless it is staff, or of `party` when staff name one.
    pub(crate) async fn page<T: Item + Send + 'static>(
        &self,
        who: &Identity,
        tenant: &str,
        party: String,
        states: Vec<&'static str>,
        cursor: Cursor,
    ) -> Result<(Vec<T>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let party = party_filter(who)
            .map(str::to_string)
            .or((!party.is_empty()).then_some(party));
        self.in_scope(&scope, move |conn, scope, _| {
            let filter = Filter {
                party: party.as_deref(),
                states,
            };
            let page = db::list::<T>(conn, scope, &filter, &cursor)?;
            let next = cursor.next_token(&page, |t| t.id());
            Ok((page, next))
        })
        .await
    }
}

/// The states a list asks for: none (every state) for 0, else the one `probe` (a `T` holding
/// that state) names; a number no state has is refused, naming `state`.
pub fn asked_states<T: Item>(probe: &T, state: i32) -> Result<Vec<&'static str>> {
    if state == 0 {
        return Ok(Vec::new());
    }
    match probe.state_name() {
        Some(name) => Ok(vec![name]),
        None => Err(OversightError::invalid(
            "list",
            vec![FieldViolation::new(
                "state",
                format!("{state} is not a state of a {}", T::KIND),
            )],
        )),
    }
}

/// Staff see every row; anyone else only what concerns its own organization (`party`).
pub fn party_filter(who: &Identity) -> Option<&str> {
    (!who.has_any(STAFF)).then_some(who.organization.as_str())
}

/// Whether `severity` names one (LOW to CRITICAL).
pub fn is_severity(severity: i32) -> bool {
    matches!(api::Severity::try_from(severity), Ok(s) if s != api::Severity::Unspecified)
}

/// A new id: UUIDv7.
pub fn new_id() -> String {
    Uuid::now_v7().to_string()
}

/// `sha256:` and 64 lower-case hex digits.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The violations of a document reference at `field`.
pub fn check_document(
    field: &str,
    d: Option<&api::DocumentRef>,
    required: bool,
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    match d {
        None if required => v.push(FieldViolation::new(
            field,
            "required: the document's title and sha256 digest",
        )),
        None => {}
        Some(d) => {
            if d.title.trim().is_empty() {
                v.push(FieldViolation::new(format!("{field}.title"), "required"));
            }
            if !is_digest(&d.digest) {
                v.push(FieldViolation::new(
                    format!("{field}.digest"),
                    "`sha256:` and 64 lower-case hex digits of the document",
                ));
            }
        }
    }
    v
}

/// What raised an alert: a configured rule, or one of oversight's own signals.
#[derive(Debug, Clone)]
pub struct Signal {
    pub rule_id: String,
    pub title: String,
    pub severity: api::Severity,
    pub duties: Vec<i32>,
    pub article: String,
}

impl Signal {
    pub fn of_rule(rule: &api::MonitoringRule) -> Self {
        Self {
            rule_id: rule.id.clone(),
            title: rule.title.clone(),
            severity: api::Severity::try_from(rule.severity).unwrap_or(api::Severity::Medium),
            duties: rule.duties.clone(),
            article: rule.article.clone(),
        }
    }

    pub fn builtin(
        rule_id: &str,
        title: &str,
        severity: api::Severity,
        duties: &[api::Department],
        article: &str,
    ) -> Self {
        Self {
            rule_id: rule_id.into(),
            title: title.into(),
            severity,
            duties: duties.iter().map(|d| *d as i32).collect(),
            article: article.into(),
        }
    }
}

fn alert_key(rule_id: &str, group_key: &str) -> String {
    format!("{rule_id}|{group_key}")
}

/// Raises an alert of `signal` for `group_key`, or adds the hit to the one not closed yet;
/// whether a new alert was raised.
pub fn raise(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    signal: &Signal,
    group_key: &str,
    evidence: api::Evidence,
    now: DateTime<Utc>,
) -> Result<bool> {
    let key = alert_key(&signal.rule_id, group_key);
    let open = [AlertState::Open.name(), AlertState::Acknowledged.name()];
    let seen_at = evidence.time.or(Some(timestamp(now)));
    if let Some(mut alert) = db::by_reference::<api::Alert>(conn, scope, &key, &open)?.pop() {
        if alert
            .evidence
            .iter()
            .any(|e| e.event_id == evidence.event_id && !e.event_id.is_empty())
        {
            return Ok(false);
        }
        alert.hits += 1;
        alert.last_seen_at = seen_at;
        if alert.evidence.len() >= EVIDENCE_KEPT {
            alert.evidence.remove(EVIDENCE_KEPT / 2);
        }
        alert.evidence.push(evidence);
        db::save(conn, scope, &alert)?;
        return Ok(false);
    }
    let alert = api::Alert {
        id: new_id(),
        rule_id: signal.rule_id.clone(),
        title: signal.title.clone(),
        severity: signal.severity as i32,
        state: api::AlertState::Open as i32,
        group_key: group_key.to_string(),
        duties: signal.duties.clone(),
        article: signal.article.clone(),
        raised_at: Some(timestamp(now)),
        last_seen_at: seen_at,
        hits: 1,
        evidence: vec![evidence],
        ..Default::default()
    };
    db::insert(conn, scope, &alert)?;
    let change = RECORDER.change(scope, None, now);
    emit_alert(conn, &change, api::ALERT_RAISED, &alert)?;
    Ok(true)
}

pub fn emit_alert(
    conn: &mut AnyConnection,
    change: &Change<'_>,
    ty: pdp_proto::EventType<api::AlertChanged>,
    a: &api::Alert,
) -> Result<()> {
    let event = api::AlertChanged {
        alert_id: a.id.clone(),
        rule_id: a.rule_id.clone(),
        severity: a.severity,
        state: a.state,
        group_key: a.group_key.clone(),
        duties: a.duties.clone(),
    };
    change.emit(conn, ty, &a.id, &event)?;
    Ok(())
}

/// Evidence that is no event: a record of oversight's own (an order, an incident).
pub fn own_evidence(subject: String, summary: String, at: DateTime<Utc>) -> api::Evidence {
    api::Evidence {
        event_id: String::new(),
        event_type: String::new(),
        time: Some(timestamp(at)),
        subject,
        summary,
    }
}
