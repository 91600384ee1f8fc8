//! Errors as the API answers them: a JSON body `{"error": code, "message": sentence}` and
//! nothing of the internals (no SQL, no paths), which go to the log instead.

use crate::store::{PackedConfirmation, StoreError};
use crate::workbench::Diagnostic;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code: `invalid_request` (400, 422), `unauthorized` (401), `forbidden` (403),
    /// `not_found` (404), `method_not_allowed` (405), `timeout` (408), `conflict` or
    /// `order_cancelled` (409), `precondition_failed` (412), `payload_too_large` (413), `unsupported_media_type` (415),
    /// `too_many_requests` (429), `internal` (500), `unavailable` (503), `error` (others).
    pub error: String,
    /// A sentence for the person at the station.
    pub message: String,
    /// With `conflict`: the confirmation recorded first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packed: Option<Box<PackedConfirmation>>,
    /// With a rules save or try that does not validate: every finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Vec<Diagnostic>>,
    /// With `precondition_failed`: the file's entity tag now (absent: the file is gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: code_of(status).to_string(),
                message: message.into(),
                packed: None,
                diagnostics: None,
                etag: None,
            },
        }
    }

    /// The same answer for an order that does not exist, is not decided yet, or belongs to a
    /// warehouse the caller may not see: order ids of other warehouses do not leak.
    pub fn order_not_found(order_id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "No inserts for order {order_id} here: the order is unknown, or not decided yet."
            ),
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// Something the answer waits on does not answer for now: the caller retries.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn order_cancelled(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::CONFLICT, message);
        e.body.error = "order_cancelled".into();
        e
    }

    pub fn conflict(message: impl Into<String>, recorded: PackedConfirmation) -> ApiError {
        let mut e = ApiError::new(StatusCode::CONFLICT, message);
        e.body.packed = Some(Box::new(recorded));
        e
    }

    /// Rule files or templates that do not validate, with every finding (422).
    pub fn invalid_rules(diagnostics: Vec<Diagnostic>) -> ApiError {
        let errors = diagnostics.iter().filter(|d| d.severity == "error").count();
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the rules with this edit do not validate: {errors} error{}",
                if errors == 1 { "" } else { "s" }
            ),
        );
        e.body.diagnostics = Some(diagnostics);
        e
    }

    /// A file saved since the caller read it (412), with its tag now.
    pub fn changed(message: impl Into<String>, etag: Option<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::PRECONDITION_FAILED, message);
        e.body.etag = etag;
        e
    }

    pub fn too_many_requests(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)
    }

    /// A failure of the server's own (a file it cannot write): logged in full, answered
    /// without its details.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!("workbench: {detail}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "something went wrong on the server; it is in the service log",
        )
    }

    /// A store failure: logged in full, answered without its details.
    pub fn store(e: StoreError) -> ApiError {
        tracing::error!("station API: {e}");
        match e {
            StoreError::Db(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
            ) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store did not answer; try again in a moment",
            ),
            StoreError::Db(sqlx::Error::Database(db))
                if matches!(
                    db.code().as_deref(),
                    Some("40P01" | "40001" | "5" | "6" | "517")
                ) =>
            {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store is busy; try again in a moment",
                )
            }
            _ => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "something went wrong on the server; it is in the service log",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"packwell\""),
            );
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    /// axum's sentence names the field and position; its status is 400 (syntax), 413, 415
    /// (no JSON content type) or 422 (a field of the wrong shape).
    fn from(rejection: JsonRejection) -> ApiError {
        if caused_by_timeout(&rejection) {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            );
        }
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

/// Whether reading the body failed because it did not come in time.
fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = err.source();
    }
    false
}

fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "invalid_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        409 => "conflict",
        412 => "precondition_failed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        429 => "too_many_requests",
        503 => "unavailable",
        500..=599 => "internal",
        _ => "error",
    }
}

/// Gives every error response that is not JSON yet (axum's and tower-http's own: unknown
/// routes, wrong methods, bodies over the limit, timeouts) the JSON error body. Called by the
/// server's one middleware on every answer.
pub fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    // JSON errors are kept; so are the pages people see (the unsubscribe page's own errors).
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let message = match status {
        StatusCode::NOT_FOUND => "no such route".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than allowed".to_string(),
        StatusCode::REQUEST_TIMEOUT => "the request took too long and was stopped".to_string(),
        _ => status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_string(),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = ErrorBody {
        error: code_of(status).to_string(),
        message,
        packed: None,
        diagnostics: None,
        etag: None,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, Body::from(bytes))
}

/// The JSON body of a request, whose rejections answer with the JSON error body.
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(JsonBody(value))
    }
}
