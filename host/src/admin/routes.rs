//! The admin API's routes. Every route but `GET /health` needs `Authorization: Bearer
//! TOKEN`; JSON in and out; errors are `{"error": "..."}` with a 4xx status naming the
//! problem (400 malformed, 401 token, 404 unknown, 409 not possible in this state) or
//! 503 when the engine is not answering. `X-Dualwrite-Actor` names who acts (recorded
//! with state changes and skips); it defaults to `admin-api`.
//!
//! | route | what |
//! |---|---|
//! | `GET /health` | liveness, no token |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /api/v1/maps` | every map: state, counters, queue depth, open errors, lag |
//! | `GET /api/v1/maps/{map}` | one map, with its transitions |
//! | `POST /api/v1/maps/{map}/pause`, `/stop`, `/play`, `/initial-sync` | map actions |
//! | `POST /api/v1/maps/{map}/resume` | `{"mode": "catch-up" \| "skip" \| "discard"}` |
//! | `PUT /api/v1/maps/{map}/error-mode` | `{"mode": "block" \| "continue"}` |
//! | `GET /api/v1/maps/{map}/errors` | the map's error queue (`class`, `include_resolved`, `after`, `limit`) |
//! | `POST /api/v1/maps/{map}/errors/retry` | retry every open error of the map |
//! | `GET /api/v1/maps/{map}/rows` | a row's lineage: `side` and `key` (a JSON array) |
//! | `GET /api/v1/errors/{id}` | one error, with conflict images |
//! | `POST /api/v1/errors/{id}/retry` | retry it now |
//! | `POST /api/v1/errors/{id}/skip` | `{"reason": "..."}` |
//! | `POST /api/v1/errors/{id}/resolve` | a parked conflict: `{"side": "erp"}`, optionally `"merged": {column: value}` |
//! | `GET /api/v1/activity` | query: `map`, `kind`, `side`+`key`, `since`, `until`, `after`, `limit`, `format` = `json` \| `jsonl` \| `csv` |
//! | `GET, POST /api/v1/alerts`; `PUT, DELETE /api/v1/alerts/{name}` | alert rules and what fires |
//! | `GET, POST /api/v1/subscribers`; `DELETE /api/v1/subscribers/{name}` | webhook subscribers (secrets write-only) |
//! | `GET /api/v1/subscribers/{name}/deliveries` | a subscriber's delivery log |
//! | `GET /api/v1/plugins` | each map's plugin, version and content hash |
//! | `GET, PUT /api/v1/maps/{map}/config`; `POST .../config/rollback` | what a map runs; its plugin config changed at runtime (`config_routes.rs`) |
//! | `GET /api/v1/graph`, `GET /api/v1/activity/latest` | the map dependency graph; the newest activity (`config_routes.rs`) |
//! | `GET /api/v1/events` | the live state as server-sent events (`events.rs`) |
//! | `GET /`, `GET /ui/...`, `POST /ui/login`, `/ui/logout` | the web UI and its login, public (`ui/`, `session.rs`) |
//!
//! The API also accepts the web UI's session cookie in place of the token (`session.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};

use super::ServerParts;
use super::control::{Command, CommandError, ErrorMode};
use crate::alerts::AlertRule;
use crate::change::{ErrorClass, Side};
use crate::config::Secret;
use crate::notify::Subscriber;
use crate::replay::{value_from_json, value_to_json};
use crate::state::{
    ActivityKind, ActivityQuery, ActivityRecord, ConflictImages, ErrorEntry, ErrorQuery, Image,
    Key, RecordingQuery, StateError, StateStore, StoredChange,
};
use crate::sync::ResumeMode;

/// Most entries one activity or error query answers.
const MAX_LIMIT: usize = 10_000;

pub(super) type Shared = Arc<ServerParts>;

/// The API's router.
pub(super) fn router(parts: ServerParts) -> Router {
    let shared: Shared = Arc::new(parts);
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/maps", get(list_maps))
        .route("/api/v1/maps/{map}", get(map_detail))
        .route("/api/v1/maps/{map}/pause", post(pause))
        .route("/api/v1/maps/{map}/resume", post(resume))
        .route("/api/v1/maps/{map}/stop", post(stop))
        .route("/api/v1/maps/{map}/play", post(play))
        .route("/api/v1/maps/{map}/initial-sync", post(initial_sync))
        .route("/api/v1/maps/{map}/error-mode", put(error_mode))
        .route("/api/v1/maps/{map}/errors", get(map_errors))
        .route("/api/v1/maps/{map}/errors/retry", post(retry_all))
        .route("/api/v1/maps/{map}/rows", get(row_lineage))
        .route("/api/v1/maps/{map}/changes", get(recorded_changes))
        .route("/api/v1/errors/{id}", get(error_detail))
        .route("/api/v1/errors/{id}/retry", post(retry_error))
        .route("/api/v1/errors/{id}/skip", post(skip_error))
        .route("/api/v1/errors/{id}/resolve", post(resolve_conflict))
        .route("/api/v1/activity", get(activity))
        .route("/api/v1/alerts", get(list_alerts).post(create_alert))
        .route(
            "/api/v1/alerts/{name}",
            put(update_alert).delete(delete_alert),
        )
        .route(
            "/api/v1/subscribers",
            get(list_subscribers).post(create_subscriber),
        )
        .route(
            "/api/v1/subscribers/{name}",
            axum::routing::delete(delete_subscriber),
        )
        .route("/api/v1/subscribers/{name}/deliveries", get(deliveries))
        .route("/api/v1/plugins", get(plugins))
        .merge(super::config_routes::routes())
        .merge(super::solutions::routes())
        .merge(super::events::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    Router::new()
        .route("/health", get(health))
        .merge(super::ui::routes())
        .merge(protected)
        .with_state(shared)
}

/// The routes served, as `METHOD PATH`, for the OpenAPI check.
pub const ROUTES: &[&str] = &[
    "GET /health",
    "GET /metrics",
    "GET /api/v1/maps",
    "GET /api/v1/maps/{map}",
    "POST /api/v1/maps/{map}/pause",
    "POST /api/v1/maps/{map}/resume",
    "POST /api/v1/maps/{map}/stop",
    "POST /api/v1/maps/{map}/play",
    "POST /api/v1/maps/{map}/initial-sync",
    "PUT /api/v1/maps/{map}/error-mode",
    "GET /api/v1/maps/{map}/errors",
    "POST /api/v1/maps/{map}/errors/retry",
    "GET /api/v1/maps/{map}/rows",
    "GET /api/v1/maps/{map}/changes",
    "GET /api/v1/errors/{id}",
    "POST /api/v1/errors/{id}/retry",
    "POST /api/v1/errors/{id}/skip",
    "POST /api/v1/errors/{id}/resolve",
    "GET /api/v1/activity",
    "GET /api/v1/alerts",
    "POST /api/v1/alerts",
    "PUT /api/v1/alerts/{name}",
    "DELETE /api/v1/alerts/{name}",
    "GET /api/v1/subscribers",
    "POST /api/v1/subscribers",
    "DELETE /api/v1/subscribers/{name}",
    "GET /api/v1/subscribers/{name}/deliveries",
    "GET /api/v1/plugins",
    "GET /api/v1/maps/{map}/config",
    "PUT /api/v1/maps/{map}/config",
    "POST /api/v1/maps/{map}/config/rollback",
    "GET /api/v1/graph",
    "GET /api/v1/activity/latest",
    "GET /api/v1/events",
    "GET /api/v1/solutions",
    "GET /api/v1/solutions/export",
    "POST /api/v1/solutions/import",
    "POST /api/v1/solutions/{name}/rollback",
    "GET /",
    "GET /ui",
    "GET /ui/",
    "GET /ui/{asset}",
    "POST /ui/login",
    "POST /ui/logout",
];

/// The routes of [`ROUTES`] that serve the web UI itself (pages, login): public, like
/// `GET /health`, and tested in a browser (`tests/tests/web_ui.rs`).
pub const UI_ROUTES: &[&str] = &[
    "GET /",
    "GET /ui",
    "GET /ui/",
    "GET /ui/{asset}",
    "POST /ui/login",
    "POST /ui/logout",
];

/// An error answer.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(super) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({"error": self.message}))).into_response()
    }
}

impl From<StateError> for ApiError {
    fn from(error: StateError) -> Self {
        match error {
            StateError::UnknownMap { map } => ApiError::not_found(format!("no map named {map}")),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        let status = match &error {
            CommandError::NotFound(_) => StatusCode::NOT_FOUND,
            CommandError::Conflict(_) => StatusCode::CONFLICT,
            CommandError::Failed(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, error.to_string())
    }
}

pub(super) type ApiResult = Result<Response, ApiError>;

pub(super) fn ok(value: Json) -> ApiResult {
    Ok(axum::Json(value).into_response())
}

async fn require_token(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    // The web UI's session cookie stands in for the token (see `session.rs`).
    if shared.token.accepts(authorization) || shared.sessions.accepts(&request) {
        return next.run(request).await;
    }
    let message = if authorization.is_none() {
        "this route needs `Authorization: Bearer TOKEN` (the admin token)"
    } else {
        "the bearer token is not the admin token"
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"dualwrite\""),
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see GET /api/v1/maps and the API document")
}

/// Runs a state store read off the async thread.
pub(super) async fn read<T, F>(shared: &Shared, read: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn StateStore) -> Result<T, ApiError> + Send + 'static,
{
    let store = shared.store.clone();
    tokio::task::spawn_blocking(move || read(store.as_ref()))
        .await
        .map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the state failed: {error}"),
            )
        })?
}

pub(super) fn actor(headers: &HeaderMap) -> String {
    headers
        .get("x-dualwrite-actor")
        .and_then(|value| value.to_str().ok())
        .map(|name| {
            name.chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        })
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| "admin-api".to_owned())
}

/// Parses a JSON body; an empty body is `{}`.
pub(super) fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|error| ApiError::bad_request(format!("the request body: {error}")))
}

pub(super) async fn command(shared: &Shared, command: Command, by: &str) -> ApiResult {
    let answer = shared
        .control
        .send(command, by, shared.command_timeout)
        .await?;
    ok(answer)
}

// ---- health and metrics ----

async fn health(State(shared): State<Shared>) -> Response {
    let snapshot = shared.control.snapshot();
    axum::Json(json!({
        "status": "ok",
        "engine_snapshot_at": snapshot.taken_at.map(|at| at.to_rfc3339()),
    }))
    .into_response()
}

async fn metrics(State(shared): State<Shared>) -> ApiResult {
    let snapshot = shared.control.snapshot();
    let scrape = read(&shared, move |store| {
        crate::metrics::gather(&snapshot, store).map_err(ApiError::from)
    })
    .await?;
    let text = crate::metrics::encode(scrape).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed",
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}

// ---- maps ----

fn map_json(shared: &Shared, status: &crate::state::MapStatus, open_errors: u64) -> Json {
    let snapshot = shared.control.snapshot();
    let live = snapshot
        .maps
        .iter()
        .find(|map| map.name == status.entities.name);
    let plugin = snapshot
        .plugins
        .iter()
        .find(|plugin| plugin.map == status.entities.name);
    json!({
        "name": status.entities.name,
        "erp_entity": status.entities.erp_entity,
        "crm_entity": status.entities.crm_entity,
        "mode": status.state.mode.as_str(),
        "erp_offline": status.state.erp_offline,
        "crm_offline": status.state.crm_offline,
        "since": status.since.to_rfc3339(),
        "queue_depth": status.queue_depth,
        "open_errors": open_errors,
        "running": live.is_some(),
        "error_mode": live.map(|map| map.error_mode),
        "depends_on": live.map(|map| map.depends_on.clone()),
        "sides": live.map(|map| json!({"erp": map.sides[0], "crm": map.sides[1]})),
        "lag": live.map(|map| json!({"seconds": map.lag.as_secs_f64(), "changes": map.queue_depth})),
        "counters": live.map(|map| json!({
            "captured_from_erp": map.counters.captured_from_erp,
            "captured_from_crm": map.counters.captured_from_crm,
            "written_to_crm": map.counters.written_to_crm,
            "written_to_erp": map.counters.written_to_erp,
            "filtered": map.counters.filtered,
            "no_ops": map.counters.no_ops,
            "conflicts": map.counters.conflicts,
            "errors": map.counters.errors,
        })),
        "plugin": plugin.map(|plugin| json!({
            "file": plugin.file,
            "hash": plugin.hash,
            "name": plugin.name,
            "version": plugin.version,
        })),
    })
}

async fn list_maps(State(shared): State<Shared>) -> ApiResult {
    ok(maps_document(&shared).await?)
}

/// Every map as `GET /api/v1/maps` answers (also what the event stream sends).
pub(super) async fn maps_document(shared: &Shared) -> Result<Json, ApiError> {
    let maps = read(shared, |store| {
        let mut maps = Vec::new();
        for status in store.maps()? {
            let open = store.open_error_count(&status.entities.name)?;
            maps.push((status, open));
        }
        Ok(maps)
    })
    .await?;
    // The engine's dependency order, then maps it does not run.
    let order: Vec<String> = shared
        .control
        .snapshot()
        .maps
        .iter()
        .map(|map| map.name.clone())
        .collect();
    let mut maps = maps;
    maps.sort_by_key(|(status, _)| {
        order
            .iter()
            .position(|name| *name == status.entities.name)
            .unwrap_or(usize::MAX)
    });
    Ok(json!({
        "maps": maps
            .iter()
            .map(|(status, open)| map_json(shared, status, *open))
            .collect::<Vec<_>>()
    }))
}

async fn map_detail(State(shared): State<Shared>, Path(map): Path<String>) -> ApiResult {
    let (status, open, transitions) = read(&shared, move |store| {
        Ok((
            store.map_status(&map)?,
            store.open_error_count(&map)?,
            store.transitions(&map)?,
        ))
    })
    .await?;
    let mut answer = map_json(&shared, &status, open);
    answer["transitions"] = transitions
        .iter()
        .rev()
        .take(50)
        .map(|transition| {
            json!({
                "at": transition.at.to_rfc3339(),
                "from": transition.from.map(|state| state.mode.as_str()),
                "to": transition.to.mode.as_str(),
                "cause": transition.cause,
            })
        })
        .collect();
    ok(answer)
}

async fn pause(
    State(shared): State<Shared>,
    Path(map): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    command(&shared, Command::Pause(map), &actor(&headers)).await
}

async fn stop(
    State(shared): State<Shared>,
    Path(map): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    command(&shared, Command::Stop(map), &actor(&headers)).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PlayBody {
    #[serde(default)]
    with_dependencies: bool,
}

async fn play(
    State(shared): State<Shared>,
    Path(map): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let request: PlayBody = if bytes.is_empty() {
        PlayBody::default()
    } else {
        body(&bytes)?
    };
    command(
        &shared,
        Command::Play {
            map,
            with_dependencies: request.with_dependencies,
        },
        &actor(&headers),
    )
    .await
}

async fn initial_sync(
    State(shared): State<Shared>,
    Path(map): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    command(&shared, Command::InitialSync(map), &actor(&headers)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeBody {
    mode: Option<String>,
}

/// Parses a resume choice: `catch-up`, `skip` (skip to live) or `discard`.
fn parse_resume_mode(name: &str) -> Option<ResumeMode> {
    match name {
        "catch-up" => Some(ResumeMode::CatchUp),
        "skip" | "skip-to-live" => Some(ResumeMode::SkipToLive),
        "discard" => Some(ResumeMode::Discard),
        _ => None,
    }
}

async fn resume(
    State(shared): State<Shared>,
    Path(map): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let request: ResumeBody = body(&bytes)?;
    let mode_name = request.mode.unwrap_or_else(|| "catch-up".to_owned());
    let mode = parse_resume_mode(&mode_name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "mode: unknown resume mode {mode_name:?} (catch-up, skip, discard)"
        ))
    })?;
    command(&shared, Command::Resume(map, mode), &actor(&headers)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorModeBody {
    mode: String,
}

async fn error_mode(
    State(shared): State<Shared>,
    Path(map): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let request: ErrorModeBody = body(&bytes)?;
    let mode = ErrorMode::parse(&request.mode).ok_or_else(|| {
        ApiError::bad_request(format!(
            "mode: unknown error mode {:?} (block, continue)",
            request.mode
        ))
    })?;
    command(&shared, Command::SetErrorMode(map, mode), &actor(&headers)).await
}

// ---- errors ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorListQuery {
    class: Option<String>,
    include_resolved: Option<bool>,
    after: Option<u64>,
    limit: Option<usize>,
}

pub(super) fn limit(given: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match given {
        None => Ok(default),
        Some(0) => Err(ApiError::bad_request("limit: must be at least 1")),
        Some(limit) if limit > MAX_LIMIT => Err(ApiError::bad_request(format!(
            "limit: at most {MAX_LIMIT} (page with `after`)"
        ))),
        Some(limit) => Ok(limit),
    }
}

async fn map_errors(
    State(shared): State<Shared>,
    Path(map): Path<String>,
    query: Result<Query<ErrorListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(query) = query.map_err(|error| ApiError::bad_request(error.body_text()))?;
    let class = match &query.class {
        None => None,
        Some(name) => Some(ErrorClass::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "class: unknown error class {name:?} (plugin-rejected, plugin-trapped, \
                 target-rejected, target-unavailable, dependency-missing, conflict)"
            ))
        })?),
    };
    let error_query = ErrorQuery {
        map: Some(map),
        class,
        include_resolved: query.include_resolved.unwrap_or(false),
        after_id: query.after.unwrap_or(0),
        limit: limit(query.limit, 100)?,
    };
    let errors = read(&shared, move |store| Ok(store.errors(&error_query)?)).await?;
    ok(json!({"errors": errors.iter().map(error_json).collect::<Vec<_>>()}))
}

async fn error_detail(State(shared): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let id = error_id(&id)?;
    let entry = read(&shared, move |store| Ok(store.error(id)?)).await?;
    let entry = entry.ok_or_else(|| ApiError::not_found(format!("no error with id {id}")))?;
    ok(error_json(&entry))
}

fn error_id(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("{text:?} is not an error id (a number)")))
}

async fn retry_error(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let id = error_id(&id)?;
    command(&shared, Command::Retry(id), &actor(&headers)).await
}

async fn retry_all(
    State(shared): State<Shared>,
    Path(map): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    command(&shared, Command::RetryAll(map), &actor(&headers)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkipBody {
    reason: String,
}

async fn skip_error(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let id = error_id(&id)?;
    let request: SkipBody = body(&bytes)?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "reason: say why the change is skipped (it is recorded)",
        ));
    }
    command(
        &shared,
        Command::Skip {
            id,
            reason: request.reason,
        },
        &actor(&headers),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    side: String,
    merged: Option<serde_json::Map<String, Json>>,
}

async fn resolve_conflict(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let id = error_id(&id)?;
    let request: ResolveBody = body(&bytes)?;
    let side = parse_side(&request.side)?;
    let merged = match request.merged {
        None => None,
        Some(values) => {
            if values.is_empty() {
                return Err(ApiError::bad_request(
                    "merged: give the merged values (column: value), or leave it out",
                ));
            }
            let mut image = crate::capture::RowImage::new();
            for (column, value) in &values {
                let value = value_from_json(value)
                    .map_err(|error| ApiError::bad_request(format!("merged.{column}: {error}")))?;
                image.insert(column.clone(), value);
            }
            Some(image)
        }
    };
    command(
        &shared,
        Command::Resolve { id, side, merged },
        &actor(&headers),
    )
    .await
}

fn key_json(key: &Key) -> Json {
    Json::Array(key.iter().map(value_to_json).collect())
}

fn image_json(image: &Image) -> Json {
    Json::Object(
        image
            .iter()
            .map(|(name, value)| (name.clone(), value_to_json(value)))
            .collect(),
    )
}

fn change_json(change: &StoredChange) -> Json {
    json!({
        "side": change.side.as_str(),
        "entity": change.entity,
        "op": change.op.as_str(),
        "key": key_json(&change.key),
        "position": {"sequence": change.position.sequence, "index": change.position.index},
        "before": change.before.as_ref().map(image_json),
        "after": change.after.as_ref().map(image_json),
        "changed": change.changed,
        "committed_at": change.committed_at.map(|at| at.to_rfc3339()),
    })
}

fn conflict_json(conflict: &ConflictImages) -> Json {
    json!({
        "erp_base": conflict.erp_base.as_ref().map(image_json),
        "crm_base": conflict.crm_base.as_ref().map(image_json),
        "erp": conflict.erp.as_ref().map(image_json),
        "crm": conflict.crm.as_ref().map(image_json),
    })
}

fn error_json(entry: &ErrorEntry) -> Json {
    json!({
        "id": entry.id,
        "map": entry.change.map,
        "class": entry.error.class.as_str(),
        "reason": entry.error.reason.map(|reason| reason.as_str()),
        "message": entry.error.message,
        "field": entry.error.field,
        "retryable": entry.error.retryable,
        "attempts": entry.attempts,
        "first_at": entry.first_at.to_rfc3339(),
        "last_attempt_at": entry.last_attempt_at.to_rfc3339(),
        "next_retry": entry.next_retry.map(|at| at.to_rfc3339()),
        "plugin_version": entry.plugin_version,
        "change": change_json(&entry.change),
        "conflict": entry.conflict.as_ref().map(conflict_json),
        "resolution": entry.resolution.as_ref().map(|resolution| json!({
            "at": resolution.at.to_rfc3339(),
            "kind": resolution.kind.as_str(),
            "by": resolution.by,
            "reason": resolution.reason,
        })),
    })
}

// ---- activity and lineage ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivityParams {
    map: Option<String>,
    kind: Option<String>,
    side: Option<String>,
    key: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
    format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordingParams {
    since: Option<String>,
    until: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
    format: Option<String>,
}

/// A map's recorded captured changes as change set lines (`docs/change-sets.md`), one
/// page: JSON with `next_after` for paging, or with `format=jsonl` a change set file.
async fn recorded_changes(
    State(shared): State<Shared>,
    Path(map): Path<String>,
    params: Result<Query<RecordingParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(params) = params.map_err(|error| ApiError::bad_request(error.body_text()))?;
    let format = params.format.as_deref().unwrap_or("json");
    if !["json", "jsonl"].contains(&format) {
        return Err(ApiError::bad_request(format!(
            "format: {format:?} is not json or jsonl"
        )));
    }
    let shape = shared
        .control
        .snapshot()
        .shapes
        .get(&map)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no running map named {map}")))?;
    let query = RecordingQuery {
        map: map.clone(),
        since: params
            .since
            .as_deref()
            .map(|text| parse_time("since", text))
            .transpose()?,
        until: params
            .until
            .as_deref()
            .map(|text| parse_time("until", text))
            .transpose()?,
        after_id: params.after.unwrap_or(0),
        limit: limit(params.limit, 1_000)?,
    };
    let page_size = query.limit;
    let records = read(&shared, move |store| Ok(store.recorded_changes(&query)?)).await?;
    let lines: Vec<serde_json::Value> = records
        .iter()
        .map(|record| crate::replay::record::change_line(record, &shape))
        .collect();
    let next_after = (records.len() == page_size)
        .then(|| records.last().map(|record| record.id))
        .flatten();
    if format == "jsonl" {
        let mut text = crate::replay::record::header(&map, Utc::now()).to_string();
        text.push('\n');
        for line in &lines {
            text.push_str(&line.to_string());
            text.push('\n');
        }
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response());
    }
    ok(json!({
        "map": map,
        "changes": lines,
        "next_after": next_after,
    }))
}

pub(super) fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .or_else(|_| {
            humantime::parse_duration(text)
                .map_err(|_| ())
                .and_then(|ago| chrono::Duration::from_std(ago).map_err(|_| ()))
                .map(|ago| Utc::now() - ago)
        })
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{field}: {text:?} is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor a \
                 duration back from now (15m, 2h)"
            ))
        })
}

pub(super) fn parse_side(text: &str) -> Result<Side, ApiError> {
    match text {
        "erp" => Ok(Side::Erp),
        "crm" => Ok(Side::Crm),
        other => Err(ApiError::bad_request(format!(
            "side: {other:?} is not erp or crm"
        ))),
    }
}

pub(super) fn parse_key(text: &str) -> Result<Key, ApiError> {
    let json: Json = serde_json::from_str(text).map_err(|error| {
        ApiError::bad_request(format!(
            "key: not JSON ({error}); give the key's values as a JSON array, like [\"USMF\",\"C-1\"]"
        ))
    })?;
    let Json::Array(values) = json else {
        return Err(ApiError::bad_request(
            "key: give the key's values as a JSON array, like [\"USMF\",\"C-1\"]",
        ));
    };
    values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            value_from_json(value)
                .map_err(|error| ApiError::bad_request(format!("key[{index}]: {error}")))
        })
        .collect()
}

pub(super) fn activity_json(record: &ActivityRecord) -> Json {
    let entry = &record.entry;
    json!({
        "id": record.id,
        "at": record.at.to_rfc3339(),
        "map": entry.map,
        "kind": entry.kind.as_str(),
        "source": entry.source.map(Side::as_str),
        "direction": entry.source.map(|side| format!("{side}-to-{}", side.other())),
        "erp_key": entry.erp_key.as_ref().map(key_json),
        "crm_key": entry.crm_key.as_ref().map(key_json),
        "position": entry.position.map(|position| json!({"sequence": position.sequence, "index": position.index})),
        "plugin_version": entry.plugin_version,
        "error_id": entry.error_id,
        "message": entry.message,
        "detail": entry.detail,
    })
}

async fn activity(
    State(shared): State<Shared>,
    params: Result<Query<ActivityParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(params) = params.map_err(|error| ApiError::bad_request(error.body_text()))?;
    let kind = match &params.kind {
        None => None,
        Some(name) => Some(ActivityKind::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "kind: unknown activity kind {name:?} (applied, filtered, echo, no-op, \
                 conflict, error, error-retried, error-resolved, state-change, \
                 plugin-version, plugin-rejected, discarded, alert)"
            ))
        })?),
    };
    let key = match (&params.side, &params.key) {
        (None, None) => None,
        (Some(side), Some(key)) => {
            if params.map.is_none() {
                return Err(ApiError::bad_request("key: a key filter needs `map` too"));
            }
            Some((parse_side(side)?, parse_key(key)?))
        }
        _ => {
            return Err(ApiError::bad_request(
                "side, key: give both (the row's key on that side) or neither",
            ));
        }
    };
    let format = params.format.as_deref().unwrap_or("json");
    if !["json", "jsonl", "csv"].contains(&format) {
        return Err(ApiError::bad_request(format!(
            "format: {format:?} is not json, jsonl or csv"
        )));
    }
    let query = ActivityQuery {
        map: params.map.clone(),
        kind,
        key,
        since: params
            .since
            .as_deref()
            .map(|text| parse_time("since", text))
            .transpose()?,
        until: params
            .until
            .as_deref()
            .map(|text| parse_time("until", text))
            .transpose()?,
        after_id: params.after.unwrap_or(0),
        limit: limit(params.limit, 100)?,
    };
    let records = read(&shared, move |store| Ok(store.activity(&query)?)).await?;
    match format {
        "jsonl" => {
            let mut text = String::new();
            for record in &records {
                text.push_str(&activity_json(record).to_string());
                text.push('\n');
            }
            Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response())
        }
        "csv" => Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            activity_csv(&records)?,
        )
            .into_response()),
        _ => ok(json!({
            "activity": records.iter().map(activity_json).collect::<Vec<_>>(),
            "next_after": records.last().map(|record| record.id),
        })),
    }
}

/// The activity entries as CSV, one row each; keys and detail as JSON text.
fn activity_csv(records: &[ActivityRecord]) -> Result<String, ApiError> {
    let failed = |error: csv::Error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("writing CSV: {error}"),
        )
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record([
            "id",
            "at",
            "map",
            "kind",
            "direction",
            "erp_key",
            "crm_key",
            "position",
            "plugin_version",
            "error_id",
            "message",
            "detail",
        ])
        .map_err(failed)?;
    for record in records {
        let entry = &record.entry;
        writer
            .write_record([
                record.id.to_string(),
                record.at.to_rfc3339(),
                entry.map.clone().unwrap_or_default(),
                entry.kind.as_str().to_owned(),
                entry
                    .source
                    .map(|side| format!("{side}-to-{}", side.other()))
                    .unwrap_or_default(),
                entry
                    .erp_key
                    .as_ref()
                    .map(|key| key_json(key).to_string())
                    .unwrap_or_default(),
                entry
                    .crm_key
                    .as_ref()
                    .map(|key| key_json(key).to_string())
                    .unwrap_or_default(),
                entry
                    .position
                    .map(|position| format!("{}.{}", position.sequence, position.index))
                    .unwrap_or_default(),
                entry.plugin_version.clone().unwrap_or_default(),
                entry.error_id.map(|id| id.to_string()).unwrap_or_default(),
                entry.message.clone(),
                entry
                    .detail
                    .as_ref()
                    .map(Json::to_string)
                    .unwrap_or_default(),
            ])
            .map_err(failed)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|error| failed(error.into_error().into()))?;
    String::from_utf8(bytes)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "writing CSV: not UTF-8"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RowParams {
    side: String,
    key: String,
}

async fn row_lineage(
    State(shared): State<Shared>,
    Path(map): Path<String>,
    params: Result<Query<RowParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(params) = params.map_err(|error| ApiError::bad_request(error.body_text()))?;
    let side = parse_side(&params.side)?;
    let key = parse_key(&params.key)?;
    let answer = read(&shared, move |store| {
        store.map_status(&map)?;
        let link = store.link(&map, side, &key)?;
        let mut keys = vec![(side, key.clone())];
        if let Some(link) = &link {
            keys.push((side.other(), link.key(side.other()).clone()));
        }
        let mut history: BTreeMap<u64, ActivityRecord> = BTreeMap::new();
        for (side, key) in &keys {
            let mut after_id = 0;
            loop {
                let page = store.activity(&ActivityQuery {
                    map: Some(map.clone()),
                    key: Some((*side, key.clone())),
                    after_id,
                    limit: 1_000,
                    ..ActivityQuery::default()
                })?;
                let Some(last) = page.last() else { break };
                after_id = last.id;
                for record in page {
                    history.insert(record.id, record);
                }
            }
        }
        let error_ids: std::collections::BTreeSet<u64> = history
            .values()
            .filter_map(|record| record.entry.error_id)
            .collect();
        let mut errors = Vec::new();
        for id in error_ids {
            if let Some(entry) = store.error(id)? {
                errors.push(error_json(&entry));
            }
        }
        Ok(json!({
            "map": map,
            "side": side.as_str(),
            "key": key_json(&key),
            "link": link.as_ref().map(|link| json!({
                "erp_key": key_json(&link.erp_key),
                "crm_key": key_json(&link.crm_key),
                "erp_image": image_json(&link.erp_image),
                "crm_image": image_json(&link.crm_image),
                "plugin_version": link.plugin_version,
                "updated_at": link.updated_at.to_rfc3339(),
            })),
            "history": history.values().map(activity_json).collect::<Vec<_>>(),
            "errors": errors,
        }))
    })
    .await?;
    ok(answer)
}

// ---- alerts ----

async fn list_alerts(State(shared): State<Shared>) -> ApiResult {
    let snapshot = shared.control.snapshot();
    ok(json!({
        "rules": snapshot.alert_rules,
        "firing": snapshot.firing,
    }))
}

fn checked_rule(bytes: &Bytes, name: Option<&str>) -> Result<crate::alerts::CheckedRule, ApiError> {
    let mut rule: AlertRule = body(bytes)?;
    if let Some(name) = name {
        if !rule.name.is_empty() && rule.name != name {
            return Err(ApiError::bad_request(format!(
                "name: the body names {:?}, the path {name:?}",
                rule.name
            )));
        }
        rule.name = name.to_owned();
    }
    rule.check().map_err(ApiError::bad_request)
}

async fn create_alert(State(shared): State<Shared>, headers: HeaderMap, bytes: Bytes) -> ApiResult {
    let rule = checked_rule(&bytes, None)?;
    if shared
        .control
        .snapshot()
        .alert_rules
        .iter()
        .any(|existing| existing.name == rule.rule.name)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "an alert rule named {} exists; PUT /api/v1/alerts/{} replaces it",
                rule.rule.name, rule.rule.name
            ),
        ));
    }
    let answer = shared
        .control
        .send(
            Command::UpsertAlert(Box::new(rule)),
            &actor(&headers),
            shared.command_timeout,
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

async fn update_alert(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let rule = checked_rule(&bytes, Some(&name))?;
    command(
        &shared,
        Command::UpsertAlert(Box::new(rule)),
        &actor(&headers),
    )
    .await
}

async fn delete_alert(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    command(&shared, Command::DeleteAlert(name), &actor(&headers)).await
}

// ---- subscribers ----

async fn list_subscribers(State(shared): State<Shared>) -> ApiResult {
    ok(json!({"subscribers": shared.notifier.subscribers()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriberBody {
    name: String,
    url: String,
    secret: String,
    #[serde(default)]
    events: Vec<String>,
    /// Extra CA certificates (PEM) trusted for an https:// URL.
    #[serde(default)]
    ca_pem: Option<String>,
}

async fn create_subscriber(
    State(shared): State<Shared>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let request: SubscriberBody = body(&bytes)?;
    if request.name.is_empty()
        || !request
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::bad_request(format!(
            "name: {:?} is not a plain name (letters, digits, - and _)",
            request.name
        )));
    }
    crate::notify::check_url(&request.url)
        .map_err(|message| ApiError::bad_request(format!("url: {message}")))?;
    if let Some(pem) = &request.ca_pem {
        crate::notify::check_ca_pem(pem)
            .map_err(|message| ApiError::bad_request(format!("ca_pem: {message}")))?;
    }
    if request.secret.len() < 16 {
        return Err(ApiError::bad_request(
            "secret: at least 16 characters (it keys the HMAC-SHA256 signature)",
        ));
    }
    for event in &request.events {
        if !crate::config::EVENTS.contains(&event.as_str()) {
            return Err(ApiError::bad_request(format!(
                "events: unknown event {event:?} ({})",
                crate::config::EVENTS.join(", ")
            )));
        }
    }
    let subscriber = Subscriber {
        name: request.name,
        url: request.url,
        secret: Secret::new(request.secret),
        events: request.events,
        ca_pem: request.ca_pem,
    };
    let view = subscriber.view();
    let saved = json!(super::settings::SavedSubscriber::of(&subscriber));
    let (name, by) = (subscriber.name.clone(), actor(&headers));
    read(&shared, move |store| {
        Ok(store.save_setting(super::settings::SUBSCRIBER, &name, Some(&saved), &by)?)
    })
    .await?;
    shared.notifier.upsert_subscriber(subscriber);
    Ok((StatusCode::CREATED, axum::Json(json!(view))).into_response())
}

async fn delete_subscriber(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    if !shared
        .notifier
        .subscribers()
        .iter()
        .any(|subscriber| subscriber.name == name)
    {
        return Err(ApiError::not_found(format!("no subscriber named {name}")));
    }
    let (saved_name, by) = (name.clone(), actor(&headers));
    read(&shared, move |store| {
        Ok(store.save_setting(super::settings::SUBSCRIBER, &saved_name, None, &by)?)
    })
    .await?;
    shared.notifier.remove_subscriber(&name);
    ok(json!({"name": name, "deleted": true}))
}

async fn deliveries(State(shared): State<Shared>, Path(name): Path<String>) -> ApiResult {
    if !shared
        .notifier
        .subscribers()
        .iter()
        .any(|subscriber| subscriber.name == name)
    {
        return Err(ApiError::not_found(format!("no subscriber named {name}")));
    }
    ok(json!({"deliveries": shared.notifier.deliveries(Some(&name))}))
}

// ---- plugins ----

async fn plugins(State(shared): State<Shared>) -> ApiResult {
    let snapshot = shared.control.snapshot();
    ok(json!({
        "plugins": snapshot.plugins.iter().map(|plugin| json!({
            "map": plugin.map,
            "file": plugin.file,
            "hash": plugin.hash,
            "world_version": plugin.world_version,
            "name": plugin.name,
            "version": plugin.version,
            "quarantined": plugin.quarantined,
            "calls": plugin.stats.calls,
            "changes": plugin.stats.changes,
            "trapped_changes": plugin.stats.trapped_changes,
        })).collect::<Vec<_>>()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/admin-api.json` (the OpenAPI document) lists exactly the routes served.
    #[test]
    fn the_openapi_document_matches_the_routes() {
        let document: Json = serde_json::from_str(include_str!("../../../docs/admin-api.json"))
            .expect("the OpenAPI document is JSON");
        let mut documented: Vec<String> = Vec::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                documented.push(format!("{} {path}", method.to_ascii_uppercase()));
            }
        }
        documented.sort();
        let mut served: Vec<String> = ROUTES.iter().map(|route| (*route).to_owned()).collect();
        served.sort();
        assert_eq!(documented, served);
    }

    #[test]
    fn keys_and_times_parse_or_name_the_problem() {
        assert_eq!(
            parse_key(r#"["USMF", 10, {"decimal": "1.50"}]"#)
                .expect("key")
                .len(),
            3
        );
        assert!(parse_key("USMF").unwrap_err().message.starts_with("key:"));
        assert!(
            parse_key(r#"{"a": 1}"#)
                .unwrap_err()
                .message
                .starts_with("key:")
        );
        assert!(parse_time("since", "2026-01-31T12:00:00Z").is_ok());
        let ago = parse_time("since", "15m").expect("a duration back");
        assert!(ago < Utc::now());
        assert!(
            parse_time("since", "soonish")
                .unwrap_err()
                .message
                .starts_with("since:")
        );
    }
}
