//! The web UI: plain HTML, CSS and JavaScript modules under `assets/`, compiled into
//! the binary with `include_str!` and served by the admin server at `/ui/`. There is no
//! build step and no template: the pages are static and hold nothing secret; the
//! scripts are clients of the same JSON API as the CLI (authenticated by the session
//! cookie of `session.rs`) and follow the live state on `GET /api/v1/events`.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles from this
//! origin only, no inline code, no framing).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::routes::{ApiError, Shared};

/// The files of the UI: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/api.js"),
    ),
    (
        "views.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/views.js"),
    ),
    (
        "map-view.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/map-view.js"),
    ),
    (
        "graph.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/graph.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("assets/favicon.svg"),
    ),
];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `GET /` and `GET /ui` (redirects), `GET /ui/`, `GET /ui/{asset}`, and the login routes.
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|| async { asset("index.html") }))
        .route(
            "/ui/{asset}",
            get(|Path(name): Path<String>| async move { asset(&name) }),
        )
        .merge(super::session::routes())
}

fn asset(name: &str) -> Response {
    let Some((_, content_type, text)) = ASSETS.iter().find(|(file, _, _)| *file == name) else {
        return ApiError::not_found(format!("the UI has no file {name:?}")).into_response();
    };
    let mut response = (StatusCode::OK, *text).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file the pages load is served, and none holds something secret-looking.
    #[test]
    fn the_pages_load_only_served_files() {
        let index = ASSETS[0].2;
        for (name, _, text) in ASSETS {
            assert!(
                !text.contains("Bearer "),
                "{name} must not carry a token scheme"
            );
        }
        for reference in index
            .split(['"', '\''])
            .filter(|part| part.ends_with(".js") || part.ends_with(".css"))
        {
            let name = reference.trim_start_matches("/ui/");
            assert!(
                ASSETS.iter().any(|(file, _, _)| *file == name),
                "index.html loads {reference}, which is not served"
            );
        }
    }
}
