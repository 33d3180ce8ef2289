//! The gRPC face of oversight: take the request apart, call [`Oversight`], answer. No rules.

use pdp_kit::grpc::{Answer, cursor, ok, page, who};
use pdp_proto::google::api::HttpBody;
use pdp_proto::pdp::oversight::v1 as api;
use tonic::{Request, Response};

use crate::alert::Step;
use crate::service::Oversight;

#[tonic::async_trait]
impl api::monitoring_service_server::MonitoringService for Oversight {
    async fn list_monitoring_rules(
        &self,
        request: Request<api::ListMonitoringRulesRequest>,
    ) -> Answer<api::ListMonitoringRulesResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let rules = self.list_rules(&who, &r.tenant).await?;
        Ok(Response::new(api::ListMonitoringRulesResponse { rules }))
    }

    async fn list_alerts(
        &self,
        request: Request<api::ListAlertsRequest>,
    ) -> Answer<api::ListAlertsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (alerts, next) = self
            .list_alerts(&who, &r.tenant, r.state, r.min_severity, cursor)
            .await?;
        Ok(Response::new(api::ListAlertsResponse {
            alerts,
            page: page(next),
        }))
    }

    async fn get_alert(&self, request: Request<api::GetAlertRequest>) -> Answer<api::Alert> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.get_alert(&who, &r.tenant, r.id).await)
    }

    async fn acknowledge_alert(
        &self,
        request: Request<api::AcknowledgeAlertRequest>,
    ) -> Answer<api::Alert> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .handle_alert(&who, &r.tenant, r.id, Step::Acknowledge, String::new())
            .await)
    }

    async fn assign_alert(&self, request: Request<api::AssignAlertRequest>) -> Answer<api::Alert> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .handle_alert(&who, &r.tenant, r.id, Step::Assign, r.assignee)
            .await)
    }

    async fn close_alert(&self, request: Request<api::CloseAlertRequest>) -> Answer<api::Alert> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .handle_alert(&who, &r.tenant, r.id, Step::Close, r.note)
            .await)
    }
}

#[tonic::async_trait]
impl api::inspection_service_server::InspectionService for Oversight {
    async fn open_inspection(
        &self,
        request: Request<api::OpenInspectionRequest>,
    ) -> Answer<api::Inspection> {
        let who = who(&request)?;
        let r = request.into_inner();
        let inspection = r.inspection.unwrap_or_default();
        ok(self.open_inspection(&who, &r.tenant, inspection).await)
    }

    async fn get_inspection(
        &self,
        request: Request<api::GetInspectionRequest>,
    ) -> Answer<api::Inspection> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.get_inspection(&who, &r.tenant, r.id).await)
    }

    async fn list_inspections(
        &self,
        request: Request<api::ListInspectionsRequest>,
    ) -> Answer<api::ListInspectionsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (inspections, next) = self
            .list_inspections(&who, &r.tenant, r.state, cursor)
            .await?;
        Ok(Response::new(api::ListInspectionsResponse {
            inspections,
            page: page(next),
        }))
    }

    async fn record_finding(
        &self,
        request: Request<api::RecordFindingRequest>,
    ) -> Answer<api::Inspection> {
        let who = who(&request)?;
        let r = request.into_inner();
        let finding = r.finding.unwrap_or_default();
        ok(self.record_finding(&who, &r.tenant, r.id, finding).await)
    }

    async fn close_inspection(
        &self,
        request: Request<api::CloseInspectionRequest>,
    ) -> Answer<api::Inspection> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .close_inspection(&who, &r.tenant, r.id, r.conclusion)
            .await)
    }

    async fn issue_rectification_order(
        &self,
        request: Request<api::IssueRectificationOrderRequest>,
    ) -> Answer<api::RectificationOrder> {
        let who = who(&request)?;
        let r = request.into_inner();
        let order = r.order.unwrap_or_default();
        ok(self.issue_order(&who, &r.tenant, order).await)
    }

    async fn list_rectification_orders(
        &self,
        request: Request<api::ListRectificationOrdersRequest>,
    ) -> Answer<api::ListRectificationOrdersResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (orders, next) = self.list_orders(&who, &r.tenant, r.state, cursor).await?;
        Ok(Response::new(api::ListRectificationOrdersResponse {
            orders,
            page: page(next),
        }))
    }

    async fn get_rectification_order(
        &self,
        request: Request<api::GetRectificationOrderRequest>,
    ) -> Answer<api::RectificationOrder> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.get_order(&who, &r.tenant, r.id).await)
    }

    async fn respond_to_rectification_order(
        &self,
        request: Request<api::RespondToRectificationOrderRequest>,
    ) -> Answer<api::RectificationOrder> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .respond_to_order(&who, &r.tenant, r.id, r.text, r.evidence)
            .await)
    }

    async fn judge_rectification(
        &self,
        request: Request<api::JudgeRectificationRequest>,
    ) -> Answer<api::RectificationOrder> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .judge_order(&who, &r.tenant, r.id, r.accepted, r.note)
            .await)
    }
}

#[tonic::async_trait]
impl api::security_record_service_server::SecurityRecordService for Oversight {
    async fn report_incident(
        &self,
        request: Request<api::ReportIncidentRequest>,
    ) -> Answer<api::Incident> {
        let who = who(&request)?;
        let r = request.into_inner();
        let incident = r.incident.unwrap_or_default();
        ok(self.report_incident(&who, &r.tenant, incident).await)
    }

    async fn list_incidents(
        &self,
        request: Request<api::ListIncidentsRequest>,
    ) -> Answer<api::ListIncidentsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (incidents, next) = self
            .list_incidents(&who, &r.tenant, r.operator, cursor)
            .await?;
        Ok(Response::new(api::ListIncidentsResponse {
            incidents,
            page: page(next),
        }))
    }

    async fn file_security_document(
        &self,
        request: Request<api::FileSecurityDocumentRequest>,
    ) -> Answer<api::SecurityDocument> {
        let who = who(&request)?;
        let r = request.into_inner();
        let document = r.document.unwrap_or_default();
        ok(self.file_document(&who, &r.tenant, document).await)
    }

    async fn list_security_documents(
        &self,
        request: Request<api::ListSecurityDocumentsRequest>,
    ) -> Answer<api::ListSecurityDocumentsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (documents, next) = self
            .list_documents(&who, &r.tenant, r.operator, cursor)
            .await?;
        Ok(Response::new(api::ListSecurityDocumentsResponse {
            documents,
            page: page(next),
        }))
    }

    async fn record_risk_assessment(
        &self,
        request: Request<api::RecordRiskAssessmentRequest>,
    ) -> Answer<api::RiskAssessment> {
        let who = who(&request)?;
        let r = request.into_inner();
        let assessment = r.assessment.unwrap_or_default();
        ok(self.record_assessment(&who, &r.tenant, assessment).await)
    }

    async fn list_risk_assessments(
        &self,
        request: Request<api::ListRiskAssessmentsRequest>,
    ) -> Answer<api::ListRiskAssessmentsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (assessments, next) = self.list_assessments(&who, &r.tenant, cursor).await?;
        Ok(Response::new(api::ListRiskAssessmentsResponse {
            assessments,
            page: page(next),
        }))
    }
}

#[tonic::async_trait]
impl api::evaluation_service_server::EvaluationService for Oversight {
    async fn get_evaluation_criteria(
        &self,
        request: Request<api::GetEvaluationCriteriaRequest>,
    ) -> Answer<api::EvaluationCriteria> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.criteria(&who, &r.tenant))
    }

    async fn record_evaluation(
        &self,
        request: Request<api::RecordEvaluationRequest>,
    ) -> Answer<api::Evaluation> {
        let who = who(&request)?;
        let r = request.into_inner();
        let evaluation = r.evaluation.unwrap_or_default();
        ok(self.record_evaluation(&who, &r.tenant, evaluation).await)
    }

    async fn list_evaluations(
        &self,
        request: Request<api::ListEvaluationsRequest>,
    ) -> Answer<api::ListEvaluationsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (evaluations, next) = self
            .list_evaluations(&who, &r.tenant, r.agreement_id, cursor)
            .await?;
        Ok(Response::new(api::ListEvaluationsResponse {
            evaluations,
            page: page(next),
        }))
    }
}

#[tonic::async_trait]
impl api::disclosure_service_server::DisclosureService for Oversight {
    async fn generate_annual_report(
        &self,
        request: Request<api::GenerateAnnualReportRequest>,
    ) -> Answer<api::AnnualReport> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.generate_report(&who, &r.tenant, r.year).await)
    }

    async fn get_annual_report(
        &self,
        request: Request<api::GetAnnualReportRequest>,
    ) -> Answer<api::AnnualReport> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.get_report(&who, &r.tenant, r.year).await)
    }

    async fn publish_annual_report(
        &self,
        request: Request<api::PublishAnnualReportRequest>,
    ) -> Answer<api::AnnualReport> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.publish_report(&who, &r.tenant, r.year, r.digest).await)
    }
}

#[tonic::async_trait]
impl api::public_disclosure_service_server::PublicDisclosureService for Oversight {
    async fn get_published_report(
        &self,
        request: Request<api::GetPublishedReportRequest>,
    ) -> Answer<api::AnnualReport> {
        let r = request.into_inner();
        ok(self.published_report(&r.tenant, r.year).await)
    }

    async fn get_published_report_page(
        &self,
        request: Request<api::GetPublishedReportRequest>,
    ) -> Answer<HttpBody> {
        let r = request.into_inner();
        let report = self.published_report(&r.tenant, r.year).await?;
        Ok(Response::new(HttpBody {
            content_type: "text/html; charset=utf-8".to_string(),
            data: crate::disclosure::page(&report).into_bytes(),
            extensions: Vec::new(),
        }))
    }
}
