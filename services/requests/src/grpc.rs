//! The gRPC face of requests: take the request apart, call [`Requests`], answer. No rules.

use pdp_kit::grpc::{Answer, cursor, ok, page, who};
use pdp_proto::pdp::requests::v1 as api;
use tonic::{Request, Response};

use crate::request::RequestState;
use crate::service::Requests;

#[tonic::async_trait]
impl api::request_service_server::RequestService for Requests {
    async fn create_request(
        &self,
        request: Request<api::CreateRequestRequest>,
    ) -> Answer<api::DataRequest> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .create(&who, &r.tenant, r.request.unwrap_or_default())
            .await)
    }

    async fn update_request(
        &self,
        request: Request<api::UpdateRequestRequest>,
    ) -> Answer<api::DataRequest> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .update(&who, &r.tenant, r.id, r.request.unwrap_or_default())
            .await)
    }

    async fn list_requests(
        &self,
        request: Request<api::ListRequestsRequest>,
    ) -> Answer<api::ListRequestsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let state = RequestState::from_api(r.state);
        let (requests, next) = self
            .list(&who, &r.tenant, state, r.overdue_only, cursor)
            .await?;
        Ok(Response::new(api::ListRequestsResponse {
            requests,
            page: page(next),
        }))
    }

    async fn get_request(
        &self,
        request: Request<api::GetRequestRequest>,
    ) -> Answer<api::DataRequest> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.get(&who, &r.tenant, r.id).await)
    }

    async fn submit_request(
        &self,
        request: Request<api::SubmitRequestRequest>,
    ) -> Answer<api::DataRequest> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.submit(&who, &r.tenant, r.id).await)
    }

    async fn review_request(
        &self,
        request: Request<api::ReviewRequestRequest>,
    ) -> Answer<api::DataRequest> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .review(&who, &r.tenant, r.id, r.review.unwrap_or_default())
            .await)
    }

    async fn get_review_periods(
        &self,
        request: Request<api::GetReviewPeriodsRequest>,
    ) -> Answer<api::ReviewPeriods> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.periods(&who, &r.tenant).await)
    }

    async fn update_review_periods(
        &self,
        request: Request<api::UpdateReviewPeriodsRequest>,
    ) -> Answer<api::ReviewPeriods> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .update_periods(&who, &r.tenant, r.periods.unwrap_or_default())
            .await)
    }
}

#[tonic::async_trait]
impl api::grant_service_server::GrantService for Requests {
    async fn list_grants(
        &self,
        request: Request<api::ListGrantsRequest>,
    ) -> Answer<api::ListGrantsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let state = api::GrantState::try_from(r.state)
            .ok()
            .filter(|s| *s != api::GrantState::Unspecified);
        let (grants, next) = self.grants(&who, &r.tenant, state, cursor).await?;
        Ok(Response::new(api::ListGrantsResponse {
            grants,
            page: page(next),
        }))
    }

    async fn get_grant(&self, request: Request<api::GetGrantRequest>) -> Answer<api::Grant> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.grant(&who, &r.tenant, r.id).await)
    }

    async fn revoke_grant(&self, request: Request<api::RevokeGrantRequest>) -> Answer<api::Grant> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.revoke(&who, &r.tenant, r.id, r.reason).await)
    }

    async fn pin_grant_version(
        &self,
        request: Request<api::PinGrantVersionRequest>,
    ) -> Answer<api::Grant> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .pin_version(&who, &r.tenant, r.id, r.resource_id, r.version)
            .await)
    }

    async fn check_grant(
        &self,
        request: Request<api::CheckGrantRequest>,
    ) -> Answer<api::CheckGrantResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let tenant = r.tenant.clone();
        ok(self.check(&who, &tenant, r).await)
    }
}

#[tonic::async_trait]
impl api::quality_service_server::QualityService for Requests {
    async fn raise_ticket(
        &self,
        request: Request<api::RaiseTicketRequest>,
    ) -> Answer<api::QualityTicket> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .raise(&who, &r.tenant, r.ticket.unwrap_or_default())
            .await)
    }

    async fn list_tickets(
        &self,
        request: Request<api::ListTicketsRequest>,
    ) -> Answer<api::ListTicketsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (tickets, next) = self
            .tickets(&who, &r.tenant, r.overdue_only, cursor)
            .await?;
        Ok(Response::new(api::ListTicketsResponse {
            tickets,
            page: page(next),
        }))
    }

    async fn get_ticket(
        &self,
        request: Request<api::GetTicketRequest>,
    ) -> Answer<api::QualityTicket> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.ticket(&who, &r.tenant, r.id).await)
    }

    async fn answer_ticket(
        &self,
        request: Request<api::AnswerTicketRequest>,
    ) -> Answer<api::QualityTicket> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.answer(&who, &r.tenant, r.id, r.text, r.fixed).await)
    }

    async fn confirm_ticket(
        &self,
        request: Request<api::ConfirmTicketRequest>,
    ) -> Answer<api::QualityTicket> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.confirm(&who, &r.tenant, r.id).await)
    }

    async fn reopen_ticket(
        &self,
        request: Request<api::ReopenTicketRequest>,
    ) -> Answer<api::QualityTicket> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.reopen(&who, &r.tenant, r.id, r.reason).await)
    }

    async fn get_quality_record(
        &self,
        request: Request<api::GetQualityRecordRequest>,
    ) -> Answer<api::QualityRecord> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.quality_record(&who, &r.tenant, r.resource_id).await)
    }
}

#[tonic::async_trait]
impl api::developer_service_server::DeveloperService for Requests {
    async fn register_developer(
        &self,
        request: Request<api::RegisterDeveloperRequest>,
    ) -> Answer<api::Developer> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .register_developer(&who, &r.tenant, r.developer.unwrap_or_default())
            .await)
    }

    async fn list_developers(
        &self,
        request: Request<api::ListDevelopersRequest>,
    ) -> Answer<api::ListDevelopersResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (developers, next) = self.developers(&who, &r.tenant, cursor).await?;
        Ok(Response::new(api::ListDevelopersResponse {
            developers,
            page: page(next),
        }))
    }

    async fn get_developer(
        &self,
        request: Request<api::GetDeveloperRequest>,
    ) -> Answer<api::Developer> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.developer(&who, &r.tenant, r.id).await)
    }

    async fn review_developer(
        &self,
        request: Request<api::ReviewDeveloperRequest>,
    ) -> Answer<api::Developer> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .review_developer(&who, &r.tenant, r.id, r.approval.unwrap_or_default())
            .await)
    }

    async fn submit_development_need(
        &self,
        request: Request<api::SubmitDevelopmentNeedRequest>,
    ) -> Answer<api::DevelopmentNeed> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .submit_need(&who, &r.tenant, r.developer_id, r.need.unwrap_or_default())
            .await)
    }

    async fn list_development_needs(
        &self,
        request: Request<api::ListDevelopmentNeedsRequest>,
    ) -> Answer<api::ListDevelopmentNeedsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (needs, next) = self.needs(&who, &r.tenant, r.developer_id, cursor).await?;
        Ok(Response::new(api::ListDevelopmentNeedsResponse {
            needs,
            page: page(next),
        }))
    }

    async fn review_development_need(
        &self,
        request: Request<api::ReviewDevelopmentNeedRequest>,
    ) -> Answer<api::DevelopmentNeed> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .review_need(
                &who,
                &r.tenant,
                r.developer_id,
                r.id,
                r.approval.unwrap_or_default(),
            )
            .await)
    }
}

#[tonic::async_trait]
impl api::sandbox_service_server::SandboxService for Requests {
    async fn create_load(&self, request: Request<api::CreateLoadRequest>) -> Answer<api::Load> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.create_load(&who, &r.tenant, r.resource_id).await)
    }

    async fn append_load_rows(
        &self,
        request: Request<api::AppendLoadRowsRequest>,
    ) -> Answer<api::Load> {
        let who = who(&request)?;
        let r = request.into_inner();
        // Run apart from this call: dropped half-way (the gateway's deadline), a written chunk
        // would stay unrecorded in the load and join its version.
        let this = self.clone();
        let append = tokio::spawn(async move {
            this.append_rows(&who, &r.tenant, r.resource_id, r.id, r.header, r.lines)
                .await
        });
        ok(append.await.unwrap_or_else(|e| Err(stopped(&e))))
    }

    async fn upload_load_data(
        &self,
        request: Request<tonic::Streaming<api::UploadLoadDataRequest>>,
    ) -> Answer<api::Load> {
        use futures::StreamExt as _;
        let who = who(&request)?;
        let mut pieces = request.into_inner();
        // The first message names the load; every message carries the next bytes.
        let first = pieces.message().await?.ok_or_else(|| {
            tonic::Status::invalid_argument("an upload's first message names its load")
        })?;
        let body = first.data.unwrap_or_default();
        let data = futures::stream::iter([Ok(body.data.to_vec())]).chain(pieces.map(|piece| {
            piece
                .map(|p| p.data.map(|d| d.data.to_vec()).unwrap_or_default())
                .map_err(|status| {
                    crate::RequestError::invalid(
                        "upload",
                        vec![pdp_kit::error::FieldViolation::new(
                            "data",
                            format!(
                                "the upload broke off ({}); nothing was loaded",
                                status.message()
                            ),
                        )],
                    )
                })
        }));
        // Run apart from this call: a client that goes away drops the call, and the upload must
        // still see its stream break and remove the parts it wrote.
        let this = self.clone();
        let upload = tokio::spawn(async move {
            this.upload_data(
                &who,
                &first.tenant,
                first.resource_id,
                first.id,
                &body.content_type,
                Box::pin(data),
            )
            .await
        });
        ok(upload.await.unwrap_or_else(|e| Err(stopped(&e))))
    }

    async fn commit_load(&self, request: Request<api::CommitLoadRequest>) -> Answer<api::Load> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.commit_load(&who, &r.tenant, r.resource_id, r.id).await)
    }

    async fn run_query(&self, request: Request<api::RunQueryRequest>) -> Answer<api::QueryAnswer> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.run_query(&who, &r.tenant, r.grant_id, r.sql).await)
    }

    async fn list_workspace_tables(
        &self,
        request: Request<api::ListWorkspaceTablesRequest>,
    ) -> Answer<api::ListWorkspaceTablesResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let tables = self
            .list_workspace_tables(&who, &r.tenant, r.grant_id)
            .await;
        ok(tables.map(|tables| api::ListWorkspaceTablesResponse { tables }))
    }

    async fn append_workspace_rows(
        &self,
        request: Request<api::AppendWorkspaceRowsRequest>,
    ) -> Answer<api::WorkspaceTable> {
        let who = who(&request)?;
        let r = request.into_inner();
        let tenant = r.tenant.clone();
        ok(self.append_workspace_rows(&who, &tenant, r).await)
    }

    async fn delete_workspace_table(
        &self,
        request: Request<api::DeleteWorkspaceTableRequest>,
    ) -> Answer<api::WorkspaceTable> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .delete_workspace_table(&who, &r.tenant, r.grant_id, r.name)
            .await)
    }

    async fn get_sandbox_settings(
        &self,
        request: Request<api::GetSandboxSettingsRequest>,
    ) -> Answer<api::SandboxSettings> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.sandbox_settings(&who, &r.tenant).await)
    }

    async fn update_sandbox_settings(
        &self,
        request: Request<api::UpdateSandboxSettingsRequest>,
    ) -> Answer<api::SandboxSettings> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .update_sandbox_settings(&who, &r.tenant, r.settings.unwrap_or_default())
            .await)
    }
}

/// A load's work that stopped without an answer (its task panicked).
fn stopped(e: &tokio::task::JoinError) -> crate::RequestError {
    crate::RequestError::Corrupt(format!("the load's work stopped: {e}"))
}

#[tonic::async_trait]
impl api::product_delivery_service_server::ProductDeliveryService for Requests {
    async fn call_product(
        &self,
        request: Request<api::CallProductRequest>,
    ) -> Answer<api::QueryAnswer> {
        let who = who(&request)?;
        let r = request.into_inner();
        let values = r.parameters.into_iter().collect();
        ok(self
            .call_product(&who, &r.tenant, r.product_id, values)
            .await)
    }

    async fn fetch_dataset(
        &self,
        request: Request<api::FetchDatasetRequest>,
    ) -> Answer<api::DatasetDelivery> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.fetch_dataset(&who, &r.tenant, r.product_id).await)
    }
}
