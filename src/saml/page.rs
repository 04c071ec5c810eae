//! The HTML pages a browser sees: short, generic, never echoing input.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// A page with a title and one paragraph. Both are fixed text of ours.
pub fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body><h1>{title}</h1><p>{message}</p></body></html>"
    );
    (
        status,
        [
            ("cache-control", "no-store"),
            ("content-security-policy", "default-src 'none'"),
        ],
        Html(body),
    )
        .into_response()
}

/// The page for any response that failed the checks.
pub fn refused() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Sign-in refused",
        "The sign-in response could not be accepted. Start the sign-in again from your identity provider or the application.",
    )
}

/// The page for a bad request (no SAMLResponse, a redirect not allowed).
pub fn bad_request() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Bad sign-in request",
        "The sign-in request is not valid.",
    )
}

/// The page when the sign-in could not be completed now (the directory did
/// not answer in time, or the replica is busy): 503 with `Retry-After`.
pub fn try_again() -> Response {
    try_again_after(crate::deadline::RETRY_AFTER_SECONDS)
}

pub fn try_again_after(seconds: u64) -> Response {
    let mut response = page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "The sign-in could not be completed right now. Try again in a moment.",
    );
    response
        .headers_mut()
        .insert(axum::http::header::RETRY_AFTER, seconds.into());
    response
}
