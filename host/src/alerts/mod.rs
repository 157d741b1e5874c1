//! Alert rules: thresholds on a map's errors, queue depth and lag, or on how long a side
//! has been offline, with actions (notify subscribers, pause the map, stop the map).
//!
//! A rule is data ([`AlertRule`]), the same shape in the config file (`[alerts.NAME]`)
//! and in the admin API, checked by [`AlertRule::check`] into an [`AlertCondition`].
//! Dual-write's own example, "10 application errors within 15 minutes: pause and
//! notify", is
//!
//! ```toml
//! [alerts.app-errors]
//! when = "errors"
//! class = "plugin-rejected"   # optional: any class when left out
//! count = 10
//! window = "15m"
//! actions = ["pause", "notify"]
//! ```
//!
//! A rule names a `map` or, without one, applies to every map on its own (a global rule
//! pauses the map that breached it, not all of them). [`AlertEvaluator`] keeps which
//! rules fire for which subject (a map, or a side for offline rules) and reports only
//! changes: a rule fires once when its threshold is reached and clears once when it no
//! longer is. The caller records both in the activity log and runs the actions.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::change::ErrorClass;
use crate::state::{ActivityKind, ActivityQuery, StateError, StateStore};

/// An alert rule as written in config and sent to the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// The rule's name (the `[alerts.NAME]` key in config).
    #[serde(default)]
    pub name: String,
    /// The map it watches; every map when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<String>,
    /// What it watches: `errors`, `queue-depth`, `lag` or `offline`.
    pub when: String,
    /// `errors`: only this error class (`plugin-rejected`, `plugin-trapped`,
    /// `target-rejected`, `target-unavailable`, `dependency-missing`, `conflict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// `errors`: how many errors within `window` fire the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `errors`: the time window, like `15m`, `30s`, `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// `queue-depth`: changes waiting; `lag`: seconds. Fires at or above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u64>,
    /// `offline`: fires when a side of the map is unreachable for longer than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longer_than: Option<String>,
    /// What to do when it fires: `notify`, `pause`, `stop`.
    pub actions: Vec<String>,
}

/// What a checked rule watches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlertCondition {
    /// At least `count` errors (of `class`, or any) recorded within `window`.
    Errors {
        /// Only this class.
        class: Option<ErrorClass>,
        /// How many.
        count: u64,
        /// Within how long.
        window: Duration,
    },
    /// At least this many changes in the map's queue.
    QueueDepth(u64),
    /// The map's oldest waiting change is at least this old.
    Lag(Duration),
    /// A side of the map has been unreachable for longer than this.
    Offline(Duration),
}

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertAction {
    /// Send the event to the webhook subscribers.
    Notify,
    /// Pause the map (its changes queue up).
    Pause,
    /// Stop the map.
    Stop,
}

/// A rule that passed [`AlertRule::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedRule {
    /// The rule as given.
    pub rule: AlertRule,
    /// Its condition.
    pub condition: AlertCondition,
    /// Its actions, without repeats.
    pub actions: Vec<AlertAction>,
}

impl AlertRule {
    /// Checks the rule; the error names the field and the problem.
    pub fn check(&self) -> Result<CheckedRule, String> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "name: {:?} is not a plain name (letters, digits, - and _)",
                self.name
            ));
        }
        let allowed: &[&str] = match self.when.as_str() {
            "errors" => &["class", "count", "window"],
            "queue-depth" | "lag" => &["threshold"],
            "offline" => &["longer_than"],
            other => {
                return Err(format!(
                    "when: unknown condition {other:?} (errors, queue-depth, lag, offline)"
                ));
            }
        };
        for (field, set) in [
            ("class", self.class.is_some()),
            ("count", self.count.is_some()),
            ("window", self.window.is_some()),
            ("threshold", self.threshold.is_some()),
            ("longer_than", self.longer_than.is_some()),
        ] {
            if set && !allowed.contains(&field) {
                return Err(format!(
                    "{field}: not a setting of a `{}` rule (its settings: {})",
                    self.when,
                    allowed.join(", ")
                ));
            }
        }
        let condition = match self.when.as_str() {
            "errors" => {
                let class = match &self.class {
                    None => None,
                    Some(name) => Some(ErrorClass::parse(name).ok_or_else(|| {
                        format!(
                            "class: unknown error class {name:?} (plugin-rejected, \
                             plugin-trapped, target-rejected, target-unavailable, \
                             dependency-missing, conflict)"
                        )
                    })?),
                };
                let count = self.count.ok_or("count: an `errors` rule needs a count")?;
                if count == 0 {
                    return Err("count: must be at least 1".to_owned());
                }
                let window = duration("window", self.window.as_deref())?;
                AlertCondition::Errors {
                    class,
                    count,
                    window,
                }
            }
            "queue-depth" => AlertCondition::QueueDepth(
                self.threshold
                    .ok_or("threshold: a `queue-depth` rule needs a threshold (changes)")?,
            ),
            "lag" => AlertCondition::Lag(Duration::from_secs(
                self.threshold
                    .ok_or("threshold: a `lag` rule needs a threshold (seconds)")?,
            )),
            _ => AlertCondition::Offline(duration("longer_than", self.longer_than.as_deref())?),
        };
        if self.actions.is_empty() {
            return Err("actions: at least one of notify, pause, stop".to_owned());
        }
        let mut actions = BTreeSet::new();
        for action in &self.actions {
            actions.insert(match action.as_str() {
                "notify" => AlertAction::Notify,
                "pause" => AlertAction::Pause,
                "stop" => AlertAction::Stop,
                other => {
                    return Err(format!(
                        "actions: unknown action {other:?} (notify, pause, stop)"
                    ));
                }
            });
        }
        Ok(CheckedRule {
            rule: self.clone(),
            condition,
            actions: actions.into_iter().collect(),
        })
    }
}

fn duration(field: &str, text: Option<&str>) -> Result<Duration, String> {
    let text = text.ok_or_else(|| format!("{field}: needed, like \"15m\" or \"30s\""))?;
    let parsed = humantime::parse_duration(text)
        .map_err(|error| format!("{field}: {text:?} is not a duration ({error}); like \"15m\""))?;
    if parsed.is_zero() {
        return Err(format!("{field}: must be longer than zero"));
    }
    Ok(parsed)
}

/// What a rule is about when it fires: a map, or a side (offline rules).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "name")]
pub enum AlertSubject {
    /// A map.
    Map(String),
    /// A side.
    Side(String),
}

/// A map as the evaluator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MapObservation {
    /// The map.
    pub map: String,
    /// The names of its two sides.
    pub sides: [String; 2],
    /// Changes in its queue.
    pub queue_depth: u64,
    /// Age of its oldest queued change.
    pub lag: Duration,
}

/// A rule firing or clearing.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// The rule's name.
    pub rule: String,
    /// What it is about.
    pub subject: AlertSubject,
    /// The maps its actions apply to.
    pub maps: Vec<String>,
    /// `true` when it fires, `false` when it clears.
    pub firing: bool,
    /// The observed value (errors counted, changes queued, seconds).
    pub value: f64,
    /// A line for humans.
    pub message: String,
    /// The rule's actions (run when it fires).
    pub actions: Vec<AlertAction>,
}

/// A rule firing now, for the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiringAlert {
    /// The rule.
    pub rule: String,
    /// What it is about.
    pub subject: AlertSubject,
    /// Since when (RFC 3339).
    pub since: String,
    /// A line for humans.
    pub message: String,
}

/// The rules and which of them fire.
#[derive(Debug, Default)]
pub struct AlertEvaluator {
    rules: BTreeMap<String, CheckedRule>,
    firing: BTreeMap<(String, AlertSubject), FiringAlert>,
}

impl AlertEvaluator {
    /// An evaluator with `rules`.
    pub fn new(rules: Vec<CheckedRule>) -> AlertEvaluator {
        AlertEvaluator {
            rules: rules
                .into_iter()
                .map(|rule| (rule.rule.name.clone(), rule))
                .collect(),
            firing: BTreeMap::new(),
        }
    }

    /// The rules, by name.
    pub fn rules(&self) -> Vec<AlertRule> {
        self.rules.values().map(|rule| rule.rule.clone()).collect()
    }

    /// Adds or replaces a rule; a replaced rule's firing state is cleared silently.
    pub fn upsert(&mut self, rule: CheckedRule) {
        let name = rule.rule.name.clone();
        self.firing.retain(|(rule, _), _| *rule != name);
        self.rules.insert(name, rule);
    }

    /// Removes a rule; whether it existed.
    pub fn remove(&mut self, name: &str) -> bool {
        self.firing.retain(|(rule, _), _| rule != name);
        self.rules.remove(name).is_some()
    }

    /// The alerts firing now.
    pub fn firing(&self) -> Vec<FiringAlert> {
        self.firing.values().cloned().collect()
    }

    /// Evaluates every rule against `maps` (the running maps) and `offline` sides (name
    /// and how long), counting errors in `store`'s activity log. Returns the rules
    /// that started or stopped firing.
    pub fn evaluate(
        &mut self,
        store: &dyn StateStore,
        maps: &[MapObservation],
        offline: &[(String, Duration)],
        now: DateTime<Utc>,
    ) -> Result<Vec<AlertEvent>, StateError> {
        let mut events = Vec::new();
        for rule in self.rules.values() {
            let watched: Vec<&MapObservation> = maps
                .iter()
                .filter(|map| rule.rule.map.as_ref().is_none_or(|name| *name == map.map))
                .collect();
            // (subject, maps acted on, observed value, breached, message)
            let mut observations: Vec<(AlertSubject, Vec<String>, f64, bool, String)> = Vec::new();
            match rule.condition {
                AlertCondition::Errors {
                    class,
                    count,
                    window,
                } => {
                    let since = now - chrono::Duration::from_std(window).unwrap_or_default();
                    for map in &watched {
                        let seen = count_errors(store, &map.map, class, since, count)?;
                        observations.push((
                            AlertSubject::Map(map.map.clone()),
                            vec![map.map.clone()],
                            seen as f64,
                            seen >= count,
                            format!(
                                "map {}: {seen} {} error(s) within {} (threshold {count})",
                                map.map,
                                class.map_or("", ErrorClass::as_str),
                                humantime::format_duration(window)
                            ),
                        ));
                    }
                }
                AlertCondition::QueueDepth(threshold) => {
                    for map in &watched {
                        observations.push((
                            AlertSubject::Map(map.map.clone()),
                            vec![map.map.clone()],
                            map.queue_depth as f64,
                            map.queue_depth >= threshold,
                            format!(
                                "map {}: {} change(s) queued (threshold {threshold})",
                                map.map, map.queue_depth
                            ),
                        ));
                    }
                }
                AlertCondition::Lag(threshold) => {
                    for map in &watched {
                        observations.push((
                            AlertSubject::Map(map.map.clone()),
                            vec![map.map.clone()],
                            map.lag.as_secs_f64(),
                            map.lag >= threshold,
                            format!(
                                "map {}: {:.0} s behind (threshold {} s)",
                                map.map,
                                map.lag.as_secs_f64(),
                                threshold.as_secs()
                            ),
                        ));
                    }
                }
                AlertCondition::Offline(threshold) => {
                    let sides: BTreeSet<&String> =
                        watched.iter().flat_map(|map| map.sides.iter()).collect();
                    for side in sides {
                        let down = offline
                            .iter()
                            .find(|(name, _)| name == side)
                            .map(|(_, duration)| *duration);
                        let affected = watched
                            .iter()
                            .filter(|map| map.sides.contains(side))
                            .map(|map| map.map.clone())
                            .collect();
                        observations.push((
                            AlertSubject::Side(side.clone()),
                            affected,
                            down.unwrap_or_default().as_secs_f64(),
                            down.is_some_and(|down| down > threshold),
                            format!(
                                "side {side}: offline for {} s (threshold {} s)",
                                down.unwrap_or_default().as_secs(),
                                threshold.as_secs()
                            ),
                        ));
                    }
                }
            }
            for (subject, affected, value, breached, message) in observations {
                let key = (rule.rule.name.clone(), subject.clone());
                let was_firing = self.firing.contains_key(&key);
                if breached == was_firing {
                    continue;
                }
                if breached {
                    self.firing.insert(
                        key,
                        FiringAlert {
                            rule: rule.rule.name.clone(),
                            subject: subject.clone(),
                            since: now.to_rfc3339(),
                            message: message.clone(),
                        },
                    );
                } else {
                    self.firing.remove(&key);
                }
                events.push(AlertEvent {
                    rule: rule.rule.name.clone(),
                    subject,
                    maps: affected,
                    firing: breached,
                    value,
                    message,
                    actions: rule.actions.clone(),
                });
            }
        }
        Ok(events)
    }
}

/// Errors of `map` (of `class`, if given) recorded since `since`, counting up to
/// `enough` plus one page at most.
fn count_errors(
    store: &dyn StateStore,
    map: &str,
    class: Option<ErrorClass>,
    since: DateTime<Utc>,
    enough: u64,
) -> Result<u64, StateError> {
    let mut counted = 0;
    let mut after_id = 0;
    loop {
        let page = store.activity(&ActivityQuery {
            map: Some(map.to_owned()),
            kind: Some(ActivityKind::Error),
            since: Some(since),
            after_id,
            limit: 1_000,
            ..ActivityQuery::default()
        })?;
        let Some(last) = page.last() else {
            return Ok(counted);
        };
        after_id = last.id;
        counted += page
            .iter()
            .filter(|record| {
                class.is_none_or(|class| {
                    record
                        .entry
                        .detail
                        .as_ref()
                        .and_then(|detail| detail.get("class"))
                        .and_then(|value| value.as_str())
                        == Some(class.as_str())
                })
            })
            .count() as u64;
        if counted >= enough || page.len() < 1_000 {
            return Ok(counted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Result<CheckedRule, String> {
        let rule: AlertRule = toml::from_str(text).map_err(|error| error.to_string())?;
        rule.check()
    }

    #[test]
    fn dual_writes_example_is_expressible() {
        let checked = rule(
            r#"name = "app-errors"
               when = "errors"
               class = "plugin-rejected"
               count = 10
               window = "15m"
               actions = ["pause", "notify"]"#,
        )
        .expect("valid rule");
        assert_eq!(
            checked.condition,
            AlertCondition::Errors {
                class: Some(ErrorClass::PluginRejected),
                count: 10,
                window: Duration::from_secs(15 * 60),
            }
        );
        assert_eq!(checked.actions, [AlertAction::Notify, AlertAction::Pause]);
    }

    #[test]
    fn bad_rules_name_the_field() {
        for (text, expected) in [
            (
                r#"name = "a"
                   when = "errors"
                   count = 3
                   window = "soon"
                   actions = ["notify"]"#,
                "window:",
            ),
            (
                r#"name = "a"
                   when = "queue-depth"
                   count = 3
                   actions = ["notify"]"#,
                "count: not a setting of a `queue-depth` rule",
            ),
            (
                r#"name = "a"
                   when = "lag"
                   threshold = 3
                   actions = ["page"]"#,
                "actions: unknown action \"page\"",
            ),
            (
                r#"name = "a"
                   when = "errors"
                   class = "boom"
                   count = 1
                   window = "1m"
                   actions = ["notify"]"#,
                "class: unknown error class \"boom\"",
            ),
            (
                r#"name = "a b"
                   when = "lag"
                   threshold = 3
                   actions = ["notify"]"#,
                "name:",
            ),
            (
                r#"name = "a"
                   when = "sometimes"
                   actions = ["notify"]"#,
                "when: unknown condition",
            ),
        ] {
            let error = rule(text).expect_err(text);
            assert!(error.starts_with(expected), "{error:?} for {text}");
        }
    }

    #[test]
    fn fires_once_and_clears_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::state::SqliteStateStore::open(dir.path()).expect("store");
        let queue_rule = rule(
            r#"name = "deep"
               when = "queue-depth"
               threshold = 5
               actions = ["notify"]"#,
        )
        .expect("valid");
        let mut evaluator = AlertEvaluator::new(vec![queue_rule]);
        let observe = |depth| MapObservation {
            map: "m".to_owned(),
            sides: ["erp".to_owned(), "crm".to_owned()],
            queue_depth: depth,
            lag: Duration::ZERO,
        };
        let now = Utc::now();
        let events = evaluator
            .evaluate(&store, &[observe(4)], &[], now)
            .expect("evaluate");
        assert!(events.is_empty());
        let events = evaluator
            .evaluate(&store, &[observe(5)], &[], now)
            .expect("evaluate");
        assert_eq!(events.len(), 1);
        assert!(events[0].firing);
        assert_eq!(events[0].maps, ["m"]);
        assert_eq!(evaluator.firing().len(), 1);
        let events = evaluator
            .evaluate(&store, &[observe(9)], &[], now)
            .expect("evaluate");
        assert!(events.is_empty(), "already firing: {events:?}");
        let events = evaluator
            .evaluate(&store, &[observe(0)], &[], now)
            .expect("evaluate");
        assert_eq!(events.len(), 1);
        assert!(!events[0].firing);
        assert!(evaluator.firing().is_empty());
    }

    #[test]
    fn offline_rules_watch_sides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::state::SqliteStateStore::open(dir.path()).expect("store");
        let offline_rule = rule(
            r#"name = "down"
               when = "offline"
               longer_than = "30s"
               actions = ["stop"]"#,
        )
        .expect("valid");
        let mut evaluator = AlertEvaluator::new(vec![offline_rule]);
        let map = MapObservation {
            map: "m".to_owned(),
            sides: ["erp".to_owned(), "crm".to_owned()],
            queue_depth: 0,
            lag: Duration::ZERO,
        };
        let short = [("crm".to_owned(), Duration::from_secs(10))];
        assert!(
            evaluator
                .evaluate(&store, std::slice::from_ref(&map), &short, Utc::now())
                .expect("evaluate")
                .is_empty()
        );
        let long = [("crm".to_owned(), Duration::from_secs(31))];
        let events = evaluator
            .evaluate(&store, std::slice::from_ref(&map), &long, Utc::now())
            .expect("evaluate");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].subject, AlertSubject::Side("crm".to_owned()));
        assert_eq!(events[0].actions, [AlertAction::Stop]);
    }
}
