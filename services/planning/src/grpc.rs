//! The gRPC face of planning: each handler takes the verified caller and the request apart, calls
//! [`Planning`], and puts the answer back together. No rule lives here.

use pdp_kit::grpc::{Answer, cursor, ok, page, who};
use pdp_proto::pdp::planning::v1 as api;
use tonic::{Request, Response};

use crate::plan::PlanState;
use crate::service::Planning;

#[tonic::async_trait]
impl api::resource_service_server::ResourceService for Planning {
    async fn create_resource(
        &self,
        request: Request<api::CreateResourceRequest>,
    ) -> Answer<api::DataResource> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .create_resource(&who, &r.tenant, r.resource.unwrap_or_default())
            .await)
    }

    async fn list_resources(
        &self,
        request: Request<api::ListResourcesRequest>,
    ) -> Answer<api::ListResourcesResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (resources, next) = self
            .list_resources(&who, &r.tenant, r.registered, cursor)
            .await?;
        Ok(Response::new(api::ListResourcesResponse {
            resources,
            page: page(next),
        }))
    }

    async fn get_resource(
        &self,
        request: Request<api::GetResourceRequest>,
    ) -> Answer<api::DataResource> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.get_resource(&who, &r.tenant, r.id).await)
    }

    async fn update_resource(
        &self,
        request: Request<api::UpdateResourceRequest>,
    ) -> Answer<api::DataResource> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .update_resource(&who, &r.tenant, r.id, r.resource.unwrap_or_default())
            .await)
    }

    async fn register_resource(
        &self,
        request: Request<api::RegisterResourceRequest>,
    ) -> Answer<api::DataResource> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.register_resource(&who, &r.tenant, r.id).await)
    }
}

#[tonic::async_trait]
impl api::plan_service_server::PlanService for Planning {
    async fn create_plan(&self, request: Request<api::CreatePlanRequest>) -> Answer<api::Plan> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .create_plan(&who, &r.tenant, r.plan.unwrap_or_default())
            .await)
    }

    async fn list_plans(
        &self,
        request: Request<api::ListPlansRequest>,
    ) -> Answer<api::ListPlansResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let state = api::PlanState::try_from(r.state)
            .ok()
            .and_then(PlanState::from_api);
        let (plans, next) = self.list_plans(&who, &r.tenant, state, cursor).await?;
        Ok(Response::new(api::ListPlansResponse {
            plans,
            page: page(next),
        }))
    }

    async fn get_plan(&self, request: Request<api::GetPlanRequest>) -> Answer<api::Plan> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.get_plan(&who, &r.tenant, r.id).await)
    }

    async fn list_plan_versions(
        &self,
        request: Request<api::ListPlanVersionsRequest>,
    ) -> Answer<api::ListPlanVersionsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let versions = self.plan_versions(&who, &r.tenant, r.id).await?;
        Ok(Response::new(api::ListPlanVersionsResponse { versions }))
    }

    async fn get_plan_version(
        &self,
        request: Request<api::GetPlanVersionRequest>,
    ) -> Answer<api::Plan> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.plan_version(&who, &r.tenant, r.id, r.version).await)
    }

    async fn update_plan(&self, request: Request<api::UpdatePlanRequest>) -> Answer<api::Plan> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .update_plan(&who, &r.tenant, r.id, r.plan.unwrap_or_default())
            .await)
    }

    async fn submit_plan(&self, request: Request<api::SubmitPlanRequest>) -> Answer<api::Plan> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.submit_plan(&who, &r.tenant, r.id).await)
    }

    async fn review_plan(&self, request: Request<api::ReviewPlanRequest>) -> Answer<api::Plan> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.review_plan(&who, &r.tenant, r.id, r.review).await)
    }

    async fn decide_plan(&self, request: Request<api::DecidePlanRequest>) -> Answer<api::Plan> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.decide_plan(&who, &r.tenant, r.id, r.decision).await)
    }

    async fn approve_plan(&self, request: Request<api::ApprovePlanRequest>) -> Answer<api::Plan> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.approve_plan(&who, &r.tenant, r.id, r.approval).await)
    }

    async fn reject_plan(&self, request: Request<api::RejectPlanRequest>) -> Answer<api::Plan> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.reject_plan(&who, &r.tenant, r.id, r.reasons).await)
    }

    async fn amend_plan(&self, request: Request<api::AmendPlanRequest>) -> Answer<api::Amendment> {
        let who = who(&request)?;
        let r = request.into_inner();
        let (tenant, id) = (r.tenant.clone(), r.id.clone());
        ok(self.amend_plan(&who, &tenant, id, r).await)
    }

    async fn list_amendments(
        &self,
        request: Request<api::ListAmendmentsRequest>,
    ) -> Answer<api::ListAmendmentsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let amendments = self.list_amendments(&who, &r.tenant, r.id).await?;
        Ok(Response::new(api::ListAmendmentsResponse { amendments }))
    }
}

#[tonic::async_trait]
impl api::filing_service_server::FilingService for Planning {
    async fn list_filings(
        &self,
        request: Request<api::ListFilingsRequest>,
    ) -> Answer<api::ListFilingsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let state = api::FilingState::try_from(r.state)
            .ok()
            .filter(|s| *s != api::FilingState::Unspecified);
        let (filings, next) = self.list_filings(&who, &r.tenant, state, cursor).await?;
        Ok(Response::new(api::ListFilingsResponse {
            filings,
            page: page(next),
        }))
    }

    async fn get_filing(&self, request: Request<api::GetFilingRequest>) -> Answer<api::Filing> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.get_filing(&who, &r.tenant, r.id).await)
    }

    async fn acknowledge_filing(
        &self,
        request: Request<api::AcknowledgeFilingRequest>,
    ) -> Answer<api::Filing> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.acknowledge_filing(&who, &r.tenant, r.id, r.note).await)
    }
}

#[tonic::async_trait]
impl api::public_planning_service_server::PublicPlanningService for Planning {
    async fn list_public_plans(
        &self,
        request: Request<api::ListPublicPlansRequest>,
    ) -> Answer<api::ListPublicPlansResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (plans, next) = self.list_public_plans(&who, &r.tenant, cursor).await?;
        Ok(Response::new(api::ListPublicPlansResponse {
            plans,
            page: page(next),
        }))
    }

    async fn list_public_resources(
        &self,
        request: Request<api::ListPublicResourcesRequest>,
    ) -> Answer<api::ListPublicResourcesResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (resources, next) = self.list_public_resources(&who, &r.tenant, cursor).await?;
        Ok(Response::new(api::ListPublicResourcesResponse {
            resources,
            page: page(next),
        }))
    }
}
