//! How a refused or failed admin call answers: an HTTP status and an
//! [`ErrorAnswer`] body.

use super::roles::RoleDenial;
use super::wire::ErrorAnswer;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why an admin call did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// No token, or a token that did not verify (`code` says why).
    #[error("{message}")]
    Unauthenticated {
        /// A short stable code (`missing`, `expired`, `unknown-key`, …).
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A verified caller whose roles do not allow the call.
    #[error(transparent)]
    Forbidden(#[from] RoleDenial),
    /// The call is allowed for the caller but not possible: no plugin's
    /// grant covers the keys, no such plugin, a bad body.
    #[error("{0}")]
    BadRequest(String),
    /// No such operation.
    #[error("{0}")]
    NotFound(String),
    /// Redis, Spanner or the audit trail failed; nothing is left half done
    /// that the caller cannot ask for again.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The short code of the answer body: for a token, why it was refused
    /// (`missing`, `expired`, `audience`, `unknown-key`, …).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated { code, .. } => code,
            ApiError::Forbidden(_) => "forbidden",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::NotFound(_) => "not-found",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            // The issuer's keys could not be had: the service's fault, not
            // the caller's.
            ApiError::Unauthenticated {
                code: "keys-unavailable",
                ..
            } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorAnswer {
            error: self.to_string(),
            code: self.code().to_owned(),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
