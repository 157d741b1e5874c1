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
//! activity_every_change = true       # default: an entry per change (applied, filtered, echo, no-op)
//! record_changes = true              # default: keep captured changes for `dualwrite record`
//! record_max_entries = 1000000       # default: the newest million (activity_max_age applies too)
//!
//! [alerts.app-errors]                # dual-write's example: 10 errors in 15 minutes
//! when = "errors"
//! count = 10
//! window = "15m"
//! actions = ["pause", "notify"]
//!
//! [subscribers.ops]
//! url = "https://ops.example.com/dualwrite"  # https:// (system roots) or http://
//! secret_env = "OPS_WEBHOOK_SECRET"  # the HMAC key; the variable must be set
//! events = ["alert.fired"]           # optional; all events when left out
//! ca_file = "ops-ca.pem"             # optional: also trust this CA (PEM) for this receiver
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
    /// Whether every change gets an activity entry (applied, filtered, echo, no-op);
    /// conflicts, errors and state changes are always recorded.
    pub activity_every_change: bool,
    /// Whether captured changes are kept for export as a change set.
    pub record_changes: bool,
    /// At most this many recorded changes are kept.
    pub record_max_entries: u64,
}

/// The default of `record_max_entries`.
pub const DEFAULT_RECORD_MAX_ENTRIES: u64 = 1_000_000;

impl Default for AdminPlan {
    fn default() -> Self {
        AdminPlan {
            enabled: true,
            listen: DEFAULT_ADMIN_LISTEN.parse().expect("a valid address"),
            token: None,
            activity_max_age: None,
            activity_max_entries: None,
            activity_every_change: true,
            record_changes: true,
            record_max_entries: DEFAULT_RECORD_MAX_ENTRIES,
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
    /// Extra CA certificates (PEM) trusted for this receiver, read from `ca_file`.
    pub ca_pem: Option<String>,
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
    activity_every_change: Option<bool>,
    record_changes: Option<bool>,
    record_max_entries: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriberFile {
    url: String,
    secret_env: String,
    #[serde(default)]
    events: Vec<String>,
    ca_file: Option<std::path::PathBuf>,
}

/// The events a subscriber may ask for.
pub const EVENTS: &[&str] = &["alert.fired", "alert.cleared"];

/// Takes `admin`, `alerts` and `subscribers` out of `root` and reads them; problems go
/// to `errors`. Which maps the rules name is checked by [`check_alert_maps`].
pub(super) fn read<'t>(
    document: &Document<'t>,
    root: &mut DeTable<'t>,
    base_dir: &std::path::Path,
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
                    plan.admin.activity_every_change = file.activity_every_change.unwrap_or(true);
                    plan.admin.record_changes = file.record_changes.unwrap_or(true);
                    match file.record_max_entries {
                        Some(0) => errors.push(document.error(
                            "admin.record_max_entries",
                            "must be at least 1 (set record_changes = false to record nothing)",
                        )),
                        Some(entries) => plan.admin.record_max_entries = entries,
                        None => {}
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
        let mut ca_pem = None;
        if let Some(ca_file) = &file.ca_file {
            let ca_path = base_dir.join(ca_file);
            match std::fs::read_to_string(&ca_path)
                .map_err(|error| error.to_string())
                .and_then(|pem| crate::notify::check_ca_pem(&pem).map(|()| pem))
            {
                Ok(pem) => ca_pem = Some(pem),
                Err(problem) => {
                    errors.push(document.error(
                        &join(&path, "ca_file"),
                        format!("{}: {problem}", ca_path.display()),
                    ));
                    ok = false;
                }
            }
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
                ca_pem,
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
