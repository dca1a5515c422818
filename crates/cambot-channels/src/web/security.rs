//! Security headers on every response, CORS for configured origins only, and the Origin checks
//! of the WebSocket and of cookie-authenticated calls.

use std::sync::Arc;

use axum::extract::Request;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::Method;
use axum::http::StatusCode;
use axum::http::header;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;

use crate::web::app::App;

/// No inline script or style, nothing from other origins, never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// Is this request's `Origin` (if any) the page's own origin or a configured one? Requests
/// without `Origin` come from non-browser clients, which carry no ambient credentials.
pub(crate) fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

/// Is `Origin` one of the configured cross-origin sites?
fn cors_origin<'a>(headers: &'a HeaderMap, allowed: &[String]) -> Option<&'a HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    allowed.iter().any(|a| a == text).then_some(origin)
}

/// Adds the security headers, answers CORS preflights, and adds CORS headers only for the
/// configured origins.
pub(crate) async fn middleware(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Response {
    let cors = cors_origin(request.headers(), &app.config.allowed_origins).cloned();
    let is_api = request.uri().path().starts_with("/api/");
    let mut response = if request.method() == Method::OPTIONS {
        if cors.is_some() {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, DELETE"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            r
        } else {
            StatusCode::FORBIDDEN.into_response()
        }
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    if let Some(origin) = cors {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    if is_api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::HOST,
            HeaderValue::from_str(host).unwrap_or(HeaderValue::from_static("x")),
        );
        if let Some(o) = origin {
            h.insert(
                header::ORIGIN,
                HeaderValue::from_str(o).unwrap_or(HeaderValue::from_static("x")),
            );
        }
        h
    }

    #[test]
    fn origin_rules() {
        let allowed = vec!["https://chat.example.com".to_owned()];
        assert!(origin_allowed(&headers(None, "127.0.0.1:8080"), &allowed));
        assert!(origin_allowed(
            &headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"),
            &allowed
        ));
        assert!(origin_allowed(
            &headers(Some("https://chat.example.com"), "127.0.0.1:8080"),
            &allowed
        ));
        assert!(!origin_allowed(
            &headers(Some("https://evil.example"), "127.0.0.1:8080"),
            &allowed
        ));
        assert!(!origin_allowed(
            &headers(Some("http://127.0.0.1:8081"), "127.0.0.1:8080"),
            &allowed
        ));
        assert!(!origin_allowed(
            &headers(Some("null"), "127.0.0.1:8080"),
            &allowed
        ));
    }
}
