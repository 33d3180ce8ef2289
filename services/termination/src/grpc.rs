//! The gRPC face of the audit archive: take the request apart, call [`Archive`], answer. No rules.

use pdp_kit::change::instant;
use pdp_kit::grpc::{Answer, cursor, ok, who};
use pdp_proto::pdp::common::v1::PageResponse;
use pdp_proto::pdp::termination::v1 as api;
use tonic::{Request, Response};

use crate::case::CaseState;
use crate::cases::Cases;
use crate::service::Archive;
use crate::store::RecordFilter;

fn given(s: String) -> Option<String> {
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl api::audit_archive_service_server::AuditArchiveService for Archive {
    async fn list_audit_records(
        &self,
        request: Request<api::ListAuditRecordsRequest>,
    ) -> Answer<api::ListAuditRecordsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let filter = RecordFilter {
            organization: given(r.organization),
            subject: given(r.subject),
            operation: given(r.operation),
            from: instant(r.from.as_ref()),
            to: instant(r.to.as_ref()),
        };
        let (records, next) = self.list_records(&who, &r.tenant, filter, cursor).await?;
        Ok(Response::new(api::ListAuditRecordsResponse {
            records,
            page: Some(PageResponse {
                next_page_token: next,
            }),
        }))
    }

    async fn verify_audit_chain(
        &self,
        request: Request<api::VerifyAuditChainRequest>,
    ) -> Answer<api::VerifyAuditChainResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let (from, to) = (instant(r.from.as_ref()), instant(r.to.as_ref()));
        ok(self.verify(&who, &r.tenant, from, to).await)
    }

    async fn place_legal_hold(
        &self,
        request: Request<api::PlaceLegalHoldRequest>,
    ) -> Answer<api::LegalHold> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .place_hold(&who, &r.tenant, r.hold.unwrap_or_default())
            .await)
    }

    async fn release_legal_hold(
        &self,
        request: Request<api::ReleaseLegalHoldRequest>,
    ) -> Answer<api::LegalHold> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.release_hold(&who, &r.tenant, r.id).await)
    }

    async fn list_legal_holds(
        &self,
        request: Request<api::ListLegalHoldsRequest>,
    ) -> Answer<api::ListLegalHoldsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (holds, next) = self.list_holds(&who, &r.tenant, cursor).await?;
        Ok(Response::new(api::ListLegalHoldsResponse {
            holds,
            page: Some(PageResponse {
                next_page_token: next,
            }),
        }))
    }
}

#[tonic::async_trait]
impl api::public_audit_service_server::PublicAuditService for Archive {
    async fn list_audit_checkpoints(
        &self,
        request: Request<api::ListAuditCheckpointsRequest>,
    ) -> Answer<api::ListAuditCheckpointsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        ok(self.list_checkpoints(&who, &r.tenant, cursor).await)
    }
}

#[tonic::async_trait]
impl api::termination_service_server::TerminationService for Cases {
    async fn list_termination_cases(
        &self,
        request: Request<api::ListTerminationCasesRequest>,
    ) -> Answer<api::ListTerminationCasesResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let state = CaseState::from_api(r.state);
        let (cases, next) = self.list(&who, &r.tenant, state, cursor).await?;
        Ok(Response::new(api::ListTerminationCasesResponse {
            cases,
            page: Some(PageResponse {
                next_page_token: next,
            }),
        }))
    }

    async fn get_termination_case(
        &self,
        request: Request<api::GetTerminationCaseRequest>,
    ) -> Answer<api::TerminationCase> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.get(&who, &r.tenant, r.id).await)
    }

    async fn witness_destruction(
        &self,
        request: Request<api::WitnessDestructionRequest>,
    ) -> Answer<api::TerminationCase> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .witness(&who, &r.tenant, r.id, r.digest, r.statement)
            .await)
    }

    async fn get_handover_bundle(
        &self,
        request: Request<api::GetHandoverBundleRequest>,
    ) -> Answer<api::HandoverBundle> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.handover_bundle(&who, &r.tenant, r.id).await)
    }

    async fn acknowledge_handover(
        &self,
        request: Request<api::AcknowledgeHandoverRequest>,
    ) -> Answer<api::TerminationCase> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .acknowledge(&who, &r.tenant, r.id, r.manifest_digest)
            .await)
    }

    async fn close_termination_case(
        &self,
        request: Request<api::CloseTerminationCaseRequest>,
    ) -> Answer<api::TerminationCase> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.close(&who, &r.tenant, r.id).await)
    }
}
