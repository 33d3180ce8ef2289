//! The gRPC face of agreements: take the request apart, call [`Agreements`], answer. No rules.

use pdp_kit::grpc::{Answer, cursor, ok, who};
use pdp_proto::pdp::agreements::v1 as api;
use pdp_proto::pdp::common::v1::PageResponse;
use tonic::{Request, Response};

use crate::agreement::AgreementState;
use crate::service::Agreements;

#[tonic::async_trait]
impl api::agreement_service_server::AgreementService for Agreements {
    async fn create_agreement(
        &self,
        request: Request<api::CreateAgreementRequest>,
    ) -> Answer<api::Agreement> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .create(&who, &r.tenant, r.agreement.unwrap_or_default())
            .await)
    }

    async fn list_agreements(
        &self,
        request: Request<api::ListAgreementsRequest>,
    ) -> Answer<api::ListAgreementsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let state = AgreementState::ALL
            .into_iter()
            .find(|s| s.to_api() as i32 == r.state);
        let (agreements, next) = self.list(&who, &r.tenant, state, cursor).await?;
        Ok(Response::new(api::ListAgreementsResponse {
            agreements,
            page: Some(PageResponse {
                next_page_token: next,
            }),
        }))
    }

    async fn get_agreement(
        &self,
        request: Request<api::GetAgreementRequest>,
    ) -> Answer<api::Agreement> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.get(&who, &r.tenant, r.id).await)
    }

    async fn sign_agreement(
        &self,
        request: Request<api::SignAgreementRequest>,
    ) -> Answer<api::Agreement> {
        let who = who(&request)?;
        let r = request.into_inner();
        let party = api::Party::try_from(r.party).unwrap_or_default();
        ok(self.sign(&who, &r.tenant, r.id, party).await)
    }

    async fn renew_agreement(
        &self,
        request: Request<api::RenewAgreementRequest>,
    ) -> Answer<api::Agreement> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.renew(&who, &r.tenant, r.id, r.last_day).await)
    }

    async fn suspend_agreement(
        &self,
        request: Request<api::SuspendAgreementRequest>,
    ) -> Answer<api::Agreement> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.suspend(&who, &r.tenant, r.id, r.reason).await)
    }

    async fn resume_agreement(
        &self,
        request: Request<api::ResumeAgreementRequest>,
    ) -> Answer<api::Agreement> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.resume(&who, &r.tenant, r.id, r.reason).await)
    }

    async fn terminate_agreement(
        &self,
        request: Request<api::TerminateAgreementRequest>,
    ) -> Answer<api::Agreement> {
        let who = who(&request)?;
        let r = request.into_inner();
        let tenant = r.tenant.clone();
        ok(self.terminate(&who, &tenant, r).await)
    }
}

#[tonic::async_trait]
impl api::authorization_service_server::AuthorizationService for Agreements {
    async fn check_authorization(
        &self,
        request: Request<api::CheckAuthorizationRequest>,
    ) -> Answer<api::CheckAuthorizationResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .check(&who, &r.tenant, r.organization, r.resource_id)
            .await)
    }

    async fn list_authorized_resources(
        &self,
        request: Request<api::ListAuthorizedResourcesRequest>,
    ) -> Answer<api::ListAuthorizedResourcesResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.authorized_resources(&who, &r.tenant).await)
    }
}

#[tonic::async_trait]
impl api::public_authorization_service_server::PublicAuthorizationService for Agreements {
    async fn list_public_authorizations(
        &self,
        request: Request<api::ListPublicAuthorizationsRequest>,
    ) -> Answer<api::ListPublicAuthorizationsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (authorizations, next) = self.public_list(&who, &r.tenant, cursor).await?;
        Ok(Response::new(api::ListPublicAuthorizationsResponse {
            authorizations,
            page: Some(PageResponse {
                next_page_token: next,
            }),
        }))
    }
}
