//! Solution bundles through the admin API (see [`crate::solution`]):
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/solutions` | the applied solution versions, oldest first |
//! | `GET /api/v1/solutions/export?name=&publisher=&version=[&maps=a,b][&parameters=MAP.PATH,...]` | a bundle of the deployment's maps (`application/x-tar`) |
//! | `POST /api/v1/solutions/import[?apply=true][&set=MAP.PATH=VALUE...]` | body: a bundle; checked and compared with the deployment (a refusal is a 422 listing every problem); with `apply`, written into the plugins folder and the config file, and the running maps it changes switch at a clean point |
//! | `POST /api/v1/solutions/{name}/rollback` | the config before the newest applied version of `name` comes back; the running maps switch back |
//!
//! Checking and writing run off the async threads; switching the running maps is a
//! command to the engine loop (each map switches once its queue is drained).

use std::path::PathBuf;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::control::Command;
use super::routes::{ApiError, ApiResult, Shared, actor, ok};
use crate::plugin::PluginRuntime;
use crate::solution::{self, ExportOptions, MapDiff};

/// What the solution routes work on.
#[derive(Clone)]
pub struct SolutionContext {
    /// The deployment's config file.
    pub config_path: PathBuf,
    /// The engine's plugin runtime.
    pub runtime: PluginRuntime,
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/solutions", get(list))
        .route("/api/v1/solutions/export", get(export))
        .route("/api/v1/solutions/import", post(import))
        .route("/api/v1/solutions/{name}/rollback", post(rollback))
}

fn context(shared: &Shared) -> Result<SolutionContext, ApiError> {
    shared.solutions.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "this engine was not started from a config file; solutions need one",
        )
    })
}

/// Runs `work` off the async threads; its error is a 422 with the message.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?
        .map_err(|error| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{error:#}")))
}

async fn list(State(shared): State<Shared>) -> ApiResult {
    let context = context(&shared)?;
    let entries = blocking(move || {
        let plan = crate::config::load_allowing_no_maps(&context.config_path)
            .map_err(|errors| anyhow::anyhow!("{errors}"))?;
        solution::history(&plan.data_dir)
    })
    .await?;
    ok(json!({
        "solutions": entries.iter().map(|entry| json!({
            "solution": entry.solution,
            "version": entry.version,
            "applied_at": entry.applied_at,
            "maps": entry.maps,
            "rolled_back": entry.rolled_back,
        })).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportParams {
    name: String,
    publisher: String,
    version: String,
    maps: Option<String>,
    parameters: Option<String>,
}

fn comma_list(text: Option<&str>) -> Vec<String> {
    text.map(|text| {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

async fn export(
    State(shared): State<Shared>,
    params: Result<Query<ExportParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(params) = params.map_err(|error| ApiError::bad_request(error.body_text()))?;
    let context = context(&shared)?;
    let bytes = blocking(move || {
        let options = ExportOptions {
            publisher: params.publisher,
            name: params.name,
            version: params.version,
            maps: comma_list(params.maps.as_deref()),
            parameters: comma_list(params.parameters.as_deref()),
        };
        solution::export(&context.config_path, &context.runtime, &options)?.write()
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], bytes).into_response())
}

/// The import's query: `apply` and any number of `set`.
fn import_params(query: Option<&str>) -> Result<(bool, Vec<String>), ApiError> {
    let mut apply = false;
    let mut sets = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "apply" => {
                apply = match value.as_ref() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "apply: `{other}` is not true or false"
                        )));
                    }
                }
            }
            "set" => sets.push(value.into_owned()),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}` (apply, set)"
                )));
            }
        }
    }
    Ok((apply, sets))
}

async fn import(
    State(shared): State<Shared>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    bytes: Bytes,
) -> ApiResult {
    let (apply, sets) = import_params(uri.query())?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "the request body must be a solution bundle (dualwrite solution export writes one)",
        ));
    }
    let context = context(&shared)?;
    let (prepared, applied, switches) = blocking(move || {
        let prepared = solution::prepare(&bytes, &context.config_path, &context.runtime, &sets)?;
        if !apply {
            return Ok((prepared, None, Vec::new()));
        }
        let applied = solution::apply(&prepared, &context.config_path)?;
        let switches = solution::maps_to_switch(&context.config_path, &applied.maps)?;
        Ok((prepared, Some(applied), switches))
    })
    .await?;
    let manifest = &prepared.bundle.manifest;
    let switching = if switches.is_empty() {
        Json::Null
    } else {
        shared
            .control
            .send(
                Command::SwitchMaps {
                    switches,
                    reason: format!("solution {} {} applied", manifest.name, manifest.version),
                },
                &actor(&headers),
                shared.command_timeout,
            )
            .await?
    };
    ok(json!({
        "solution": manifest.name,
        "version": manifest.version,
        "publisher": manifest.publisher,
        "diff": prepared.diff,
        "applied": applied,
        "switching": switching,
    }))
}

async fn rollback(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let context = context(&shared)?;
    let (entry, switches) = blocking(move || {
        let entry = solution::rollback(&context.config_path, &name)?;
        let switches = solution::maps_to_switch(&context.config_path, &entry.maps)?;
        Ok((entry, switches))
    })
    .await?;
    let switching = shared
        .control
        .send(
            Command::SwitchMaps {
                switches,
                reason: format!("solution {} {} rolled back", entry.solution, entry.version),
            },
            &actor(&headers),
            shared.command_timeout,
        )
        .await?;
    ok(json!({
        "solution": entry.solution,
        "rolled_back": entry.version,
        "switching": switching,
    }))
}

/// A diff as lines for people (the CLI prints these).
pub fn diff_lines(diff: &[MapDiff]) -> Vec<String> {
    diff.iter()
        .map(|change| match change {
            MapDiff::Added { map, plugin } => format!(
                "+ {map}: added (plugin {} {})",
                plugin.0,
                &plugin.1[..12.min(plugin.1.len())]
            ),
            MapDiff::Changed {
                map,
                plugin_hash,
                keys,
            } => {
                let mut parts = Vec::new();
                if let Some((from, to)) = plugin_hash {
                    parts.push(format!(
                        "plugin {} -> {}",
                        &from[..12.min(from.len())],
                        &to[..12.min(to.len())]
                    ));
                }
                if !keys.is_empty() {
                    parts.push(format!("changed: {}", keys.join(", ")));
                }
                format!("~ {map}: {}", parts.join("; "))
            }
            MapDiff::Unchanged { map } => format!("= {map}: unchanged"),
            MapDiff::Removed { map } => format!("- {map}: removed"),
        })
        .collect()
}
