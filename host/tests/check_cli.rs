//! `dualwrite check` as a user runs it: the real binary over real SQLite files, the real
//! PostgreSQL server and real plugin files. Every code it can report is triggered by a
//! deployment with exactly that fault, and a sound deployment passes clean.

use std::path::Path;
use std::process::Command;

use dualwrite_tests::customer_groups::{CRM_TABLE, ERP_TABLE};
use dualwrite_tests::private_servers::PrivatePostgres;
use dualwrite_tests::{plugin_path, servers};
use rusqlite::Connection;
use serde_json::Value as Json;

/// A deployment folder: `erp.db` and `crm.db` with `erp_table` and `crm_table` (none
/// when empty), a plugins folder with real plugins and a broken one.
struct Deployment {
    dir: tempfile::TempDir,
}

impl Deployment {
    fn new(erp_table: &str, crm_table: &str) -> Deployment {
        let dir = tempfile::tempdir().expect("tempdir");
        for (file, table) in [("erp.db", erp_table), ("crm.db", crm_table)] {
            let db = Connection::open(dir.path().join(file)).expect("create db");
            if !table.is_empty() {
                db.execute_batch(table).expect("schema");
            }
        }
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).expect("plugins folder");
        for name in ["customer_groups", "other_world", "declarative", "hostile"] {
            std::fs::copy(plugin_path(name), plugins.join(format!("{name}.wasm")))
                .expect("copy plugin");
        }
        std::fs::write(plugins.join("broken.wasm"), "this is not WebAssembly").expect("write");
        Deployment { dir }
    }

    fn sound() -> Deployment {
        Deployment::new(ERP_TABLE, CRM_TABLE)
    }

    /// Writes a config with the customer-groups map made of `map` lines (after its
    /// header) and `extra` sections; runs `dualwrite check --json` on it.
    fn check(&self, erp_side: &str, map: &str, extra: &str) -> (i32, Vec<Json>) {
        let config = format!(
            r#"
data_dir = "state"
plugins_dir = "plugins"

[sides.erp]
{erp_side}

[sides.crm]
connector = "sqlite"
path = "crm.db"

[maps.customer-groups]
{map}
conflict = {{ policy = "side-wins", winner = "erp" }}
{extra}
"#
        );
        self.run_check(&config)
    }

    /// Writes `config` as the deployment's file and runs `dualwrite check --json`.
    fn run_check(&self, config: &str) -> (i32, Vec<Json>) {
        let path = self.dir.path().join("dualwrite.toml");
        std::fs::write(&path, config).expect("config");
        let output = Command::new(env!("CARGO_BIN_EXE_dualwrite"))
            .args(["check", "--json", "-c"])
            .arg(&path)
            .output()
            .expect("run dualwrite check");
        let answer: Json = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "check --json prints JSON ({error}): {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        let findings = answer["findings"].as_array().expect("findings").clone();
        assert_eq!(answer["ok"], findings.is_empty());
        (output.status.code().expect("exit code"), findings)
    }

    /// Like [`check`](Self::check) with both sides' sections given (`[sides.erp]`
    /// first, then its lines, `[sides.crm]` and its lines).
    fn check_sides(&self, sides: &str, map: &str) -> (i32, Vec<Json>) {
        let (erp, crm) = sides.split_once("\n[sides.crm]\n").expect("both sides");
        let config = format!(
            r#"
data_dir = "state"
plugins_dir = "plugins"

[sides.erp]
{erp}

[sides.crm]
{crm}

[maps.customer-groups]
{map}
conflict = {{ policy = "side-wins", winner = "erp" }}
"#
        );
        self.run_check(&config)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

const SQLITE_ERP: &str = "connector = \"sqlite\"\npath = \"erp.db\"";

const GROUPS: &str = r#"plugin = "customer_groups.wasm"
erp = { side = "erp", entity = "CustCustomerGroup", key = ["DATAAREAID", "CUSTOMERGROUPID"] }
crm = { side = "crm", entity = "msdyn_customergroups", key = ["msdyn_company", "msdyn_groupid"] }"#;

fn codes(findings: &[Json]) -> Vec<&str> {
    findings
        .iter()
        .map(|finding| finding["code"].as_str().expect("code"))
        .collect()
}

/// Asserts `findings` are exactly one finding of `code` whose message contains
/// `mentions`, with a fix.
fn only(findings: &[Json], code: &str, mentions: &str) {
    assert_eq!(codes(findings), [code], "{findings:#?}");
    let message = findings[0]["message"].as_str().expect("message");
    assert!(
        message.contains(mentions),
        "{code}: {message:?} should mention {mentions:?}"
    );
    assert!(
        findings[0]["fix"]
            .as_str()
            .is_some_and(|fix| !fix.is_empty()),
        "{findings:#?}"
    );
}

#[test]
fn a_sound_deployment_passes_and_prints_so() {
    let deployment = Deployment::sound();
    let (code, findings) = deployment.check(SQLITE_ERP, GROUPS, "");
    assert_eq!((code, findings.len()), (0, 0), "{findings:#?}");
    let output = Command::new(env!("CARGO_BIN_EXE_dualwrite"))
        .args(["check", "-c"])
        .arg(deployment.path().join("dualwrite.toml"))
        .output()
        .expect("run");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("all checks passed"));
    assert!(
        !deployment.path().join("state").exists(),
        "a check writes no state"
    );
}

#[test]
fn config_faults_have_their_codes() {
    let deployment = Deployment::sound();
    let (code, findings) = deployment.check(SQLITE_ERP, "plugin = 42", "");
    assert_eq!(code, 1);
    assert!(
        codes(&findings)
            .iter()
            .all(|code| *code == "config.invalid")
            && !findings.is_empty(),
        "{findings:#?}"
    );
    assert!(
        findings[0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("dualwrite.toml:")),
        "the file and line are named: {findings:#?}"
    );

    let cycle = format!(
        "{GROUPS}\ndepends_on = [\"other\"]\n[maps.other]\n{}\ndepends_on = [\"customer-groups\"]\n",
        GROUPS.replace("CustCustomerGroup\"", "CustCustomerGroup2\"")
    );
    let (_, findings) = deployment.check(SQLITE_ERP, &cycle, "");
    assert!(
        codes(&findings).contains(&"config.dependency_cycle"),
        "{findings:#?}"
    );

    let disabled = format!(
        "{GROUPS}\ndepends_on = [\"other\"]\n[maps.other]\nenabled = false\n{}\n",
        GROUPS.replace("CustCustomerGroup\"", "CustCustomerGroup2\"")
    );
    let (_, findings) = deployment.check(SQLITE_ERP, &disabled, "");
    assert!(
        codes(&findings).contains(&"config.dependency_disabled"),
        "{findings:#?}"
    );
}

#[test]
fn plugin_faults_have_their_codes() {
    let deployment = Deployment::sound();
    let with_plugin = |file: &str| GROUPS.replace("customer_groups.wasm", file);

    // The config is checked before the file, so a missing file is a config error; a
    // file that goes missing later is plugin.unreadable (the engine's message).
    let (_, findings) = deployment.check(SQLITE_ERP, &with_plugin("missing.wasm"), "");
    assert!(!findings.is_empty(), "{findings:#?}");
    assert!(
        findings[0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("missing.wasm")),
        "{findings:#?}"
    );

    let (_, findings) = deployment.check(SQLITE_ERP, &with_plugin("broken.wasm"), "");
    only(&findings, "plugin.invalid", "broken.wasm");

    let (_, findings) = deployment.check(SQLITE_ERP, &with_plugin("other_world.wasm"), "");
    only(&findings, "plugin.world", "other_world.wasm");

    let (_, findings) = deployment.check(
        SQLITE_ERP,
        &with_plugin("declarative.wasm"),
        "[maps.customer-groups.config]\nlines = \"not a list\"\n",
    );
    only(&findings, "plugin.config", "declarative.wasm");

    // A plugin that traps while it is started.
    let (_, findings) = deployment.check(
        SQLITE_ERP,
        &with_plugin("hostile.wasm"),
        "[maps.customer-groups.config]\ntrap_in_configure = true\n",
    );
    only(&findings, "plugin.failed", "hostile.wasm");
}

#[test]
fn map_and_table_faults_have_their_codes() {
    // The config names another ERP table than the plugin maps (which exists too).
    let deployment = Deployment::new(
        &format!(
            "{ERP_TABLE}; {}",
            ERP_TABLE.replace("CustCustomerGroup ", "Groups ")
        ),
        CRM_TABLE,
    );
    let (_, findings) = deployment.check(
        SQLITE_ERP,
        &GROUPS.replace("entity = \"CustCustomerGroup\"", "entity = \"Groups\""),
        "",
    );
    only(&findings, "map.entity", "CustCustomerGroup");

    let (_, findings) = deployment.check(
        SQLITE_ERP,
        &GROUPS.replace(
            "key = [\"DATAAREAID\", \"CUSTOMERGROUPID\"]",
            "key = [\"DATAAREAID\", \"NOSUCHFIELD\"]",
        ),
        "",
    );
    assert!(
        codes(&findings).contains(&"map.key_undeclared"),
        "{findings:#?}"
    );

    let no_crm_table = Deployment::new(ERP_TABLE, "");
    let (_, findings) = no_crm_table.check(SQLITE_ERP, GROUPS, "");
    only(&findings, "schema.table_missing", "msdyn_customergroups");

    let fewer_columns = Deployment::new(
        ERP_TABLE,
        &CRM_TABLE.replace("msdyn_clearingperiodpaymenttermname TEXT,", ""),
    );
    let (_, findings) = fewer_columns.check(SQLITE_ERP, GROUPS, "");
    only(
        &findings,
        "schema.columns_missing",
        "msdyn_clearingperiodpaymenttermname",
    );

    // A column whose type cannot hold what the plugin maps to it.
    let wrong_type = Deployment::new(
        ERP_TABLE,
        &CRM_TABLE.replace(
            "msdyn_issalestaxincludedinprice BOOLEAN",
            "msdyn_issalestaxincludedinprice DATE",
        ),
    );
    let (_, findings) = wrong_type.check(SQLITE_ERP, GROUPS, "");
    only(
        &findings,
        "schema.type_mismatch",
        "msdyn_issalestaxincludedinprice is date (DATE), the plugin maps boolean values to it",
    );

    let no_key = Deployment::new(
        &ERP_TABLE.replace(",\n    PRIMARY KEY (DATAAREAID, CUSTOMERGROUPID))", ")"),
        CRM_TABLE,
    );
    let (_, findings) = no_key.check(SQLITE_ERP, GROUPS, "");
    only(&findings, "schema.key_not_unique", "CustCustomerGroup");
}

#[test]
fn side_faults_have_their_codes() {
    let deployment = Deployment::sound();
    std::fs::remove_file(deployment.path().join("erp.db")).expect("remove");
    let (_, findings) = deployment.check(SQLITE_ERP, GROUPS, "");
    only(&findings, "side.unreachable", "erp.db");

    // PostgreSQL: nothing listens on the port; a role that does not exist; a role that
    // may log in but not replicate.
    let refused = "connector = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:1/test\"";
    let (_, findings) = deployment.check(refused, GROUPS, "");
    only(&findings, "side.unreachable", "127.0.0.1:1");

    let database = servers::PgDatabase::create("check_cli");
    let url_for = |user: &str| {
        format!(
            "connector = \"postgres\"\nurl = \"{}\"",
            database
                .url
                .replacen("postgres://postgres@", &format!("postgres://{user}@"), 1)
        )
    };
    let (_, findings) = deployment.check(&url_for("no_such_role_dw"), GROUPS, "");
    only(&findings, "pg.bad_credentials", "no_such_role_dw");

    database
        .client()
        .batch_execute("DROP ROLE IF EXISTS dw_check_norepl; CREATE ROLE dw_check_norepl LOGIN")
        .expect("create role");
    let (_, findings) = deployment.check(&url_for("dw_check_norepl"), GROUPS, "");
    only(&findings, "pg.missing_privilege", "REPLICATION");
    database
        .client()
        .batch_execute("DROP ROLE dw_check_norepl")
        .expect("drop role");

    // MariaDB: a sound database with the CRM's table passes; a user without the
    // replication grants is named.
    let maria = servers::MyDatabase::create("check_cli");
    // MariaDB keys need bounded text.
    maria.exec(&CRM_TABLE.replace("TEXT", "VARCHAR(64)"));
    let maria_crm = |user: &str| {
        format!(
            "connector = \"mariadb\"\nurl = \"{}\"",
            maria
                .url
                .replacen("mysql://root@", &format!("mysql://{user}@"), 1)
        )
    };
    let crm_on_maria = format!("{SQLITE_ERP}\n[sides.crm]\n{}", maria_crm("root"));
    let sound = Deployment::sound();
    let (code, findings) = sound.check_sides(&crm_on_maria, GROUPS);
    assert_eq!((code, findings.len()), (0, 0), "{findings:#?}");
    maria.exec(
        "DROP USER IF EXISTS 'dw_check_plain'@'%'; CREATE USER 'dw_check_plain'@'%'; \
         DROP USER IF EXISTS 'dw_check_plain'@'localhost'; CREATE USER 'dw_check_plain'@'localhost'",
    );
    maria.exec(&format!(
        "GRANT ALL ON `{}`.* TO 'dw_check_plain'@'%'; GRANT ALL ON `{}`.* TO 'dw_check_plain'@'localhost'",
        maria.name, maria.name
    ));
    let plain = format!("{SQLITE_ERP}\n[sides.crm]\n{}", maria_crm("dw_check_plain"));
    let (_, findings) = sound.check_sides(&plain, GROUPS);
    maria.exec("DROP USER 'dw_check_plain'@'%'; DROP USER 'dw_check_plain'@'localhost'");
    only(&findings, "mysql.missing_privilege", "dw_check_plain");
}

#[test]
fn a_plugin_file_gone_after_the_config_was_read_is_unreadable() {
    // The config check looks for the file first; this is the race after it (a
    // deployment tool replacing the file), as the checks of a loaded plan see it.
    let deployment = Deployment::sound();
    let config = format!(
        "data_dir = \"state\"\nplugins_dir = \"plugins\"\n\n[sides.erp]\n{SQLITE_ERP}\n\n\
         [sides.crm]\nconnector = \"sqlite\"\npath = \"crm.db\"\n\n[maps.customer-groups]\n{GROUPS}\n\
         conflict = {{ policy = \"side-wins\", winner = \"erp\" }}\n"
    );
    let path = deployment.path().join("dualwrite.toml");
    std::fs::write(&path, config).expect("config");
    let plan = dualwrite::config::load(&path).expect("a valid config");
    std::fs::remove_file(
        deployment
            .path()
            .join("plugins")
            .join("customer_groups.wasm"),
    )
    .expect("remove");
    let runtime = dualwrite::plugin::PluginRuntime::new(Default::default(), None).expect("runtime");
    let findings = dualwrite::check::run(&plan, &runtime);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].code, "plugin.unreadable");
    assert!(
        findings[0].message.contains("customer_groups.wasm"),
        "{findings:#?}"
    );
    assert!(!findings[0].fix.is_empty());
}

#[test]
fn a_server_without_logical_decoding_is_reported_with_its_code() {
    // A server of its own: the machine's shared server runs `logical`, and changing it
    // needs a restart.
    let server = PrivatePostgres::start("replica");
    let deployment = Deployment::sound();
    let side = format!(
        "connector = \"postgres\"\nurl = \"{}\"",
        server.url("postgres")
    );
    let (code, findings) = deployment.check(&side, GROUPS, "");
    assert_eq!(code, 1);
    only(&findings, "pg.wal_level", "wal_level");
    assert!(
        findings[0]["fix"]
            .as_str()
            .is_some_and(|fix| !fix.is_empty()),
        "{findings:#?}"
    );
}

#[test]
fn generated_columns_views_and_missing_databases_have_their_codes() {
    // The CRM computes a column the map writes to it.
    let generated = Deployment::new(
        ERP_TABLE,
        &CRM_TABLE.replace(
            "msdyn_description TEXT,",
            "msdyn_description TEXT GENERATED ALWAYS AS ('fixed') VIRTUAL,",
        ),
    );
    let (_, findings) = generated.check(SQLITE_ERP, GROUPS, "");
    only(&findings, "schema.generated_column", "msdyn_description");

    // The CRM "table" is a view.
    let view = Deployment::new(
        &format!(
            "{ERP_TABLE}; {}; CREATE VIEW msdyn_customergroups AS SELECT * FROM groups_data",
            CRM_TABLE.replace("msdyn_customergroups", "groups_data")
        ),
        "",
    );
    let crm_in_erp_file =
        format!("{SQLITE_ERP}\n[sides.crm]\nconnector = \"sqlite\"\npath = \"crm.db\"");
    std::fs::copy(view.path().join("erp.db"), view.path().join("crm.db")).expect("copy");
    let (_, findings) = view.check_sides(&crm_in_erp_file, GROUPS);
    assert!(
        codes(&findings).contains(&"schema.unsupported"),
        "{findings:#?}"
    );

    // Servers that answer, without the database the URL names.
    let deployment = Deployment::sound();
    let (_, findings) = deployment.check(
        "connector = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:5432/dw_no_such_database\"",
        GROUPS,
        "",
    );
    only(&findings, "pg.no_database", "dw_no_such_database");
    let maria_side =
        |url: &str| format!("{SQLITE_ERP}\n[sides.crm]\nconnector = \"mariadb\"\nurl = \"{url}\"");
    let (_, findings) = deployment.check_sides(
        &maria_side("mysql://root@127.0.0.1:3306/dw_no_such_database"),
        GROUPS,
    );
    only(&findings, "mysql.no_database", "dw_no_such_database");
    let (_, findings) = deployment.check_sides(
        &maria_side("mysql://dw_no_such_user@127.0.0.1:3306/test"),
        GROUPS,
    );
    only(&findings, "mysql.bad_credentials", "dw_no_such_user");
}

/// `dualwrite run` refuses what `dualwrite check` refuses: a map whose CRM column cannot
/// hold the kind the plugin maps to it is reported by `check` as `schema.type_mismatch`,
/// and `run` on the same file stops before syncing anything, naming the same code and
/// column (it used to start the map and fail row by row).
#[test]
fn run_refuses_a_map_that_check_refuses() {
    let wrong_type = Deployment::new(
        ERP_TABLE,
        &CRM_TABLE.replace(
            "msdyn_issalestaxincludedinprice BOOLEAN",
            "msdyn_issalestaxincludedinprice DATE",
        ),
    );
    let (code, findings) = wrong_type.check(SQLITE_ERP, GROUPS, "");
    assert_ne!(code, 0);
    only(
        &findings,
        "schema.type_mismatch",
        "msdyn_issalestaxincludedinprice",
    );

    // The same file, run: refused at start, with the check's code and message.
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualwrite"))
        .args(["run", "--no-admin", "--no-plugin-watch", "-c"])
        .arg(wrong_type.path().join("dualwrite.toml"))
        .env("DUALWRITE_CACHE_DIR", wrong_type.path().join("cache"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run dualwrite run");
    // A run that starts the map never exits by itself: give it a minute to refuse.
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(
        status.is_some_and(|status| !status.success()),
        "run must refuse the map at start; {status:?}:\n{stderr}"
    );
    assert!(
        stderr.contains("[schema.type_mismatch]")
            && stderr.contains("msdyn_issalestaxincludedinprice is date (DATE)"),
        "run names the check's code and the column:\n{stderr}"
    );
}

/// A map that copies a column into one that keeps less than it holds is refused before
/// it runs, by `check` and by `run` alike: `numeric(20,4)` on the ERP (PostgreSQL) into
/// `DECIMAL(10,2)` on the CRM (MariaDB) would round fraction digits and overflow integer
/// digits, `varchar(50)` into `CHAR(5)` would cut text. Copies the other way (the CRM's
/// narrower columns into the ERP's wider ones) are fine.
#[test]
fn a_copy_into_a_narrower_column_is_a_lossy_column() {
    let erp = servers::PgDatabase::create("lossy_erp");
    erp.client()
        .batch_execute(
            "CREATE TABLE items (item_no text PRIMARY KEY, code varchar(50), price numeric(20,4))",
        )
        .expect("erp table");
    let crm = servers::MyDatabase::create("lossy_crm");
    crm.exec(
        "CREATE TABLE products (sku VARCHAR(20) PRIMARY KEY, code CHAR(5), amount DECIMAL(10,2))",
    );
    let deployment = Deployment::sound();
    let map = |direction: &str| {
        format!(
            r#"
data_dir = "state"
plugins_dir = "plugins"

[sides.erp]
connector = "postgres"
url = "{erp}"

[sides.crm]
connector = "mariadb"
url = "{crm}"

[maps.items]
plugin = "declarative.wasm"
erp = {{ side = "erp", entity = "items", key = ["item_no"] }}
crm = {{ side = "crm", entity = "products", key = ["sku"] }}
direction = "{direction}"
conflict = {{ policy = "side-wins", winner = "erp" }}

[maps.items.config]
name = "items"
erp = {{ entity = "items", key = ["item_no"] }}
crm = {{ entity = "products", key = ["sku"] }}

[[maps.items.config.fields]]
erp = "item_no"
crm = "sku"

[[maps.items.config.fields]]
erp = "code"
crm = "code"

[[maps.items.config.fields]]
erp = "price"
crm = "amount"
kind = "decimal"
"#,
            erp = erp.url,
            crm = crm.url
        )
    };
    let (code, findings) = deployment.run_check(&map("both"));
    assert_eq!(code, 1, "{findings:#?}");
    assert_eq!(
        codes(&findings),
        ["schema.lossy_column", "schema.lossy_column"],
        "{findings:#?}"
    );
    let messages: Vec<&str> = findings
        .iter()
        .map(|finding| finding["message"].as_str().expect("message"))
        .collect();
    assert!(
        messages[0].contains("products.code (char(5))")
            && messages[0].contains("50 characters into 5"),
        "{messages:#?}"
    );
    assert!(
        messages[1].contains("products.amount (decimal(10,2))")
            && messages[1].contains("4 fraction digits into 2"),
        "{messages:#?}"
    );
    // Only towards the ERP: nothing is narrowed.
    let (code, findings) = deployment.run_check(&map("to-erp"));
    assert_eq!((code, findings.len()), (0, 0), "{findings:#?}");
}
