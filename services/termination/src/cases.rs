//! Termination cases' operations: opened when an agreement ends, shown with every cut of access,
//! the destruction record witnessed by a supervisor, the handover acknowledged by the bureau,
//! closed; flagged when open past their deadline.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Days, Duration, NaiveDate, Utc};
use pdp_kit::calendar::{WorkingCalendar, civil_date};
use pdp_kit::change::{Change, Recorder, instant, timestamp};
use pdp_kit::clock::Clock;
use pdp_kit::config::AuditConfig;
use pdp_kit::error::FieldViolation;
use pdp_kit::events::Event;
use pdp_kit::identity::{Identity, Role, TenantCode};
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, Store, TenantScope};
use pdp_proto::EventType;
use pdp_proto::pdp::agreements::v1 as agreements;
use pdp_proto::pdp::requests::v1 as requests;
use pdp_proto::pdp::termination::v1 as api;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::case::{CaseState, Stage, Step, destruction_digest};
use crate::checkpoint::ArchiveKey;
use crate::store::{self as db, RecordFilter, cases as store};
use crate::{SERVICE, TOPIC, TerminationError};

type Result<T> = std::result::Result<T, TerminationError>;

const RECORDER: Recorder = Recorder {
    service: SERVICE,
    topic: TOPIC,
};

/// Who sees every case; an operator sees its own.
const STAFF: &[Role] = &[
    Role::ProvincialBureau,
    Role::CityBureau,
    Role::Supervisor,
    Role::Auditor,
];
const BUREAU: &[Role] = &Role::BUREAU;

/// The kinds of cut a case shows.
pub const AUTHORIZATION: &str = "authorization";
pub const GRANT: &str = "grant";
pub const PRODUCT: &str = "product";

#[derive(Debug, Clone)]
pub struct Cases {
    store: Store,
    clock: Arc<dyn Clock>,
    key: Arc<ArchiveKey>,
}

impl Operations for Cases {
    type Error = TerminationError;

    fn store(&self) -> &Store {
        &self.store
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}

fn emit(
    conn: &mut AnyConnection,
    change: &Change<'_>,
    ty: EventType<api::TerminationCaseChanged>,
    c: &api::TerminationCase,
) -> Result<()> {
    let event = api::TerminationCaseChanged {
        case_id: c.id.clone(),
        agreement_id: c.agreement_id.clone(),
        operator: c.operator.clone(),
        state: c.state,
        cause: c.cause.clone(),
        deadline: c.deadline.clone(),
    };
    change.emit(conn, ty, &c.id, &event)?;
    Ok(())
}

fn subject(c: &api::TerminationCase) -> String {
    format!("termination-cases/{}", c.id)
}

/// What opens a case: the end of an agreement, as agreements told it.
#[derive(Debug)]
pub struct Ended<'a> {
    pub agreement: &'a agreements::AgreementChanged,
    /// `EXPIRED` or `TERMINATED`.
    pub cause: &'static str,
    pub at: DateTime<Utc>,
}

/// Opens the case of an ended agreement (once), in the follower's transaction: the cut of the
/// operator's authorization takes effect with the agreement's end, when the gateway applies
/// the same event.
pub fn open(
    conn: &mut AnyConnection,
    event: &Event,
    ended: Ended<'_>,
    calendar: &WorkingCalendar,
    config: &AuditConfig,
) -> Result<()> {
    let scope = TenantScope::system(event.tenant.clone());
    scope.enter(conn)?;
    let a = ended.agreement;
    store::put_cut(
        conn,
        &scope,
        AUTHORIZATION,
        &a.agreement_id,
        &a.operator,
        &a.agreement_id,
        ended.at,
    )?;
    if store::by_agreement(conn, &scope, &a.agreement_id)?.is_some() {
        return Ok(());
    }
    let days = config.case_deadline_of(event.tenant.as_str());
    // A deadline in a year the calendar does not hold is not guessed: the case opens without
    // one (and destruction starts), and the calendar's advice says what to add.
    let deadline = match calendar.working_days_after(civil_date(ended.at), days) {
        Ok(day) => Some(day),
        Err(e) => {
            tracing::warn!(agreement = %a.agreement_id, error = %e, "case opened without deadline");
            None
        }
    };
    let ground = agreements::TerminationGround::try_from(a.ground)
        .map(|g| g.as_str_name())
        .unwrap_or_default();
    let reason = match ended.cause {
        "TERMINATED" => format!("{ground}: {}", a.reason),
        _ => format!("its term ended on {}", a.last_day),
    };
    let c = api::TerminationCase {
        id: Uuid::now_v7().to_string(),
        agreement_id: a.agreement_id.clone(),
        operator: a.operator.clone(),
        cause: ended.cause.to_string(),
        reason,
        state: api::TerminationCaseState::Open as i32,
        opened_at: Some(timestamp(ended.at)),
        deadline: deadline.map(|d| d.to_string()).unwrap_or_default(),
        first_day: a.first_day.clone(),
        last_day: a.last_day.clone(),
        decision: a.decision.clone(),
        ..Default::default()
    };
    store::insert(conn, &scope, &c)?;
    if let Some(day) = deadline {
        let overdue_on = day.checked_add_days(Days::new(1)).unwrap_or(day);
        store::schedule(conn, &scope, &c.id, overdue_on)?;
    }
    let change = RECORDER.change(&scope, None, ended.at);
    emit(conn, &change, api::CASE_OPENED, &c)
}

/// Records a cut of access another service reported (a grant ended, a product withdrawn).
pub fn record_cut(
    conn: &mut AnyConnection,
    event: &Event,
    kind: &str,
    subject: &str,
    operator: &str,
    agreement_id: &str,
) -> Result<()> {
    let scope = TenantScope::system(event.tenant.clone());
    scope.enter(conn)?;
    store::put_cut(
        conn,
        &scope,
        kind,
        subject,
        operator,
        agreement_id,
        event.time,
    )
}

/// Records the destruction requests reported, on the case that ordered it.
pub fn record_destruction(
    conn: &mut AnyConnection,
    event: &Event,
    d: &requests::OperatorDataDestroyed,
) -> Result<()> {
    let scope = TenantScope::system(event.tenant.clone());
    scope.enter(conn)?;
    let Some(mut c) = store::get(conn, &scope, &d.case_id)? else {
        // Another instance's case (they share the broker): not ours to record.
        tracing::warn!(case = %d.case_id, "destruction reported for a case this instance lacks");
        return Ok(());
    };
    // Reported again (a redelivery, another replica): the record is there already.
    if Stage::of(&c).after(Step::Destroyed, &subject(&c)).is_err() {
        return Ok(());
    }
    let mut record = api::DestructionRecord {
        objects: d.objects.clone(),
        grant_ids: d.grant_ids.clone(),
        destroyed_at: d.destroyed_at,
        remaining: d.remaining,
        ..Default::default()
    };
    record.digest = destruction_digest(&record);
    c.destruction = Some(record);
    store::save(conn, &scope, &c)?;
    let change = RECORDER.change(&scope, None, event.time);
    emit(conn, &change, api::CASE_DESTROYED, &c)
}

/// The cuts the case shows: the authorization, the agreement's grants, and the operator's
/// products withdrawn since the agreement ended.
fn with_cuts(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    mut c: api::TerminationCase,
) -> Result<api::TerminationCase> {
    // A grant's own last day is the agreement's, and its end (with its products' withdrawal)
    // may be applied a moment before the agreement's: products count from the start of that
    // day. Grants count by agreement, whenever they ended (one may have ended months before).
    let opened = instant(c.opened_at.as_ref()).unwrap_or_default();
    let since = start_of(&c.last_day).map_or(opened, |day| day.min(opened));
    c.access_cuts = store::cuts_of(conn, scope, &c.operator)?
        .into_iter()
        .filter(|cut| match cut.kind.as_str() {
            AUTHORIZATION => cut.subject == c.agreement_id,
            GRANT => cut.agreement_id == c.agreement_id,
            _ => cut.at >= since,
        })
        .map(|cut| api::AccessCut {
            kind: cut.kind,
            subject: cut.subject,
            effective_at: Some(timestamp(cut.at)),
        })
        .collect();
    Ok(c)
}

fn invalid(field: &str, description: impl Into<String>) -> TerminationError {
    TerminationError::invalid(
        "termination case",
        vec![FieldViolation::new(field, description)],
    )
}

/// The midnight (Asia/Shanghai) that starts `day`.
fn start_of(day: &str) -> Option<DateTime<Utc>> {
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some((day.and_time(chrono::NaiveTime::MIN) - Duration::hours(8)).and_utc())
}

fn item(name: &str, content: String) -> api::HandoverItem {
    api::HandoverItem {
        name: name.to_string(),
        sha256: hex::encode(Sha256::digest(content.as_bytes())),
        content,
    }
}

/// The records and logs of the case's authorization period, and the manifest over them.
fn bundle(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    key: &ArchiveKey,
    c: &api::TerminationCase,
) -> Result<api::HandoverBundle> {
    let ended = instant(c.opened_at.as_ref()).unwrap_or_default();
    let from = start_of(&c.first_day);
    let to = ended + Duration::seconds(1);
    let filter = RecordFilter {
        organization: Some(c.operator.clone()),
        from,
        to: Some(to),
        ..Default::default()
    };
    let mut records = Vec::new();
    let mut after = 0;
    loop {
        let page = db::list_records(conn, scope, &filter, after, 1000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        records.extend(page.into_iter().map(|r| {
            json!({
                "seq": r.seq, "time": r.time, "source": r.source, "operation": r.operation,
                "target": r.target, "subject": r.subject, "outcome": r.outcome, "hash": r.hash,
            })
        }));
    }
    let range = db::seq_range(conn, scope, from, Some(to))?;
    let checkpoint = match range {
        Some((_, last)) => db::checkpoint_at_or_after(conn, scope, last)?,
        None => None,
    };
    let case = json!({
        "id": c.id, "agreement_id": c.agreement_id, "operator": c.operator, "cause": c.cause,
        "reason": c.reason, "first_day": c.first_day, "last_day": c.last_day,
        "decision": c.decision.as_ref().map(|d| json!({
            "title": d.title, "reference": d.reference, "digest": d.digest,
        })),
        "ended_at": ended,
        "access_cuts": c.access_cuts.iter().map(|a| json!({
            "kind": a.kind, "subject": a.subject,
            "effective_at": instant(a.effective_at.as_ref()),
        })).collect::<Vec<_>>(),
    });
    let d = c.destruction.clone().unwrap_or_default();
    let destruction = json!({
        "objects": d.objects.iter().map(|o| json!({
            "location": o.location, "size_bytes": o.size_bytes, "sha256": o.sha256,
        })).collect::<Vec<_>>(),
        "grant_ids": d.grant_ids, "remaining": d.remaining, "digest": d.digest,
        "destroyed_at": instant(d.destroyed_at.as_ref()),
        "witnessed_by": d.witnessed_by, "witness_organization": d.witness_organization,
        "witnessed_at": instant(d.witnessed_at.as_ref()),
    });
    let chain = json!({
        "first_seq": range.map(|r| r.0), "last_seq": range.map(|r| r.1),
        "checkpoint": checkpoint.map(|cp| json!({
            "seq": cp.seq, "hash": cp.hash, "signature": cp.signature,
            "signing_input": cp.signing_input(),
        })),
        "public_key": key.public_key(),
    });
    let items = vec![
        item("case.json", case.to_string()),
        item("destruction.json", destruction.to_string()),
        item(
            "audit-records.json",
            serde_json::Value::from(records).to_string(),
        ),
        item("audit-chain.json", chain.to_string()),
    ];
    let manifest = json!({
        "tenant": scope.tenant().as_str(), "case_id": c.id, "agreement_id": c.agreement_id,
        "operator": c.operator, "first_day": c.first_day, "ended_at": ended,
        "items": items.iter().map(|i| json!({
            "name": i.name, "sha256": i.sha256, "bytes": i.content.len(),
        })).collect::<Vec<_>>(),
    })
    .to_string();
    Ok(api::HandoverBundle {
        items,
        manifest_digest: hex::encode(Sha256::digest(manifest.as_bytes())),
        signature: STANDARD.encode(key.sign_bytes(manifest.as_bytes())),
        manifest,
        public_key: key.public_key(),
    })
}

impl Cases {
    pub fn new(store: Store, clock: Arc<dyn Clock>, key: Arc<ArchiveKey>) -> Self {
        Self { store, clock, key }
    }

    fn load(
        conn: &mut AnyConnection,
        scope: &TenantScope,
        who: Option<&Identity>,
        id: &str,
    ) -> Result<api::TerminationCase> {
        let c = store::get(conn, scope, id)?
            .filter(|c| who.is_none_or(|w| w.has_any(STAFF) || w.organization == c.operator))
            .ok_or_else(|| TerminationError::not_found("termination case", id))?;
        with_cuts(conn, scope, c)
    }

    pub async fn list(
        &self,
        who: &Identity,
        tenant: &str,
        state: Option<CaseState>,
        cursor: Cursor,
    ) -> Result<(Vec<api::TerminationCase>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let operator = (!who.has_any(STAFF)).then(|| who.organization.clone());
        self.in_scope(&scope, move |conn, scope, _| {
            let items = store::list(conn, scope, operator.as_deref(), state, &cursor)?;
            let next = cursor.next_token(&items, |c| &c.id);
            let items = items
                .into_iter()
                .map(|c| with_cuts(conn, scope, c))
                .collect::<Result<Vec<_>>>()?;
            Ok((items, next))
        })
        .await
    }

    pub async fn get(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::TerminationCase> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            Self::load(conn, scope, Some(&who), &id)
        })
        .await
    }

    /// A supervisor signs the destruction record whose digest it names (监督销毁).
    pub async fn witness(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        digest: String,
        statement: String,
    ) -> Result<api::TerminationCase> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        TerminationError::unless_role(who, &[Role::Supervisor], "witnessing a destruction")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut c = Self::load(conn, scope, None, &id)?;
            let case_subject = subject(&c);
            Stage::of(&c).after(Step::Witness, &case_subject)?;
            let Some(d) = c.destruction.as_mut() else {
                return Err(TerminationError::Corrupt(format!(
                    "{case_subject}: awaiting its witness without a destruction record"
                )));
            };
            if digest.trim() != d.digest {
                return Err(invalid(
                    "digest",
                    format!(
                        "is not the destruction record's ({}): examine it again",
                        d.digest
                    ),
                ));
            }
            if d.remaining > 0 {
                return Err(TerminationError::precondition(
                    case_subject,
                    format!(
                        "{} object(s) were still found after the destruction",
                        d.remaining
                    ),
                ));
            }
            d.witnessed_by = who.subject.clone();
            d.witness_organization = who.organization.clone();
            d.witnessed_at = Some(timestamp(now));
            d.witness_statement = statement.trim().to_string();
            store::save(conn, scope, &c)?;
            let change = RECORDER.change(scope, Some(&who), now);
            emit(conn, &change, api::CASE_WITNESSED, &c)?;
            Ok(c)
        })
        .await
    }

    pub async fn handover_bundle(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::HandoverBundle> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        TerminationError::unless_role(who, STAFF, "reading the handover")?;
        let key = self.key.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            let c = Self::load(conn, scope, None, &id)?;
            bundle(conn, scope, &key, &c)
        })
        .await
    }

    /// The bureau acknowledges the bundle whose manifest digest it names (R-END-5).
    pub async fn acknowledge(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
        manifest_digest: String,
    ) -> Result<api::TerminationCase> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        TerminationError::unless_role(who, BUREAU, "acknowledging the handover")?;
        let (who, key) = (who.clone(), self.key.clone());
        self.in_scope(&scope, move |conn, scope, now| {
            let mut c = Self::load(conn, scope, None, &id)?;
            Stage::of(&c).after(Step::AcknowledgeHandover, &subject(&c))?;
            let current = bundle(conn, scope, &key, &c)?;
            if manifest_digest.trim() != current.manifest_digest {
                return Err(invalid(
                    "manifest_digest",
                    "is not the digest of the bundle as it stands: fetch the handover again",
                ));
            }
            c.handover = Some(api::Handover {
                manifest_digest: current.manifest_digest,
                acknowledged_by: who.subject.clone(),
                acknowledged_at: Some(timestamp(now)),
            });
            store::save(conn, scope, &c)?;
            let change = RECORDER.change(scope, Some(&who), now);
            emit(conn, &change, api::CASE_HANDED_OVER, &c)?;
            Ok(c)
        })
        .await
    }

    /// Closes the case once every step is done and signed, and every destroyed grant has ended.
    pub async fn close(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::TerminationCase> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        TerminationError::unless_role(who, BUREAU, "closing a termination case")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut c = Self::load(conn, scope, None, &id)?;
            Stage::of(&c).after(Step::Close, &subject(&c))?;
            let destroyed = c.destruction.clone().unwrap_or_default();
            let open_grant = destroyed.grant_ids.iter().find(|g| {
                !c.access_cuts
                    .iter()
                    .any(|cut| cut.kind == GRANT && &cut.subject == *g)
            });
            if let Some(grant) = open_grant {
                return Err(TerminationError::precondition(
                    subject(&c),
                    format!("grant {grant} has not been reported ended yet; wait for it"),
                ));
            }
            c.state = api::TerminationCaseState::Closed as i32;
            c.closed_at = Some(timestamp(now));
            c.closed_by = who.subject.clone();
            store::save(conn, scope, &c)?;
            store::take(conn, &c.id)?;
            let change = RECORDER.change(scope, Some(&who), now);
            emit(conn, &change, api::CASE_CLOSED, &c)?;
            Ok(c)
        })
        .await
    }

    /// Flags each case still open past its deadline, once.
    pub async fn flag_overdue(&self) -> Result<usize> {
        let today = civil_date(self.clock.now());
        let due = self.store.run(move |conn| store::due(conn, today)).await?;
        let mut flagged = 0;
        for (tenant, id) in due {
            let Ok(tenant) = tenant.parse::<TenantCode>() else {
                continue;
            };
            let scope = TenantScope::system(tenant);
            let done = self
                .in_scope(&scope, move |conn, scope, now| {
                    if !store::take(conn, &id)? {
                        return Ok(false);
                    }
                    let Some(mut c) = store::get(conn, scope, &id)? else {
                        return Ok(false);
                    };
                    if CaseState::from_api(c.state) != Some(CaseState::Open) {
                        return Ok(false);
                    }
                    c.overdue = true;
                    store::save(conn, scope, &c)?;
                    let change = RECORDER.change(scope, None, now);
                    emit(conn, &change, api::CASE_OVERDUE, &c)?;
                    Ok(true)
                })
                .await?;
            flagged += usize::from(done);
        }
        Ok(flagged)
    }
}
