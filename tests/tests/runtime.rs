//! The plugin runtime's guarantees that are not about one change set: what files it
//! refuses and why, the plugins-folder capability, the compiled-code cache, config
//! handling, and one runtime serving on after a hostile plugin.

use std::sync::Arc;

use dualwrite::change::{Change, ChangeOp, Side, Value};
use dualwrite::plugin::{Limits, LoadError, NoLookups, PluginRuntime, StartError, TransformResult};
use dualwrite_tests::plugin_path;
use wit_component::{ComponentEncoder, StringEncoding, dummy_module, embed_component_metadata};
use wit_parser::{ManglingAndAbi, Resolve};

fn limits() -> Limits {
    Limits {
        max_instances: 8,
        ..Limits::default()
    }
}

fn runtime() -> PluginRuntime {
    PluginRuntime::new(limits(), None).expect("runtime")
}

/// A component made from WIT alone: every export is a stub. Enough to test what the
/// loader checks before anything runs.
fn component_from_wit(wit: &str, world: &str) -> Vec<u8> {
    let mut resolve = Resolve::default();
    let package = resolve.push_str("test.wit", wit).expect("valid WIT");
    let world = resolve
        .select_world(&[package], Some(world))
        .expect("world exists");
    let mut module = dummy_module(&resolve, world, ManglingAndAbi::Standard32);
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
        .expect("embed metadata");
    ComponentEncoder::default()
        .module(&module)
        .expect("module")
        .validate(true)
        .encode()
        .expect("encode component")
}

/// The real contract with its version or one function changed.
fn contract(version: &str, transform: &str) -> String {
    let wit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/table-map.wit"),
    )
    .expect("wit file");
    wit.replace(
        "dualwrite:table-map@0.1.0",
        &format!("dualwrite:table-map@{version}"),
    )
    .replace(
        "transform: func(batch: list<change>) -> list<outcome>;",
        transform,
    )
}

fn load_error(bytes: &[u8]) -> String {
    match runtime().load_bytes("candidate.wasm", bytes) {
        Ok(_) => panic!("the component should have been refused"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn a_future_world_version_is_refused_naming_both_versions() {
    let bytes = component_from_wit(
        &contract(
            "0.2.0",
            "transform: func(batch: list<change>) -> list<outcome>;",
        ),
        "map-plugin",
    );
    let message = load_error(&bytes);
    assert!(
        message.contains(
            "it implements dualwrite:table-map@0.2.0, but this dualwrite supports dualwrite:table-map@0.1.0"
        ),
        "{message}"
    );
}

#[test]
fn a_changed_function_signature_is_refused_as_not_matching_the_contract() {
    let bytes = component_from_wit(
        &contract(
            "0.1.0",
            "transform: func(batch: list<string>) -> list<string>;",
        ),
        "map-plugin",
    );
    let message = load_error(&bytes);
    assert!(
        message.contains("its exports do not match the dualwrite:table-map@0.1.0 contract"),
        "{message}"
    );
    assert!(message.contains("transform"), "{message}");
}

#[test]
fn an_import_the_host_does_not_provide_is_refused_by_name() {
    let wit = contract("0.1.0", "transform: func(batch: list<change>) -> list<outcome>;")
        .replace(
            "world map-plugin {\n    import host;",
            "interface net { fetch: func(url: string) -> string; }\n\nworld map-plugin {\n    import host;\n    import net;",
        );
    let message = load_error(&component_from_wit(&wit, "map-plugin"));
    assert!(
        message.contains("imports the interface `dualwrite:table-map/net@0.1.0`"),
        "{message}"
    );
}

#[test]
fn a_wasi_import_that_wasmtime_wasi_does_not_provide_is_refused_at_link_time() {
    let wit = contract(
        "0.1.0",
        "transform: func(batch: list<change>) -> list<outcome>;",
    )
    .replace(
        "world map-plugin {\n    import host;",
        "world map-plugin {\n    import host;\n    import wasi:teleport/beam@0.2.0;",
    ) + "\npackage wasi:teleport@0.2.0 {\n    interface beam { go: func() -> u64; }\n}\n";
    let message = load_error(&component_from_wit(&wit, "map-plugin"));
    assert!(
        message.contains("its imports cannot be linked"),
        "{message}"
    );
    assert!(message.contains("wasi:teleport/beam@0.2.0"), "{message}");
}

#[test]
fn a_wasi_plugin_runs_with_a_context_that_grants_nothing() {
    let plugin = runtime()
        .load_bytes(
            "wasi_probe.wasm",
            &std::fs::read(plugin_path("wasi_probe")).expect("plugin"),
        )
        .expect("a component importing WASI loads");
    let mut runner = plugin.start("{}", Arc::new(NoLookups)).expect("start");
    let results = runner.transform(&[Change {
        source: Side::Erp,
        op: ChangeOp::Insert,
        row: vec![Value::Text("p1".into()), Value::Null],
        changed: Vec::new(),
    }]);
    let TransformResult::Writes(writes) = &results[0] else {
        panic!("the probe should write its report: {results:?}");
    };
    let Value::Text(report) = &writes[0].fields[1].value else {
        panic!("a text report: {writes:?}");
    };
    let line = |probe: &str| {
        report
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{probe}: ")))
            .unwrap_or_else(|| panic!("no {probe} line in {report}"))
            .to_owned()
    };
    assert_eq!(line("env"), "[]", "no environment variables");
    assert_eq!(line("args"), "[]", "no arguments");
    assert!(line("file").starts_with("error"), "no files: {report}");
    assert!(line("dir").starts_with("error"), "no directories: {report}");
    assert_eq!(
        line("clock-seconds"),
        "0",
        "the clock is frozen at the epoch"
    );
    assert!(line("network").starts_with("error"), "no network: {report}");
}

#[test]
fn plugin_names_cannot_leave_the_plugins_folder() {
    let root = tempfile::tempdir().expect("tempdir");
    let plugins = root.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    std::fs::copy(plugin_path("hostile"), root.path().join("outside.wasm")).expect("copy");
    std::fs::copy(plugin_path("hostile"), plugins.join("inside.wasm")).expect("copy");
    let dir = cap_std::fs::Dir::open_ambient_dir(&plugins, cap_std::ambient_authority())
        .expect("open plugins dir");
    let runtime = runtime();
    assert!(runtime.load(&dir, "inside.wasm").is_ok());
    let outside = root.path().join("outside.wasm");
    for name in ["../outside.wasm", outside.to_str().expect("utf-8 path")] {
        match runtime.load(&dir, name) {
            Err(LoadError::Read { file, .. }) => assert_eq!(file, name),
            Err(other) => panic!("{name}: unexpected error {other}"),
            Ok(_) => panic!("{name} escaped the plugins folder"),
        }
    }
}

#[test]
fn compiled_code_is_cached_and_a_damaged_entry_is_recompiled() {
    let cache = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(plugin_path("hostile")).expect("plugin");
    let first = PluginRuntime::new(limits(), Some(cache.path().to_owned())).expect("runtime");
    first
        .load_bytes("hostile.wasm", &bytes)
        .expect("compile and cache");
    let entries: Vec<_> = std::fs::read_dir(cache.path())
        .expect("cache dir")
        .map(|entry| entry.expect("entry").path())
        .collect();
    assert_eq!(entries.len(), 1, "one cache entry: {entries:?}");
    let entry = &entries[0];
    let name = entry.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(
        name.starts_with(&dualwrite::plugin::ContentHash::of(&bytes).hex()),
        "entry named by content hash: {name}"
    );

    // A second runtime (a restart) loads from the cache and runs normally.
    let second = PluginRuntime::new(limits(), Some(cache.path().to_owned())).expect("runtime");
    let plugin = second
        .load_bytes("hostile.wasm", &bytes)
        .expect("load cached");
    assert!(plugin.start("{}", Arc::new(NoLookups)).is_ok());

    // A damaged entry is detected, dropped, and the plugin compiled again.
    let original = std::fs::read(entry).expect("entry");
    let mut damaged = original.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(entry, damaged).expect("damage");
    let third = PluginRuntime::new(limits(), Some(cache.path().to_owned())).expect("runtime");
    let plugin = third
        .load_bytes("hostile.wasm", &bytes)
        .expect("recompiled");
    assert!(plugin.start("{}", Arc::new(NoLookups)).is_ok());
    assert_eq!(
        std::fs::read(entry).expect("entry rewritten"),
        original,
        "the damaged entry was replaced by a fresh compile"
    );
}

fn thing(source: Side, id: &str, name: &str) -> Change {
    Change {
        source,
        op: ChangeOp::Insert,
        row: vec![Value::Text(id.into()), Value::Text(name.into())],
        changed: Vec::new(),
    }
}

#[test]
fn a_refused_config_names_its_path_and_keeps_the_previous_one() {
    let plugin = runtime()
        .load_bytes(
            "hostile.wasm",
            &std::fs::read(plugin_path("hostile")).expect("plugin"),
        )
        .expect("load");
    match plugin.start(r#"{"mode": "explode"}"#, Arc::new(NoLookups)) {
        Err(StartError::Config { error, .. }) => assert_eq!(error.path, "/mode"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a bad config was accepted"),
    }
    let mut runner = plugin
        .start(
            r#"{"mode": "trap", "trigger": "boom"}"#,
            Arc::new(NoLookups),
        )
        .expect("start");
    let refused = runner.reconfigure(r#"{"mode": "trap"}"#);
    assert!(
        matches!(&refused, Err(StartError::Config { error, .. }) if error.path == "/trigger"),
        "{refused:?}"
    );
    // Still the previous config: "boom" traps, others copy.
    let results = runner.transform(&[thing(Side::Erp, "1", "boom"), thing(Side::Erp, "2", "ok")]);
    assert!(
        matches!(&results[0], TransformResult::Failed(error) if error.class.as_str() == "plugin-trapped")
    );
    assert!(matches!(&results[1], TransformResult::Writes(writes) if writes.len() == 1));
}

#[test]
fn one_runtime_keeps_serving_other_plugins_after_a_hostile_one() {
    let runtime = runtime();
    let hostile = runtime
        .load_bytes(
            "hostile.wasm",
            &std::fs::read(plugin_path("hostile")).expect("plugin"),
        )
        .expect("load");
    let mut looping = hostile
        .start(
            r#"{"mode": "memory", "trigger": "boom"}"#,
            Arc::new(NoLookups),
        )
        .expect("start");
    let mut calm = hostile.start("{}", Arc::new(NoLookups)).expect("start");
    for round in 0..3 {
        let results = looping.transform(&[thing(Side::Crm, "1", "boom")]);
        assert!(
            matches!(&results[0], TransformResult::Failed(error) if error.reason.map(|r| r.as_str()) == Some("memory")),
            "round {round}: {results:?}"
        );
        let results = calm.transform(&[thing(Side::Crm, "1", "boom")]);
        assert!(
            matches!(&results[0], TransformResult::Writes(_)),
            "round {round}: {results:?}"
        );
    }
    assert_eq!(calm.stats().trapped_changes, 0);
    assert_eq!(looping.stats().trapped_changes, 3);
    assert!(
        looping.stats().instances >= 3,
        "a fresh instance after each trap"
    );
}
