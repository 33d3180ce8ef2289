//! The gRPC face of products: take the request apart, call [`Products`], answer. No rules.

use pdp_kit::grpc::{Answer, cursor, ok, who};
use pdp_proto::pdp::common::v1::PageResponse;
use pdp_proto::pdp::products::v1 as api;
use tonic::{Request, Response};

use crate::product::ProductState;
use crate::service::Products;

fn page(next_page_token: String) -> Option<PageResponse> {
    Some(PageResponse { next_page_token })
}

#[tonic::async_trait]
impl api::product_service_server::ProductService for Products {
    async fn create_product(
        &self,
        request: Request<api::CreateProductRequest>,
    ) -> Answer<api::Product> {
        let who = who(&request)?;
        let r = request.into_inner();
        let product = r.product.unwrap_or_default();
        ok(self.create(&who, &r.tenant, r.operator, product).await)
    }

    async fn update_product(
        &self,
        request: Request<api::UpdateProductRequest>,
    ) -> Answer<api::Product> {
        let who = who(&request)?;
        let r = request.into_inner();
        let product = r.product.unwrap_or_default();
        ok(self.update(&who, &r.tenant, r.id, product).await)
    }

    async fn list_products(
        &self,
        request: Request<api::ListProductsRequest>,
    ) -> Answer<api::ListProductsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let state = ProductState::from_api(r.state);
        let (products, next) = self.list(&who, &r.tenant, state, cursor).await?;
        Ok(Response::new(api::ListProductsResponse {
            products,
            page: page(next),
        }))
    }

    async fn get_product(&self, request: Request<api::GetProductRequest>) -> Answer<api::Product> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.get(&who, &r.tenant, r.id).await)
    }

    async fn submit_product(
        &self,
        request: Request<api::SubmitProductRequest>,
    ) -> Answer<api::Product> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.submit(&who, &r.tenant, r.id).await)
    }

    async fn review_product(
        &self,
        request: Request<api::ReviewProductRequest>,
    ) -> Answer<api::Product> {
        let who = who(&request)?;
        let r = request.into_inner();
        let tenant = r.tenant.clone();
        ok(self.review(&who, &tenant, r).await)
    }

    async fn set_product_price(
        &self,
        request: Request<api::SetProductPriceRequest>,
    ) -> Answer<api::Product> {
        let who = who(&request)?;
        let r = request.into_inner();
        let tenant = r.tenant.clone();
        ok(self.set_price(&who, &tenant, r).await)
    }

    async fn list_price_changes(
        &self,
        request: Request<api::ListPriceChangesRequest>,
    ) -> Answer<api::ListPriceChangesResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let prices = self.prices(&who, &r.tenant, r.id).await?;
        Ok(Response::new(api::ListPriceChangesResponse { prices }))
    }

    async fn release_product(
        &self,
        request: Request<api::ReleaseProductRequest>,
    ) -> Answer<api::Product> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.release(&who, &r.tenant, r.id, r.exchange_id).await)
    }

    async fn withdraw_product(
        &self,
        request: Request<api::WithdrawProductRequest>,
    ) -> Answer<api::Product> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.withdraw(&who, &r.tenant, r.id, r.reason).await)
    }

    async fn list_trades(
        &self,
        request: Request<api::ListTradesRequest>,
    ) -> Answer<api::ListTradesResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let product = (!r.product_id.is_empty()).then_some(r.product_id);
        let (trades, next) = self.trades(&who, &r.tenant, product, cursor).await?;
        Ok(Response::new(api::ListTradesResponse {
            trades,
            page: page(next),
        }))
    }

    async fn list_exchanges(
        &self,
        request: Request<api::ListExchangesRequest>,
    ) -> Answer<api::ListExchangesResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let exchanges = self.exchanges(&who, &r.tenant)?;
        Ok(Response::new(api::ListExchangesResponse { exchanges }))
    }
}

#[tonic::async_trait]
impl api::pricing_service_server::PricingService for Products {
    async fn get_pricing_rules(
        &self,
        request: Request<api::GetPricingRulesRequest>,
    ) -> Answer<api::PricingRules> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.pricing_rules(&who, &r.tenant).await)
    }

    async fn update_pricing_rules(
        &self,
        request: Request<api::UpdatePricingRulesRequest>,
    ) -> Answer<api::PricingRules> {
        let who = who(&request)?;
        let r = request.into_inner();
        let rules = r.rules.unwrap_or_default();
        ok(self.update_pricing_rules(&who, &r.tenant, rules).await)
    }
}

#[tonic::async_trait]
impl api::revenue_service_server::RevenueService for Products {
    async fn report_period(
        &self,
        request: Request<api::ReportPeriodRequest>,
    ) -> Answer<api::PeriodReport> {
        let who = who(&request)?;
        let r = request.into_inner();
        let report = r.report.unwrap_or_default();
        ok(self.report_period(&who, &r.tenant, report).await)
    }

    async fn list_period_reports(
        &self,
        request: Request<api::ListPeriodReportsRequest>,
    ) -> Answer<api::ListPeriodReportsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let reports = self
            .period_reports(&who, &r.tenant, r.operator, r.year)
            .await?;
        Ok(Response::new(api::ListPeriodReportsResponse { reports }))
    }

    async fn set_permitted_revenue(
        &self,
        request: Request<api::SetPermittedRevenueRequest>,
    ) -> Answer<api::RevenueSummary> {
        let who = who(&request)?;
        let r = request.into_inner();
        let tenant = r.tenant.clone();
        ok(self.set_permitted_revenue(&who, &tenant, r).await)
    }

    async fn get_revenue_summary(
        &self,
        request: Request<api::GetRevenueSummaryRequest>,
    ) -> Answer<api::RevenueSummary> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self
            .revenue_summary(&who, &r.tenant, r.operator, r.year)
            .await)
    }
}

#[tonic::async_trait]
impl api::public_product_service_server::PublicProductService for Products {
    async fn list_public_products(
        &self,
        request: Request<api::ListPublicProductsRequest>,
    ) -> Answer<api::ListPublicProductsResponse> {
        let who = who(&request)?;
        let r = request.into_inner();
        let cursor = cursor(r.page.as_ref())?;
        let (products, next) = self.public_list(&who, &r.tenant, cursor).await?;
        Ok(Response::new(api::ListPublicProductsResponse {
            products,
            page: page(next),
        }))
    }

    async fn get_public_product(
        &self,
        request: Request<api::GetPublicProductRequest>,
    ) -> Answer<api::PublicProduct> {
        let who = who(&request)?;
        let r = request.into_inner();
        ok(self.public_get(&who, &r.tenant, r.registration_code).await)
    }
}
