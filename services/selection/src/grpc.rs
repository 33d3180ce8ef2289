//! The gRPC face of selection: take the request apart, call [`Selections`], answer. No rules.

use pdp_kit::grpc::{Answer, cursor, ok, page, who};
use pdp_proto::pdp::selection::v1 as api;
use tonic::{Request, Response};

use crate::eligibility::Judgment;
use crate::selection::SelectionState;
use crate::service::{Resolution, Selections};

#[tonic::async_trait]
impl api::selection_service_server::SelectionService for Selections {
    async fn create_selection(
        &self,
        request: Request<api::CreateSelectionRequest>,
    ) -> Answer<api::Selection> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .create(&who, &r.tenant, r.selection.unwrap_or_default())
            .await)
    }

    async fn list_selections(
        &self,
        request: Request<api::ListSelectionsRequest>,
    ) -> Answer<api::ListSelectionsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let state = SelectionState::ALL
            .into_iter()
            .find(|s| s.to_api() as i32 == r.state);
        let (selections, next) = self.list(&who, &r.tenant, state, cursor).await?;
        Ok(Response::new(api::ListSelectionsResponse {
            selections,
            page: page(next),
        }))
    }

    async fn get_selection(
        &self,
        request: Request<api::GetSelectionRequest>,
    ) -> Answer<api::Selection> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.get(&who, &r.tenant, r.id).await)
    }

    async fn appoint_evaluators(
        &self,
        request: Request<api::AppointEvaluatorsRequest>,
    ) -> Answer<api::Selection> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .appoint_evaluators(&who, &r.tenant, r.id, r.evaluators)
            .await)
    }

    async fn publish_selection(
        &self,
        request: Request<api::PublishSelectionRequest>,
    ) -> Answer<api::Selection> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.publish(&who, &r.tenant, r.id).await)
    }

    async fn shortlist_selection(
        &self,
        request: Request<api::ShortlistSelectionRequest>,
    ) -> Answer<api::Selection> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.shortlist(&who, &r.tenant, r.id).await)
    }

    async fn publish_notice(
        &self,
        request: Request<api::PublishNoticeRequest>,
    ) -> Answer<api::Selection> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .publish_notice(&who, &r.tenant, r.id, r.notice.unwrap_or_default())
            .await)
    }

    async fn list_objections(
        &self,
        request: Request<api::ListObjectionsRequest>,
    ) -> Answer<api::ListObjectionsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (objections, next) = self.objections(&who, &r.tenant, r.id, cursor).await?;
        Ok(Response::new(api::ListObjectionsResponse {
            objections,
            page: page(next),
        }))
    }

    async fn resolve_objection(
        &self,
        request: Request<api::ResolveObjectionRequest>,
    ) -> Answer<api::Objection> {
        let who = who(&request)?;
        let r = request.into_inner();
        let outcome = api::ObjectionState::try_from(r.outcome).unwrap_or_default();
        ok(self
            .resolve(
                &who,
                &r.tenant,
                r.id,
                r.objection_id,
                Resolution {
                    outcome,
                    reasons: r.reasons,
                    duplicates: r.duplicates,
                },
            )
            .await)
    }

    async fn conclude_selection(
        &self,
        request: Request<api::ConcludeSelectionRequest>,
    ) -> Answer<api::Selection> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .conclude(&who, &r.tenant, r.id, r.decision, r.departments)
            .await)
    }
}

#[tonic::async_trait]
impl api::application_service_server::ApplicationService for Selections {
    async fn submit_application(
        &self,
        request: Request<api::SubmitApplicationRequest>,
    ) -> Answer<api::Application> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .apply(
                &who,
                &r.tenant,
                r.selection_id,
                r.application.unwrap_or_default(),
            )
            .await)
    }

    async fn list_applications(
        &self,
        request: Request<api::ListApplicationsRequest>,
    ) -> Answer<api::ListApplicationsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let applications = self.applications(&who, &r.tenant, r.selection_id).await?;
        Ok(Response::new(api::ListApplicationsResponse {
            applications,
        }))
    }

    async fn get_application(
        &self,
        request: Request<api::GetApplicationRequest>,
    ) -> Answer<api::Application> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .application(&who, &r.tenant, r.selection_id, r.id)
            .await)
    }

    async fn evaluate_application(
        &self,
        request: Request<api::EvaluateApplicationRequest>,
    ) -> Answer<api::Application> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .evaluate(
                &who,
                &r.tenant,
                r.selection_id,
                r.id,
                r.evaluation.unwrap_or_default(),
            )
            .await)
    }

    async fn judge_condition(
        &self,
        request: Request<api::JudgeConditionRequest>,
    ) -> Answer<api::Application> {
        let who = who(&request)?;
        let r = request.into_inner();
        let judgment = Judgment {
            condition: r.condition,
            passed: r.passed,
            reason: r.reason,
            credit_lookup: r.credit_lookup,
        };
        ok(self
            .judge(&who, &r.tenant, r.selection_id, r.id, judgment)
            .await)
    }
}

#[tonic::async_trait]
impl api::public_selection_service_server::PublicSelectionService for Selections {
    async fn list_public_selections(
        &self,
        request: Request<api::ListPublicSelectionsRequest>,
    ) -> Answer<api::ListPublicSelectionsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (selections, next) = self.public_list(&who, &r.tenant, cursor).await?;
        Ok(Response::new(api::ListPublicSelectionsResponse {
            selections,
            page: page(next),
        }))
    }

    async fn get_public_selection(
        &self,
        request: Request<api::GetPublicSelectionRequest>,
    ) -> Answer<api::PublicSelection> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.public_get(&who, &r.tenant, r.id).await)
    }

    async fn file_objection(
        &self,
        request: Request<api::FileObjectionRequest>,
    ) -> Answer<api::Objection> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .object(&who, &r.tenant, r.id, r.objection.unwrap_or_default())
            .await)
    }
}
