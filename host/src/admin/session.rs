//! The web UI's login. A browser cannot put the bearer token on an `EventSource`, and a
//! page should not keep it in script-readable storage, so the UI posts the token once to
//! `POST /ui/login` and gets a session cookie: 32 random bytes (hex), `HttpOnly` (no
//! script reads it), `SameSite=Strict` (no other site's page sends it), valid for 12
//! hours or until `POST /ui/logout`. The API accepts the cookie in place of the token.
//!
//! Against cross-site request forgery beyond `SameSite`: a request that changes
//! something (any method but GET and HEAD) authenticated by the cookie must carry the
//! `X-Dualwrite-UI` header, which a cross-origin page cannot add without a CORS
//! preflight this server never grants.
//!
//! Neither the token nor a session id is ever logged or written into a page.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::routes::{ApiError, Shared, body};

/// The session cookie's name.
pub const COOKIE: &str = "dualwrite_session";

/// The header a cookie-authenticated change must carry.
pub const UI_HEADER: &str = "x-dualwrite-ui";

/// How long a session lasts.
const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Most sessions kept at once; the oldest goes first.
const MAX_SESSIONS: usize = 256;

/// The live sessions: id -> expiry.
#[derive(Clone, Default)]
pub struct Sessions {
    live: Arc<Mutex<HashMap<String, Instant>>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions(<redacted>)")
    }
}

impl Sessions {
    fn open(&self) -> anyhow::Result<String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|error| anyhow::anyhow!("no randomness for a session: {error}"))?;
        let id = hex::encode(bytes);
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        live.retain(|_, expiry| *expiry > now);
        while live.len() >= MAX_SESSIONS {
            let Some(oldest) = live
                .iter()
                .min_by_key(|(_, expiry)| **expiry)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            live.remove(&oldest);
        }
        live.insert(id.clone(), now + LIFETIME);
        Ok(id)
    }

    fn close(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    fn valid(&self, id: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .is_some_and(|expiry| *expiry > Instant::now())
    }

    /// Whether `request` is authenticated by a live session cookie (and, if it changes
    /// something, carries the UI header).
    pub fn accepts(&self, request: &Request) -> bool {
        let Some(id) = session_cookie(request.headers()) else {
            return false;
        };
        let safe = matches!(*request.method(), Method::GET | Method::HEAD);
        (safe || request.headers().contains_key(UI_HEADER)) && self.valid(&id)
    }
}

/// The session id in the request's cookies, if any.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// `POST /ui/login` and `POST /ui/logout`.
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    token: String,
}

fn cookie(value: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

async fn login(State(shared): State<Shared>, headers: HeaderMap, bytes: Bytes) -> Response {
    if !headers.contains_key(UI_HEADER) {
        return ApiError::bad_request(format!("the login needs the {UI_HEADER} header"))
            .into_response();
    }
    let request: LoginBody = match body(&bytes) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let bearer = format!("Bearer {}", request.token.trim());
    if !shared.token.accepts(Some(bearer.as_bytes())) {
        // Slows down guessing; the token is 16+ characters anyway.
        tokio::time::sleep(Duration::from_millis(300)).await;
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token: that is not the admin token (dualwrite prints it at start, or it is in \
             the variable [admin] token_env names)",
        )
        .into_response();
    }
    match shared.sessions.open() {
        Ok(id) => {
            let mut response = axum::Json(json!({"logged_in": true})).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, cookie(&id, LIFETIME.as_secs()));
            response
        }
        Err(error) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    }
}

async fn logout(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        shared.sessions.close(&id);
    }
    let mut response = axum::Json(json!({"logged_in": false})).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie("", 0));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, cookie: Option<&str>, ui_header: bool) -> Request {
        let mut builder = axum::http::Request::builder()
            .method(method)
            .uri("/api/v1/maps");
        if let Some(cookie) = cookie {
            builder = builder.header(header::COOKIE, cookie);
        }
        if ui_header {
            builder = builder.header(UI_HEADER, "1");
        }
        builder.body(axum::body::Body::empty()).expect("request")
    }

    #[test]
    fn a_session_cookie_authenticates_reads_and_marked_changes_only() {
        let sessions = Sessions::default();
        let id = sessions.open().expect("session");
        let cookie = format!("other=1; {COOKIE}={id}");
        assert!(sessions.accepts(&request(Method::GET, Some(&cookie), false)));
        assert!(sessions.accepts(&request(Method::POST, Some(&cookie), true)));
        // A cross-site form post carries no custom header.
        assert!(!sessions.accepts(&request(Method::POST, Some(&cookie), false)));
        assert!(!sessions.accepts(&request(Method::GET, None, false)));
        let forged = format!("{COOKIE}={}", "0".repeat(64));
        assert!(!sessions.accepts(&request(Method::GET, Some(&forged), false)));
        sessions.close(&id);
        assert!(!sessions.accepts(&request(Method::GET, Some(&cookie), false)));
        assert!(!format!("{sessions:?}").contains(&id));
    }
}
