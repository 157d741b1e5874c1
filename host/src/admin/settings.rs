//! Operations settings made through the admin API (alert rules, webhook subscribers,
//! error modes) kept in the state store, so they outlive a restart.
//!
//! The config file gives the starting set; every create, update and delete through the
//! API is saved by kind and name ([`StateStore::save_setting`]), a delete as a
//! tombstone so that a rule the file defines stays deleted. At start the saved
//! settings are laid over the file's, in name order. A saved setting that no longer
//! reads (a later version changed its shape) is skipped with a warning naming it; it
//! never stops the engine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::control::ErrorMode;
use crate::alerts::AlertRule;
use crate::config::Secret;
use crate::notify::Subscriber;
use crate::state::{OperationsSetting, StateError, StateStore};

/// The kind of a saved alert rule.
pub(super) const ALERT_RULE: &str = "alert-rule";
/// The kind of a saved webhook subscriber.
pub(super) const SUBSCRIBER: &str = "subscriber";
/// The kind of a saved error mode (named by its map).
pub(super) const ERROR_MODE: &str = "error-mode";

/// A subscriber as saved: its secret included (the state store is the engine's own
/// file; the secret never leaves it through the API or the logs).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SavedSubscriber {
    pub(super) url: String,
    pub(super) secret: String,
    #[serde(default)]
    pub(super) events: Vec<String>,
    #[serde(default)]
    pub(super) ca_pem: Option<String>,
}

impl SavedSubscriber {
    pub(super) fn of(subscriber: &Subscriber) -> SavedSubscriber {
        SavedSubscriber {
            url: subscriber.url.clone(),
            secret: subscriber.secret.expose().to_owned(),
            events: subscriber.events.clone(),
            ca_pem: subscriber.ca_pem.clone(),
        }
    }
}

/// Lays the saved settings of `kind` over `current` (by name): a saved body replaces
/// or adds, a tombstone removes. `read` turns a body into the setting.
fn overlay<T>(
    store: &dyn StateStore,
    kind: &str,
    current: &mut BTreeMap<String, T>,
    read: impl Fn(&str, serde_json::Value) -> Result<T, String>,
) -> Result<(), StateError> {
    for OperationsSetting {
        name,
        body,
        updated_by,
        ..
    } in store.settings(kind)?
    {
        match body {
            None => {
                current.remove(&name);
            }
            Some(body) => match read(&name, body) {
                Ok(setting) => {
                    current.insert(name, setting);
                }
                Err(problem) => tracing::warn!(
                    kind,
                    name,
                    updated_by,
                    problem,
                    "a saved operations setting does not read; it is left out"
                ),
            },
        }
    }
    Ok(())
}

/// The config file's alert rules with the saved ones laid over them, in name order.
pub(super) fn alert_rules(
    store: &dyn StateStore,
    from_file: &[AlertRule],
) -> Result<Vec<AlertRule>, StateError> {
    let mut rules: BTreeMap<String, AlertRule> = from_file
        .iter()
        .map(|rule| (rule.name.clone(), rule.clone()))
        .collect();
    overlay(store, ALERT_RULE, &mut rules, |name, body| {
        let mut rule: AlertRule =
            serde_json::from_value(body).map_err(|error| error.to_string())?;
        rule.name = name.to_owned();
        rule.check()?;
        Ok(rule)
    })?;
    Ok(rules.into_values().collect())
}

/// The config file's subscribers with the saved ones laid over them, in name order.
pub(super) fn subscribers(
    store: &dyn StateStore,
    from_file: Vec<Subscriber>,
) -> Result<Vec<Subscriber>, StateError> {
    let mut subscribers: BTreeMap<String, Subscriber> = from_file
        .into_iter()
        .map(|subscriber| (subscriber.name.clone(), subscriber))
        .collect();
    overlay(store, SUBSCRIBER, &mut subscribers, |name, body| {
        let saved: SavedSubscriber =
            serde_json::from_value(body).map_err(|error| error.to_string())?;
        crate::notify::check_url(&saved.url)?;
        Ok(Subscriber {
            name: name.to_owned(),
            url: saved.url,
            secret: Secret::new(saved.secret),
            events: saved.events,
            ca_pem: saved.ca_pem,
        })
    })?;
    Ok(subscribers.into_values().collect())
}

/// The error modes from the plan with the saved ones laid over them.
pub(super) fn error_modes(
    store: &dyn StateStore,
    mut modes: BTreeMap<String, ErrorMode>,
) -> Result<BTreeMap<String, ErrorMode>, StateError> {
    let known: Vec<String> = modes.keys().cloned().collect();
    overlay(store, ERROR_MODE, &mut modes, |_, body| {
        body.as_str()
            .and_then(ErrorMode::parse)
            .ok_or_else(|| format!("{body} is not \"block\" or \"continue\""))
    })?;
    // A saved mode of a map the plan no longer runs stays saved but is not used.
    modes.retain(|map, _| known.contains(map));
    Ok(modes)
}
