//! What operators keep on record and report (R-SEC-2): security incidents — a major one alerts
//! the supervisors at once, and every one counts against the operator in later selections
//! (第十二条(三)) — security regimes and incident response plans; and risk assessments of
//! operators and of the platform instance (R-SEC-1).

use chrono::NaiveDate;
use pdp_kit::calendar::civil_date;
use pdp_kit::change::{instant, timestamp};
use pdp_kit::error::FieldViolation;
use pdp_kit::identity::{Identity, Role};
use pdp_kit::paging::Cursor;
use pdp_kit::service::Operations;
use pdp_kit::store::{Access, TenantScope};
use pdp_proto::pdp::oversight::v1 as api;

use crate::OversightError;
use crate::service::{
    Oversight, RECORDER, Result, STAFF, SUPERVISING, Signal, check_document, is_severity, new_id,
    own_evidence, raise,
};
use crate::store as db;

fn major_incident() -> Signal {
    Signal::builtin(
        "major-incident",
        "A major security incident was reported",
        api::Severity::Critical,
        &[api::Department::Cyberspace, api::Department::PublicSecurity],
        "第二十六条, 第二十七条",
    )
}

impl Oversight {
    pub async fn report_incident(
        &self,
        who: &Identity,
        tenant: &str,
        mut i: api::Incident,
    ) -> Result<api::Incident> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        OversightError::unless_role(who, &[Role::Operator], "reporting a security incident")?;
        let now = self.clock.now();
        let mut v = Vec::new();
        match instant(i.occurred_at.as_ref()) {
            None => v.push(FieldViolation::new(
                "incident.occurred_at",
                "required: when it occurred",
            )),
            Some(at) if at > now => {
                v.push(FieldViolation::new("incident.occurred_at", "in the future"));
            }
            Some(_) => {}
        }
        for (field, value, rule) in [
            (
                "incident.kind",
                &i.kind,
                "what happened, e.g. data_leak, intrusion, service_outage",
            ),
            ("incident.impact", &i.impact, "its impact"),
            (
                "incident.response_taken",
                &i.response_taken,
                "the response taken (应急处置)",
            ),
        ] {
            if value.trim().is_empty() {
                v.push(FieldViolation::new(field, format!("required: {rule}")));
            }
        }
        OversightError::check("incident", v)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            i.id = new_id();
            i.operator = who.organization.clone();
            i.reported_by = who.subject.clone();
            i.reported_at = Some(timestamp(now));
            db::insert(conn, scope, &i)?;
            let occurred = instant(i.occurred_at.as_ref())
                .map(civil_date)
                .unwrap_or_default();
            let event = api::IncidentReported {
                incident_id: i.id.clone(),
                operator: i.operator.clone(),
                occurred_on: occurred.to_string(),
                major: i.major,
                kind: i.kind.clone(),
            };
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::INCIDENT_REPORTED,
                &i.id,
                &event,
            )?;
            if i.major {
                let evidence = own_evidence(
                    format!("incidents/{}", i.id),
                    format!("{}: {} ({})", i.operator, i.kind, i.impact),
                    now,
                );
                raise(conn, scope, &major_incident(), &i.operator, evidence, now)?;
            }
            Ok(i)
        })
        .await
    }

    pub async fn list_incidents(
        &self,
        who: &Identity,
        tenant: &str,
        operator: String,
        cursor: Cursor,
    ) -> Result<(Vec<api::Incident>, String)> {
        self.page(who, tenant, operator, vec![], cursor).await
    }

    pub async fn file_document(
        &self,
        who: &Identity,
        tenant: &str,
        mut d: api::SecurityDocument,
    ) -> Result<api::SecurityDocument> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        OversightError::unless_role(who, &[Role::Operator], "filing a security document")?;
        let mut v = Vec::new();
        if !matches!(
            api::SecurityDocumentKind::try_from(d.kind),
            Ok(k) if k != api::SecurityDocumentKind::Unspecified
        ) {
            v.push(FieldViolation::new(
                "document.kind",
                "REGIME (数据安全管理制度) or RESPONSE_PLAN (应急预案), R-SEC-2",
            ));
        }
        v.extend(check_document(
            "document.document",
            d.document.as_ref(),
            true,
        ));
        OversightError::check("security document", v)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            d.id = new_id();
            d.operator = who.organization.clone();
            d.filed_by = who.subject.clone();
            d.filed_at = Some(timestamp(now));
            db::insert(conn, scope, &d)?;
            let event = api::SecurityDocumentFiled {
                document_id: d.id.clone(),
                operator: d.operator.clone(),
                kind: d.kind,
            };
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::SECURITY_DOCUMENT_FILED,
                &d.id,
                &event,
            )?;
            Ok(d)
        })
        .await
    }

    pub async fn list_documents(
        &self,
        who: &Identity,
        tenant: &str,
        operator: String,
        cursor: Cursor,
    ) -> Result<(Vec<api::SecurityDocument>, String)> {
        self.page(who, tenant, operator, vec![], cursor).await
    }

    pub async fn record_assessment(
        &self,
        who: &Identity,
        tenant: &str,
        mut a: api::RiskAssessment,
    ) -> Result<api::RiskAssessment> {
        let scope = TenantScope::for_call(who, tenant, Access::Write)?;
        OversightError::unless_role(who, SUPERVISING, "recording a risk assessment")?;
        let mut v = Vec::new();
        if !matches!(a.subject_kind.as_str(), "operator" | "platform") {
            v.push(FieldViolation::new(
                "assessment.subject_kind",
                "`operator` or `platform`",
            ));
        }
        if a.subject.trim().is_empty() {
            v.push(FieldViolation::new(
                "assessment.subject",
                "required: the operator, or the platform instance's name",
            ));
        }
        if NaiveDate::parse_from_str(&a.assessed_on, "%Y-%m-%d").is_err() {
            v.push(FieldViolation::new(
                "assessment.assessed_on",
                "a date YYYY-MM-DD",
            ));
        }
        if a.assessor.trim().is_empty() {
            v.push(FieldViolation::new(
                "assessment.assessor",
                "required: who assessed",
            ));
        }
        if !is_severity(a.risk_level) {
            v.push(FieldViolation::new(
                "assessment.risk_level",
                "LOW, MEDIUM, HIGH or CRITICAL",
            ));
        }
        if a.summary.trim().is_empty() {
            v.push(FieldViolation::new("assessment.summary", "required"));
        }
        v.extend(check_document(
            "assessment.report",
            a.report.as_ref(),
            false,
        ));
        OversightError::check("risk assessment", v)?;
        let who = who.clone();
        self.in_scope(&scope, move |conn, scope, now| {
            a.id = new_id();
            a.recorded_by = who.subject.clone();
            a.recorded_at = Some(timestamp(now));
            db::insert(conn, scope, &a)?;
            let event = api::RiskAssessmentRecorded {
                assessment_id: a.id.clone(),
                subject_kind: a.subject_kind.clone(),
                subject: a.subject.clone(),
                risk_level: a.risk_level,
            };
            RECORDER.change(scope, Some(&who), now).emit(
                conn,
                api::RISK_ASSESSMENT_RECORDED,
                &a.id,
                &event,
            )?;
            Ok(a)
        })
        .await
    }

    pub async fn list_assessments(
        &self,
        who: &Identity,
        tenant: &str,
        cursor: Cursor,
    ) -> Result<(Vec<api::RiskAssessment>, String)> {
        OversightError::unless_role(who, STAFF, "reading risk assessments")?;
        self.page(who, tenant, String::new(), vec![], cursor).await
    }
}
