//! What every service's gRPC adapter does alike: take the caller the gateway signed, read the page
//! asked for, and put an operation's result into an answer. The adapters hold no rule; neither
//! does this.

use pdp_proto::pdp::common::v1::{PageRequest, PageResponse};
use tonic::{Request, Response, Status};

use crate::error::{DomainError, ServiceError};
use crate::identity::{Identity, caller};
use crate::paging::Cursor;

pub type Answer<T> = Result<Response<T>, Status>;

/// The verified caller of `request` (UNAUTHENTICATED when it did not come through the gateway).
pub fn who<T>(request: &Request<T>) -> Result<Identity, Status> {
    caller(request).cloned()
}

/// The page a list call asks for; a token this service did not issue is INVALID_ARGUMENT naming
/// `page.page_token`.
pub fn cursor(page: Option<&PageRequest>) -> Result<Cursor, Status> {
    let page = page.cloned().unwrap_or_default();
    Cursor::parse(page.page_size, &page.page_token)
        .map_err(|v| DomainError::invalid("page", vec![v]).to_status())
}

/// The answer's page part: where the next page starts (empty on the last page).
pub fn page(next: String) -> Option<PageResponse> {
    Some(PageResponse {
        next_page_token: next,
    })
}

/// An operation's result as an answer, its refusal mapped once to a status.
pub fn ok<T>(result: Result<T, DomainError>) -> Answer<T> {
    result.map(Response::new).map_err(Status::from)
}
