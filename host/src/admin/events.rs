//! `GET /api/v1/events`: the live state as server-sent events, for the web UI.
//!
//! Twice a second the stream builds one `state` document: every map as `GET
//! /api/v1/maps` answers, the initial sync progress of maps that have one under way,
//! the alerts firing and the offline sides. It is sent when it differs from the last
//! one sent (so an idle deployment sends nothing but keep-alive comments). Each stream
//! reads the engine's snapshot and the state store like any request; the loop never
//! waits for it. Streams end when the server shuts down ([`StreamsClosing`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::{self, Stream};
use serde_json::{Value as Json, json};
use tokio::sync::watch;

use super::routes::{ApiError, Shared, maps_document, read};

/// How often the state is looked at.
const EVERY: Duration = Duration::from_millis(500);

/// Tells event streams the server is shutting down.
#[derive(Clone)]
pub struct StreamsClosing(Arc<watch::Sender<bool>>);

impl Default for StreamsClosing {
    fn default() -> Self {
        StreamsClosing(Arc::new(watch::channel(false).0))
    }
}

impl StreamsClosing {
    /// Ends every stream.
    pub fn close(&self) {
        self.0.send_replace(true);
    }

    fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/api/v1/events", get(events))
}

/// The document a `state` event carries.
async fn state_document(shared: &Shared) -> Result<Json, ApiError> {
    let mut document = maps_document(shared).await?;
    let names: Vec<String> = document["maps"]
        .as_array()
        .map(|maps| {
            maps.iter()
                .filter_map(|map| map["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let initial = read(shared, move |store| {
        let mut progress = Vec::new();
        for name in names {
            let Some(sync) = store.initial_sync(&name)? else {
                continue;
            };
            let side = |side: &Option<crate::state::SideProgress>| {
                side.as_ref().map(|side| {
                    json!({
                        "rows_done": side.rows_done,
                        "rows_total": side.rows_total,
                        "complete": side.complete,
                        "updated_at": side.updated_at.to_rfc3339(),
                    })
                })
            };
            progress.push(json!({"map": sync.map, "erp": side(&sync.erp), "crm": side(&sync.crm)}));
        }
        Ok(progress)
    })
    .await?;
    let snapshot = shared.control.snapshot();
    document["initial_syncs"] = Json::Array(initial);
    document["firing"] = serde_json::to_value(&snapshot.firing).unwrap_or(Json::Null);
    document["offline"] = serde_json::to_value(&snapshot.offline).unwrap_or(Json::Null);
    Ok(document)
}

async fn events(State(shared): State<Shared>) -> Response {
    Sse::new(state_stream(shared))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn state_stream(shared: Shared) -> impl Stream<Item = Result<Event, Infallible>> {
    let closing = shared.closing.subscribe();
    stream::unfold(
        (shared, closing, None::<String>, true),
        |(shared, mut closing, last, first)| async move {
            loop {
                if *closing.borrow() {
                    return None;
                }
                if !first || last.is_some() {
                    tokio::select! {
                        _ = tokio::time::sleep(EVERY) => {}
                        _ = closing.changed() => return None,
                    }
                }
                let text = match state_document(&shared).await {
                    Ok(document) => document.to_string(),
                    Err(error) => {
                        let event = Event::default()
                            .event("problem")
                            .data(json!({"error": error.message}).to_string());
                        return Some((Ok(event), (shared, closing, last, false)));
                    }
                };
                if last.as_deref() == Some(text.as_str()) {
                    continue;
                }
                let event = Event::default().event("state").data(text.clone());
                return Some((Ok(event), (shared, closing, Some(text), false)));
            }
        },
    )
}
