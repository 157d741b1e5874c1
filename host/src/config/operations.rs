//! The operations sections of the file: `[admin]` (the admin HTTP API), `[alerts.NAME]`
//! (alert rules, see [`crate::alerts`]) and `[subscribers.NAME]` (webhook receivers).
//!
//! ```toml
//! [admin]
//! listen = "127.0.0.1:7480"          # default; a non-loopback address must be written out
//! token_env = "DUALWRITE_ADMIN_TOKEN" # optional; without it a token is generated at start
//! enabled = true                     # default
//! activity_max_age = "30d"           # retention: drop older activity entries (default: keep)
//! activity_max_entries = 5000000     # retention: keep at most this many (default: all)
//!
//! [alerts.app-errors]                # dual-write's example: 10 errors in 15 minutes
//! when = "errors"
//! count = 10
//! window = "15m"
//! actions = ["pause", "notify"]
//!
//! [subscribers.ops]
//! url = "http://127.0.0.1:9000/dualwrite"
//! secret_env = "OPS_WEBHOOK_SECRET"  # the HMAC key; the variable must be set
//! events = ["alert.fired"]           # optional; all events when left out
//! ```

use std::net::SocketAddr;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use super::document::{Document, join, take_sections};
use super::error::ConfigError;
use super::plan::SecretEnv;
use crate::alerts::AlertRule;

/// The default admin API address: loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7480";

/// How the admin API is served.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminPlan {
    /// Whether `dualwrite run` serves it.
    pub enabled: bool,
    /// The address it binds.
    pub listen: SocketAddr,
    /// Where the bearer token comes from; generated at start when `None`.
    pub token: Option<SecretEnv>,
    /// Activity entries older than this are pruned; `None` keeps them.
    pub activity_max_age: Option<std::time::Duration>,
    /// At most this many activity entries are kept; `None` keeps all.
    pub activity_max_entries: Option<u64>,
}

impl Default for AdminPlan {
    fn default() -> Self {
        AdminPlan {
            enabled: true,
            listen: DEFAULT_ADMIN_LISTEN.parse().expect("a valid address"),
            token: None,
            activity_max_age: None,
            activity_max_entries: None,
        }
    }
}

/// A webhook subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberPlan {
    /// Its name.
    pub name: String,
    /// Where events are posted.
    pub url: String,
    /// The variable holding its signing secret.
    pub secret: SecretEnv,
    /// The events it wants; all when empty.
    pub events: Vec<String>,
}

/// The operations settings of a plan.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OperationsPlan {
    /// The admin API.
    pub admin: AdminPlan,
    /// Alert rules (checked), in file order.
    pub alerts: Vec<AlertRule>,
    /// Webhook subscribers, in file order.
    pub subscribers: Vec<SubscriberPlan>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    enabled: Option<bool>,
    listen: Option<String>,
    token_env: Option<String>,
    activity_max_age: Option<String>,
    activity_max_entries: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriberFile {
    url: String,
    secret_env: String,
    #[serde(default)]
    events: Vec<String>,
}

/// The events a subscriber may ask for.
pub const EVENTS: &[&str] = &["alert.fired", "alert.cleared"];

/// Takes `admin`, `alerts` and `subscribers` out of `root` and reads them; problems go
/// to `errors`. Which maps the rules name is checked by [`check_alert_maps`].
pub(super) fn read<'t>(
    document: &Document<'t>,
    root: &mut DeTable<'t>,
    env_is_set: &dyn Fn(&str) -> bool,
    errors: &mut Vec<ConfigError>,
) -> OperationsPlan {
    let mut plan = OperationsPlan::default();
    if let Some(admin) = root.remove("admin") {
        let span = admin.span();
        match admin.into_inner() {
            DeValue::Table(table) => {
                if let Ok(file) = document
                    .section::<AdminFile>(toml::Spanned::new(span, table), "admin")
                    .map_err(|error| errors.push(error))
                {
                    plan.admin.enabled = file.enabled.unwrap_or(true);
                    if let Some(listen) = file.listen {
                        match listen.parse::<SocketAddr>() {
                            Ok(address) => plan.admin.listen = address,
                            Err(_) => errors.push(document.error(
                                "admin.listen",
                                format!(
                                    "{listen:?} is not an address and port like \
                                     \"{DEFAULT_ADMIN_LISTEN}\""
                                ),
                            )),
                        }
                    }
                    if let Some(age) = file.activity_max_age {
                        match humantime::parse_duration(&age) {
                            Ok(age) if !age.is_zero() => plan.admin.activity_max_age = Some(age),
                            _ => errors.push(document.error(
                                "admin.activity_max_age",
                                format!("{age:?} is not a duration like \"30d\" or \"12h\""),
                            )),
                        }
                    }
                    match file.activity_max_entries {
                        Some(0) => errors.push(document.error(
                            "admin.activity_max_entries",
                            "must be at least 1 (leave it out to keep everything)",
                        )),
                        entries => plan.admin.activity_max_entries = entries,
                    }
                    if let Some(var) = file.token_env {
                        if env_is_set(&var) {
                            plan.admin.token = Some(SecretEnv { var });
                        } else {
                            errors.push(document.error(
                                "admin.token_env",
                                format!("the environment variable {var} is not set"),
                            ));
                        }
                    }
                }
            }
            other => errors.push(document.error(
                "admin",
                format!("expected a table ([admin]), found {}", other.type_str()),
            )),
        }
    }
    for section in take_sections(
        document,
        root,
        "alerts",
        "one [alerts.NAME] table per rule",
        errors,
    )
    .unwrap_or_default()
    {
        let path = join("alerts", &section.name);
        let Some(table) = section.table else { continue };
        let Ok(mut rule) = document
            .section::<AlertRule>(table, &path)
            .map_err(|error| errors.push(error))
        else {
            continue;
        };
        if !rule.name.is_empty() {
            errors.push(document.error(
                &join(&path, "name"),
                "the rule's name is its key ([alerts.NAME]); leave `name` out",
            ));
            continue;
        }
        rule.name = section.name.clone();
        match rule.check() {
            Ok(_) => plan.alerts.push(rule),
            Err(message) => {
                // The message starts with the field it is about.
                let field = message.split(':').next().unwrap_or_default();
                let at = if field.contains(' ') {
                    path.clone()
                } else {
                    join(&path, field)
                };
                errors.push(document.error(&at, message));
            }
        }
    }
    for section in take_sections(
        document,
        root,
        "subscribers",
        "one [subscribers.NAME] table per webhook receiver",
        errors,
    )
    .unwrap_or_default()
    {
        let path = join("subscribers", &section.name);
        let Some(table) = section.table else { continue };
        let Ok(file) = document
            .section::<SubscriberFile>(table, &path)
            .map_err(|error| errors.push(error))
        else {
            continue;
        };
        let mut ok = true;
        if let Err(message) = crate::notify::check_url(&file.url) {
            errors.push(document.error(&join(&path, "url"), message));
            ok = false;
        }
        if !env_is_set(&file.secret_env) {
            errors.push(document.error(
                &join(&path, "secret_env"),
                format!("the environment variable {} is not set", file.secret_env),
            ));
            ok = false;
        }
        for (index, event) in file.events.iter().enumerate() {
            if !EVENTS.contains(&event.as_str()) {
                errors.push(document.error(
                    &format!("{path}.events[{index}]"),
                    format!("unknown event {event:?} ({})", EVENTS.join(", ")),
                ));
                ok = false;
            }
        }
        if ok {
            plan.subscribers.push(SubscriberPlan {
                name: section.name,
                url: file.url,
                secret: SecretEnv {
                    var: file.secret_env,
                },
                events: file.events,
            });
        }
    }
    plan
}

/// Reports alert rules naming a map the file does not have.
pub(super) fn check_alert_maps(
    document: &Document<'_>,
    plan: &OperationsPlan,
    map_names: &[String],
    errors: &mut Vec<ConfigError>,
) {
    for rule in &plan.alerts {
        if let Some(map) = &rule.map
            && !map_names.contains(map)
        {
            errors.push(document.error(
                &format!("{}.map", join("alerts", &rule.name)),
                format!("unknown map {map:?} (maps: {})", map_names.join(", ")),
            ));
        }
    }
}
