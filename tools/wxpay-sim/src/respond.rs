//! Building HTTP answers: JSON for the control API, HTML for the console and the cashier.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

pub(crate) type HttpResponse = Response<Full<Bytes>>;

pub(crate) fn build_response(
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
) -> HttpResponse {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}

pub(crate) fn plain_json(status: u16, v: &Value) -> HttpResponse {
    let body = serde_json::to_vec(v).unwrap_or_default();
    build_response(
        status,
        vec![("Content-Type", "application/json".into())],
        body,
    )
}

/// A page of the console or the cashier. It loads nothing from elsewhere, and nothing
/// elsewhere may frame it.
pub(crate) fn html(status: u16, page: String) -> HttpResponse {
    build_response(
        status,
        vec![
            ("Content-Type", "text/html; charset=utf-8".into()),
            ("Cache-Control", "no-store".into()),
            ("X-Frame-Options", "DENY".into()),
            ("X-Content-Type-Options", "nosniff".into()),
            (
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                 img-src data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                 base-uri 'none'"
                    .into(),
            ),
        ],
        page.into_bytes(),
    )
}
