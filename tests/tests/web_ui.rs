//! The web UI in real headless Chromium (Debian's `chromium`, driven by playwright-core
//! from npm, installed by `cargo xtask setup`), against a running engine with its admin
//! API on two SQLite files and two declarative maps (companies <- customer groups).
//!
//! The browser script (`tests/web-ui/ui-test.mjs`) logs in, pauses a map, resumes it
//! with catch-up, edits the declarative filter (a bad one is refused naming the field),
//! retries a failed change after its cause is fixed, and looks at the dependency graph,
//! alerts and plugins. Whatever it needs done to the databases it asks of this test
//! over its stdout (`STEP name args`), which checks the other side and answers `OK` or
//! `FAIL why` on its stdin. Screenshots of every page land in `target/ui-screenshots/`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dualwrite::admin::{AdminToken, ControlOptions, OperationsOptions};
use dualwrite::config;
use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::sync::{Engine, EngineOptions};
use dualwrite_tests::plugins_dir;
use rusqlite::Connection;

const TOKEN: &str = "web-ui-test-token-0123456789abcdef";

const ERP_TABLES: &str = "
    CREATE TABLE CompanyInfo (DATAAREA TEXT NOT NULL PRIMARY KEY, NAME TEXT);
    CREATE TABLE CustCustomerGroup (DATAAREAID TEXT NOT NULL, CUSTOMERGROUPID TEXT NOT NULL,
        DESCRIPTION TEXT, TAXINCLUDED TEXT, PRIMARY KEY (DATAAREAID, CUSTOMERGROUPID));";

const CRM_TABLES: &str = "
    CREATE TABLE cdm_companies (cdm_companycode TEXT NOT NULL PRIMARY KEY, cdm_name TEXT);
    CREATE TABLE msdyn_customergroups (msdyn_company TEXT NOT NULL, msdyn_groupid TEXT NOT NULL,
        msdyn_description TEXT, msdyn_taxincluded BOOLEAN, PRIMARY KEY (msdyn_company, msdyn_groupid));";

const CONFIG: &str = r#"
data_dir = "state"
plugins_dir = "PLUGINS"

[sides.erp]
connector = "sqlite"
path = "erp.db"

[sides.crm]
connector = "sqlite"
path = "crm.db"

[maps.companies]
plugin = "declarative.wasm"
erp = { side = "erp", entity = "CompanyInfo", key = ["DATAAREA"] }
crm = { side = "crm", entity = "cdm_companies", key = ["cdm_companycode"] }
conflict = { policy = "manual" }

[maps.companies.config]
name = "companies"
erp = { entity = "CompanyInfo", key = ["DATAAREA"] }
crm = { entity = "cdm_companies", key = ["cdm_companycode"] }
fields = [
    { erp = "DATAAREA", crm = "cdm_companycode" },
    { erp = "NAME", crm = "cdm_name" },
]

[maps.customer-groups]
plugin = "declarative.wasm"
erp = { side = "erp", entity = "CustCustomerGroup", key = ["DATAAREAID", "CUSTOMERGROUPID"] }
crm = { side = "crm", entity = "msdyn_customergroups", key = ["msdyn_company", "msdyn_groupid"] }
depends_on = ["companies"]
conflict = { policy = "side-wins", winner = "erp" }

[maps.customer-groups.config]
name = "customer-groups"
erp = { entity = "CustCustomerGroup", key = ["DATAAREAID", "CUSTOMERGROUPID"] }
crm = { entity = "msdyn_customergroups", key = ["msdyn_company", "msdyn_groupid"] }
fields = [
    { erp = "DATAAREAID", crm = "msdyn_company" },
    { erp = "CUSTOMERGROUPID", crm = "msdyn_groupid" },
    { erp = "DESCRIPTION", crm = "msdyn_description" },
    { erp = "TAXINCLUDED", crm = "msdyn_taxincluded", erp_kind = "text", crm_kind = "boolean", value_map = [{ erp = "yes", crm = true }, { erp = "no", crm = false }] },
]
"#;

/// The CRM refuses groups described as "refused" while this trigger exists.
const CRM_REFUSES: &str = "CREATE TRIGGER refuse_groups BEFORE INSERT ON msdyn_customergroups
    WHEN NEW.msdyn_description = 'refused'
    BEGIN SELECT RAISE(ABORT, 'descriptions may not be refused'); END";

/// An engine with the admin API on its own thread; stops when dropped.
struct Running {
    dir: Arc<tempfile::TempDir>,
    url: String,
    shutdown: Arc<AtomicBool>,
    engine: Option<JoinHandle<()>>,
}

impl Running {
    fn start() -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        for (file, tables) in [("erp.db", ERP_TABLES), ("crm.db", CRM_TABLES)] {
            let db = Connection::open(dir.path().join(file)).expect("create db");
            db.execute_batch(&format!("PRAGMA journal_mode=WAL; {tables}"))
                .expect("schema");
        }
        Running::start_in(Arc::new(dir))
    }

    /// Starts (again) on the databases and state in `dir`.
    fn start_in(dir: Arc<tempfile::TempDir>) -> Running {
        Running::start_with_config(dir, CONFIG)
    }

    /// Starts (again) on `dir` with the deployment config `config`.
    fn start_with_config(dir: Arc<tempfile::TempDir>, config: &str) -> Running {
        let text = config.replace("PLUGINS", &plugins_dir().display().to_string());
        let plan = config::parse(&text, "web-ui.toml", dir.path()).expect("valid config");
        let shutdown = Arc::new(AtomicBool::new(false));
        let (address_sender, address) = mpsc::channel();
        let stop = shutdown.clone();
        let engine = std::thread::spawn(move || {
            let runtime = PluginRuntime::new(
                Limits {
                    max_instances: 16,
                    ..Limits::default()
                },
                None,
            )
            .expect("runtime");
            let mut engine = Engine::open(
                &plan,
                &runtime,
                EngineOptions {
                    first_retry: Duration::from_secs(3600),
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
                    control: ControlOptions {
                        publish_every: Duration::from_millis(100),
                        ..ControlOptions::default()
                    },
                    ..OperationsOptions::default()
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
        Running {
            dir,
            url: format!("http://{address}"),
            shutdown,
            engine: Some(engine),
        }
    }

    /// Stops the engine; returns the folder for a restart.
    fn stop(mut self) -> Arc<tempfile::TempDir> {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(engine) = self.engine.take() {
            engine.join().expect("the engine thread ends");
        }
        self.dir.clone()
    }

    fn db(&self, file: &str) -> Connection {
        let db = Connection::open(self.dir.path().join(file)).expect("open");
        db.busy_timeout(Duration::from_secs(5)).expect("timeout");
        db
    }

    fn crm_groups(&self) -> Vec<String> {
        let db = self.db("crm.db");
        let mut statement = db
            .prepare("SELECT msdyn_groupid FROM msdyn_customergroups ORDER BY 1")
            .expect("prepare");
        statement
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<Vec<String>, _>>()
            .expect("rows")
    }

    fn insert_groups(&self, groups: &[(&str, &str)]) {
        let db = self.db("erp.db");
        for (id, description) in groups {
            db.execute(
                "INSERT INTO CustCustomerGroup VALUES ('usmf', ?1, ?2, 'yes')",
                (id, description),
            )
            .expect("insert");
        }
    }

    /// Waits (generously) until the CRM has every group of `groups`.
    fn await_crm(&self, groups: &[&str]) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let crm = self.crm_groups();
            if groups
                .iter()
                .all(|group| crm.iter().any(|have| have == group))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("the CRM has {crm:?}, not all of {groups:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (generously) until the CRM's company `code` is named `name`.
    fn await_crm_company(&self, code: &str, name: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found: Option<String> = self
                .db("crm.db")
                .query_row(
                    "SELECT cdm_name FROM cdm_companies WHERE cdm_companycode = ?1",
                    [code],
                    |row| row.get(0),
                )
                .ok();
            if found.as_deref() == Some(name) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the CRM's company {code} is named {found:?}, not {name}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Carries out one step the browser script asks for.
    fn step(&self, name: &str, args: &[&str]) -> Result<(), String> {
        match name {
            "erp-insert" => {
                let groups: Vec<(&str, &str)> =
                    args.iter().map(|id| (*id, "edited in the ERP")).collect();
                self.insert_groups(&groups);
                Ok(())
            }
            "crm-lacks" => {
                let crm = self.crm_groups();
                match args.iter().find(|id| crm.iter().any(|have| have == *id)) {
                    Some(id) => Err(format!("the CRM has {id} while the map is paused")),
                    None => Ok(()),
                }
            }
            "crm-has" => self.await_crm(args),
            "filter-effect" => {
                // The first is filtered out by the new filter, the second passes; it
                // was inserted after, so once it arrived the first was processed.
                self.insert_groups(&[(args[0], "internal")]);
                self.insert_groups(&[(args[1], "public")]);
                self.await_crm(&args[1..2])?;
                if self.crm_groups().iter().any(|have| have == args[0]) {
                    return Err(format!("{} passed the filter", args[0]));
                }
                Ok(())
            }
            "make-failure" => {
                self.db("crm.db")
                    .execute_batch(CRM_REFUSES)
                    .map_err(|error| error.to_string())?;
                self.insert_groups(&[(args[0], "refused")]);
                Ok(())
            }
            "company-insert" => {
                self.db("erp.db")
                    .execute("INSERT INTO CompanyInfo VALUES (?1, 'Contoso')", [args[0]])
                    .map_err(|error| error.to_string())?;
                self.await_crm_company(args[0], "Contoso")
            }
            "company-conflict" => {
                self.db("erp.db")
                    .execute(
                        "UPDATE CompanyInfo SET NAME = 'ERP edit' WHERE DATAAREA = ?1",
                        [args[0]],
                    )
                    .map_err(|error| error.to_string())?;
                self.db("crm.db")
                    .execute(
                        "UPDATE cdm_companies SET cdm_name = 'CRM edit' WHERE cdm_companycode = ?1",
                        [args[0]],
                    )
                    .map_err(|error| error.to_string())?;
                Ok(())
            }
            "crm-company-name" => self.await_crm_company(args[0], &args[1..].join(" ")),
            "fix-failure" => self
                .db("crm.db")
                .execute_batch("DROP TRIGGER refuse_groups")
                .map_err(|error| error.to_string()),
            other => Err(format!("unknown step {other}")),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(engine) = self.engine.take() {
            let _ = engine.join();
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the repository")
        .to_path_buf()
}

#[test]
fn the_web_ui_in_a_real_browser() {
    let root = repo_root();
    let playwright = root.join("target/web-ui/node_modules/playwright-core/index.mjs");
    assert!(
        playwright.exists(),
        "{} is missing: run `cargo xtask setup` (installs the pinned playwright-core)",
        playwright.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: `apt-get install chromium` (.ci/run does)"
    );
    let screenshots = root.join("target/ui-screenshots");
    // This run's screenshots only (a failure leaves failure.png).
    let _ = std::fs::remove_dir_all(&screenshots);
    let running = Running::start();

    let mut browser = Command::new("node")
        .arg(root.join("tests/web-ui/ui-test.mjs"))
        .env("URL", &running.url)
        .env("TOKEN", TOKEN)
        .env("PLAYWRIGHT_CORE", &playwright)
        .env("SCREENSHOTS", &screenshots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs (Node.js is needed for the browser test)");
    let mut answers = browser.stdin.take().expect("stdin");
    let output = BufReader::new(browser.stdout.take().expect("stdout"));
    let mut steps = Vec::new();
    for line in output.lines() {
        let line = line.expect("the script's output");
        let Some(request) = line.strip_prefix("STEP ") else {
            println!("browser: {line}");
            continue;
        };
        let mut words = request.split_whitespace();
        let name = words.next().unwrap_or_default().to_owned();
        let args: Vec<&str> = words.collect();
        let answer = match running.step(&name, &args) {
            Ok(()) => "OK".to_owned(),
            Err(why) => format!("FAIL {why}"),
        };
        println!("step {request}: {answer}");
        steps.push(name);
        // The script may have given up already; its exit status says so.
        let _ = writeln!(answers, "{answer}");
    }
    let status = browser.wait().expect("the browser script ends");
    assert!(
        status.success(),
        "the browser steps failed ({status}); see the output above and {}",
        screenshots.display()
    );
    // Every step the scenario needs was asked for, so the script did not stop early.
    for needed in [
        "erp-insert",
        "crm-lacks",
        "filter-effect",
        "make-failure",
        "fix-failure",
        "company-conflict",
        "crm-company-name",
    ] {
        assert!(steps.iter().any(|step| step == needed), "no {needed} step");
    }
    assert!(screenshots.join("09-graph.png").exists());
}

/// The URL of `path` on `running`'s server.
fn at(running: &Running, path: &str) -> String {
    format!("{}{path}", running.url)
}

/// A request to the API; `(status, headers, body as JSON or text)`.
fn call(
    client: &reqwest::blocking::Client,
    request: reqwest::blocking::RequestBuilder,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let response = client
        .execute(request.build().expect("request"))
        .expect("the API answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().expect("body");
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, headers, body)
}

/// The API the UI uses, without a browser: the login and its cookie, the live event
/// stream, a declarative config changed at runtime (refused naming the field, in force
/// at once, kept over a restart, rolled back), the graph.
#[test]
fn session_events_and_runtime_config() {
    let running = Running::start();
    let client = reqwest::blocking::Client::new();
    let bearer = format!("Bearer {TOKEN}");

    // The page is public and secret-free; the API is not.
    let (status, headers, page) = call(&client, client.get(at(&running, "/ui/")));
    assert_eq!(status, 200);
    assert!(
        headers["content-security-policy"]
            .to_str()
            .expect("csp")
            .contains("script-src 'self'")
    );
    assert!(!page.as_str().expect("html").contains(TOKEN));
    assert_eq!(
        call(&client, client.get(at(&running, "/api/v1/maps"))).0,
        401
    );
    // `/` and `/ui` lead to the page.
    for path in ["/", "/ui"] {
        let (status, _, page) = call(&client, client.get(at(&running, path)));
        assert_eq!(status, 200, "{path}");
        assert!(
            page.as_str()
                .expect("html")
                .contains("<title>dualwrite</title>")
        );
    }

    // Login: needs the UI header, refuses another token, sets an HttpOnly cookie.
    let login = |token: &str, header: bool| {
        let mut request = client
            .post(at(&running, "/ui/login"))
            .body(serde_json::json!({"token": token}).to_string());
        if header {
            request = request.header("X-Dualwrite-UI", "1");
        }
        call(&client, request)
    };
    assert_eq!(login(TOKEN, false).0, 400);
    let (status, _, body) = login("some-other-token-0123456789", true);
    assert_eq!(status, 401);
    assert!(
        body["error"]
            .as_str()
            .expect("message")
            .starts_with("token:")
    );
    let (status, headers, body) = login(TOKEN, true);
    assert_eq!(status, 200, "{body}");
    let set_cookie = headers["set-cookie"].to_str().expect("cookie").to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    assert!(!set_cookie.contains(TOKEN));
    let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
    let (status, _, maps) = call(
        &client,
        client
            .get(at(&running, "/api/v1/maps"))
            .header("Cookie", &cookie),
    );
    assert_eq!(status, 200);
    assert_eq!(maps["maps"].as_array().expect("maps").len(), 2);
    // A change by cookie needs the UI header (no cross-site form can add it).
    let pause = |header: bool| {
        let mut request = client
            .post(at(&running, "/api/v1/maps/companies/pause"))
            .header("Cookie", &cookie);
        if header {
            request = request.header("X-Dualwrite-UI", "1");
        }
        call(&client, request).0
    };
    assert_eq!(pause(false), 401);
    assert_eq!(pause(true), 200);

    // The event stream sends the state at once, with the paused map.
    let mut events = client
        .get(at(&running, "/api/v1/events"))
        .header("Cookie", &cookie)
        .send()
        .expect("event stream");
    assert_eq!(events.status().as_u16(), 200);
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    while !seen.contains("\n\n") {
        let read = std::io::Read::read(&mut events, &mut buffer).expect("read events");
        assert!(read > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    assert!(seen.starts_with("event: state\ndata: "), "{seen}");
    let data = seen
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .expect("data");
    let state: serde_json::Value = serde_json::from_str(data).expect("JSON state");
    let companies = state["maps"]
        .as_array()
        .expect("maps")
        .iter()
        .find(|map| map["name"] == "companies")
        .expect("companies");
    assert_eq!(companies["mode"], "paused");
    drop(events);

    // The graph: customer groups depend on companies.
    let (_, _, graph) = call(
        &client,
        client
            .get(at(&running, "/api/v1/graph"))
            .header("Authorization", &bearer),
    );
    let groups = graph["maps"]
        .as_array()
        .expect("maps")
        .iter()
        .find(|map| map["name"] == "customer-groups")
        .expect("customer-groups");
    assert_eq!(groups["depends_on"], serde_json::json!(["companies"]));

    // A config the plugin refuses: a 400 naming the field; nothing changes.
    let mut config_url = at(&running, "/api/v1/maps/customer-groups/config");
    let (_, _, before) = call(
        &client,
        client.get(&config_url).header("Authorization", &bearer),
    );
    assert_eq!(before["declarative"], true);
    assert_eq!(before["config_source"], "file");
    assert!(
        before["descriptor"]["mappings"]
            .as_array()
            .expect("mappings")
            .iter()
            .any(|line| line["transform"]
                .as_str()
                .is_some_and(|t| t.starts_with("value-map")))
    );
    let mut config = before["config"].clone();
    config["filters"] = serde_json::json!({"erp": "DESCRIPTION =="});
    let put = |config: &serde_json::Value| {
        call(
            &client,
            client
                .put(&config_url)
                .header("Authorization", &bearer)
                .body(serde_json::json!({"config": config, "reason": "test"}).to_string()),
        )
    };
    let (status, _, refused) = put(&config);
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["path"], "/filters/erp");
    assert!(
        refused["error"]
            .as_str()
            .expect("error")
            .starts_with("config/filters/erp: ")
    );
    let (status, _, refused) = call(
        &client,
        client
            .put(&config_url)
            .header("Authorization", &bearer)
            .body(r#"{"config": [1]}"#),
    );
    assert_eq!(status, 400);
    assert!(
        refused["error"]
            .as_str()
            .expect("error")
            .starts_with("config:")
    );

    // A good one is in force for the next change.
    config["filters"] = serde_json::json!({"erp": "DESCRIPTION != \"internal\""});
    let (status, _, applied) = put(&config);
    assert_eq!(status, 200, "{applied}");
    running.insert_groups(&[("F1", "internal"), ("F2", "public")]);
    running.await_crm(&["F2"]).expect("F2 synced");
    assert!(!running.crm_groups().contains(&"F1".to_owned()));
    let (_, _, activity) = call(
        &client,
        client
            .get(at(
                &running,
                "/api/v1/activity?map=customer-groups&kind=plugin-version",
            ))
            .header("Authorization", &bearer),
    );
    // The plugin's first run at start, then the config change.
    let entries = activity["activity"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{activity}");
    assert!(
        entries[0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("runs the map")),
        "{activity}"
    );
    assert_eq!(entries[1]["detail"]["changed"], "config", "{activity}");
    let (_, _, latest) = call(
        &client,
        client
            .get(at(
                &running,
                "/api/v1/activity/latest?map=customer-groups&limit=1",
            ))
            .header("Authorization", &bearer),
    );
    assert_eq!(latest["activity"].as_array().expect("entries").len(), 1);

    // A restart keeps it.
    let dir = running.stop();
    let running = Running::start_in(dir);
    config_url = at(&running, "/api/v1/maps/customer-groups/config");
    let (_, _, after) = call(
        &client,
        client.get(&config_url).header("Authorization", &bearer),
    );
    assert_eq!(after["config_source"], "runtime");
    assert_eq!(
        after["config"]["filters"]["erp"],
        "DESCRIPTION != \"internal\""
    );
    running.insert_groups(&[("F3", "internal"), ("F4", "public")]);
    running.await_crm(&["F4"]).expect("F4 synced");
    assert!(!running.crm_groups().contains(&"F3".to_owned()));

    // Rollback: back to the config file's (no filter); internal groups pass again.
    let (status, _, rolled) = call(
        &client,
        client
            .post(at(&running, "/api/v1/maps/customer-groups/config/rollback"))
            .header("Authorization", &bearer)
            .body("{}"),
    );
    assert_eq!(status, 200, "{rolled}");
    let (_, _, after) = call(
        &client,
        client.get(&config_url).header("Authorization", &bearer),
    );
    assert!(after["config"].get("filters").is_none(), "{after}");
    assert_eq!(after["history"].as_array().expect("history").len(), 2);
    running.insert_groups(&[("F5", "internal")]);
    running
        .await_crm(&["F5"])
        .expect("F5 synced after the rollback");
    let (status, _, none) = call(
        &client,
        client
            .post(at(&running, "/api/v1/maps/customer-groups/config/rollback"))
            .header("Authorization", &bearer)
            .body(r#"{"to": 999}"#),
    );
    assert_eq!(status, 404, "{none}");

    // A runtime change holds over a restart only while the config file's config of the
    // map is the one it was made against: edited in the file, the file wins.
    let (status, _, applied) = call(
        &client,
        client
            .put(&config_url)
            .header("Authorization", &bearer)
            .body(serde_json::json!({"config": config, "reason": "again"}).to_string()),
    );
    assert_eq!(status, 200, "{applied}");
    let dir = running.stop();
    let edited = CONFIG.replace(
        "name = \"customer-groups\"\n",
        "name = \"customer-groups\"\nsummary = \"edited in the file\"\n",
    );
    assert_ne!(edited, CONFIG);
    let running = Running::start_with_config(dir, &edited);
    let config_url = at(&running, "/api/v1/maps/customer-groups/config");
    let (_, _, after) = call(
        &client,
        client.get(&config_url).header("Authorization", &bearer),
    );
    assert_eq!(after["config_source"], "file", "{after}");
    assert_eq!(after["config"]["summary"], "edited in the file");
    assert!(after["config"].get("filters").is_none(), "{after}");
    assert_eq!(after["history"].as_array().expect("history").len(), 3);
}

/// The demo (what a new user starts) runs the standard map pack through the declarative
/// plugin, so the web UI can edit its maps: the vendor groups seeded, merged by the
/// initial sync and synced, and sales orders of both kinds of customer.
#[test]
fn the_demo_runs_a_declarative_map() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo_dir = dir.path().join("demo");
    let runtime = PluginRuntime::new(Limits::default(), None).expect("runtime");
    dualwrite::demo::run(
        &dualwrite::demo::DemoOptions {
            dir: demo_dir.clone(),
            plugins_dir: plugins_dir().to_path_buf(),
            customers: 200,
            duration: Some(Duration::from_secs(2)),
            edit_rate: 50,
            admin_listen: None,
            erp: None,
            crm: None,
        },
        &runtime,
    )
    .expect("the demo runs");
    let plan = config::load(demo_dir.join("dualwrite.toml")).expect("the demo's config loads");
    let vendor_groups = plan
        .maps
        .iter()
        .find(|map| map.name == "vendor-groups")
        .expect("a vendor-groups map");
    assert_eq!(vendor_groups.plugin, "declarative.wasm");
    assert!(vendor_groups.plugin_config["fields"].is_array());
    let groups = |file: &str, sql: &str| -> Vec<String> {
        let db = Connection::open(demo_dir.join(file)).expect("open");
        let mut statement = db.prepare(sql).expect("prepare");
        statement
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<Vec<String>, _>>()
            .expect("rows")
    };
    let erp = groups(
        "erp.db",
        "SELECT DATAAREAID || '/' || VENDORGROUPID FROM VendVendorGroup ORDER BY 1",
    );
    let crm = groups(
        "crm.db",
        "SELECT msdyn_company || '/' || msdyn_vendorgroup FROM msdyn_vendorgroups ORDER BY 1",
    );
    assert!(erp.len() >= 9, "{erp:?}");
    for group in &erp {
        assert!(crm.contains(group), "{group} is not in the CRM: {crm:?}");
    }

    // Every map of the demo is a map of the standard pack, run by the declarative plugin.
    let names: Vec<&str> = plan.maps.iter().map(|map| map.name.as_str()).collect();
    assert_eq!(names.len(), 12, "{names:?}");
    for map in &plan.maps {
        assert_eq!(map.plugin, "declarative.wasm", "map {}", map.name);
    }
    // Sales orders of both kinds of customer reached the CRM with the customer's table.
    let kinds = groups(
        "crm.db",
        "SELECT DISTINCT customeridtype FROM salesorders WHERE customeridtype IS NOT NULL ORDER BY 1",
    );
    assert_eq!(kinds, ["accounts", "contacts"]);
}
