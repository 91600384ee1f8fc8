//! The [`Caller`] extractor: a request's `Authorization: Bearer <token>` checked against the
//! configured tokens (`crate::config::Tokens`). A handler that takes a `Caller` answers 401
//! to a request without a valid token before it runs.

use super::error::ApiError;
use crate::config::{Caller, Tokens};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use std::sync::Arc;

impl<S> FromRequestParts<S> for Caller
where
    Arc<Tokens>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "a bearer token is needed: send the header Authorization: Bearer <token>",
            ));
        };
        // The scheme is case-insensitive (RFC 7235).
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty());
        let tokens = Arc::<Tokens>::from_ref(state);
        token
            .and_then(|t| tokens.check(t))
            .ok_or_else(|| ApiError::unauthorized("the bearer token is not valid"))
    }
}
