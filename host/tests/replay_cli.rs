//! `dualwrite replay` and `dualwrite plugin check` as a user runs them: the real binary,
//! real plugin components built from source, recorded change sets from `tests/cases`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dualwrite_tests::{cases_dir, plugin_path};

fn dualwrite(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dualwrite"))
        .args(args)
        .env("DUALWRITE_CACHE_DIR", cache)
        .output()
        .expect("run dualwrite")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

struct Case {
    dir: PathBuf,
}

impl Case {
    fn customers() -> Case {
        Case {
            dir: cases_dir().join("customers-both-ways"),
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn replay_args(&self, plugin: &Path) -> Vec<String> {
        vec![
            "replay".into(),
            "--plugin".into(),
            plugin.to_string_lossy().into_owned(),
            "--changes".into(),
            self.file("changes.jsonl"),
            "--config".into(),
            self.file("config.json"),
            "--links".into(),
            self.file("links.jsonl"),
        ]
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn replay_prints_the_expected_writes_and_expect_passes() {
    let cache = tempfile::tempdir().expect("tempdir");
    let case = Case::customers();
    let args = case.replay_args(&plugin_path("customers"));
    let output = dualwrite(&strs(&args), cache.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let expected = std::fs::read_to_string(case.dir.join("expected.jsonl")).expect("expected");
    let printed: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    let wanted: Vec<serde_json::Value> = expected
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(printed, wanted);
    assert!(
        printed.iter().any(|record| record["outcome"] == "writes"),
        "the case has writes"
    );

    let mut with_expect = args.clone();
    with_expect.extend(["--expect".into(), case.file("expected.jsonl")]);
    let output = dualwrite(&strs(&with_expect), cache.path());
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(stdout(&output).contains("match"), "{}", stdout(&output));
}

#[test]
fn expect_fails_with_a_per_record_diff_after_one_line_is_edited() {
    let cache = tempfile::tempdir().expect("tempdir");
    let case = Case::customers();
    let expected = std::fs::read_to_string(case.dir.join("expected.jsonl")).expect("expected");
    let mut lines: Vec<String> = expected.lines().map(str::to_owned).collect();
    let edited_index = lines
        .iter()
        .position(|line| line.contains("\"accountnumber\""))
        .expect("a line that writes an account");
    let mut record: serde_json::Value = serde_json::from_str(&lines[edited_index]).expect("json");
    record["writes"][0]["fields"]["accountnumber"] = serde_json::json!("EDITED");
    lines[edited_index] = record.to_string();
    let edited = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(edited.path(), lines.join("\n")).expect("write");

    let mut args = case.replay_args(&plugin_path("customers"));
    args.extend([
        "--expect".into(),
        edited.path().to_string_lossy().into_owned(),
    ]);
    let output = dualwrite(&strs(&args), cache.path());
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let report = stdout(&output);
    assert!(
        report.contains(&format!("change {}:", edited_index + 1)),
        "names the record: {report}"
    );
    assert!(
        report.contains("/writes/0/fields/accountnumber: \"EDITED\" -> "),
        "shows the field that differs: {report}"
    );
    assert!(report.contains("1 of "), "{report}");
}

#[test]
fn against_shows_the_records_that_differ_between_two_plugin_versions() {
    let cache = tempfile::tempdir().expect("tempdir");
    let case = Case::customers();
    // customers_previous is the same crate built as version 0.9.0, when the sales memo
    // flowed only from ERP to CRM: CRM changes that carry a description differ.
    let mut args = case.replay_args(&plugin_path("customers"));
    args.extend([
        "--against".into(),
        plugin_path("customers_previous")
            .to_string_lossy()
            .into_owned(),
    ]);
    let output = dualwrite(&strs(&args), cache.path());
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let report = stdout(&output);
    assert!(
        report.contains("SALESMEMO"),
        "the differing field is shown: {report}"
    );
    let summary = report.lines().last().unwrap_or_default();
    let differing: usize = summary
        .split(' ')
        .next()
        .and_then(|count| count.parse().ok())
        .expect("summary starts with a count");
    let total = std::fs::read_to_string(case.dir.join("expected.jsonl"))
        .expect("expected")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .count();
    assert!(differing >= 1 && differing < total, "{summary}");

    // The same version against itself: nothing differs, exit 0.
    let mut same = case.replay_args(&plugin_path("customers"));
    same.extend([
        "--against".into(),
        plugin_path("customers").to_string_lossy().into_owned(),
    ]);
    let output = dualwrite(&strs(&same), cache.path());
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(stdout(&output).contains("0 of "), "{}", stdout(&output));
}

#[test]
fn plugin_check_names_the_problem_of_a_bad_file() {
    let cache = tempfile::tempdir().expect("tempdir");
    let output = dualwrite(
        &[
            "plugin",
            "check",
            &plugin_path("customers").to_string_lossy(),
        ],
        cache.path(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("CustCustomerV3Entity"),
        "{}",
        stdout(&output)
    );

    let core = plugin_path("customers").with_extension("core.wasm");
    let output = dualwrite(&["plugin", "check", &core.to_string_lossy()], cache.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("is a core WebAssembly module, not a component"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_bad_change_set_line_is_reported_with_its_line_and_field() {
    let cache = tempfile::tempdir().expect("tempdir");
    let case = Case::customers();
    let changes = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(
        changes.path(),
        "{\"dualwrite\":\"change-set\",\"version\":1}\n\
         {\"source\":\"erp\",\"op\":\"insert\",\"row\":{\"DATAAREAID\":\"USMF\",\"CUSTOMERACCOUNT\":\"A\"}}\n\
         {\"source\":\"erp\",\"op\":\"insert\",\"row\":{\"DATAAREAID\":\"USMF\",\"CREDITLIMIT\":{\"decimal\":\"1,5\"}}}\n",
    )
    .expect("write");
    let plugin = plugin_path("customers");
    let output = dualwrite(
        &[
            "replay",
            "--plugin",
            &plugin.to_string_lossy(),
            "--changes",
            &changes.path().to_string_lossy(),
            "--config",
            &case.file("config.json"),
        ],
        cache.path(),
    );
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains(":3: field `row.CREDITLIMIT`"), "{message}");
    assert!(message.contains("not a canonical decimal"), "{message}");
}

/// A plugin file carrying the customer-groups case, as `plugin embed-tests` writes it.
fn with_embedded_case(plugin: &str, dir: &Path, cache: &Path) -> PathBuf {
    let file = dir.join(format!("{plugin}.wasm"));
    std::fs::copy(plugin_path(plugin), &file).expect("copy");
    let case = cases_dir().join("customer-groups-both-ways");
    let embedded = dualwrite(
        &[
            "plugin",
            "embed-tests",
            file.to_str().expect("path"),
            "--case",
            case.to_str().expect("path"),
        ],
        cache,
    );
    assert!(embedded.status.success(), "{}", stderr(&embedded));
    assert!(
        stdout(&embedded).contains("1 self-test case(s) embedded"),
        "{}",
        stdout(&embedded)
    );
    file
}

#[test]
fn embedded_self_test_cases_run_in_plugin_check_in_every_language() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    for plugin in ["customer_groups", "customer_groups_c", "customer_groups_js"] {
        let file = with_embedded_case(plugin, dir.path(), &cache);
        let checked = dualwrite(&["plugin", "check", file.to_str().expect("path")], &cache);
        assert!(checked.status.success(), "{plugin}: {}", stderr(&checked));
        assert!(
            stderr(&checked).contains("self-test: 1 case(s) pass"),
            "{plugin}: {}",
            stderr(&checked)
        );
        // The file still runs as the same plugin: replay passes as before.
        let case = cases_dir().join("customer-groups-both-ways");
        let file_arg = |name: &str| case.join(name).to_string_lossy().into_owned();
        let replayed = dualwrite(
            &[
                "replay",
                "--plugin",
                file.to_str().expect("path"),
                "--changes",
                &file_arg("changes.jsonl"),
                "--config",
                &file_arg("config.json"),
                "--links",
                &file_arg("links.jsonl"),
                "--expect",
                &file_arg("expected.jsonl"),
            ],
            &cache,
        );
        assert!(replayed.status.success(), "{plugin}: {}", stdout(&replayed));
    }
    let plain = dualwrite(
        &[
            "plugin",
            "check",
            plugin_path("customer_groups").to_str().expect("path"),
        ],
        &cache,
    );
    assert!(
        stderr(&plain).contains("carries no cases"),
        "{}",
        stderr(&plain)
    );
}

#[test]
fn cases_that_fail_are_not_embedded_and_a_failing_embedded_case_fails_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    // A case whose expected output was edited: embed-tests refuses it.
    let source = cases_dir().join("customer-groups-both-ways");
    let edited = dir.path().join("edited-case");
    std::fs::create_dir(&edited).expect("mkdir");
    for file in [
        "changes.jsonl",
        "config.json",
        "links.jsonl",
        "expected.jsonl",
    ] {
        let text = std::fs::read_to_string(source.join(file)).expect("read");
        let text = if file == "expected.jsonl" {
            text.replacen("Wholesale customers", "Wholesale buyers", 1)
        } else {
            text
        };
        std::fs::write(edited.join(file), text).expect("write");
    }
    let file = dir.path().join("customer_groups.wasm");
    std::fs::copy(plugin_path("customer_groups"), &file).expect("copy");
    let before = std::fs::read(&file).expect("read");
    let refused = dualwrite(
        &[
            "plugin",
            "embed-tests",
            file.to_str().expect("path"),
            "--case",
            edited.to_str().expect("path"),
        ],
        &cache,
    );
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("case edited-case")
            && stderr(&refused).contains("Wholesale buyers"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        std::fs::read(&file).expect("read"),
        before,
        "the file is untouched"
    );

    // A component that carries a failing case (embedded by other tools): check fails,
    // naming the case and the difference.
    let tests = dualwrite::replay::self_test::SelfTests {
        version: 1,
        cases: vec![dualwrite::replay::self_test::SelfTestCase::read_dir(&edited).expect("case")],
    };
    let failing = dualwrite::replay::self_test::embed(&before, &tests).expect("embed");
    std::fs::write(&file, failing).expect("write");
    let checked = dualwrite(&["plugin", "check", file.to_str().expect("path")], &cache);
    assert_eq!(checked.status.code(), Some(1), "{}", stderr(&checked));
    assert!(
        stderr(&checked).contains("self-test failed: case edited-case")
            && stderr(&checked).contains("1 of "),
        "{}",
        stderr(&checked)
    );
}
