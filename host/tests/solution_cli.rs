//! Solution bundles as a user moves maps between deployments: the real `dualwrite
//! solution export|import|rollback` over two deployment folders (SQLite files, plugins
//! folders, config files), and over a running `dualwrite run` through its admin API.
//! Exported from one deployment and imported into a second, the maps replay a change
//! set identically; a tampered bundle is refused with the exact reason and changes
//! nothing; an upgrade applied while rows keep arriving loses and doubles nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dualwrite::plugin::{Limits, PluginRuntime};
use dualwrite::replay::{RecordedLookups, parse_change_set, parse_links, replay};
use dualwrite_tests::engine_process::EngineProcess;
use dualwrite_tests::{cases_dir, eventually, plugin_path, sha256_hex};
use rusqlite::Connection;
use serde_json::Value as Json;

const TABLES: [(&str, &str); 2] = [
    (
        "erp.db",
        "CREATE TABLE CustCustomerGroup (
            DATAAREAID TEXT NOT NULL, CUSTOMERGROUPID TEXT NOT NULL, DESCRIPTION TEXT,
            ISSALESTAXINCLUDEDINPRICE TEXT, PAYMENTTERMID TEXT, CLEARINGPERIODPAYMENTTERMNAME TEXT,
            PRIMARY KEY (DATAAREAID, CUSTOMERGROUPID));
         CREATE TABLE Regions (CODE TEXT PRIMARY KEY, NAME TEXT);",
    ),
    (
        "crm.db",
        "CREATE TABLE msdyn_customergroups (
            msdyn_company TEXT NOT NULL, msdyn_groupid TEXT NOT NULL, msdyn_description TEXT,
            msdyn_issalestaxincludedinprice BOOLEAN, msdyn_paymenttermid TEXT,
            msdyn_clearingperiodpaymenttermname TEXT,
            PRIMARY KEY (msdyn_company, msdyn_groupid));
         CREATE TABLE regions (code TEXT PRIMARY KEY, name TEXT);",
    ),
];

const SIDES: &str = r#"
data_dir = "state"
plugins_dir = "plugins"

[admin]
listen = "127.0.0.1:0"

[sides.erp]
connector = "sqlite"
path = "erp.db"

[sides.crm]
connector = "sqlite"
path = "crm.db"
"#;

const MAPS: &str = r#"
[maps.regions]
plugin = "declarative.wasm"
erp = { side = "erp", entity = "Regions", key = ["CODE"] }
crm = { side = "crm", entity = "regions", key = ["code"] }
conflict = { policy = "side-wins", winner = "erp" }

[maps.regions.config]
name = "regions"
erp = { entity = "Regions", key = ["CODE"] }
crm = { entity = "regions", key = ["code"] }
fields = [{ erp = "CODE", crm = "code" }, { erp = "NAME", crm = "name" }]

[maps.customer-groups]
plugin = "customer_groups.wasm"
erp = { side = "erp", entity = "CustCustomerGroup", key = ["DATAAREAID", "CUSTOMERGROUPID"] }
crm = { side = "crm", entity = "msdyn_customergroups", key = ["msdyn_company", "msdyn_groupid"] }
conflict = { policy = "side-wins", winner = "erp" }
depends_on = ["regions"]

[maps.customer-groups.config]
resolve_lookups = false
companies = ["USMF"]
"#;

/// A deployment folder: the two SQLite files with their tables, a plugins folder with
/// `plugins`, and `dualwrite.toml` of the sides and `maps`.
fn deployment(dir: &Path, maps: &str, plugins: &[&str]) -> PathBuf {
    for (file, tables) in TABLES {
        let db = Connection::open(dir.join(file)).expect("create db");
        db.execute_batch(&format!("PRAGMA journal_mode=WAL; {tables}"))
            .expect("schema");
    }
    std::fs::create_dir_all(dir.join("plugins")).expect("plugins folder");
    for plugin in plugins {
        std::fs::copy(
            plugin_path(plugin),
            dir.join("plugins").join(format!("{plugin}.wasm")),
        )
        .expect("copy plugin");
    }
    let config = dir.join("dualwrite.toml");
    std::fs::write(&config, format!("{SIDES}{maps}")).expect("config");
    config
}

fn dualwrite(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dualwrite"))
        .args(args)
        .env("DUALWRITE_CACHE_DIR", cache)
        .env_remove("DUALWRITE_URL")
        .env_remove("DUALWRITE_TOKEN")
        .output()
        .expect("run dualwrite")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn export(config: &Path, version: &str, maps: &str, output: &Path, cache: &Path) {
    let exported = dualwrite(
        &[
            "solution",
            "export",
            "-c",
            s(config),
            "--name",
            "groups",
            "--publisher",
            "contoso",
            "--version",
            version,
            "--maps",
            maps,
            "--parameter",
            "customer-groups.config.companies",
            "-o",
            s(output),
        ],
        cache,
    );
    assert!(exported.status.success(), "{}", text(&exported));
}

const COMPANIES: &str = "customer-groups.config.companies=[\"USMF\"]";

/// Every file of a folder with its bytes, to show nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in walk(dir) {
        files.push((entry.clone(), std::fs::read(&entry).expect("read")));
    }
    files.sort();
    files
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path
            .extension()
            .is_some_and(|ext| ext == "toml" || ext == "wasm")
        {
            out.push(path);
        }
    }
    out
}

/// The outcomes of `map` of the deployment `config` for the change set `changes` with
/// `links`, through the plugin and config that deployment runs.
fn replayed(config: &Path, map: &str, changes: &str, links: &str) -> Vec<Json> {
    let plan = dualwrite::config::load(config).expect("valid deployment");
    let map = plan.map(map).expect("the map");
    let runtime = PluginRuntime::new(Limits::default(), None).expect("runtime");
    let bytes = std::fs::read(plan.plugin_path(map)).expect("plugin");
    let plugin = runtime.load_bytes(&map.plugin, &bytes).expect("loads");
    let lookups = RecordedLookups::new(parse_links("links", links).expect("links"), Vec::new());
    let mut runner = plugin
        .start(&map.plugin_config_json(), Arc::new(lookups))
        .expect("starts");
    let set = parse_change_set("changes", changes).expect("change set");
    replay(&mut runner, &set, 100).expect("replays")
}

#[test]
fn a_bundle_imported_elsewhere_behaves_identically() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = root.path().join("cache");
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(&a).expect("a");
    std::fs::create_dir_all(&b).expect("b");
    let config_a = deployment(&a, MAPS, &["declarative", "customer_groups"]);
    let config_b = deployment(&b, "", &[]);
    let bundle = root.path().join("groups-1.0.0.dwsolution");
    export(
        &config_a,
        "1.0.0",
        "regions,customer-groups",
        &bundle,
        &cache,
    );

    // The environment-specific value is not in the bundle: unbound, it is refused.
    let before = snapshot(&b);
    let unbound = dualwrite(
        &["solution", "import", s(&bundle), "-c", s(&config_b)],
        &cache,
    );
    assert_eq!(unbound.status.code(), Some(1), "{}", text(&unbound));
    assert!(
        text(&unbound).contains("parameter customer-groups.config.companies is not bound"),
        "{}",
        text(&unbound)
    );

    // Checked with the parameter bound: the diff, and nothing written.
    let checked = dualwrite(
        &[
            "solution",
            "import",
            s(&bundle),
            "-c",
            s(&config_b),
            "--set",
            COMPANIES,
        ],
        &cache,
    );
    assert!(checked.status.success(), "{}", text(&checked));
    let said = text(&checked);
    assert!(said.contains("solution groups 1.0.0 by contoso"), "{said}");
    assert!(
        said.contains("+ regions: added") && said.contains("+ customer-groups: added"),
        "{said}"
    );
    assert!(said.contains("nothing applied"), "{said}");
    assert_eq!(snapshot(&b), before, "a check changes nothing");

    let applied = dualwrite(
        &[
            "solution",
            "import",
            s(&bundle),
            "-c",
            s(&config_b),
            "--set",
            COMPANIES,
            "--apply",
        ],
        &cache,
    );
    assert!(applied.status.success(), "{}", text(&applied));
    let plan_b = dualwrite::config::load(&config_b).expect("B is a valid deployment");
    let names: Vec<&str> = plan_b.maps.iter().map(|map| map.name.as_str()).collect();
    assert_eq!(names, ["regions", "customer-groups"]);
    let groups = plan_b.map("customer-groups").expect("map");
    assert!(groups.plugin.starts_with("customer_groups-") && groups.plugin.ends_with(".wasm"));
    assert_eq!(
        groups.plugin_config["companies"],
        serde_json::json!(["USMF"])
    );
    assert_eq!(
        std::fs::read(plan_b.plugin_path(groups)).expect("written"),
        std::fs::read(plugin_path("customer_groups")).expect("built")
    );
    let checked = dualwrite(&["check", "-c", s(&config_b)], &cache);
    assert!(
        checked.status.success(),
        "B passes its health checks: {}",
        text(&checked)
    );

    // The same recorded change sets through both deployments: identical output.
    let case = cases_dir().join("customer-groups-both-ways");
    let changes = std::fs::read_to_string(case.join("changes.jsonl")).expect("changes");
    let links = std::fs::read_to_string(case.join("links.jsonl")).expect("links");
    let from_a = replayed(&config_a, "customer-groups", &changes, &links);
    assert!(from_a.len() > 5);
    assert_eq!(
        replayed(&config_b, "customer-groups", &changes, &links),
        from_a
    );
    let regions = "{\"dualwrite\": \"change-set\", \"version\": 1}\n\
        {\"source\": \"erp\", \"op\": \"insert\", \"row\": {\"CODE\": \"N\", \"NAME\": \"North\"}}\n\
        {\"source\": \"crm\", \"op\": \"update\", \"row\": {\"code\": \"S\", \"name\": \"South\"}, \"changed\": [\"name\"]}\n";
    let links = "{\"dualwrite\": \"links\", \"version\": 1}\n";
    let from_a = replayed(&config_a, "regions", regions, links);
    assert_eq!(from_a.len(), 2);
    assert_eq!(replayed(&config_b, "regions", regions, links), from_a);

    // Applied again, nothing changes; the history has the version.
    let again = dualwrite(
        &[
            "solution",
            "import",
            s(&bundle),
            "-c",
            s(&config_b),
            "--set",
            COMPANIES,
        ],
        &cache,
    );
    assert!(
        text(&again).contains("= customer-groups: unchanged"),
        "{}",
        text(&again)
    );
    let history = dualwrite(&["solution", "history", "-c", s(&config_b)], &cache);
    assert!(
        text(&history).contains("groups 1.0.0 applied"),
        "{}",
        text(&history)
    );

    // Rolled back: B's config is the one from before.
    let rolled_back = dualwrite(
        &["solution", "rollback", "groups", "-c", s(&config_b)],
        &cache,
    );
    assert!(rolled_back.status.success(), "{}", text(&rolled_back));
    assert_eq!(
        std::fs::read_to_string(&config_b).expect("config"),
        format!("{SIDES}")
    );
}

/// The bundle's entries, rebuilt by `edit` into a new archive.
fn rewrite(bundle: &Path, out: &Path, edit: impl Fn(&str, Vec<u8>) -> Vec<(String, Vec<u8>)>) {
    let bytes = std::fs::read(bundle).expect("bundle");
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut builder = tar::Builder::new(Vec::new());
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).expect("data");
        for (path, data) in edit(&path, data) {
            let mut header = tar::Header::new_old();
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder.append(&header, data.as_slice()).expect("append");
        }
    }
    std::fs::write(out, builder.into_inner().expect("tar")).expect("write");
}

#[test]
fn a_tampered_bundle_is_refused_with_the_exact_reason() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = root.path().join("cache");
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(&a).expect("a");
    std::fs::create_dir_all(&b).expect("b");
    let config_a = deployment(&a, MAPS, &["declarative", "customer_groups"]);
    let config_b = deployment(&b, "", &[]);
    let bundle = root.path().join("groups.dwsolution");
    export(
        &config_a,
        "1.0.0",
        "regions,customer-groups",
        &bundle,
        &cache,
    );
    let before = snapshot(&b);
    let import = |file: &Path| {
        dualwrite(
            &[
                "solution",
                "import",
                s(file),
                "-c",
                s(&config_b),
                "--set",
                COMPANIES,
                "--apply",
            ],
            &cache,
        )
    };

    // One plugin byte changed.
    let changed = root.path().join("changed.dwsolution");
    rewrite(&bundle, &changed, |path, mut data| {
        if path == "plugins/customer_groups.wasm" {
            let middle = data.len() / 2;
            data[middle] ^= 0x01;
        }
        vec![(path.to_owned(), data)]
    });
    let refused = import(&changed);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("plugin customer_groups.wasm: its content hash is")
            && text(&refused).contains("the file was changed or damaged"),
        "{}",
        text(&refused)
    );

    // An entry whose path escapes the folder it is unpacked into.
    let escaping = root.path().join("escaping.dwsolution");
    rewrite(&bundle, &escaping, |path, data| {
        let mut entries = vec![(path.to_owned(), data)];
        if path == "manifest.json" {
            entries.push(("../../outside.toml".to_owned(), b"x = 1".to_vec()));
        }
        entries
    });
    let refused = import(&escaping);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains(
            "archive entry `../../outside.toml` refused: its path would escape the folder"
        ),
        "{}",
        text(&refused)
    );

    // A map whose dependency is neither in the bundle nor in the target.
    let partial = root.path().join("partial.dwsolution");
    export(&config_a, "1.0.0", "customer-groups", &partial, &cache);
    let refused = import(&partial);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains(
            "map customer-groups: depends on map regions, which is neither in the bundle nor in the deployment"
        ),
        "{}",
        text(&refused)
    );

    // A plugin that is not a component of a supported world, with a matching hash (a
    // tool that rewrote the manifest too): refused by the world check.
    let other = root.path().join("other-world.dwsolution");
    let other_world = std::fs::read(plugin_path("other_world")).expect("other world");
    let other_hash = sha256_hex(&other_world);
    rewrite(&bundle, &other, |path, data| match path {
        "plugins/customer_groups.wasm" => vec![(path.to_owned(), other_world.clone())],
        "manifest.json" => {
            let mut manifest: Json = serde_json::from_slice(&data).expect("manifest");
            for map in manifest["maps"].as_array_mut().expect("maps") {
                if map["name"] == "customer-groups" {
                    map["plugin_hash"] = Json::String(other_hash.clone());
                }
            }
            vec![(
                path.to_owned(),
                serde_json::to_vec(&manifest).expect("json"),
            )]
        }
        _ => vec![(path.to_owned(), data)],
    });
    let refused = import(&other);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("map customer-groups: customer_groups.wasm: not a dualwrite map plugin this host can run"),
        "{}",
        text(&refused)
    );

    assert_eq!(
        snapshot(&b),
        before,
        "nothing was written by a refused import"
    );
    assert!(!root.path().join("outside.toml").exists());
}

fn crm_group_count(dir: &Path) -> u64 {
    let db = Connection::open(dir.join("crm.db")).expect("open");
    db.busy_timeout(Duration::from_secs(5)).expect("timeout");
    db.query_row("SELECT count(*) FROM msdyn_customergroups", [], |row| {
        row.get::<_, i64>(0)
    })
    .expect("count") as u64
}

#[test]
fn an_upgrade_applied_to_a_running_engine_while_rows_arrive_loses_and_doubles_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let cache = root.path().join("cache");
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(&a).expect("a");
    std::fs::create_dir_all(&b).expect("b");
    let config_a = deployment(&a, MAPS, &["declarative", "customer_groups"]);
    let config_b = deployment(&b, "", &[]);
    let v1 = root.path().join("groups-1.0.0.dwsolution");
    export(&config_a, "1.0.0", "regions,customer-groups", &v1, &cache);
    let applied = dualwrite(
        &[
            "solution",
            "import",
            s(&v1),
            "-c",
            s(&config_b),
            "--set",
            COMPANIES,
            "--apply",
        ],
        &cache,
    );
    assert!(applied.status.success(), "{}", text(&applied));

    // Version 1.1.0 runs the C build of the customer groups map.
    std::fs::copy(
        plugin_path("customer_groups_c"),
        a.join("plugins").join("customer_groups.wasm"),
    )
    .expect("new build");
    let v1_1 = root.path().join("groups-1.1.0.dwsolution");
    export(&config_a, "1.1.0", "regions,customer-groups", &v1_1, &cache);

    let engine = EngineProcess::start(
        Path::new(env!("CARGO_BIN_EXE_dualwrite")),
        &config_b,
        &cache,
    );
    let rust = std::fs::read(plugin_path("customer_groups")).expect("rust");
    let c = std::fs::read(plugin_path("customer_groups_c")).expect("c");
    assert_eq!(engine.plugin_hash("customer-groups"), sha256_hex(&rust));

    let stop = Arc::new(AtomicBool::new(false));
    let inserted = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, inserted, erp) = (stop.clone(), inserted.clone(), b.join("erp.db"));
        std::thread::spawn(move || {
            let db = Connection::open(erp).expect("open");
            db.busy_timeout(Duration::from_secs(10)).expect("timeout");
            while !stop.load(Ordering::Relaxed) {
                let n = inserted.load(Ordering::Relaxed);
                db.execute(
                    "INSERT INTO CustCustomerGroup (DATAAREAID, CUSTOMERGROUPID, DESCRIPTION) \
                     VALUES ('USMF', ?1, 'flowing')",
                    [format!("G{n:05}")],
                )
                .expect("insert");
                inserted.store(n + 1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(4));
            }
        })
    };
    eventually("rows before the upgrade", Duration::from_secs(60), || {
        crm_group_count(&b) >= 50
    });

    // Through the running engine's API: checked, applied, switched at a clean point.
    let upgraded = Command::new(env!("CARGO_BIN_EXE_dualwrite"))
        .args([
            "solution",
            "import",
            s(&v1_1),
            "--set",
            COMPANIES,
            "--apply",
        ])
        .env("DUALWRITE_URL", &engine.url)
        .env("DUALWRITE_TOKEN", &engine.token)
        .env("DUALWRITE_CACHE_DIR", &cache)
        .output()
        .expect("run dualwrite");
    assert!(upgraded.status.success(), "{}", text(&upgraded));
    let said = text(&upgraded);
    assert!(said.contains("~ customer-groups: plugin"), "{said}");
    assert!(said.contains("= regions: unchanged"), "{said}");
    assert!(said.contains("customer-groups: scheduled"), "{said}");
    eventually(
        "the switch to the new version",
        Duration::from_secs(30),
        || engine.plugin_hash("customer-groups") == sha256_hex(&c),
    );
    let at_switch = inserted.load(Ordering::Relaxed);
    eventually("rows after the upgrade", Duration::from_secs(60), || {
        crm_group_count(&b) >= at_switch + 50
    });
    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");
    let total = inserted.load(Ordering::Relaxed);
    eventually("every row", Duration::from_secs(60), || {
        crm_group_count(&b) == total
    });
    let counters = || engine.counters("customer-groups");
    eventually("the counters", Duration::from_secs(10), || {
        counters()["written_to_crm"] == total
    });
    assert_eq!(counters()["errors"], 0);
    let activity = engine.get("/api/v1/activity?map=customer-groups&kind=plugin-version");
    assert!(
        activity["activity"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|entry| entry["message"]
                .as_str()
                .is_some_and(|message| message.contains("solution groups 1.1.0 applied"))),
        "{activity}"
    );

    // Rolled back through the API: the running map returns to the Rust build.
    let rolled_back = Command::new(env!("CARGO_BIN_EXE_dualwrite"))
        .args(["solution", "rollback", "groups"])
        .env("DUALWRITE_URL", &engine.url)
        .env("DUALWRITE_TOKEN", &engine.token)
        .output()
        .expect("run dualwrite");
    assert!(rolled_back.status.success(), "{}", text(&rolled_back));
    eventually("the switch back", Duration::from_secs(30), || {
        engine.plugin_hash("customer-groups") == sha256_hex(&rust)
    });
}
