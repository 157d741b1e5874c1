//! The admin commands (`maps`, `pause`, `resume`, `errors`, `retry`, `skip`,
//! `activity`, `history`, `alerts`, ...): clients of a running engine's admin API.
//!
//! The server and token come from `--url`/`--token` or `DUALWRITE_URL`/`DUALWRITE_TOKEN`.
//! Answers are human-readable tables by default and the API's JSON with `--json`. When
//! the engine is not running, or the token is wrong, the message says so and what to do.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value as Json, json};

/// Where the admin API is and how to authenticate.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// The admin API's base URL.
    #[arg(long, env = "DUALWRITE_URL", default_value = "http://127.0.0.1:7480")]
    url: String,
    /// The admin bearer token (printed by `dualwrite run` when it generates one).
    #[arg(long, env = "DUALWRITE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// An admin command.
#[derive(Debug, Subcommand)]
pub(super) enum AdminCommand {
    /// List the maps with state, queue, errors, lag and counters.
    Maps {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pause a map: capture goes on, its changes queue in order.
    Pause {
        #[command(flatten)]
        client: ClientArgs,
        /// The map.
        map: String,
    },
    /// Resume a paused map.
    Resume {
        #[command(flatten)]
        client: ClientArgs,
        /// The map.
        map: String,
        /// What to do with the queued changes: catch-up (apply them in order), skip (go
        /// live; they become retryable errors) or discard (drop them, recorded).
        #[arg(long, default_value = "catch-up")]
        mode: String,
    },
    /// Stop a map.
    Stop {
        #[command(flatten)]
        client: ClientArgs,
        /// The map.
        map: String,
    },
    /// Start a stopped map. When maps it depends on are not running, says which and
    /// (at a terminal) offers to start them first.
    Play {
        #[command(flatten)]
        client: ClientArgs,
        /// The map.
        map: String,
        /// Start the stopped maps it depends on first, without asking.
        #[arg(long)]
        with_dependencies: bool,
    },
    /// Run a map's initial sync (a merge of both sides).
    InitialSync {
        #[command(flatten)]
        client: ClientArgs,
        /// The map.
        map: String,
    },
    /// Set what a map does on an error: block (pause, keep strict order) or continue.
    ErrorMode {
        #[command(flatten)]
        client: ClientArgs,
        /// The map.
        map: String,
        /// block or continue.
        mode: String,
    },
    /// List a map's error queue.
    Errors {
        #[command(flatten)]
        client: ClientArgs,
        /// The map.
        map: String,
        /// Only this class.
        #[arg(long)]
        class: Option<String>,
        /// Resolved errors too.
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Retry one error now, or every open error of a map.
    Retry {
        #[command(flatten)]
        client: ClientArgs,
        /// The error's id.
        #[arg(required_unless_present = "map")]
        id: Option<u64>,
        /// Retry every open error of this map.
        #[arg(long, conflicts_with = "id")]
        map: Option<String>,
    },
    /// Skip an error: its change will not be synced (recorded with who and why).
    Skip {
        #[command(flatten)]
        client: ClientArgs,
        /// The error's id.
        id: u64,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Resolve a parked conflict: the row of --side wins (after writing --merged values
    /// to it, if given).
    Resolve {
        #[command(flatten)]
        client: ClientArgs,
        /// The error's id.
        id: u64,
        /// The side whose row wins: erp or crm.
        #[arg(long)]
        side: String,
        /// Merged values as a JSON object of that side's columns, like '{"NAME": "x"}'.
        #[arg(long)]
        merged: Option<String>,
    },
    /// Query the activity log.
    Activity {
        #[command(flatten)]
        client: ClientArgs,
        /// Only this map's.
        #[arg(long)]
        map: Option<String>,
        /// Only this kind (applied, filtered, echo, no-op, conflict, error, ...).
        #[arg(long)]
        kind: Option<String>,
        /// Since: an RFC 3339 time or a duration back from now (15m, 2h).
        #[arg(long)]
        since: Option<String>,
        /// Until: an RFC 3339 time or a duration back from now.
        #[arg(long)]
        until: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Export as jsonl or csv (printed as the API sends it).
        #[arg(long)]
        format: Option<String>,
    },
    /// A row's history across both sides (lineage).
    History {
        #[command(flatten)]
        client: ClientArgs,
        /// The map.
        map: String,
        /// The side the key is on: erp or crm.
        #[arg(long)]
        side: String,
        /// The key's values as a JSON array, like '["USMF","C-1"]'.
        #[arg(long)]
        key: String,
    },
    /// Export a map's captured changes over a time range as a change set, to replay
    /// against a new plugin version with `dualwrite replay`.
    Record {
        #[command(flatten)]
        client: ClientArgs,
        /// The map.
        #[arg(long)]
        map: String,
        /// Since: an RFC 3339 time or a duration back from now (15m, 2h); all recorded
        /// changes when left out.
        #[arg(long)]
        since: Option<String>,
        /// Until: an RFC 3339 time or a duration back from now.
        #[arg(long)]
        until: Option<String>,
        /// Write the change set here (standard output when left out).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
    /// Alert rules: list (default), add, delete.
    Alerts {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: Option<AlertsAction>,
    },
}

/// What `dualwrite alerts` does.
#[derive(Debug, Subcommand)]
pub(super) enum AlertsAction {
    /// Add (or with --replace, replace) a rule.
    Add {
        /// The rule's name.
        name: String,
        /// What it watches: errors, queue-depth, lag, offline.
        #[arg(long)]
        when: String,
        /// The map; every map when left out.
        #[arg(long)]
        map: Option<String>,
        /// errors: only this class.
        #[arg(long)]
        class: Option<String>,
        /// errors: how many within the window.
        #[arg(long)]
        count: Option<u64>,
        /// errors: the window, like 15m.
        #[arg(long)]
        window: Option<String>,
        /// queue-depth: changes; lag: seconds.
        #[arg(long)]
        threshold: Option<u64>,
        /// offline: how long, like 5m.
        #[arg(long)]
        longer_than: Option<String>,
        /// What to do: notify, pause, stop (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        actions: Vec<String>,
        /// Replace a rule of that name.
        #[arg(long)]
        replace: bool,
    },
    /// Delete a rule.
    Delete {
        /// The rule's name.
        name: String,
    },
}

impl AdminCommand {
    fn client(&self) -> &ClientArgs {
        match self {
            AdminCommand::Maps { client }
            | AdminCommand::Pause { client, .. }
            | AdminCommand::Resume { client, .. }
            | AdminCommand::Stop { client, .. }
            | AdminCommand::Play { client, .. }
            | AdminCommand::InitialSync { client, .. }
            | AdminCommand::ErrorMode { client, .. }
            | AdminCommand::Errors { client, .. }
            | AdminCommand::Retry { client, .. }
            | AdminCommand::Skip { client, .. }
            | AdminCommand::Resolve { client, .. }
            | AdminCommand::Activity { client, .. }
            | AdminCommand::History { client, .. }
            | AdminCommand::Record { client, .. }
            | AdminCommand::Alerts { client, .. } => client,
        }
    }
}

struct Api {
    client: Client,
    url: String,
    token: Option<String>,
}

impl Api {
    fn new(args: &ClientArgs) -> anyhow::Result<Api> {
        Ok(Api {
            client: Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()?,
            url: args.url.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
        })
    }

    fn request(&self, builder: RequestBuilder) -> anyhow::Result<reqwest::blocking::Response> {
        let mut builder = builder.header("X-Dualwrite-Actor", actor());
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        let response = builder.send().map_err(|error| {
            if error.is_connect() || error.is_timeout() {
                anyhow::anyhow!(
                    "cannot reach the admin API at {}: is the engine running (`dualwrite run -c \
                     FILE`)? Set --url or DUALWRITE_URL if it listens elsewhere. ({})",
                    self.url,
                    error.without_url()
                )
            } else {
                anyhow::anyhow!(
                    "calling the admin API at {}: {}",
                    self.url,
                    error.without_url()
                )
            }
        })?;
        match response.status() {
            StatusCode::UNAUTHORIZED => bail!(
                "the admin API refused the token{}: set --token or DUALWRITE_TOKEN to the token \
                 `dualwrite run` printed (or the one in its [admin] token_env variable)",
                if self.token.is_none() {
                    " (none was given)"
                } else {
                    ""
                }
            ),
            status if !status.is_success() => {
                let text = response.text().unwrap_or_default();
                let message = serde_json::from_str::<Json>(&text)
                    .ok()
                    .and_then(|body| body.get("error").and_then(Json::as_str).map(str::to_owned))
                    .unwrap_or(text);
                bail!("{message} (HTTP {})", status.as_u16())
            }
            _ => Ok(response),
        }
    }

    fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Json> {
        let response = self.request(self.client.get(format!("{}{path}", self.url)).query(query))?;
        response.json().context("reading the admin API's answer")
    }

    fn text(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<String> {
        let response = self.request(self.client.get(format!("{}{path}", self.url)).query(query))?;
        response.text().context("reading the admin API's answer")
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Json>,
    ) -> anyhow::Result<Json> {
        let mut builder = self.client.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        self.request(builder)?
            .json()
            .context("reading the admin API's answer")
    }

    fn post(&self, path: &str, body: Option<Json>) -> anyhow::Result<Json> {
        self.send(reqwest::Method::POST, path, body)
    }
}

/// A GET of the admin API answered with bytes (a solution bundle).
pub(super) fn api_get_bytes(
    args: &ClientArgs,
    path: &str,
    query: &[(&str, String)],
) -> anyhow::Result<Vec<u8>> {
    let api = Api::new(args)?;
    let response = api.request(api.client.get(format!("{}{path}", api.url)).query(query))?;
    Ok(response
        .bytes()
        .context("reading the admin API's answer")?
        .to_vec())
}

/// A POST of `body` bytes (a solution bundle) to the admin API, answered with JSON.
pub(super) fn api_post_bytes(
    args: &ClientArgs,
    path: &str,
    query: &[(&str, String)],
    body: Vec<u8>,
) -> anyhow::Result<Json> {
    let api = Api::new(args)?;
    let builder = api
        .client
        .post(format!("{}{path}", api.url))
        .query(query)
        .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
        .body(body);
    api.request(builder)?
        .json()
        .context("reading the admin API's answer")
}

/// A POST with no body to the admin API, answered with JSON.
pub(super) fn api_post(args: &ClientArgs, path: &str) -> anyhow::Result<Json> {
    Api::new(args)?.post(path, None)
}

impl ClientArgs {
    /// Whether answers are printed as JSON.
    pub(super) fn json(&self) -> bool {
        self.json
    }
}

fn actor() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .map(|user| format!("cli:{user}"))
        .unwrap_or_else(|_| "cli".to_owned())
}

pub(super) fn segment(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.~".contains(c) {
                c.to_string()
            } else {
                format!("%{:02X}", c as u32)
            }
        })
        .collect()
}

/// Runs an admin command.
pub(super) fn run(command: &AdminCommand) -> anyhow::Result<ExitCode> {
    let args = command.client();
    let api = Api::new(args)?;
    let print = |value: &Json, table: &dyn Fn(&Json) -> String| {
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            print!("{}", table(value));
        }
    };
    match command {
        AdminCommand::Record {
            map,
            since,
            until,
            output,
            ..
        } => {
            let written = record(&api, map, since.as_deref(), until.as_deref(), output)?;
            if let Some(path) = output {
                eprintln!(
                    "{map}: {written} change(s) written to {} (replay them: dualwrite replay --plugin FILE --changes {})",
                    path.display(),
                    path.display()
                );
            }
        }
        AdminCommand::Maps { .. } => {
            let maps = api.get("/api/v1/maps", &[])?;
            print(&maps, &maps_table);
        }
        AdminCommand::Pause { map, .. } => {
            let answer = api.post(&format!("/api/v1/maps/{}/pause", segment(map)), None)?;
            print(&answer, &|_| format!("{map}: paused\n"));
        }
        AdminCommand::Resume { map, mode, .. } => {
            let answer = api.post(
                &format!("/api/v1/maps/{}/resume", segment(map)),
                Some(json!({"mode": mode})),
            )?;
            print(&answer, &|_| format!("{map}: resumed ({mode})\n"));
        }
        AdminCommand::Stop { map, .. } => {
            let answer = api.post(&format!("/api/v1/maps/{}/stop", segment(map)), None)?;
            print(&answer, &|_| format!("{map}: stopped\n"));
        }
        AdminCommand::Play {
            map,
            with_dependencies,
            ..
        } => {
            let path = format!("/api/v1/maps/{}/play", segment(map));
            let answer =
                match api.post(&path, Some(json!({"with_dependencies": with_dependencies}))) {
                    // Dependencies not running: offer to start them at a terminal.
                    Err(error)
                        if !with_dependencies
                            && error.to_string().contains("with its dependencies")
                            && std::io::IsTerminal::is_terminal(&std::io::stdin()) =>
                    {
                        eprintln!("{error}");
                        eprint!("Start them first, then {map}? [y/N] ");
                        let mut reply = String::new();
                        std::io::stdin().read_line(&mut reply)?;
                        if !reply.trim().eq_ignore_ascii_case("y") {
                            bail!("{map} not started");
                        }
                        api.post(&path, Some(json!({"with_dependencies": true})))?
                    }
                    other => other?,
                };
            print(&answer, &|answer| {
                let started: Vec<&str> = answer["started"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Json::as_str)
                    .collect();
                format!("running: {}\n", started.join(", "))
            });
        }
        AdminCommand::InitialSync { map, .. } => {
            let answer = api.post(&format!("/api/v1/maps/{}/initial-sync", segment(map)), None)?;
            print(&answer, &|_| {
                format!("{map}: initial sync started (progress: dualwrite maps)\n")
            });
        }
        AdminCommand::ErrorMode { map, mode, .. } => {
            let answer = api.send(
                reqwest::Method::PUT,
                &format!("/api/v1/maps/{}/error-mode", segment(map)),
                Some(json!({"mode": mode})),
            )?;
            print(&answer, &|_| format!("{map}: error mode {mode}\n"));
        }
        AdminCommand::Errors {
            map,
            class,
            all,
            limit,
            ..
        } => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(class) = class {
                query.push(("class", class.clone()));
            }
            if *all {
                query.push(("include_resolved", "true".to_owned()));
            }
            let errors = api.get(&format!("/api/v1/maps/{}/errors", segment(map)), &query)?;
            print(&errors, &errors_table);
        }
        AdminCommand::Retry { id, map, .. } => {
            let answer = match (id, map) {
                (Some(id), _) => api.post(&format!("/api/v1/errors/{id}/retry"), None)?,
                (None, Some(map)) => {
                    api.post(&format!("/api/v1/maps/{}/errors/retry", segment(map)), None)?
                }
                (None, None) => bail!("give an error id or --map MAP"),
            };
            print(&answer, &|answer| match id {
                Some(id) if answer["applied"] == json!(true) => format!("error {id}: applied\n"),
                Some(id) => format!(
                    "error {id}: not applied{}\n",
                    answer["error"]
                        .as_str()
                        .map(|error| format!(": {error}"))
                        .unwrap_or_default()
                ),
                None => format!(
                    "{} retried, {} applied, {} still open\n",
                    answer["retried"], answer["applied"], answer["still_open"]
                ),
            });
        }
        AdminCommand::Skip { id, reason, .. } => {
            let answer = api.post(
                &format!("/api/v1/errors/{id}/skip"),
                Some(json!({"reason": reason})),
            )?;
            print(&answer, &|_| format!("error {id}: skipped\n"));
        }
        AdminCommand::Resolve {
            id, side, merged, ..
        } => {
            let mut request = json!({"side": side});
            if let Some(merged) = merged {
                request["merged"] = serde_json::from_str(merged)
                    .context("--merged: not a JSON object of column: value")?;
            }
            let answer = api.post(&format!("/api/v1/errors/{id}/resolve"), Some(request))?;
            print(&answer, &|answer| {
                if answer["resolved"] == json!(true) {
                    format!("error {id}: resolved, the {side} side's row wins\n")
                } else {
                    format!("error {id}: not resolved: {}\n", cell(&answer["error"]))
                }
            });
        }
        AdminCommand::Activity {
            map,
            kind,
            since,
            until,
            limit,
            format,
            ..
        } => {
            let mut query = vec![("limit", limit.to_string())];
            for (name, value) in [
                ("map", map),
                ("kind", kind),
                ("since", since),
                ("until", until),
            ] {
                if let Some(value) = value {
                    query.push((name, value.clone()));
                }
            }
            match format.as_deref() {
                Some(format) => {
                    query.push(("format", format.to_owned()));
                    print!("{}", api.text("/api/v1/activity", &query)?);
                }
                None => {
                    let activity = api.get("/api/v1/activity", &query)?;
                    print(&activity, &|answer| activity_table(&answer["activity"]));
                }
            }
        }
        AdminCommand::History { map, side, key, .. } => {
            let history = api.get(
                &format!("/api/v1/maps/{}/rows", segment(map)),
                &[("side", side.clone()), ("key", key.clone())],
            )?;
            print(&history, &history_text);
        }
        AdminCommand::Alerts { action, .. } => match action {
            None => {
                let alerts = api.get("/api/v1/alerts", &[])?;
                print(&alerts, &alerts_table);
            }
            Some(AlertsAction::Add {
                name,
                when,
                map,
                class,
                count,
                window,
                threshold,
                longer_than,
                actions,
                replace,
            }) => {
                let mut rule = json!({"name": name, "when": when, "actions": actions});
                for (field, value) in [
                    ("map", map.clone().map(Json::from)),
                    ("class", class.clone().map(Json::from)),
                    ("count", count.map(Json::from)),
                    ("window", window.clone().map(Json::from)),
                    ("threshold", threshold.map(Json::from)),
                    ("longer_than", longer_than.clone().map(Json::from)),
                ] {
                    if let Some(value) = value {
                        rule[field] = value;
                    }
                }
                let answer = if *replace {
                    api.send(
                        reqwest::Method::PUT,
                        &format!("/api/v1/alerts/{}", segment(name)),
                        Some(rule),
                    )?
                } else {
                    api.post("/api/v1/alerts", Some(rule))?
                };
                print(&answer, &|_| format!("alert rule {name} saved\n"));
            }
            Some(AlertsAction::Delete { name }) => {
                let answer = api.send(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/alerts/{}", segment(name)),
                    None,
                )?;
                print(&answer, &|_| format!("alert rule {name} deleted\n"));
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// Pages through a map's recorded changes and writes them as one change set (header,
/// then a change per line) to `output` or standard output; returns how many.
fn record(
    api: &Api,
    map: &str,
    since: Option<&str>,
    until: Option<&str>,
    output: &Option<std::path::PathBuf>,
) -> anyhow::Result<u64> {
    use std::io::Write;
    let mut sink: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let header = crate::replay::record::header(map, chrono::Utc::now());
    writeln!(sink, "{header}")?;
    let mut after: Option<u64> = None;
    let mut written = 0;
    loop {
        let mut query = vec![("limit", "5000".to_owned())];
        if let Some(since) = since {
            query.push(("since", since.to_owned()));
        }
        if let Some(until) = until {
            query.push(("until", until.to_owned()));
        }
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        let page = api.get(&format!("/api/v1/maps/{}/changes", segment(map)), &query)?;
        for line in page["changes"].as_array().into_iter().flatten() {
            writeln!(sink, "{line}")?;
            written += 1;
        }
        match page["next_after"].as_u64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    sink.flush()?;
    Ok(written)
}

/// Columns as text, left-aligned to the widest cell.
/// `dualwrite plugin rollback MAP [--to ID]`: runs the map on the plugin version (and
/// config) before the one in force, or on recorded config `to`, through the running
/// engine's admin API.
pub(super) fn rollback_plugin(
    args: &ClientArgs,
    map: &str,
    to: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(args)?;
    let body = match to {
        Some(id) => json!({ "to": id }),
        None => json!({}),
    };
    let answer = api.post(
        &format!("/api/v1/maps/{}/config/rollback", segment(map)),
        Some(body),
    )?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    }
    if answer["applied"] == json!(true) {
        if !args.json {
            let short = |value: &Json| {
                value
                    .as_str()
                    .unwrap_or("?")
                    .chars()
                    .take(12)
                    .collect::<String>()
            };
            println!(
                "{map}: runs plugin {} ({}) again, was {} ({}); record #{}",
                answer["plugin_version"]["to"].as_str().unwrap_or("?"),
                short(&answer["plugin_hash"]["to"]),
                answer["plugin_version"]["from"].as_str().unwrap_or("?"),
                short(&answer["plugin_hash"]["from"]),
                answer["record"]
            );
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{map}: the rollback was refused: {} at `{}`",
            answer["refused"]["message"].as_str().unwrap_or("?"),
            answer["refused"]["path"].as_str().unwrap_or("")
        );
        Ok(ExitCode::from(1))
    }
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|title| title.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut text = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut text = line(header.iter().map(|title| (*title).to_owned()).collect());
    for row in rows {
        text.push_str(&line(row.clone()));
    }
    text
}

fn cell(value: &Json) -> String {
    match value {
        Json::Null => "-".to_owned(),
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn maps_table(answer: &Json) -> String {
    let rows: Vec<Vec<String>> = answer["maps"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|map| {
            let mut mode = cell(&map["mode"]);
            for side in ["erp", "crm"] {
                if map[format!("{side}_offline")] == json!(true) {
                    mode.push_str(&format!(" ({side} offline)"));
                }
            }
            vec![
                cell(&map["name"]),
                mode,
                cell(&map["error_mode"]),
                cell(&map["queue_depth"]),
                cell(&map["open_errors"]),
                map["lag"]["seconds"]
                    .as_f64()
                    .map_or("-".to_owned(), |seconds| format!("{seconds:.1}s")),
                cell(&map["counters"]["written_to_crm"]),
                cell(&map["counters"]["written_to_erp"]),
                cell(&map["counters"]["conflicts"]),
            ]
        })
        .collect();
    table(
        &[
            "MAP",
            "MODE",
            "ON-ERROR",
            "QUEUED",
            "ERRORS",
            "LAG",
            "TO-CRM",
            "TO-ERP",
            "CONFLICTS",
        ],
        &rows,
    )
}

fn errors_table(answer: &Json) -> String {
    let rows: Vec<Vec<String>> = answer["errors"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|error| {
            vec![
                cell(&error["id"]),
                cell(&error["class"]),
                cell(&error["change"]["side"]),
                error["change"]["key"].to_string(),
                cell(&error["attempts"]),
                cell(&error["next_retry"]),
                error["resolution"]["kind"]
                    .as_str()
                    .unwrap_or("open")
                    .to_owned(),
                cell(&error["message"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "CLASS",
            "FROM",
            "KEY",
            "ATTEMPTS",
            "NEXT-RETRY",
            "STATE",
            "MESSAGE",
        ],
        &rows,
    )
}

fn activity_table(entries: &Json) -> String {
    let rows: Vec<Vec<String>> = entries
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            vec![
                cell(&entry["id"]),
                cell(&entry["at"]),
                cell(&entry["map"]),
                cell(&entry["kind"]),
                cell(&entry["direction"]),
                if entry["erp_key"].is_null() {
                    cell(&entry["crm_key"])
                } else {
                    entry["erp_key"].to_string()
                },
                cell(&entry["message"]),
            ]
        })
        .collect();
    table(
        &["ID", "AT", "MAP", "KIND", "DIRECTION", "KEY", "MESSAGE"],
        &rows,
    )
}

fn history_text(answer: &Json) -> String {
    let mut text = match &answer["link"] {
        Json::Null => "not linked (never synced)\n".to_owned(),
        link => format!(
            "linked: erp {} <-> crm {} (plugin {}, {})\n",
            link["erp_key"], link["crm_key"], link["plugin_version"], link["updated_at"]
        ),
    };
    text.push_str(&activity_table(&answer["history"]));
    text
}

fn alerts_table(answer: &Json) -> String {
    let firing = answer["firing"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = answer["rules"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|rule| {
            let condition = match rule["when"].as_str() {
                Some("errors") => format!(
                    "{} {} error(s) in {}",
                    cell(&rule["count"]),
                    rule["class"].as_str().unwrap_or("any"),
                    cell(&rule["window"])
                ),
                Some("offline") => format!("offline > {}", cell(&rule["longer_than"])),
                Some(when) => format!("{when} >= {}", cell(&rule["threshold"])),
                None => "-".to_owned(),
            };
            let firing_on: Vec<String> = firing
                .iter()
                .filter(|alert| alert["rule"] == rule["name"])
                .map(|alert| cell(&alert["subject"]["name"]))
                .collect();
            vec![
                cell(&rule["name"]),
                rule["map"].as_str().unwrap_or("(every map)").to_owned(),
                condition,
                rule["actions"]
                    .as_array()
                    .map(|actions| actions.iter().map(cell).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
                if firing_on.is_empty() {
                    "-".to_owned()
                } else {
                    firing_on.join(",")
                },
            ]
        })
        .collect();
    table(&["RULE", "MAP", "WHEN", "ACTIONS", "FIRING"], &rows)
}
