//! The config module against whole files: what parses into which plan, and which error,
//! at which line, each mistake gives.

use std::path::Path;

use serde_json::json;

use super::*;
use crate::change::{Direction, Side};

/// The variable tests treat as set in the environment.
const SET_VAR: &str = "DUALWRITE_TEST_PASSWORD";

/// A folder with a config's surroundings: `plugins/` holding three plugin files.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        for plugin in ["customers.wasm", "customer-groups.wasm", "invoices.wasm"] {
            std::fs::write(dir.path().join("plugins").join(plugin), b"\0asm").unwrap();
        }
        Fixture { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn parse(&self, text: &str) -> Result<Plan, ConfigErrors> {
        parse_with_env(text, "dualwrite.toml", self.path(), &|var| var == SET_VAR)
    }

    fn plan(&self, text: &str) -> Plan {
        match self.parse(text) {
            Ok(plan) => plan,
            Err(errors) => panic!("expected a plan, got:\n{errors}"),
        }
    }

    fn errors(&self, text: &str) -> Vec<ConfigError> {
        match self.parse(text) {
            Ok(plan) => panic!("expected errors, got a plan: {plan:#?}"),
            Err(errors) => errors.into_iter().collect(),
        }
    }

    /// The only error `text` gives.
    fn error(&self, text: &str) -> ConfigError {
        let errors = self.errors(text);
        assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
        errors.into_iter().next().unwrap()
    }
}

/// The line (from 1) of the first line of `text` holding `needle`.
fn line_of(text: &str, needle: &str) -> u32 {
    let index = text
        .lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is not in the text"));
    u32::try_from(index + 1).unwrap()
}

/// Asserts `error` is at `line`, under `key_path`, and says `says`.
#[track_caller]
fn assert_error(error: &ConfigError, line: u32, key_path: &str, says: &str) {
    assert_eq!(error.line(), Some(line), "line of {error}");
    assert_eq!(error.key_path, key_path, "key path of {error}");
    assert!(
        error.message.contains(says),
        "{error}\ndoes not say: {says}"
    );
    assert_eq!(error.file, "dualwrite.toml");
}

const SIDES: &str = r#"
[sides.erp]
connector = "sqlite"
path = "erp.db"

[sides.crm]
connector = "sqlite"
path = "crm.db"
"#;

/// A valid map named `name`, with `extra` lines appended to its table.
fn map(name: &str, extra: &str) -> String {
    format!(
        r#"
[maps.{name}]
plugin = "customers.wasm"
erp = {{ side = "erp", entity = "Erp_{name}", key = ["KEY"] }}
crm = {{ side = "crm", entity = "crm_{name}", key = ["key"] }}
conflict = {{ policy = "side-wins", winner = "erp" }}
{extra}
"#
    )
}

fn config(maps: &[String]) -> String {
    format!("{SIDES}{}", maps.concat())
}

// ---- good files ----

#[test]
fn the_documented_example_parses_into_the_expected_plan() {
    let fixture = Fixture::new();
    let text = include_str!("example.toml");
    let plan = fixture.plan(text);
    let base = fixture.path();

    let mut customers = MapPlan::new(
        "customers",
        "customers.wasm",
        MapEndpoint::new(
            "erp",
            "CustCustomerV3Entity",
            ["DATAAREAID", "CUSTOMERACCOUNT"],
        ),
        MapEndpoint::new("crm", "accounts", ["msdyn_company", "accountnumber"]),
    );
    customers.depends_on = vec!["customer-groups".to_owned()];
    customers.conflict = ConflictPolicy::FieldOwnership {
        erp_fields: vec!["CREDITLIMIT".to_owned()],
        crm_fields: vec!["telephone1".to_owned()],
        others: Resolution::Wins(Side::Erp),
    };
    customers.initial_sync = InitialSync {
        master: Some(Side::Erp),
    };
    customers.plugin_config = json!({ "companies": ["USMF"] })
        .as_object()
        .unwrap()
        .clone();
    let mut groups = MapPlan::new(
        "customer-groups",
        "customer-groups.wasm",
        MapEndpoint::new(
            "erp",
            "CustCustomerGroupEntity",
            ["dataAreaId", "CustomerGroupId"],
        ),
        MapEndpoint::new(
            "crm",
            "msdyn_customergroups",
            ["msdyn_company", "msdyn_groupid"],
        ),
    );
    groups.conflict = ConflictPolicy::SideWins { winner: Side::Erp };

    let expected = Plan {
        data_dir: base.join("data"),
        plugins_dir: base.join("plugins"),
        sides: vec![
            SidePlan::sqlite("erp", base.join("erp.db")),
            SidePlan::sqlite("crm", base.join("crm.db")),
        ],
        maps: vec![groups, customers],
        origin: plan.origin.clone(),
        operations: Default::default(),
    };
    assert_eq!(plan, expected);
    assert_eq!(plan.origin.file, "dualwrite.toml");
    assert_eq!(
        plan.map("customers").unwrap().plugin_config_json(),
        r#"{"companies":["USMF"]}"#
    );
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let fixture = Fixture::new();
    let text = format!(
        "{SIDES}{}",
        r#"
[maps.one-way]
plugin = "customers.wasm"
erp = { side = "erp", entity = "E", key = ["K"] }
crm = { side = "crm", entity = "c", key = ["k"] }
direction = "to-erp"
"#
    );
    let plan = fixture.plan(&text);
    assert_eq!(plan.data_dir, fixture.path().join("data"));
    assert_eq!(plan.plugins_dir, fixture.path().join("plugins"));
    let map = &plan.maps[0];
    assert_eq!(map.direction, Direction::ToErp);
    // A one-way map's source wins conflicts unless told otherwise.
    assert_eq!(map.conflict, ConflictPolicy::SideWins { winner: Side::Crm });
    assert_eq!(map.initial_sync, InitialSync { master: None });
    assert_eq!(map.ordering, OrderingMode::PerKey);
    assert_eq!(map.batch_size, DEFAULT_BATCH_SIZE);
    assert!(map.enabled);
    assert!(map.plugin_config.is_empty());
    assert_eq!(map.plugin_config_json(), "{}");
    assert!(map.flows_from(Side::Crm) && !map.flows_from(Side::Erp));
}

#[test]
fn every_policy_and_setting_reaches_the_plan() {
    let fixture = Fixture::new();
    let text = config(&[
        r#"
[maps.a]
plugin = "customers.wasm"
erp = { side = "erp", entity = "E", key = ["K"] }
crm = { side = "crm", entity = "c", key = ["k"] }
conflict = { policy = "newer-wins", erp_column = "MODIFIED", crm_column = "modifiedon", tie = "crm" }
ordering = "strict"
batch_size = 100000
enabled = false
"#
        .to_owned(),
        r#"
[maps.b]
plugin = "invoices.wasm"
erp = { side = "erp", entity = "E2", key = ["K"] }
crm = { side = "crm", entity = "c2", key = ["k"] }
conflict = { policy = "manual" }
direction = "to-crm"
initial_sync = { master = "erp" }
batch_size = 1
"#
        .to_owned(),
    ]);
    let plan = fixture.plan(&text);
    let a = plan.map("a").unwrap();
    assert_eq!(
        a.conflict,
        ConflictPolicy::NewerWins {
            erp_column: "MODIFIED".to_owned(),
            crm_column: "modifiedon".to_owned(),
            tie: Resolution::Wins(Side::Crm),
        }
    );
    assert_eq!(a.ordering, OrderingMode::Strict);
    assert_eq!(a.batch_size, 100_000);
    assert!(!a.enabled);
    let b = plan.map("b").unwrap();
    assert_eq!(b.conflict, ConflictPolicy::Manual);
    assert_eq!(b.direction, Direction::ToCrm);
    assert_eq!(b.initial_sync.master, Some(Side::Erp));
    assert_eq!(b.batch_size, 1);
    assert_eq!(
        a.named_columns(Side::Crm),
        vec![
            ("maps.a.crm.key[0]".to_owned(), "k"),
            ("maps.a.conflict.crm_column".to_owned(), "modifiedon"),
        ]
    );
}

#[test]
fn relative_paths_start_at_the_config_files_folder() {
    let fixture = Fixture::new();
    let deployment = fixture.path().join("deployment");
    std::fs::create_dir_all(deployment.join("wasm")).unwrap();
    std::fs::write(deployment.join("wasm/customers.wasm"), b"\0asm").unwrap();
    let text = format!(
        r#"
data_dir = "./state"
plugins_dir = "wasm"

[sides.erp]
connector = "sqlite"
path = "../databases/erp.db"

[sides.crm]
connector = "sqlite"
path = "{}"
{}"#,
        fixture.path().join("crm.db").display(),
        map("customers", "")
    );
    let file = deployment.join("dualwrite.toml");
    std::fs::write(&file, &text).unwrap();

    let plan = load(&file).unwrap();
    assert_eq!(plan.data_dir, deployment.join("state"));
    assert_eq!(plan.plugins_dir, deployment.join("wasm"));
    assert_eq!(
        plan.side("erp").unwrap().connector,
        Connector::Sqlite {
            path: deployment.join("..").join("databases").join("erp.db")
        }
    );
    // Absolute paths stay as written.
    assert_eq!(
        plan.side("crm").unwrap().connector,
        Connector::Sqlite {
            path: fixture.path().join("crm.db")
        }
    );
    assert_eq!(
        plan.plugin_path(&plan.maps[0]),
        deployment.join("wasm").join("customers.wasm")
    );
    assert_eq!(plan.origin.file, file.display().to_string());
}

#[test]
fn a_file_that_cannot_be_read_is_one_error_without_a_line() {
    let fixture = Fixture::new();
    let missing = fixture.path().join("nope.toml");
    let errors = load(&missing).unwrap_err();
    assert_eq!(errors.len(), 1);
    let error = &errors.errors()[0];
    assert_eq!(error.location, None);
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: cannot read", missing.display()))
    );
}

// ---- maps in dependency order ----

#[test]
fn maps_come_parents_first_and_otherwise_in_file_order() {
    let fixture = Fixture::new();
    let text = config(&[
        map("invoices", r#"depends_on = ["customers"]"#),
        map("standalone", ""),
        map("customers", r#"depends_on = ["groups", "currencies"]"#),
        map("groups", ""),
        map("currencies", ""),
    ]);
    let plan = fixture.plan(&text);
    let names: Vec<&str> = plan.maps.iter().map(|map| map.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "standalone",
            "groups",
            "currencies",
            "customers",
            "invoices"
        ]
    );
}

#[test]
fn a_dependency_cycle_is_reported_as_its_path() {
    let fixture = Fixture::new();
    let text = config(&[
        map("a", r#"depends_on = ["b"]"#),
        map("b", r#"depends_on = ["c"]"#),
        map("c", r#"depends_on = ["a"]"#),
        map("d", r#"depends_on = ["a"]"#),
        map("e", r#"depends_on = ["f"]"#),
        map("f", r#"depends_on = ["e"]"#),
    ]);
    let errors = fixture.errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let a_line = line_of(&text, r#"depends_on = ["b"]"#);
    assert_error(
        &errors[0],
        a_line,
        "maps.a.depends_on",
        "dependency cycle: a -> b -> c -> a",
    );
    assert_eq!(
        errors[0].to_string(),
        format!(
            "dualwrite.toml:{a_line}:14: maps.a.depends_on: dependency cycle: a -> b -> c -> a \
             (each map depends on the next; break the cycle by removing one of these \
             `depends_on` entries)"
        )
    );
    assert_error(
        &errors[1],
        line_of(&text, r#"depends_on = ["f"]"#),
        "maps.e.depends_on",
        "dependency cycle: e -> f -> e",
    );
}

#[test]
fn dependency_mistakes_name_the_entry() {
    let fixture = Fixture::new();
    let text = config(&[
        map(
            "customers",
            r#"depends_on = ["groupz", "customers", "groups", "groups"]"#,
        ),
        map("groups", "enabled = false"),
    ]);
    let errors = fixture.errors(&text);
    let line = line_of(&text, "groupz");
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_error(
        &errors[0],
        line,
        "maps.customers.depends_on[0]",
        r#"unknown map "groupz" (did you mean "groups"?)"#,
    );
    assert_error(
        &errors[1],
        line,
        "maps.customers.depends_on[1]",
        "cannot depend on itself",
    );
    assert_error(
        &errors[2],
        line,
        "maps.customers.depends_on[2]",
        r#"depends on map "groups", which is disabled"#,
    );
    assert_error(
        &errors[3],
        line,
        "maps.customers.depends_on[3]",
        "listed twice",
    );
}

// ---- syntax, unknown keys, types ----

#[test]
fn a_syntax_error_names_its_line_and_column() {
    let fixture = Fixture::new();
    let text = "data_dir = \"data\"\n[sides.erp\nconnector = \"sqlite\"\n";
    let errors = fixture.errors(text);
    assert_eq!(errors[0].line(), Some(2));
    assert_eq!(errors[0].column(), Some(11));
    assert!(
        errors[0].message.starts_with("invalid TOML"),
        "{}",
        errors[0]
    );
}

#[test]
fn unknown_keys_are_reported_at_their_line_in_every_section_at_once() {
    let fixture = Fixture::new();
    let text = format!(
        "data_dri = \"data\"\n{SIDES}{}{}",
        map("a", "batchsize = 10"),
        map("b", "").replace(r#"key = ["key"]"#, r#"key = ["key"], entitty = "x""#)
    );
    let errors = fixture.errors(&text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_error(&errors[0], 1, "data_dri", "unknown field `data_dri`");
    assert_eq!(errors[0].column(), Some(1));
    assert_error(
        &errors[1],
        line_of(&text, "batchsize"),
        "maps.a.batchsize",
        "unknown field `batchsize`, expected one of `plugin`",
    );
    assert_error(
        &errors[2],
        line_of(&text, "entitty"),
        "maps.b.crm.entitty",
        "unknown field `entitty`",
    );
    assert_eq!(
        errors[2].column(),
        Some(1 + line_of_column(&text, "entitty"))
    );
}

/// The 0-based column of `needle` on its line.
fn line_of_column(text: &str, needle: &str) -> u32 {
    let line = text.lines().find(|line| line.contains(needle)).unwrap();
    u32::try_from(line.find(needle).unwrap()).unwrap()
}

#[test]
fn unknown_side_keys_and_wrong_types_name_their_line() {
    let fixture = Fixture::new();
    let text = format!(
        "{}{}",
        SIDES.replace("path = \"crm.db\"", "path = \"crm.db\"\nfile = \"x\""),
        map("a", "").replace(r#"key = ["KEY"]"#, r#"key = "KEY""#)
    );
    let errors = fixture.errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        line_of(&text, "file = "),
        "sides.crm.file",
        "unknown field `file`",
    );
    assert_error(
        &errors[1],
        line_of(&text, r#"key = "KEY""#),
        "maps.a.erp.key",
        "expected a sequence",
    );
}

#[test]
fn an_unknown_direction_lists_the_choices() {
    let fixture = Fixture::new();
    let text = config(&[map("a", r#"direction = "sideways""#)]);
    let error = fixture.error(&text);
    assert_error(
        &error,
        line_of(&text, "sideways"),
        "maps.a.direction",
        "unknown variant `sideways`, expected one of `both`, `to-crm`, `to-erp`",
    );
}

#[test]
fn a_broken_map_is_still_known_to_its_dependents() {
    let fixture = Fixture::new();
    let text = config(&[
        map("parent", "bogus = 1"),
        map("child", r#"depends_on = ["parent"]"#),
    ]);
    let error = fixture.error(&text);
    assert_error(
        &error,
        line_of(&text, "bogus"),
        "maps.parent.bogus",
        "unknown field",
    );
}

// ---- plugin files ----

#[test]
fn a_missing_plugin_file_is_reported_with_what_is_there() {
    let fixture = Fixture::new();
    let text = config(&[
        map("a", "").replace("customers.wasm", "customer.wasm"),
        map("b", "").replace("customers.wasm", "accounts.wasm"),
    ]);
    let errors = fixture.errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        line_of(&text, "customer.wasm"),
        "maps.a.plugin",
        r#"plugin file "customer.wasm" not found in"#,
    );
    assert!(
        errors[0]
            .message
            .ends_with(r#"(did you mean "customers.wasm"?)"#)
    );
    assert!(
        errors[1]
            .message
            .ends_with("(plugins there: customer-groups.wasm, customers.wasm, invoices.wasm)"),
        "{}",
        errors[1]
    );
}

#[test]
fn plugin_names_cannot_leave_the_plugins_folder() {
    let fixture = Fixture::new();
    let outside = fixture.path().join("outside.wasm");
    std::fs::write(&outside, b"\0asm").unwrap();
    let cases = [
        ("../outside.wasm", "without folders"),
        (outside.to_str().unwrap(), "without folders"),
        ("sub/customers.wasm", "without folders"),
        ("..\\\\outside.wasm", "without folders"),
        ("..", "must name a file inside plugins_dir"),
        ("", "is empty"),
    ];
    for (name, says) in cases {
        let text = config(&[map("a", "").replace("customers.wasm", name)]);
        let error = fixture.error(&text);
        assert_error(&error, line_of(&text, "plugin ="), "maps.a.plugin", says);
    }
}

#[cfg(unix)]
#[test]
fn a_plugin_symlink_out_of_the_plugins_folder_is_refused() {
    let fixture = Fixture::new();
    std::fs::write(fixture.path().join("outside.wasm"), b"\0asm").unwrap();
    std::os::unix::fs::symlink(
        "../outside.wasm",
        fixture.path().join("plugins/escape.wasm"),
    )
    .unwrap();
    let text = config(&[map("a", "").replace("customers.wasm", "escape.wasm")]);
    let error = fixture.error(&text);
    assert_error(
        &error,
        line_of(&text, "escape.wasm"),
        "maps.a.plugin",
        r#"cannot read plugin file "escape.wasm""#,
    );
}

#[test]
fn the_plugins_and_data_folders_are_checked() {
    let fixture = Fixture::new();
    std::fs::write(fixture.path().join("state"), b"").unwrap();
    let text = format!(
        "data_dir = \"state\"\nplugins_dir = \"wasm\"\n{}",
        config(&[map("a", "")])
    );
    let errors = fixture.errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(&errors[0], 1, "data_dir", "exists and is not a folder");
    assert_error(&errors[1], 2, "plugins_dir", "does not exist");

    // A defaulted plugins folder that is missing is reported without a line.
    let empty = tempfile::tempdir().unwrap();
    let errors = parse_with_env(
        &config(&[map("a", "")]),
        "dualwrite.toml",
        empty.path(),
        &|_| false,
    )
    .unwrap_err();
    let error = &errors.errors()[0];
    assert_eq!(error.location, None);
    assert!(
        error
            .message
            .contains("(plugins_dir defaults to `plugins` next to the config file)"),
        "{error}"
    );
}

// ---- sides and endpoints ----

#[test]
fn endpoints_name_known_and_different_sides() {
    let fixture = Fixture::new();
    let text = config(&[
        map("a", "").replace(r#"side = "erp""#, r#"side = "erpp""#),
        map("b", "").replace(r#"side = "crm""#, r#"side = "erp""#),
    ]);
    let errors = fixture.errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let error = &errors[0];
    assert_error(
        error,
        line_of(&text, "erpp"),
        "maps.a.erp.side",
        r#"unknown side "erpp" (did you mean "erp"? sides: erp, crm)"#,
    );
    assert_error(
        &errors[1],
        line_of(&text, r#"entity = "crm_b""#),
        "maps.b.crm.side",
        "both on side `erp`; a map links two different sides",
    );
}

#[test]
fn keys_must_be_non_empty_without_repeats() {
    let fixture = Fixture::new();
    let text = config(&[
        map("a", "")
            .replace(r#"key = ["KEY"]"#, r#"key = []"#)
            .replace(r#"key = ["key"]"#, r#"key = ["company", "id", "COMPANY"]"#),
        map("b", "").replace(r#"entity = "Erp_b""#, r#"entity = " ""#),
    ]);
    let errors = fixture.errors(&text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_error(
        &errors[0],
        line_of(&text, "key = []"),
        "maps.a.erp.key",
        "is empty",
    );
    assert_error(
        &errors[1],
        line_of(&text, "COMPANY"),
        "maps.a.crm.key[2]",
        r#"duplicate key field "COMPANY" (also key[0])"#,
    );
    assert_eq!(
        errors[1].column(),
        Some(1 + line_of_column(&text, r#""COMPANY""#))
    );
    assert_error(
        &errors[2],
        line_of(&text, r#"entity = " ""#),
        "maps.b.erp.entity",
        "entity name is empty",
    );
}

#[test]
fn two_maps_on_the_same_entities_are_refused() {
    let fixture = Fixture::new();
    let text = config(&[
        map("a", ""),
        map("b", "")
            .replace("Erp_b", "ERP_A")
            .replace("crm_b", "crm_a"),
    ]);
    let error = fixture.error(&text);
    assert_error(
        &error,
        line_of(&text, "ERP_A"),
        "maps.b.erp.entity",
        "map `a` already links erp `ERP_A` with crm `crm_a`",
    );
}

#[test]
fn side_settings_fit_their_connector() {
    let fixture = Fixture::new();
    let text = format!(
        r#"
[sides.erp]
connector = "sqlite"
url = "postgres://db/erp"

[sides.crm]
connector = "sqlite"
path = ":memory:"

[sides.pg]
connector = "postgres"
path = "x.db"
url = "http://db/crm"

[sides.copy]
connector = "sqlite"
path = "./erp2.db"

[sides.copy2]
connector = "sqlite"
path = "erp2.db"

[sides."bad name"]
connector = "oracle"
{}"#,
        map("a", "")
    );
    let errors = fixture.errors(&text);
    let summary: Vec<(u32, &str)> = errors
        .iter()
        .map(|error| (error.line().unwrap(), error.key_path.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (2, "sides.erp"),
            (4, "sides.erp.url"),
            (8, "sides.crm.path"),
            (12, "sides.pg.path"),
            (13, "sides.pg.url"),
            (21, "sides.copy2.path"),
            (23, "sides.\"bad name\""),
            (24, "sides.\"bad name\".connector"),
        ],
        "{errors:#?}"
    );
    assert!(
        errors[0]
            .message
            .contains("the sqlite connector needs `path`")
    );
    assert!(errors[2].message.contains("in-memory database"));
    assert!(
        errors[5]
            .message
            .contains("side `copy` uses the same database file")
    );
    assert!(errors[6].message.contains("side name \"bad name\" must be"));
    assert!(errors[7].message.contains("unknown variant `oracle`"));
}

#[test]
fn side_and_map_names_are_plain() {
    let fixture = Fixture::new();
    let text = format!(
        "{SIDES}{}",
        r#"
[maps."cust omers"]
plugin = "customers.wasm"
erp = { side = "erp", entity = "E", key = ["K"] }
crm = { side = "crm", entity = "c", key = ["k"] }
conflict = { policy = "manual" }
"#
    );
    let error = fixture.error(&text);
    assert_error(
        &error,
        line_of(&text, "cust omers"),
        "maps.\"cust omers\"",
        r#"map name "cust omers" must be 1 to 64 ASCII letters"#,
    );
}

#[test]
fn a_file_without_sides_or_maps_says_what_to_add() {
    let fixture = Fixture::new();
    let errors = fixture.errors("data_dir = \"data\"\n");
    assert_eq!(errors.len(), 2);
    assert!(errors[0].message.starts_with("no sides"));
    assert!(errors[1].message.starts_with("no maps"));
    assert_eq!(
        errors[0].to_string(),
        format!("dualwrite.toml: sides: {}", errors[0].message)
    );
}

// ---- conflict policies, initial sync, batch size ----

#[test]
fn a_winner_must_be_a_role() {
    let fixture = Fixture::new();
    let text = config(&[map("customers", "").replace(r#"winner = "erp""#, r#"winner = "erpp""#)]);
    let error = fixture.error(&text);
    let line = line_of(&text, "erpp");
    assert_eq!(
        error.to_string(),
        format!(
            "dualwrite.toml:{line}:{}: maps.customers.conflict.winner: unknown side \"erpp\" (sides: erp, crm)",
            1 + line_of_column(&text, "\"erpp\"")
        )
    );
}

#[test]
fn a_winner_named_by_side_name_gets_a_hint() {
    let fixture = Fixture::new();
    let text = format!(
        "{}{}",
        SIDES.replace("[sides.erp]", "[sides.ax]"),
        map("a", "")
            .replace(r#"side = "erp""#, r#"side = "ax""#)
            .replace(r#"winner = "erp""#, r#"winner = "ax""#)
    );
    let error = fixture.error(&text);
    assert!(
        error
            .message
            .ends_with(r#"side `ax` plays this map's erp role: write "erp""#),
        "{error}"
    );
}

#[test]
fn conflict_settings_must_fit_the_policy() {
    let fixture = Fixture::new();
    let conflict = |policy: &str| {
        config(&[map("a", "").replace(
            r#"conflict = { policy = "side-wins", winner = "erp" }"#,
            &format!("conflict = {policy}"),
        )])
    };

    let text = conflict(r#"{ policy = "manual", winner = "erp" }"#);
    let error = fixture.error(&text);
    assert_error(
        &error,
        line_of(&text, "manual"),
        "maps.a.conflict.winner",
        "`winner` does not apply to the manual policy (it takes no settings)",
    );

    let text = conflict(r#"{ policy = "side-wins", erp_column = "MODIFIED" }"#);
    let errors = fixture.errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        line_of(&text, "side-wins"),
        "maps.a.conflict",
        "needs `winner = \"erp\"` or `winner = \"crm\"`",
    );
    assert_error(
        &errors[1],
        line_of(&text, "side-wins"),
        "maps.a.conflict.erp_column",
        "does not apply to the side-wins policy (it takes `winner`)",
    );

    let text = conflict(r#"{ policy = "newer-wins", erp_column = "MODIFIED", tie = "both" }"#);
    let errors = fixture.errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        line_of(&text, "newer-wins"),
        "maps.a.conflict",
        "needs `crm_column`",
    );
    assert_error(
        &errors[1],
        line_of(&text, "newer-wins"),
        "maps.a.conflict.tie",
        r#"unknown choice "both" (erp, crm or manual)"#,
    );

    let text = conflict(r#"{ policy = "field-ownership" }"#);
    let error = fixture.error(&text);
    assert_error(
        &error,
        line_of(&text, "field-ownership"),
        "maps.a.conflict",
        "needs `erp_fields`",
    );

    let text =
        conflict(r#"{ policy = "field-ownership", erp_fields = ["A", "a"], others = "erp" }"#);
    let error = fixture.error(&text);
    assert_error(
        &error,
        line_of(&text, "field-ownership"),
        "maps.a.conflict.erp_fields[1]",
        r#""a" is listed twice"#,
    );

    let text = conflict(r#"{ policy = "last-writer-wins" }"#);
    let error = fixture.error(&text);
    assert_error(
        &error,
        line_of(&text, "last-writer-wins"),
        "maps.a.conflict.policy",
        "unknown variant `last-writer-wins`, expected one of `field-ownership`, `side-wins`, `newer-wins`, `manual`",
    );
}

#[test]
fn a_two_way_map_states_its_conflict_policy() {
    let fixture = Fixture::new();
    let text = config(&[map("a", "").replace(
        "conflict = { policy = \"side-wins\", winner = \"erp\" }\n",
        "",
    )]);
    let error = fixture.error(&text);
    assert_error(
        &error,
        line_of(&text, "[maps.a]"),
        "maps.a",
        "a two-way map needs a conflict policy",
    );
}

#[test]
fn a_one_way_maps_master_is_its_source() {
    let fixture = Fixture::new();
    let text = config(&[map(
        "a",
        "direction = \"to-crm\"\ninitial_sync = { master = \"crm\" }",
    )]);
    let error = fixture.error(&text);
    assert_error(
        &error,
        line_of(&text, "master"),
        "maps.a.initial_sync.master",
        "a to-crm map never writes to crm, so crm cannot be the master",
    );
    let text = config(&[map("a", "initial_sync = { master = \"ERP\" }")]);
    let error = fixture.error(&text);
    assert_error(
        &error,
        line_of(&text, "master"),
        "maps.a.initial_sync.master",
        "unknown side \"ERP\"",
    );
}

#[test]
fn batch_size_stays_in_range() {
    let fixture = Fixture::new();
    for size in ["0", "-1", "100001", "5000000000"] {
        let text = config(&[map("a", &format!("batch_size = {size}"))]);
        let error = fixture.error(&text);
        assert_error(
            &error,
            line_of(&text, "batch_size"),
            "maps.a.batch_size",
            &format!("must be between 1 and 100000, not {size}"),
        );
    }
}

// ---- plugin config ----

#[test]
fn the_plugin_config_becomes_json() {
    let fixture = Fixture::new();
    let text = config(&[map(
        "a",
        r#"[maps.a.config]
companies = ["USMF", "DEMF"]
since = 2024-01-31T08:00:00Z
ratio = 0.5
nested = { deep = [1, { x = true }] }
"#,
    )]);
    let plan = fixture.plan(&text);
    assert_eq!(
        serde_json::Value::Object(plan.maps[0].plugin_config.clone()),
        json!({
            "companies": ["USMF", "DEMF"],
            "since": "2024-01-31T08:00:00Z",
            "ratio": 0.5,
            "nested": { "deep": [1, { "x": true }] },
        })
    );

    let text = config(&[map("a", "[maps.a.config]\nlimits = [1.0, nan]")]);
    let error = fixture.error(&text);
    assert_error(
        &error,
        line_of(&text, "nan"),
        "maps.a.config.limits[1]",
        "has no JSON form",
    );
}

// ---- secrets ----

#[test]
fn secrets_in_the_file_are_refused() {
    let fixture = Fixture::new();
    let text = format!(
        r#"
[sides.erp]
connector = "sqlite"
path = "erp.db"
password = "hunter2"

[sides.crm]
connector = "postgres"
url = "postgres://app:hunter2@db/crm"
{}
api_token = "abc"
"#,
        map("a", "[maps.a.config]")
    );
    let errors = fixture.errors(&text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_error(
        &errors[0],
        5,
        "sides.erp.password",
        "looks like a secret; secrets are never read from the config file: put it in an \
         environment variable and name that variable with `password_env = \"VARIABLE\"`",
    );
    assert_error(&errors[1], 9, "sides.crm.url", "the URL holds a password");
    assert_error(
        &errors[2],
        line_of(&text, "api_token"),
        "maps.a.config.api_token",
        "use `*_env` keys",
    );
    assert!(
        errors
            .iter()
            .all(|error| !error.to_string().contains("hunter2"))
    );
}

#[test]
fn server_sides_name_a_set_environment_variable() {
    let fixture = Fixture::new();
    let text = format!(
        r#"
[sides.erp]
connector = "sqlite"
path = "erp.db"

[sides.crm]
connector = "postgres"
url = "postgres://dualwrite@db:5432/crm"
password_env = "{SET_VAR}"
{}"#,
        map("a", "")
    );
    let plan = fixture.plan(&text);
    assert_eq!(
        plan.side("crm").unwrap().connector,
        Connector::Postgres(ServerConnection {
            url: "postgres://dualwrite@db:5432/crm".to_owned(),
            password: Some(SecretEnv {
                var: SET_VAR.to_owned()
            }),
        })
    );

    let unset = text.replace(SET_VAR, "DUALWRITE_TEST_UNSET");
    let error = fixture.error(&unset);
    assert_error(
        &error,
        9,
        "sides.crm.password_env",
        "environment variable DUALWRITE_TEST_UNSET is not set",
    );
    let bad = text.replace(SET_VAR, "1 bad");
    let error = fixture.error(&bad);
    assert_error(
        &error,
        9,
        "sides.crm.password_env",
        "is not an environment variable name",
    );
}

#[test]
fn secrets_never_print() {
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    assert_eq!(secret.expose(), "hunter2");
}

// ---- errors ----

#[test]
fn errors_display_as_file_line_column_path_message() {
    let error = ConfigError {
        file: "customers.toml".to_owned(),
        location: Some(Location {
            line: 14,
            column: 3,
        }),
        key_path: "maps.customers.conflict.winner".to_owned(),
        message: "unknown side \"erpp\" (sides: erp, crm)".to_owned(),
    };
    assert_eq!(
        error.to_string(),
        "customers.toml:14:3: maps.customers.conflict.winner: unknown side \"erpp\" (sides: erp, crm)"
    );
    let errors = ConfigErrors::new(vec![error.clone(), error.clone()]).unwrap();
    assert_eq!(errors.len(), 1, "duplicates are dropped");
    assert!(ConfigErrors::new(Vec::new()).is_none());
}

#[test]
fn later_findings_are_placed_at_their_line() {
    let fixture = Fixture::new();
    let text = config(&[map("customers", "")]);
    let plan = fixture.plan(&text);
    let error = plan.error_at(
        "maps.customers.erp.entity",
        "no table Erp_customers in erp.db",
    );
    assert_eq!(error.line(), Some(line_of(&text, "Erp_customers")));
    assert_eq!(error.file, "dualwrite.toml");
    // A defaulted setting is placed at its map.
    let error = plan.error_at("maps.customers.batch_size", "too big for this side");
    assert_eq!(error.line(), Some(line_of(&text, "[maps.customers]")));
    // A plan built in code has no positions.
    let built = Plan {
        origin: Origin::default(),
        ..plan
    };
    let error = built.error_at("maps.customers", "x");
    assert_eq!(error.to_string(), "(plan): maps.customers: x");
}

#[test]
fn a_plan_prints_without_secrets() {
    // `parse` reads the real environment; PATH is set wherever tests run.
    let value = std::env::var("PATH").expect("PATH is set");
    let fixture = Fixture::new();
    let text = format!(
        "{}{}",
        SIDES.replace(
            "connector = \"sqlite\"\npath = \"crm.db\"",
            "connector = \"mariadb\"\nurl = \"mysql://sync@db/crm\"\npassword_env = \"PATH\"",
        ),
        map("a", "")
    );
    let plan = parse(&text, "dualwrite.toml", fixture.path()).unwrap();
    let Connector::MariaDb(server) = &plan.side("crm").unwrap().connector else {
        panic!("not a mariadb side: {plan:?}");
    };
    assert_eq!(
        server.password.as_ref().unwrap().read().unwrap().expose(),
        value
    );
    let printed = format!("{plan:?} {plan:#?}");
    assert!(printed.contains("\"PATH\""));
    assert!(!printed.contains(&value));
}
