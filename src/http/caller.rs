//! The [`Caller`] extractor: a request's `Authorization: Bearer <token>` checked against the
//! configured tokens (`crate::config::Tokens`). A handler that takes a `Caller` answers 401
//! to a request without a valid token before it runs; [`Marketer`] and [`Admin`] also answer
//! 403 to a token whose role does not reach theirs.

use super::error::ApiError;
use crate::config::{Caller, Role, Tokens};
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

/// A caller whose token's role includes the marketers' routes (the report, the workbench's
/// rules routes): 401 without a valid token, 403 for a station's.
#[derive(Debug, Clone)]
pub struct Marketer(pub Caller);

/// A caller whose token may call everything (the e-mail provider's bounces and complaints):
/// 401 without a valid token, 403 for a station's or a marketer's.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

/// The caller, when their role includes `role`.
async fn with_role<S>(parts: &mut Parts, state: &S, role: Role) -> Result<Caller, ApiError>
where
    Arc<Tokens>: FromRef<S>,
    S: Send + Sync,
{
    let caller = Caller::from_request_parts(parts, state).await?;
    if caller.may(role) {
        Ok(caller)
    } else {
        Err(ApiError::forbidden(format!(
            "this route needs a token with role {} or above; this one's role is {}",
            role.as_str(),
            caller.role.as_str()
        )))
    }
}

impl<S> FromRequestParts<S> for Marketer
where
    Arc<Tokens>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Marketer, ApiError> {
        with_role(parts, state, Role::Marketer).await.map(Marketer)
    }
}

impl<S> FromRequestParts<S> for Admin
where
    Arc<Tokens>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Admin, ApiError> {
        with_role(parts, state, Role::Admin).await.map(Admin)
    }
}
