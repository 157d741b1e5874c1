//! Routes for what a map runs and how maps depend on each other:
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/maps/{map}/config` | plugin (file, hash, world and plugin version), config in force, what the plugin describes (entities, mappings, config schema), history |
//! | `PUT /api/v1/maps/{map}/config` | `{"config": {...}, "reason": "..."}`: validated by the plugin on a fresh instance, then in force from the next step; a refusal is a 400 naming the field |
//! | `POST /api/v1/maps/{map}/config/rollback` | `{"to": ID}`, or `{}` for the config before the one in force |
//! | `GET /api/v1/graph` | the maps of the plan with their dependencies and state |
//! | `GET /api/v1/activity/latest` | the newest `limit` entries (default 100) matching `map`, `kind`, `side`+`key`, newest first |

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::control::Command;
use super::routes::{
    ApiError, ApiResult, Shared, activity_json, actor, body, limit, ok, parse_key, parse_side, read,
};
use crate::config::Plan;
use crate::state::{ActivityKind, ActivityQuery, ActivityRecord, StateError, StateStore};

/// A map of the plan as the graph shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MapOutline {
    /// The map.
    pub name: String,
    /// Maps that must sync first.
    pub depends_on: Vec<String>,
    /// Whether the plan runs it.
    pub enabled: bool,
    /// `to-crm`, `to-erp` or `both`.
    pub direction: String,
    /// The ERP and CRM entities.
    pub entities: [String; 2],
}

impl MapOutline {
    /// The maps of `plan`.
    pub fn of_plan(plan: &Plan) -> Vec<MapOutline> {
        plan.maps
            .iter()
            .map(|map| MapOutline {
                name: map.name.clone(),
                depends_on: map.depends_on.clone(),
                enabled: map.enabled,
                direction: map.direction.as_str().to_owned(),
                entities: [map.erp.entity.clone(), map.crm.entity.clone()],
            })
            .collect()
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/maps/{map}/config", get(get_config).put(put_config))
        .route("/api/v1/maps/{map}/config/rollback", post(rollback))
        .route("/api/v1/graph", get(graph))
        .route("/api/v1/activity/latest", get(latest_activity))
}

async fn send(shared: &Shared, command: Command, by: &str) -> Result<Json, ApiError> {
    Ok(shared
        .control
        .send(command, by, shared.command_timeout)
        .await?)
}

async fn get_config(State(shared): State<Shared>, Path(map): Path<String>) -> ApiResult {
    ok(send(&shared, Command::DescribeMap(map), "admin-api").await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    config: Option<Json>,
    #[serde(default)]
    reason: String,
}

/// A refused config as a 400 naming the field.
fn refused_or_ok(answer: Json) -> ApiResult {
    if let Some(refused) = answer.get("refused") {
        let path = refused["path"].as_str().unwrap_or_default();
        let message = refused["message"].as_str().unwrap_or_default();
        let place = if path.is_empty() {
            "config".to_owned()
        } else {
            format!("config{path}")
        };
        return Ok((
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "error": format!("{place}: {message}"),
                "path": path,
                "message": message,
            })),
        )
            .into_response());
    }
    ok(answer)
}

async fn put_config(
    State(shared): State<Shared>,
    Path(map): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let request: ConfigBody = body(&bytes)?;
    let config = match request.config {
        Some(Json::Object(config)) => config,
        Some(_) => {
            return Err(ApiError::bad_request(
                "config: must be a JSON object (the map's plugin config)",
            ));
        }
        None => {
            return Err(ApiError::bad_request(
                "config: missing; give the map's new plugin config as a JSON object",
            ));
        }
    };
    if request.reason.len() > 500 {
        return Err(ApiError::bad_request("reason: at most 500 characters"));
    }
    let answer = send(
        &shared,
        Command::ConfigureMap {
            map,
            config,
            reason: request.reason,
        },
        &actor(&headers),
    )
    .await?;
    refused_or_ok(answer)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    to: Option<u64>,
}

async fn rollback(
    State(shared): State<Shared>,
    Path(map): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let request: RollbackBody = body(&bytes)?;
    let answer = send(
        &shared,
        Command::RollbackMap {
            map,
            to: request.to,
        },
        &actor(&headers),
    )
    .await?;
    refused_or_ok(answer)
}

async fn graph(State(shared): State<Shared>) -> ApiResult {
    let snapshot = shared.control.snapshot();
    ok(json!({
        "maps": shared.maps.iter().map(|map| {
            let live = snapshot.maps.iter().find(|live| live.name == map.name);
            json!({
                "name": map.name,
                "depends_on": map.depends_on,
                "enabled": map.enabled,
                "direction": map.direction,
                "erp_entity": map.entities[0],
                "crm_entity": map.entities[1],
                "mode": live.map(|live| live.mode.as_str()),
                "queue_depth": live.map(|live| live.queue_depth),
                "errors": live.map(|live| live.counters.errors),
            })
        }).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatestParams {
    map: Option<String>,
    kind: Option<String>,
    side: Option<String>,
    key: Option<String>,
    limit: Option<usize>,
}

async fn latest_activity(
    State(shared): State<Shared>,
    params: Result<axum::extract::Query<LatestParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let axum::extract::Query(params) =
        params.map_err(|error| ApiError::bad_request(error.body_text()))?;
    let kind = match &params.kind {
        None => None,
        Some(name) => Some(ActivityKind::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!("kind: unknown activity kind {name:?}"))
        })?),
    };
    let key = match (&params.side, &params.key) {
        (None, None) => None,
        (Some(side), Some(key)) if params.map.is_some() => {
            Some((parse_side(side)?, parse_key(key)?))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("key: a key filter needs `map` too"));
        }
        _ => {
            return Err(ApiError::bad_request(
                "side, key: give both (the row's key on that side) or neither",
            ));
        }
    };
    let count = limit(params.limit, 100)?.min(1_000);
    let query = ActivityQuery {
        map: params.map,
        kind,
        key,
        limit: count,
        ..ActivityQuery::default()
    };
    let records = read(&shared, move |store| Ok(newest(store, &query)?)).await?;
    ok(json!({
        "activity": records.iter().rev().map(activity_json).collect::<Vec<_>>(),
    }))
}

/// The newest `query.limit` entries matching `query`, oldest first. The store lists
/// oldest first from an id on; "at least `limit` entries above id X" only turns false
/// as X grows, so a binary search finds the X above which exactly the newest are.
fn newest(
    store: &dyn StateStore,
    query: &ActivityQuery,
) -> Result<Vec<ActivityRecord>, StateError> {
    let probe = |after_id: u64| {
        store.activity(&ActivityQuery {
            after_id,
            ..query.clone()
        })
    };
    let first = probe(0)?;
    let Some(last) = first.last() else {
        return Ok(first);
    };
    if first.len() < query.limit {
        return Ok(first);
    }
    // `low` answers a full page; `high` does not.
    let mut low = 0;
    let mut high = last.id;
    while probe(high)?.len() == query.limit {
        low = high;
        high = high.saturating_mul(2).max(1);
    }
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if probe(middle)?.len() == query.limit {
            low = middle;
        } else {
            high = middle;
        }
    }
    probe(low)
}
