//! The audit archive's operations: appending what arrives on `pdp.audit` to its tenant's chain,
//! signing checkpoints, purging what is past its retention, verifying ranges, legal holds.

use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use pdp_kit::change::{Recorder, instant, timestamp};
use pdp_kit::clock::Clock;
use pdp_kit::config::AuditConfig;
use pdp_kit::events::Event;
use pdp_kit::identity::{Identity, Role, TenantCode};
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, AnyConnection, Store, TenantScope};
use pdp_proto::pdp::termination::v1 as api;
use uuid::Uuid;

use crate::chain::{ArchivedRecord, GENESIS, Walk};
use crate::checkpoint::{ArchiveKey, Checkpoint, Kind};
use crate::retention::{hold_violations, purge_before};
use crate::store::{self as db, RecordFilter};
use crate::{SERVICE, TOPIC, TerminationError};

type Result<T> = std::result::Result<T, TerminationError>;

/// Who reads the archive: the bureaus, supervisors and auditors.
const READERS: &[Role] = &[
    Role::ProvincialBureau,
    Role::CityBureau,
    Role::Supervisor,
    Role::Auditor,
];
/// Who places and releases legal holds.
const HOLDERS: &[Role] = &[Role::ProvincialBureau, Role::CityBureau, Role::Supervisor];

const RECORDER: Recorder = Recorder {
    service: SERVICE,
    topic: TOPIC,
};

/// How many records a verification reads at a time.
const VERIFY_PAGE: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct Archive {
    store: Store,
    clock: Arc<dyn Clock>,
    key: Arc<ArchiveKey>,
    config: AuditConfig,
}

impl Operations for Archive {
    type Error = TerminationError;

    fn store(&self) -> &Store {
        &self.store
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}

/// The archive's fields of an audit event: the gateway's record of a request, or a service's
/// record of a change; anything else on the topic is kept whole under its type.
fn record_of(event: &Event, archived_at: DateTime<Utc>) -> ArchivedRecord {
    let text = |key: &str| {
        event
            .data
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let service = event
        .event_type
        .strip_prefix("pdp.")
        .and_then(|rest| rest.strip_suffix(".action.recorded"));
    let (source, operation, target, outcome) = if event.event_type == GATEWAY_RECORD {
        let status = event.data.get("status").and_then(|s| s.as_u64());
        let outcome = format!("{} {}", text("decision"), status.unwrap_or_default());
        (
            "gateway".into(),
            text("operation"),
            text("request_id"),
            outcome,
        )
    } else if let Some(service) = service {
        (
            service.into(),
            text("action"),
            text("target"),
            "done".into(),
        )
    } else {
        let source = event.source.rsplit('/').next().unwrap_or_default();
        (
            source.into(),
            event.event_type.clone(),
            event.subject.clone(),
            String::new(),
        )
    };
    ArchivedRecord {
        tenant: event.tenant.to_string(),
        seq: 0,
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
        time: event.time.trunc_subsecs(6),
        archived_at,
        source,
        operation,
        target,
        subject: text("subject"),
        organization: text("organization"),
        outcome,
        data: event.data.to_string(),
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// The chain position a page token carries (records and checkpoints page by position).
fn position(cursor: &Cursor) -> Result<Option<i64>> {
    cursor
        .after
        .as_deref()
        .map(|token| {
            token.parse::<i64>().map_err(|_| {
                TerminationError::invalid(
                    "page",
                    vec![pdp_kit::error::FieldViolation::new(
                        "page.page_token",
                        "not a token this service issued",
                    )],
                )
            })
        })
        .transpose()
}

/// Stores hold `h` and records `ty` of it: its event and its audit record.
fn put_hold(
    conn: &mut AnyConnection,
    change: &pdp_kit::change::Change<'_>,
    ty: pdp_proto::EventType<api::LegalHoldChanged>,
    h: api::LegalHold,
) -> Result<api::LegalHold> {
    db::put_hold(conn, change.scope, &h)?;
    let event = api::LegalHoldChanged {
        hold: Some(h.clone()),
    };
    change.emit(conn, ty, &h.id, &event)?;
    Ok(h)
}

/// The gateway's record of one request.
pub const GATEWAY_RECORD: &str = "pdp.gateway.request.audited";

/// Appends the records `events` carry, in order, each to its tenant's chain, in the caller's
/// (inbox) transaction: archived exactly once. Per tenant one lock of the head, one multi-row
/// insert, one move of the head.
pub fn append_all(conn: &mut AnyConnection, events: &[&Event], now: DateTime<Utc>) -> Result<()> {
    let now = now.trunc_subsecs(6);
    let mut tenants: Vec<&TenantCode> = events.iter().map(|e| &e.tenant).collect();
    tenants.sort();
    tenants.dedup();
    for tenant in tenants {
        let scope = TenantScope::system(tenant.clone());
        scope.enter(conn)?;
        let (mut seq, mut hash) = db::lock_head(conn, tenant.as_str())?;
        let records: Vec<ArchivedRecord> = events
            .iter()
            .filter(|e| &e.tenant == tenant)
            .map(|e| {
                let mut r = record_of(e, now);
                seq += 1;
                r.seq = seq;
                let r = r.link(&hash);
                hash = r.hash.clone();
                r
            })
            .collect();
        db::insert_records(conn, &scope, &records)?;
        db::set_head(conn, tenant.as_str(), seq, &hash)?;
    }
    Ok(())
}

fn checkpoint_api(c: &Checkpoint) -> api::AuditCheckpoint {
    api::AuditCheckpoint {
        seq: c.seq,
        hash: c.hash.clone(),
        signed_at: Some(timestamp(c.signed_at)),
        signature: c.signature.clone(),
        signing_input: c.signing_input(),
        kind: c.kind.name().to_string(),
    }
}

fn record_api(r: ArchivedRecord) -> api::AuditRecord {
    api::AuditRecord {
        seq: r.seq,
        event_id: r.event_id,
        event_type: r.event_type,
        time: Some(timestamp(r.time)),
        archived_at: Some(timestamp(r.archived_at)),
        source: r.source,
        operation: r.operation,
        target: r.target,
        subject: r.subject,
        organization: r.organization,
        outcome: r.outcome,
        data: r.data,
        prev_hash: r.prev_hash,
        hash: r.hash,
    }
}

/// Where a verification may start from: the latest anchor (records before it were purged) or
/// the chain's start.
fn floor(conn: &mut AnyConnection, scope: &TenantScope) -> Result<Option<Checkpoint>> {
    db::checkpoint_at_or_before(conn, scope, i64::MAX, Some(Kind::Anchor))
}

/// A position of the chain to walk from.
struct Start {
    seq: i64,
    hash: String,
}

/// Verifies `scope`'s chain over the records `(start, through]`, and every checkpoint on the
/// way; then, when `head` is given, that the chain ends there.
fn walk(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    key: &ArchiveKey,
    start: &Start,
    through: i64,
    head: Option<(i64, String)>,
) -> Result<(Walk, i64, i64)> {
    let mut w = Walk::after(start.seq, &start.hash);
    let checkpoints = db::checkpoints_between(conn, scope, start.seq + 1, through)?;
    let mut checkpoints = checkpoints.into_iter().peekable();
    let (mut signed, mut last_checkpoint) = (0, 0);
    let mut after = start.seq;
    'pages: while after < through {
        let page = db::records_between(conn, scope, after, through, VERIFY_PAGE)?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.seq;
        for r in &page {
            if !w.record(r) {
                break 'pages;
            }
            while let Some(c) = checkpoints.next_if(|c| c.seq <= r.seq) {
                let name = format!("the {} checkpoint", c.kind.name().to_lowercase());
                if !key.verifies(&c) {
                    w.fail(
                        c.seq,
                        format!("{name} at record {} is not signed by the key", c.seq),
                    );
                    break 'pages;
                }
                if !w.reaches(c.seq, &c.hash, &name) {
                    break 'pages;
                }
                signed += 1;
                last_checkpoint = c.seq;
            }
        }
    }
    if w.broken().is_none() && w.position().0 < through {
        let (held, _) = w.position();
        w.fail(
            held + 1,
            format!(
                "record {} is missing: the chain held ends at record {held}",
                held + 1
            ),
        );
    }
    if let Some((seq, hash)) = head {
        w.reaches(seq, &hash, "the chain's head");
    }
    Ok((w, signed, last_checkpoint))
}

impl Archive {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        key: Arc<ArchiveKey>,
        config: AuditConfig,
    ) -> Self {
        Self {
            store,
            clock,
            key,
            config,
        }
    }

    fn retention(&self, tenant: &TenantCode) -> Duration {
        Duration::days(i64::from(self.config.retention_of(tenant.as_str())))
    }

    pub async fn list_records(
        &self,
        who: &Identity,
        tenant: &str,
        filter: RecordFilter,
        cursor: Cursor,
    ) -> Result<(Vec<api::AuditRecord>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        TerminationError::unless_role(who, READERS, "reading the audit archive")?;
        let after = position(&cursor)?.unwrap_or(0);
        self.in_scope(&scope, move |conn, scope, _| {
            let records = db::list_records(conn, scope, &filter, after, i64::from(cursor.size))?;
            let next = cursor.next_token_by(&records, |r| r.seq.to_string());
            Ok((records.into_iter().map(record_api).collect(), next))
        })
        .await
    }

    /// Verifies the records of `[from, to)` (all when both are absent).
    pub async fn verify(
        &self,
        who: &Identity,
        tenant: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<api::VerifyAuditChainResponse> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        TerminationError::unless_role(who, READERS, "verifying the audit archive")?;
        self.verify_in(scope, from, to).await
    }

    /// [`Archive::verify`] for the platform itself (`pdp audit verify`).
    pub async fn verify_in(
        &self,
        scope: TenantScope,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<api::VerifyAuditChainResponse> {
        let key = self.key.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            verify_range(conn, scope, &key, from, to)
        })
        .await
    }

    pub async fn list_checkpoints(
        &self,
        who: &Identity,
        tenant: &str,
        cursor: Cursor,
    ) -> Result<api::ListAuditCheckpointsResponse> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        let before = position(&cursor)?;
        let key = self.key.clone();
        self.in_scope(&scope, move |conn, scope, _| {
            let list = db::list_checkpoints(conn, scope, before, i64::from(cursor.size))?;
            let next = cursor.next_token_by(&list, |c| c.seq.to_string());
            Ok(api::ListAuditCheckpointsResponse {
                checkpoints: list.iter().map(checkpoint_api).collect(),
                public_key: key.public_key(),
                key_id: key.key_id(),
                page: Some(pdp_proto::pdp::common::v1::PageResponse {
                    next_page_token: next,
                }),
            })
        })
        .await
    }

    pub async fn place_hold(
        &self,
        who: &Identity,
        tenant: &str,
        hold: api::LegalHold,
    ) -> Result<api::LegalHold> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        TerminationError::unless_role(who, HOLDERS, "placing a legal hold")?;
        let (from, to) = (instant(hold.from.as_ref()), instant(hold.to.as_ref()));
        TerminationError::check("legal hold", hold_violations(from, to, &hold.reason))?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let h = api::LegalHold {
                id: Uuid::now_v7().to_string(),
                from: hold.from,
                to: hold.to,
                reason: hold.reason.trim().to_string(),
                state: api::LegalHoldState::Active as i32,
                placed_by: who.subject.clone(),
                placed_at: Some(timestamp(now)),
                released_by: String::new(),
                released_at: None,
            };
            let change = RECORDER.change(scope, Some(&who), now);
            put_hold(conn, &change, api::LEGAL_HOLD_PLACED, h)
        })
        .await
    }

    pub async fn release_hold(
        &self,
        who: &Identity,
        tenant: &str,
        id: String,
    ) -> Result<api::LegalHold> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        TerminationError::unless_role(who, HOLDERS, "releasing a legal hold")?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            let mut h = db::get_hold(conn, scope, &id)?
                .ok_or_else(|| TerminationError::not_found("legal hold", &id))?;
            if h.state != api::LegalHoldState::Active as i32 {
                return Err(TerminationError::precondition(
                    format!("legal-holds/{id}"),
                    "the hold was released already",
                ));
            }
            h.state = api::LegalHoldState::Released as i32;
            h.released_by = who.subject.clone();
            h.released_at = Some(timestamp(now));
            let change = RECORDER.change(scope, Some(&who), now);
            put_hold(conn, &change, api::LEGAL_HOLD_RELEASED, h)
        })
        .await
    }

    pub async fn list_holds(
        &self,
        who: &Identity,
        tenant: &str,
        cursor: Cursor,
    ) -> Result<(Vec<api::LegalHold>, String)> {
        let scope = TenantScope::for_call(who, tenant, Access::Read)?;
        TerminationError::unless_role(who, READERS, "reading legal holds")?;
        self.in_scope(&scope, move |conn, scope, _| {
            let holds = db::list_holds(conn, scope, cursor.after.as_deref(), cursor.size.into())?;
            let next = cursor.next_token(&holds, |h| &h.id);
            Ok((holds, next))
        })
        .await
    }

    /// Signs a checkpoint of every chain that has grown since its last one, once
    /// `audit.checkpoint_every_secs` has passed, after verifying the records since.
    pub async fn checkpoint_due(&self) -> Result<usize> {
        let heads = self.store.run(db::heads).await?;
        let mut signed = 0;
        for (tenant, seq, hash) in heads {
            let Ok(tenant) = tenant.parse::<TenantCode>() else {
                continue;
            };
            let (key, every) = (
                self.key.clone(),
                Duration::seconds(self.config.checkpoint_every_secs as i64),
            );
            let scope = TenantScope::system(tenant.clone());
            let done = self
                .in_scope(&scope, move |conn, scope, now| {
                    let last = db::checkpoint_at_or_before(conn, scope, i64::MAX, None)?;
                    if let Some(last) = &last
                        && (last.seq >= seq || now - last.signed_at < every)
                    {
                        return Ok(false);
                    }
                    let start = last.map_or(
                        Start {
                            seq: 0,
                            hash: GENESIS.to_string(),
                        },
                        |c| Start {
                            seq: c.seq,
                            hash: c.hash,
                        },
                    );
                    let (w, _, _) =
                        walk(conn, scope, &key, &start, seq, Some((seq, hash.clone())))?;
                    if let Some(broken) = w.broken() {
                        tracing::error!(
                            tenant = %scope.tenant(),
                            seq = broken.seq,
                            reason = %broken.reason,
                            "the audit chain does not verify: no checkpoint signed"
                        );
                        return Ok(false);
                    }
                    let c = key.sign(scope.tenant().as_str(), seq, &hash, now, Kind::Regular);
                    db::insert_checkpoint(conn, scope, &c)?;
                    Ok(true)
                })
                .await?;
            signed += usize::from(done);
        }
        Ok(signed)
    }

    /// Purges, per tenant, the records past their retention and under no hold: verified first,
    /// then an anchor checkpoint signed at the last of them, then removed.
    pub async fn purge_due(&self) -> Result<usize> {
        let heads = self.store.run(db::heads).await?;
        let mut purged = 0;
        for (tenant, _, _) in heads {
            let Ok(tenant) = tenant.parse::<TenantCode>() else {
                continue;
            };
            let retention = self.retention(&tenant);
            let key = self.key.clone();
            let scope = TenantScope::system(tenant);
            purged += self
                .in_scope(&scope, move |conn, scope, now| {
                    purge_tenant(conn, scope, &key, retention, now)
                })
                .await?;
        }
        Ok(purged)
    }

    /// Follows agreements: each authorization period's start and end.
    pub fn follow_period(
        conn: &mut AnyConnection,
        event: &Event,
        agreement_id: &str,
        operator: &str,
        ended: bool,
    ) -> Result<()> {
        let scope = TenantScope::system(event.tenant.clone());
        scope.enter(conn)?;
        if ended {
            db::period_ended(conn, &scope, agreement_id, operator, event.time)
        } else {
            db::period_started(conn, &scope, agreement_id, operator, event.time)
        }
    }
}

fn verify_range(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    key: &ArchiveKey,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<api::VerifyAuditChainResponse> {
    let mut out = api::VerifyAuditChainResponse::default();
    let Some((first, last)) = db::seq_range(conn, scope, from, to)? else {
        out.verified = true;
        return Ok(out);
    };
    (out.first_seq, out.last_seq) = (first, last);
    let anchor = floor(conn, scope)?;
    if let Some(a) = &anchor
        && !key.verifies(a)
    {
        out.failed_seq = a.seq;
        out.failure = format!(
            "the anchor checkpoint at record {} is not signed by the key",
            a.seq
        );
        return Ok(out);
    }
    let floor_seq = anchor.as_ref().map_or(0, |a| a.seq);
    // From the last signed point before the range: the records between are verified too.
    let start = match db::checkpoint_at_or_before(conn, scope, first - 1, None)? {
        Some(c) if c.seq >= floor_seq && key.verifies(&c) => Start {
            seq: c.seq,
            hash: c.hash,
        },
        _ => match anchor {
            Some(a) => Start {
                seq: a.seq,
                hash: a.hash,
            },
            None => Start {
                seq: 0,
                hash: GENESIS.to_string(),
            },
        },
    };
    // Through the first checkpoint at or after the range's end, which proves the range was not
    // rewritten; to the chain's head when the range is open-ended.
    let head = db::head(conn, scope.tenant().as_str())?;
    let (through, head) = match to {
        None => (head.as_ref().map_or(last, |h| h.0), head),
        Some(_) => {
            let next = db::checkpoint_at_or_after(conn, scope, last)?;
            (next.map_or(last, |c| c.seq), None)
        }
    };
    let (w, signed, last_checkpoint) = walk(conn, scope, key, &start, through, head)?;
    out.records_checked = w.checked();
    out.checkpoints_checked = signed;
    out.last_checkpoint_seq = last_checkpoint;
    match w.broken() {
        Some(b) => {
            out.failed_seq = b.seq;
            out.failure = b.reason.clone();
        }
        None => out.verified = true,
    }
    Ok(out)
}

fn purge_tenant(
    conn: &mut AnyConnection,
    scope: &TenantScope,
    key: &ArchiveKey,
    retention: Duration,
    now: DateTime<Utc>,
) -> Result<usize> {
    let periods = db::periods(conn, scope)?;
    let holds = db::active_hold_starts(conn, scope)?;
    let before = purge_before(now, retention, &periods, &holds);
    let Some((through, hash)) = db::last_before(conn, scope, before)? else {
        return Ok(0);
    };
    let anchor = floor(conn, scope)?;
    let start = match anchor {
        Some(a) if a.seq >= through => return Ok(0),
        Some(a) => Start {
            seq: a.seq,
            hash: a.hash,
        },
        None => Start {
            seq: 0,
            hash: GENESIS.to_string(),
        },
    };
    let (w, _, _) = walk(conn, scope, key, &start, through, None)?;
    if let Some(broken) = w.broken() {
        tracing::error!(
            tenant = %scope.tenant(),
            seq = broken.seq,
            reason = %broken.reason,
            "the audit chain does not verify: nothing purged"
        );
        return Ok(0);
    }
    let anchor = key.sign(scope.tenant().as_str(), through, &hash, now, Kind::Anchor);
    db::insert_checkpoint(conn, scope, &anchor)?;
    let records = db::purge(conn, scope, through, before)?;
    let change = RECORDER.change(scope, None, now);
    let event = api::AuditRecordsPurged {
        through_seq: through,
        records: records as i64,
        anchor_hash: hash,
        before: before.to_rfc3339(),
    };
    change.emit(
        conn,
        api::AUDIT_RECORDS_PURGED,
        &format!("{}/{through}", scope.tenant()),
        &event,
    )?;
    tracing::info!(tenant = %scope.tenant(), through, records, "audit records purged");
    Ok(records)
}
