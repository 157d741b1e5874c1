//! The admin HTTP API over a real socket, against a running engine on two real SQLite
//! files with the customer-groups plugin: the token on every route, map actions, the
//! error queue (retry after the cause is fixed, skip), activity queries and exports, a
//! row's lineage, alert rules that pause a map and deliver signed webhooks (to a real
//! local receiver that checks the signature and fails the first delivery), metrics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dualwrite::admin::{AdminToken, ControlOptions, OperationsOptions};
use dualwrite::config;
use dualwrite::notify::RetryPolicy;
use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::plugins_dir;
use hmac::{Hmac, Mac};
use rusqlite::Connection;
use serde_json::{Value as Json, json};
use sha2::Sha256;

const ERP_TABLE: &str = "CREATE TABLE CustCustomerGroup (
    DATAAREAID TEXT NOT NULL, CUSTOMERGROUPID TEXT NOT NULL, DESCRIPTION TEXT,
    ISSALESTAXINCLUDEDINPRICE TEXT, PAYMENTTERMID TEXT, CLEARINGPERIODPAYMENTTERMNAME TEXT,
    PRIMARY KEY (DATAAREAID, CUSTOMERGROUPID))";

const CRM_TABLE: &str = "CREATE TABLE msdyn_customergroups (
    msdyn_company TEXT NOT NULL, msdyn_groupid TEXT NOT NULL, msdyn_description TEXT,
    msdyn_issalestaxincludedinprice BOOLEAN, msdyn_paymenttermid TEXT,
    msdyn_clearingperiodpaymenttermname TEXT,
    PRIMARY KEY (msdyn_company, msdyn_groupid))";

/// The CRM refuses groups described as "refused" until the trigger is dropped: a
/// target-rejected error whose cause an admin can fix.
const CRM_REFUSES: &str = "CREATE TRIGGER refuse_groups BEFORE INSERT ON msdyn_customergroups
    WHEN NEW.msdyn_description = 'refused'
    BEGIN SELECT RAISE(ABORT, 'descriptions may not be refused'); END";

const TOKEN: &str = "test-token-0123456789abcdef";
const MAP: &str = "customer-groups";

/// A deployment whose engine runs on its own thread with the admin API on port 0.
struct Running {
    dir: tempfile::TempDir,
    config: String,
    url: String,
    client: reqwest::blocking::Client,
    shutdown: Arc<AtomicBool>,
    engine: Option<JoinHandle<()>>,
}

impl Running {
    fn start(extra_config: &str) -> Running {
        Running::start_with(r#"{ policy = "side-wins", winner = "erp" }"#, extra_config)
    }

    fn start_with(conflict_policy: &str, extra_config: &str) -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        for (file, table) in [("erp.db", ERP_TABLE), ("crm.db", CRM_TABLE)] {
            let db = Connection::open(dir.path().join(file)).expect("create db");
            db.execute_batch(&format!("PRAGMA journal_mode=WAL; {table};"))
                .expect("schema");
        }
        let text = format!(
            r#"
data_dir = "state"
plugins_dir = "{plugins}"

[sides.erp]
connector = "sqlite"
path = "erp.db"

[sides.crm]
connector = "sqlite"
path = "crm.db"

[maps.customer-groups]
plugin = "customer_groups.wasm"
erp = {{ side = "erp", entity = "CustCustomerGroup", key = ["DATAAREAID", "CUSTOMERGROUPID"] }}
crm = {{ side = "crm", entity = "msdyn_customergroups", key = ["msdyn_company", "msdyn_groupid"] }}
conflict = {conflict_policy}

[maps.customer-groups.config]
resolve_lookups = false
{extra_config}
"#,
            plugins = plugins_dir().display()
        );
        let (url, shutdown, engine) = Running::launch(dir.path(), &text);
        Running {
            dir,
            config: text,
            url,
            client: reqwest::blocking::Client::new(),
            shutdown,
            engine: Some(engine),
        }
    }

    /// Stops the engine and starts it again on the same files and config.
    fn restart(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(engine) = self.engine.take() {
            engine.join().expect("the engine thread ends cleanly");
        }
        let (url, shutdown, engine) = Running::launch(self.dir.path(), &self.config);
        self.url = url;
        self.shutdown = shutdown;
        self.engine = Some(engine);
    }

    /// Runs an engine with the admin API for `text` in `dir` on a thread of its own;
    /// returns the API's URL, the shutdown flag and the thread.
    fn launch(dir: &std::path::Path, text: &str) -> (String, Arc<AtomicBool>, JoinHandle<()>) {
        // Written to a file, as `dualwrite run` reads it (solution bundles edit it).
        let file = dir.join("test.toml");
        std::fs::write(&file, text).expect("config file");
        let plan = config::parse(text, &file.display().to_string(), dir).expect("valid config");
        let shutdown = Arc::new(AtomicBool::new(false));
        let (address_sender, address) = mpsc::channel();
        let stop = shutdown.clone();
        let engine = std::thread::spawn(move || {
            let runtime = PluginRuntime::new(
                Limits {
                    max_instances: 8,
                    ..Limits::default()
                },
                None,
            )
            .expect("runtime");
            let mut engine = Engine::open(
                &plan,
                &runtime,
                EngineOptions {
                    min_backoff: Duration::from_millis(10),
                    max_backoff: Duration::from_millis(50),
                    ..EngineOptions::default()
                },
            )
            .expect("engine opens");
            let mut operations = dualwrite::admin::start(
                &plan,
                &engine,
                OperationsOptions {
                    listen: Some("127.0.0.1:0".parse().expect("address")),
                    token: Some(AdminToken::new(TOKEN).expect("token")),
                    retry: RetryPolicy {
                        attempts: 4,
                        first_delay: Duration::from_millis(200),
                        timeout: Duration::from_secs(5),
                    },
                    control: ControlOptions {
                        publish_every: Duration::from_millis(50),
                        evaluate_every: Duration::from_millis(100),
                        ..ControlOptions::default()
                    },
                },
            )
            .expect("admin API starts");
            address_sender
                .send(operations.server.address())
                .expect("test waits");
            while !stop.load(Ordering::Relaxed) {
                let report = engine.step().expect("step");
                operations.control.tick(&mut engine).expect("tick");
                if report.captured == 0 {
                    engine.wait_for_changes();
                }
            }
        });
        let address = address
            .recv_timeout(Duration::from_secs(120))
            .expect("the engine started");
        assert!(address.ip().is_loopback());
        (format!("http://{address}"), shutdown, engine)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn execute(&self, file: &str, sql: &str) {
        let db = Connection::open(self.path(file)).expect("open");
        db.busy_timeout(Duration::from_secs(5)).expect("timeout");
        db.execute_batch(sql).expect("sql");
    }

    fn erp_descriptions(&self) -> Vec<String> {
        let db = Connection::open(self.path("erp.db")).expect("open");
        let mut statement = db
            .prepare("SELECT CUSTOMERGROUPID || '=' || coalesce(DESCRIPTION, '') FROM CustCustomerGroup ORDER BY 1")
            .expect("prepare");
        statement
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<Vec<String>, _>>()
            .expect("rows")
    }

    fn crm_descriptions(&self) -> Vec<String> {
        let db = Connection::open(self.path("crm.db")).expect("open");
        let mut statement = db
            .prepare("SELECT msdyn_groupid || '=' || coalesce(msdyn_description, '') FROM msdyn_customergroups ORDER BY 1")
            .expect("prepare");
        statement
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<Vec<String>, _>>()
            .expect("rows")
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_owned());
        }
        let response = request
            .header("X-Dualwrite-Actor", "tester")
            .send()
            .expect("request");
        let status = response.status().as_u16();
        (status, response.text().expect("body"))
    }

    fn get(&self, path: &str) -> Json {
        let (status, text) = self.call(reqwest::Method::GET, path, Some(TOKEN), None);
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).expect("JSON")
    }

    fn post(&self, path: &str, body: Option<Json>) -> Json {
        let body = body.map(|body| body.to_string());
        let (status, text) = self.call(reqwest::Method::POST, path, Some(TOKEN), body.as_deref());
        assert!((200..300).contains(&status), "POST {path}: {status} {text}");
        serde_json::from_str(&text).expect("JSON")
    }

    fn map(&self) -> Json {
        let maps = self.get("/api/v1/maps");
        maps["maps"]
            .as_array()
            .expect("maps")
            .iter()
            .find(|map| map["name"] == MAP)
            .cloned()
            .expect("the map is listed")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(engine) = self.engine.take() {
            let finished = engine.join();
            if !std::thread::panicking() {
                finished.expect("the engine thread ends cleanly");
            }
        }
    }
}

/// Polls `check` until it holds (or fails after 30 s).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Every API route, with its parameters filled in (the web UI's pages and login are
/// public and tested in tests/web_ui.rs).
fn concrete_routes() -> Vec<(reqwest::Method, String)> {
    dualwrite::admin::ROUTES
        .iter()
        .filter(|route| !dualwrite::admin::UI_ROUTES.contains(route))
        .map(|route| {
            let (method, path) = route.split_once(' ').expect("METHOD PATH");
            let path = path
                .replace("{map}", MAP)
                .replace("{id}", "1")
                .replace("{name}", "some-rule");
            (method.parse().expect("method"), path)
        })
        .collect()
}

#[test]
fn every_route_but_health_needs_the_token() {
    let running = Running::start("");
    let (status, text) = running.call(reqwest::Method::GET, "/health", None, None);
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Json>(&text).expect("JSON")["status"],
        "ok"
    );
    for (method, path) in concrete_routes() {
        if path == "/health" {
            continue;
        }
        for token in [None, Some("wrong-token-0123456789abcdef"), Some("")] {
            let (status, text) = running.call(method.clone(), &path, token, Some("{}"));
            assert_eq!(status, 401, "{method} {path} with {token:?}: {text}");
            assert!(
                text.contains("token"),
                "{method} {path}: the answer names the problem: {text}"
            );
            assert!(!text.contains(TOKEN), "the token is never echoed: {text}");
        }
    }
    // An unknown route is not a way around the token either.
    let (status, _) = running.call(reqwest::Method::GET, "/api/v1/nothing", None, None);
    assert_eq!(status, 401);
    let (status, _) = running.call(reqwest::Method::GET, "/api/v1/nothing", Some(TOKEN), None);
    assert_eq!(status, 404);
}

#[test]
fn the_default_bind_is_loopback() {
    let plan = config::OperationsPlan::default();
    assert!(plan.admin.listen.ip().is_loopback());
    assert!(plan.admin.enabled);
}

#[test]
fn every_route_answers_with_the_token() {
    let running = Running::start("");
    running.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','Wholesale','yes',NULL,NULL)",
    );
    eventually("the first row to sync", || {
        running.crm_descriptions() == ["10=Wholesale"]
    });
    let errors_before = running.get(&format!("/api/v1/maps/{MAP}/errors"));
    assert_eq!(errors_before["errors"], json!([]));
    for (method, path) in concrete_routes() {
        if path == "/api/v1/events" {
            // A stream that does not end; tests/web_ui.rs reads it.
            continue;
        }
        let body = match path.as_str() {
            p if p.ends_with("/config") && method == reqwest::Method::PUT => {
                Some(json!({"config": {"resolve_lookups": false}}).to_string())
            }
            p if p.ends_with("/resume") => Some(json!({"mode": "catch-up"}).to_string()),
            p if p.ends_with("/error-mode") => Some(json!({"mode": "continue"}).to_string()),
            p if p.ends_with("/skip") => Some(json!({"reason": "test"}).to_string()),
            p if p.ends_with("/resolve") => Some(json!({"side": "erp"}).to_string()),
            "/api/v1/alerts" | "/api/v1/alerts/some-rule" => Some(
                json!({"when": "lag", "threshold": 600, "actions": ["notify"], "name": "some-rule"})
                    .to_string(),
            ),
            "/api/v1/subscribers" => Some(
                json!({"name": "hook", "url": "http://127.0.0.1:9/x", "secret": "0123456789abcdef0"})
                    .to_string(),
            ),
            _ => None,
        };
        let path = if path.ends_with("/rows") {
            format!("{path}?side=erp&key=%5B%22USMF%22%2C%2210%22%5D")
        } else if path == "/api/v1/solutions/export" {
            format!("{path}?name=groups&publisher=tests&version=1.0.0")
        } else {
            path
        };
        let (status, text) = running.call(method.clone(), &path, Some(TOKEN), body.as_deref());
        // Error 1 and subscriber some-rule do not exist (404 with a message); the map
        // was paused by the route before, so resume succeeds; the alert rule some-rule
        // was created by POST /api/v1/alerts before PUT and DELETE name it.
        let expected: &[u16] = if path.starts_with("/api/v1/errors/1")
            || path.starts_with("/api/v1/subscribers/some-rule")
        {
            &[404]
        } else if path == "/api/v1/solutions/import" {
            // No bundle in the body (tests/solutions.rs imports real ones).
            &[400]
        } else if path == "/api/v1/solutions/some-rule/rollback" {
            // No such solution was applied.
            &[422]
        } else if method == reqwest::Method::POST
            && (path == "/api/v1/alerts" || path == "/api/v1/subscribers")
        {
            &[201]
        } else {
            &[200]
        };
        assert!(
            expected.contains(&status),
            "{method} {path}: {status} {text}"
        );
        assert!(
            !text.contains("no such route"),
            "{method} {path} is in ROUTES but not served: {text}"
        );
        if status >= 400 {
            let error: Json = serde_json::from_str(&text).expect("errors are JSON");
            assert!(
                error["error"]
                    .as_str()
                    .is_some_and(|message| !message.is_empty()),
                "{method} {path}: {text}"
            );
        }
    }
}

#[test]
fn pause_resume_activity_and_lineage() {
    let running = Running::start("");
    running.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','Wholesale','yes',NULL,NULL)",
    );
    eventually("the first row to sync", || {
        running.crm_descriptions() == ["10=Wholesale"]
    });
    eventually("the counters to show it", || {
        running.map()["counters"]["written_to_crm"] == 1
    });
    let map = running.map();
    assert_eq!(map["mode"], "running");
    assert_eq!(map["error_mode"], "continue");
    assert_eq!(map["plugin"]["file"], "customer_groups.wasm");

    running.post(&format!("/api/v1/maps/{MAP}/pause"), None);
    assert_eq!(running.map()["mode"], "paused");
    running.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','20','Retail','no',NULL,NULL)",
    );
    eventually("the change to queue", || running.map()["queue_depth"] == 1);
    assert_eq!(running.crm_descriptions(), ["10=Wholesale"]);
    let (status, text) = running.call(
        reqwest::Method::POST,
        &format!("/api/v1/maps/{MAP}/pause"),
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 409, "pausing a paused map: {text}");
    assert!(text.contains("paused"), "{text}");

    running.post(
        &format!("/api/v1/maps/{MAP}/resume"),
        Some(json!({"mode": "catch-up"})),
    );
    eventually("the queued change to be applied", || {
        running.crm_descriptions() == ["10=Wholesale", "20=Retail"]
    });
    let map = running.get(&format!("/api/v1/maps/{MAP}"));
    assert_eq!(map["mode"], "running");
    assert_eq!(map["queue_depth"], 0);
    let causes: Vec<&str> = map["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .filter_map(|transition| transition["cause"].as_str())
        .collect();
    assert!(causes.contains(&"tester: pause"), "{causes:?}");
    assert!(
        causes
            .iter()
            .any(|cause| cause.starts_with("tester: resume (catch up)")),
        "{causes:?}"
    );

    // Activity: by kind, as JSON, JSON Lines and CSV.
    let changes = running.get(&format!("/api/v1/activity?map={MAP}&kind=state-change"));
    let entries = changes["activity"].as_array().expect("entries");
    assert!(entries.len() >= 3, "start, pause, resume: {changes}");
    assert!(entries.iter().all(|entry| entry["kind"] == "state-change"));
    assert!(
        entries.iter().any(|entry| entry["message"]
            .as_str()
            .is_some_and(|m| m.contains("tester: pause"))),
        "{changes}"
    );
    let (status, jsonl) = running.call(
        reqwest::Method::GET,
        &format!("/api/v1/activity?map={MAP}&kind=state-change&format=jsonl"),
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200);
    let lines: Vec<Json> = jsonl
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), entries.len(), "{jsonl}");
    assert_eq!(lines[0]["id"], entries[0]["id"]);
    let (status, csv_text) = running.call(
        reqwest::Method::GET,
        &format!("/api/v1/activity?map={MAP}&kind=state-change&format=csv"),
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().expect("header").clone();
    assert_eq!(&headers[3], "kind");
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("CSV");
    assert_eq!(rows.len(), entries.len());
    assert!(rows.iter().all(|row| &row[3] == "state-change"));
    assert!(
        rows.iter().any(|row| row[10].contains("tester: pause")),
        "{csv_text}"
    );
    // A time range that ends before anything happened is empty.
    let none = running.get(&format!(
        "/api/v1/activity?map={MAP}&until=2000-01-01T00:00:00Z"
    ));
    assert_eq!(none["activity"], json!([]));

    // Lineage: the row's link and its history, from either side's key.
    let from_erp = running.get(&format!(
        "/api/v1/maps/{MAP}/rows?side=erp&key=%5B%22USMF%22%2C%2220%22%5D"
    ));
    assert_eq!(from_erp["link"]["crm_key"], json!(["USMF", "20"]));
    assert_eq!(from_erp["link"]["crm_image"]["msdyn_description"], "Retail");
    assert_eq!(
        from_erp["link"]["plugin_version"],
        running.get("/api/v1/plugins")["plugins"][0]["hash"]
            .as_str()
            .map(|hash| hash[..12].to_owned())
            .expect("hash"),
        "the link names the plugin version that wrote it"
    );
    let from_crm = running.get(&format!(
        "/api/v1/maps/{MAP}/rows?side=crm&key=%5B%22USMF%22%2C%2220%22%5D"
    ));
    assert_eq!(from_crm["link"], from_erp["link"]);

    // Every change has its entry: the row's history holds its application, with the
    // keys on both sides, the change's position and the plugin version that wrote it.
    let applied: Vec<&Json> = from_erp["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|entry| entry["kind"] == "applied")
        .collect();
    assert_eq!(applied.len(), 1, "{from_erp}");
    assert_eq!(applied[0]["direction"], "erp-to-crm");
    assert_eq!(applied[0]["erp_key"], json!(["USMF", "20"]));
    assert_eq!(applied[0]["crm_key"], json!(["USMF", "20"]));
    assert_eq!(
        applied[0]["plugin_version"],
        from_erp["link"]["plugin_version"]
    );
    assert!(
        applied[0]["position"]["sequence"].is_u64(),
        "{}",
        applied[0]
    );
    assert_eq!(applied[0]["detail"]["writes"][0]["op"], "insert");
    assert_eq!(from_crm["history"], from_erp["history"]);
    let all_applied = running.get(&format!("/api/v1/activity?map={MAP}&kind=applied"));
    assert_eq!(
        all_applied["activity"].as_array().map(Vec::len),
        Some(2),
        "one entry per applied change: {all_applied}"
    );
}

#[test]
fn webhooks_go_over_https_to_a_receiver_whose_ca_is_trusted() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let ca_pem = certified.cert.pem();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![certified.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
        )
        .expect("server config");
    let receiver = Receiver::start_tls(Arc::new(tls));
    let running = Running::start(
        r#"
[alerts.queued]
when = "queue-depth"
threshold = 1
actions = ["notify"]
"#,
    );
    let secret = "https-webhook-secret-0123";
    running.post(
        "/api/v1/subscribers",
        Some(json!({"name": "trusting", "url": receiver.url, "secret": secret, "ca_pem": ca_pem})),
    );
    running.post(
        "/api/v1/subscribers",
        Some(json!({"name": "system-roots-only", "url": receiver.url, "secret": secret})),
    );
    let (status, text) = running.call(
        reqwest::Method::POST,
        "/api/v1/subscribers",
        Some(TOKEN),
        Some(r#"{"name": "bad-ca", "url": "https://127.0.0.1:1/", "secret": "0123456789abcdefgh", "ca_pem": "not a certificate"}"#),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("ca_pem"), "{text}");

    running.post(&format!("/api/v1/maps/{MAP}/pause"), None);
    running.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','Wholesale','yes',NULL,NULL)",
    );
    eventually("the signed webhook over TLS", || {
        !receiver.requests.lock().expect("lock").is_empty()
    });
    eventually("the untrusting subscriber's failure in its log", || {
        running.get("/api/v1/subscribers/system-roots-only/deliveries")["deliveries"]
            .as_array()
            .is_some_and(|attempts| !attempts.is_empty())
    });
    let requests = receiver.requests.lock().expect("lock").clone();
    assert_eq!(
        requests.len(),
        1,
        "only the trusting subscriber got through"
    );
    let (headers, body, _) = &requests[0];
    let signature = headers
        .iter()
        .find(|(name, _)| name == "x-dualwrite-signature")
        .map(|(_, value)| value.clone())
        .expect("signature header");
    assert!(signature_valid(secret, body, &signature));
    let failed = running.get("/api/v1/subscribers/system-roots-only/deliveries");
    let attempt = &failed["deliveries"][0];
    assert_eq!(attempt["status"], Json::Null, "{failed}");
    assert!(
        attempt["error"]
            .as_str()
            .is_some_and(|error| !error.is_empty()),
        "a certificate the system does not trust is refused: {failed}"
    );
    let listed = running.get("/api/v1/subscribers");
    assert!(
        !listed.to_string().contains("BEGIN CERTIFICATE"),
        "{listed}"
    );
    assert!(!listed.to_string().contains(secret), "{listed}");
}

#[test]
fn settings_made_through_the_api_outlive_a_restart() {
    let mut running = Running::start(
        r#"
[alerts.from-file]
when = "queue-depth"
threshold = 100
actions = ["notify"]

[alerts.kept]
when = "lag"
threshold = 60
actions = ["notify"]
"#,
    );
    running.post(
        "/api/v1/alerts",
        Some(
            json!({"name": "app-errors", "when": "errors", "count": 10, "window": "15m",
                    "actions": ["pause", "notify"]}),
        ),
    );
    let (status, text) = running.call(
        reqwest::Method::DELETE,
        "/api/v1/alerts/from-file",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{text}");
    running.post(
        "/api/v1/subscribers",
        Some(json!({"name": "ops", "url": "http://127.0.0.1:9/hook",
                    "secret": "a-secret-of-sixteen-or-more"})),
    );
    let (status, text) = running.call(
        reqwest::Method::PUT,
        &format!("/api/v1/maps/{MAP}/error-mode"),
        Some(TOKEN),
        Some(r#"{"mode": "block"}"#),
    );
    assert_eq!(status, 200, "{text}");

    running.restart();

    let rules = running.get("/api/v1/alerts");
    let names: Vec<&str> = rules["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|rule| rule["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["app-errors", "kept"],
        "the API's rule is back, the file's deleted rule stays deleted: {rules}"
    );
    let subscribers = running.get("/api/v1/subscribers");
    assert_eq!(subscribers["subscribers"][0]["name"], "ops");
    assert!(
        !subscribers.to_string().contains("a-secret-of-sixteen"),
        "no secret in answers: {subscribers}"
    );
    assert_eq!(running.map()["error_mode"], "block");
}

#[test]
fn failed_changes_are_retried_after_the_fix_or_skipped() {
    let running = Running::start("");
    running.execute("crm.db", CRM_REFUSES);
    running.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','refused','yes',NULL,NULL);
         INSERT INTO CustCustomerGroup VALUES ('USMF','20','refused','yes',NULL,NULL);",
    );
    eventually("two errors", || {
        running.get(&format!("/api/v1/maps/{MAP}/errors"))["errors"]
            .as_array()
            .is_some_and(|errors| errors.len() == 2)
    });
    let errors = running.get(&format!("/api/v1/maps/{MAP}/errors?class=target-rejected"));
    let errors = errors["errors"].as_array().expect("errors").clone();
    assert_eq!(errors.len(), 2);
    let first = errors[0]["id"].as_u64().expect("id");
    let second = errors[1]["id"].as_u64().expect("id");
    assert!(
        errors[0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("descriptions may not be refused")),
        "{:?}",
        errors[0]
    );
    assert_eq!(errors[0]["change"]["key"], json!(["USMF", "10"]));

    // Retrying before the cause is fixed fails again, and says so.
    let retried = running.post(&format!("/api/v1/errors/{first}/retry"), None);
    assert_eq!(retried["applied"], false, "{retried}");
    let detail = running.get(&format!("/api/v1/errors/{first}"));
    assert_eq!(detail["attempts"], 2);
    assert!(detail["resolution"].is_null());

    // The admin fixes the CRM side, then retries: applied.
    running.execute("crm.db", "DROP TRIGGER refuse_groups");
    let retried = running.post(&format!("/api/v1/errors/{first}/retry"), None);
    assert_eq!(retried["applied"], true, "{retried}");
    assert_eq!(retried["resolution"], "applied");
    assert_eq!(running.crm_descriptions(), ["10=refused"]);

    // The other one is skipped, with who and why.
    let (status, text) = running.call(
        reqwest::Method::POST,
        &format!("/api/v1/errors/{second}/skip"),
        Some(TOKEN),
        Some(r#"{"reason": ""}"#),
    );
    assert_eq!(status, 400, "a skip needs a reason: {text}");
    running.post(
        &format!("/api/v1/errors/{second}/skip"),
        Some(json!({"reason": "a test row, not wanted in the CRM"})),
    );
    let detail = running.get(&format!("/api/v1/errors/{second}"));
    assert_eq!(detail["resolution"]["kind"], "skipped");
    assert_eq!(detail["resolution"]["by"], "tester");
    assert_eq!(
        detail["resolution"]["reason"],
        "a test row, not wanted in the CRM"
    );
    let (status, text) = running.call(
        reqwest::Method::POST,
        &format!("/api/v1/errors/{second}/retry"),
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 409, "a resolved error cannot be retried: {text}");
    assert_eq!(running.crm_descriptions(), ["10=refused"]);
    assert_eq!(running.map()["open_errors"], 0);

    // The row's lineage holds its error and its link from the applied retry.
    let lineage = running.get(&format!(
        "/api/v1/maps/{MAP}/rows?side=erp&key=%5B%22USMF%22%2C%2210%22%5D"
    ));
    assert_eq!(lineage["link"]["crm_key"], json!(["USMF", "10"]));
    let kinds: Vec<&str> = lineage["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|entry| entry["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"error"), "{lineage}");
    assert_eq!(lineage["errors"][0]["id"], first);
    assert_eq!(lineage["errors"][0]["resolution"]["kind"], "applied");
}

#[test]
fn block_mode_pauses_the_map_at_an_error() {
    let running = Running::start("");
    let answer = running.call(
        reqwest::Method::PUT,
        &format!("/api/v1/maps/{MAP}/error-mode"),
        Some(TOKEN),
        Some(r#"{"mode": "block"}"#),
    );
    assert_eq!(answer.0, 200, "{}", answer.1);
    running.execute("crm.db", CRM_REFUSES);
    running.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','refused','yes',NULL,NULL)",
    );
    eventually("the map to block", || running.map()["mode"] == "paused");
    running.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','20','Retail','no',NULL,NULL)",
    );
    eventually("the next change to queue", || {
        running.map()["queue_depth"] == 1
    });
    assert_eq!(running.crm_descriptions(), Vec::<String>::new());
    running.execute("crm.db", "DROP TRIGGER refuse_groups");
    running.post(&format!("/api/v1/maps/{MAP}/errors/retry"), None);
    running.post(
        &format!("/api/v1/maps/{MAP}/resume"),
        Some(json!({"mode": "catch-up"})),
    );
    eventually("both rows, in order", || {
        running.crm_descriptions() == ["10=refused", "20=Retail"]
    });
}

#[test]
fn malformed_requests_get_4xx_naming_the_problem() {
    let running = Running::start("");
    for (method, path, body, status, needle) in [
        (
            reqwest::Method::POST,
            format!("/api/v1/maps/{MAP}/resume"),
            r#"{"mode": "sideways"}"#,
            400,
            "mode",
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/maps/{MAP}/resume"),
            r#"{"mode": "catch-up""#,
            400,
            "request body",
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/maps/{MAP}/resume"),
            r#"{"mode": "catch-up", "speed": 3}"#,
            400,
            "speed",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/maps/no-such-map/pause".to_owned(),
            "",
            404,
            "no-such-map",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/maps/no-such-map".to_owned(),
            "",
            404,
            "no-such-map",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/activity?kind=explosion".to_owned(),
            "",
            400,
            "kind",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/activity?since=yesterday-ish".to_owned(),
            "",
            400,
            "since",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/activity?side=erp&key=%5B1%5D".to_owned(),
            "",
            400,
            "map",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/activity?limit=0".to_owned(),
            "",
            400,
            "limit",
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/maps/{MAP}/rows?side=erp&key=USMF"),
            "",
            400,
            "key",
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/maps/{MAP}/errors?class=oops"),
            "",
            400,
            "class",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/errors/abc".to_owned(),
            "",
            400,
            "abc",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/alerts".to_owned(),
            r#"{"name": "x", "when": "errors", "count": 10, "window": "fortnight", "actions": ["pause"]}"#,
            400,
            "window",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/alerts".to_owned(),
            r#"{"name": "x", "when": "errors", "count": 10, "window": "15m", "actions": ["pause"], "map": "nope"}"#,
            404,
            "nope",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/subscribers".to_owned(),
            r#"{"name": "x", "url": "ftp://example", "secret": "0123456789abcdef"}"#,
            400,
            "url",
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/maps/{MAP}/error-mode"),
            r#"{"mode": "panic"}"#,
            400,
            "mode",
        ),
    ] {
        let body = (!body.is_empty()).then_some(body);
        let (got, text) = running.call(method.clone(), &path, Some(TOKEN), body);
        assert_eq!(got, status, "{method} {path}: {text}");
        let error: Json = serde_json::from_str(&text).expect("errors are JSON");
        let message = error["error"].as_str().expect("an error message");
        assert!(
            message.contains(needle),
            "{method} {path}: {message:?} should name {needle:?}"
        );
    }
    // Nothing was taken down: the engine still answers.
    assert_eq!(running.map()["mode"], "running");
}

/// A request the receiver got: headers (lowercase names), body, the status it answered.
type ReceivedRequest = (Vec<(String, String)>, Vec<u8>, u16);

/// A webhook receiver on a real socket: answers 500 to the first request, then 200;
/// keeps every request's headers and body.
struct Receiver {
    url: String,
    requests: Arc<Mutex<Vec<ReceivedRequest>>>,
}

impl Receiver {
    /// A plain HTTP receiver whose first answer is a 500 (so a retry must follow).
    fn start() -> Receiver {
        Receiver::start_with(None, true)
    }

    /// An HTTPS receiver with `tls`'s certificate that answers 200.
    fn start_tls(tls: Arc<rustls::ServerConfig>) -> Receiver {
        Receiver::start_with(Some(tls), false)
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>, fail_first: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!(
            "{scheme}://{}/hook",
            listener.local_addr().expect("address")
        );
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                // A connection that fails (a client refusing the certificate) is dropped;
                // the receiver goes on.
                let _ = match &tls {
                    Some(config) => match rustls::ServerConnection::new(config.clone()) {
                        Ok(connection) => Receiver::serve(
                            rustls::StreamOwned::new(connection, stream),
                            &seen,
                            fail_first,
                        ),
                        Err(_) => continue,
                    },
                    None => Receiver::serve(stream, &seen, fail_first),
                };
            }
        });
        Receiver { url, requests }
    }

    /// Reads one request from `stream`, records it and answers.
    fn serve<S: Read + Write>(
        mut stream: S,
        seen: &Mutex<Vec<ReceivedRequest>>,
        fail_first: bool,
    ) -> std::io::Result<()> {
        let (headers, body) = {
            let mut reader = BufReader::new(&mut stream);
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line)?;
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').expect("header");
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
            let length: usize = headers
                .iter()
                .find(|(name, _)| name == "content-length")
                .map(|(_, value)| value.parse().expect("length"))
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body)?;
            (headers, body)
        };
        let mut requests = seen.lock().expect("lock");
        let status = if fail_first && requests.is_empty() {
            500
        } else {
            200
        };
        requests.push((headers, body, status));
        drop(requests);
        let reason = if status == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        write!(
            stream,
            "HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )?;
        stream.flush()
    }
}

/// The receiver's own signature check, independent of the engine's code.
fn signature_valid(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_digest) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(digest) = hex::decode(hex_digest) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    mac.verify_slice(&digest).is_ok()
}

#[test]
fn an_alert_like_dual_writes_pauses_the_map_and_sends_a_signed_webhook() {
    // Dual-write's example, 10 application errors within 15 minutes -> pause and
    // notify; 3 errors here to keep the test short.
    let running = Running::start(
        r#"
[alerts.app-errors]
map = "customer-groups"
when = "errors"
class = "target-rejected"
count = 3
window = "15m"
actions = ["pause", "notify"]
"#,
    );
    let receiver = Receiver::start();
    let secret = "webhook-secret-0123456789";
    let created = running.post(
        "/api/v1/subscribers",
        Some(json!({"name": "ops", "url": receiver.url, "secret": secret})),
    );
    assert!(created.get("secret").is_none(), "{created}");
    let listed = running.get("/api/v1/subscribers");
    assert!(!listed.to_string().contains(secret), "{listed}");
    let rules = running.get("/api/v1/alerts");
    assert_eq!(rules["rules"][0]["name"], "app-errors");
    assert_eq!(rules["firing"], json!([]));

    running.execute("crm.db", CRM_REFUSES);
    running.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','refused','yes',NULL,NULL)",
    );
    eventually("one error", || running.map()["open_errors"] == 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(running.map()["mode"], "running", "one error does not fire");
    running.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','20','refused','yes',NULL,NULL);
         INSERT INTO CustCustomerGroup VALUES ('USMF','30','refused','yes',NULL,NULL);",
    );
    eventually("the alert to pause the map", || {
        running.map()["mode"] == "paused"
    });
    let alerts = running.get("/api/v1/alerts");
    assert_eq!(alerts["firing"][0]["rule"], "app-errors", "{alerts}");
    let recorded = running.get(&format!("/api/v1/activity?map={MAP}&kind=alert"));
    assert!(
        recorded["activity"][0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("app-errors fired")),
        "{recorded}"
    );
    let map = running.get(&format!("/api/v1/maps/{MAP}"));
    assert!(
        map["transitions"][0]["cause"]
            .as_str()
            .is_some_and(|cause| cause.starts_with("alert app-errors")),
        "{map}"
    );

    // The receiver fails the first delivery; the retry gets through, signed.
    eventually("a delivery after a retry", || {
        receiver.requests.lock().expect("lock").len() >= 2
    });
    let requests = receiver.requests.lock().expect("lock").clone();
    let (first_headers, first_body, first_status) = &requests[0];
    let (headers, body, status) = &requests[1];
    assert_eq!((*first_status, *status), (500, 200));
    assert_eq!(first_body, body, "a retry sends the same body");
    let header = |headers: &[(String, String)], name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    };
    let signature = header(headers, "x-dualwrite-signature");
    assert!(signature_valid(secret, body, &signature), "{signature}");
    assert!(!signature_valid("another-secret-0123456", body, &signature));
    assert_eq!(
        header(first_headers, "x-dualwrite-delivery"),
        header(headers, "x-dualwrite-delivery")
    );
    assert_eq!(header(headers, "x-dualwrite-event"), "alert.fired");
    let payload: Json = serde_json::from_slice(body).expect("JSON body");
    assert_eq!(payload["event"], "alert.fired");
    assert_eq!(payload["data"]["rule"], "app-errors");
    assert_eq!(payload["data"]["maps"], json!([MAP]));
    assert_eq!(
        payload["data"]["actions_taken"],
        json!([format!("paused {MAP}")])
    );
    // The receiver saw the retry before the engine read its answer: wait for the log.
    eventually("the delivery log to record the retry", || {
        running.get("/api/v1/subscribers/ops/deliveries")["deliveries"]
            .as_array()
            .is_some_and(|log| log.len() >= 2)
    });
    let log = running.get("/api/v1/subscribers/ops/deliveries");
    let outcomes: Vec<&str> = log["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .filter_map(|attempt| attempt["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["retrying", "delivered"], "{log}");
    assert!(!log.to_string().contains(secret));
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let running = Running::start("");
    running.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','Wholesale','yes',NULL,NULL)",
    );
    eventually("the row to sync", || {
        running.crm_descriptions() == ["10=Wholesale"]
    });
    eventually("the counters to show it", || {
        running.map()["counters"]["written_to_crm"] == 1
    });
    let response = running
        .client
        .get(format!("{}/metrics", running.url))
        .bearer_auth(TOKEN)
        .send()
        .expect("scrape");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/plain; version=0.0.4"))
    );
    let text = response.text().expect("text");
    let mut samples: Vec<(String, f64)> = Vec::new();
    let mut types = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            other => other.parse().unwrap_or_else(|_| panic!("a number: {line}")),
        };
        assert!(
            series
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_'),
            "{line}"
        );
        samples.push((series.to_owned(), value));
    }
    let sample = |series: &str| {
        samples
            .iter()
            .find(|(name, _)| name == series)
            .map(|(_, value)| *value)
            .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
    };
    assert_eq!(
        sample(r#"dualwrite_rows_applied_total{map="customer-groups",direction="erp-to-crm"}"#),
        1.0
    );
    assert_eq!(
        sample(r#"dualwrite_changes_captured_total{map="customer-groups",direction="erp-to-crm"}"#),
        1.0
    );
    assert_eq!(
        sample(r#"dualwrite_queue_depth{map="customer-groups"}"#),
        0.0
    );
    assert_eq!(
        sample(r#"dualwrite_open_errors{map="customer-groups",class="target-rejected"}"#),
        0.0
    );
    assert_eq!(
        sample(r#"dualwrite_map_mode{map="customer-groups",mode="running"}"#),
        1.0
    );
    assert!(sample(r#"dualwrite_checkpoint_position{side="erp"}"#) >= 1.0);
    assert!(sample(r#"dualwrite_plugin_call_seconds_count{map="customer-groups"}"#) >= 1.0);
    assert_eq!(
        sample(r#"dualwrite_plugin_call_seconds_bucket{map="customer-groups",le="+Inf"}"#),
        sample(r#"dualwrite_plugin_call_seconds_count{map="customer-groups"}"#)
    );
    assert_eq!(
        types
            .get("dualwrite_plugin_call_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    assert_eq!(
        types
            .get("dualwrite_rows_applied_total")
            .map(String::as_str),
        Some("counter")
    );
}

#[test]
fn retention_prunes_activity_by_age_and_by_count() {
    use dualwrite::state::{
        ActivityEntry, ActivityKind, ActivityQuery, BatchCommit, SqliteStateStore, StateStore,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStateStore::open(dir.path()).expect("store");
    let now = chrono::Utc::now();
    for days_ago in [40, 35, 20, 10, 1, 0] {
        store
            .commit(&BatchCommit {
                at: Some(now - chrono::Duration::days(days_ago)),
                activity: vec![ActivityEntry::new(
                    None,
                    ActivityKind::Alert,
                    format!("{days_ago} days ago"),
                )],
                ..BatchCommit::default()
            })
            .expect("commit");
    }
    let messages = |store: &SqliteStateStore| -> Vec<String> {
        store
            .activity(&ActivityQuery::default())
            .expect("activity")
            .into_iter()
            .map(|record| record.entry.message)
            .collect()
    };
    let removed = store
        .prune_activity(Some(now - chrono::Duration::days(30)), None)
        .expect("prune by age");
    assert_eq!(removed, 2);
    assert_eq!(
        messages(&store),
        ["20 days ago", "10 days ago", "1 days ago", "0 days ago"]
    );
    let removed = store.prune_activity(None, Some(3)).expect("prune by count");
    assert_eq!(removed, 1);
    assert_eq!(
        messages(&store),
        ["10 days ago", "1 days ago", "0 days ago"]
    );
    assert_eq!(store.prune_activity(None, Some(3)).expect("again"), 0);
}

#[test]
fn parked_conflicts_are_resolved_by_picking_a_side_or_merging() {
    let running = Running::start_with(r#"{ policy = "manual" }"#, "");
    running.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','Wholesale','yes',NULL,NULL)",
    );
    eventually("the row to sync", || {
        running.crm_descriptions() == ["10=Wholesale"]
    });
    running.post(&format!("/api/v1/maps/{MAP}/pause"), None);
    running.execute(
        "erp.db",
        "UPDATE CustCustomerGroup SET DESCRIPTION = 'ERP edit'",
    );
    running.execute(
        "crm.db",
        "UPDATE msdyn_customergroups SET msdyn_description = 'CRM edit'",
    );
    eventually("both edits to queue", || running.map()["queue_depth"] == 2);
    running.post(
        &format!("/api/v1/maps/{MAP}/resume"),
        Some(json!({"mode": "catch-up"})),
    );
    eventually("both changes to be parked", || {
        running.get(&format!("/api/v1/maps/{MAP}/errors?class=conflict"))["errors"]
            .as_array()
            .is_some_and(|errors| errors.len() == 2)
    });
    let errors = running.get(&format!("/api/v1/maps/{MAP}/errors?class=conflict"));
    let first = &errors["errors"][0];
    assert_eq!(
        first["conflict"]["erp_base"]["DESCRIPTION"], "Wholesale",
        "{first}"
    );
    assert_eq!(
        first["conflict"]["erp"]["DESCRIPTION"], "ERP edit",
        "{first}"
    );
    assert_eq!(
        first["conflict"]["crm"]["msdyn_description"], "CRM edit",
        "{first}"
    );
    let first_id = first["id"].as_u64().expect("id");
    let second_id = errors["errors"][1]["id"].as_u64().expect("id");
    assert_eq!(running.erp_descriptions(), ["10=ERP edit"]);
    assert_eq!(running.crm_descriptions(), ["10=CRM edit"]);

    // Not a side.
    let (status, text) = running.call(
        reqwest::Method::POST,
        &format!("/api/v1/errors/{first_id}/resolve"),
        Some(TOKEN),
        Some(r#"{"side": "both"}"#),
    );
    assert_eq!(status, 400, "{text}");

    // The CRM's row wins: the ERP gets the CRM's description.
    let resolved = running.post(
        &format!("/api/v1/errors/{first_id}/resolve"),
        Some(json!({"side": "crm"})),
    );
    assert_eq!(resolved["resolved"], true, "{resolved}");
    assert_eq!(running.erp_descriptions(), ["10=CRM edit"]);
    assert_eq!(running.crm_descriptions(), ["10=CRM edit"]);
    let detail = running.get(&format!("/api/v1/errors/{first_id}"));
    assert_eq!(detail["resolution"]["kind"], "resolved");
    assert_eq!(detail["resolution"]["by"], "tester");

    // Merged values, written to the ERP side, then synced to the CRM.
    let resolved = running.post(
        &format!("/api/v1/errors/{second_id}/resolve"),
        Some(json!({"side": "erp", "merged": {"DESCRIPTION": "Wholesale (merged)"}})),
    );
    assert_eq!(resolved["resolved"], true, "{resolved}");
    assert_eq!(running.erp_descriptions(), ["10=Wholesale (merged)"]);
    assert_eq!(running.crm_descriptions(), ["10=Wholesale (merged)"]);
    assert_eq!(running.map()["open_errors"], 0);

    // Later edits sync as usual, with no conflict left behind.
    running.execute(
        "crm.db",
        "UPDATE msdyn_customergroups SET msdyn_description = 'after'",
    );
    eventually("a later edit to sync", || {
        running.erp_descriptions() == ["10=after"]
    });
    assert_eq!(running.map()["open_errors"], 0);
}

/// The customer-groups map as a declarative map whose sales-tax value map knows the
/// ERP values `values` (pairs of ERP text and CRM boolean; the field goes to the CRM
/// only, so two ERP values may map to one).
fn declarative_groups(values: &[(&str, bool)]) -> String {
    let value_map: Vec<String> = values
        .iter()
        .map(|(erp, crm)| format!("{{ erp = \"{erp}\", crm = {crm} }}"))
        .collect();
    format!(
        r#"
[maps.customer-groups]
plugin = "declarative.wasm"
erp = {{ side = "erp", entity = "CustCustomerGroup", key = ["DATAAREAID", "CUSTOMERGROUPID"] }}
crm = {{ side = "crm", entity = "msdyn_customergroups", key = ["msdyn_company", "msdyn_groupid"] }}
conflict = {{ policy = "side-wins", winner = "erp" }}

[maps.customer-groups.config]
name = "customer-groups"
erp = {{ entity = "CustCustomerGroup", key = ["DATAAREAID", "CUSTOMERGROUPID"] }}
crm = {{ entity = "msdyn_customergroups", key = ["msdyn_company", "msdyn_groupid"] }}

[[maps.customer-groups.config.fields]]
erp = "DATAAREAID"
crm = "msdyn_company"

[[maps.customer-groups.config.fields]]
erp = "CUSTOMERGROUPID"
crm = "msdyn_groupid"

[[maps.customer-groups.config.fields]]
erp = "DESCRIPTION"
crm = "msdyn_description"

[[maps.customer-groups.config.fields]]
erp = "ISSALESTAXINCLUDEDINPRICE"
crm = "msdyn_issalestaxincludedinprice"
direction = "to-crm"
value_map = [{}]
"#,
        value_map.join(", ")
    )
}

#[test]
fn a_plugin_rejected_change_is_applied_by_a_retry_after_a_config_fix() {
    let mut running = Running::start("");
    let base =
        running.config[..running.config.find("[maps.customer-groups]").expect("map")].to_owned();
    running.config = base.clone() + &declarative_groups(&[("no", false), ("yes", true)]);
    running.restart();
    running.execute(
        "erp.db",
        "INSERT INTO CustCustomerGroup VALUES ('USMF','10','Wholesale','maybe',NULL,NULL)",
    );
    eventually("the plugin to reject the change", || {
        running.get(&format!("/api/v1/maps/{MAP}/errors"))["errors"]
            .as_array()
            .is_some_and(|errors| errors.len() == 1)
    });
    let errors = running.get(&format!("/api/v1/maps/{MAP}/errors"));
    let error = &errors["errors"][0];
    assert_eq!(error["class"], "plugin-rejected", "{error}");
    let id = error["id"].as_u64().expect("id");
    let again = running.post(&format!("/api/v1/errors/{id}/retry"), None);
    assert_eq!(again["applied"], false, "still unmapped: {again}");
    assert!(running.crm_descriptions().is_empty());

    // The fix: the value map learns "maybe"; the retry applies the change.
    running.config = base + &declarative_groups(&[("no", false), ("yes", true), ("maybe", false)]);
    running.restart();
    let retried = running.post(&format!("/api/v1/errors/{id}/retry"), None);
    assert_eq!(retried["applied"], true, "{retried}");
    assert_eq!(running.crm_descriptions(), ["10=Wholesale"]);
    let open = running.get(&format!("/api/v1/maps/{MAP}/errors"));
    assert_eq!(open["errors"], json!([]), "{open}");
    let versions = running.get(&format!("/api/v1/activity?map={MAP}&kind=plugin-version"));
    assert!(
        !versions["activity"].as_array().expect("entries").is_empty(),
        "the plugin change is in the activity log: {versions}"
    );
}
