//! Rate limiting: a token bucket per API key (per client address for requests without a
//! token), answering 429 problem+json with `Retry-After` when a bucket is empty.
//!
//! The bucket is keyed by the token's hash, not by the client address: many clients share an
//! address behind a NAT or a load generator, and one client may use several keys.

use std::net::IpAddr;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use crate::auth::{bearer_token, hash_token};
use crate::error::ApiError;
use crate::rate_limiter::Client;
use crate::state::AppState;

fn client_of(req: &ServiceRequest) -> Client {
    match (bearer_token(req.headers()), req.peer_addr()) {
        (Some(token), _) => Client::Key(hash_token(token)),
        (None, Some(addr)) => Client::Address(addr.ip()),
        (None, None) => Client::Address(IpAddr::from([0, 0, 0, 0])),
    }
}

pub(crate) async fn limit_rate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let verdict = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.rate_limiter.check(&client_of(&req)))
        .unwrap_or(Ok(()));
    match verdict {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(retry_after_secs) => {
            let response = ApiError::TooManyRequests { retry_after_secs }.error_response();
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}
