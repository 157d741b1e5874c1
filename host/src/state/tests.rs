//! Tests of the SQLite state store, on real files in temporary directories.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use chrono::{Duration, TimeZone};
use rusqlite::Connection;
use serde_json::json;
use tempfile::TempDir;

use super::*;
use crate::change::{ChangeOp, ErrorClass, SyncError, Timestamp, TrapReason};

const MAP: &str = "customers";

fn open(dir: &TempDir) -> SqliteStateStore {
    SqliteStateStore::open(dir.path()).expect("state store opens")
}

fn open_with_map(dir: &TempDir) -> SqliteStateStore {
    let store = open(dir);
    register(&store, MAP, "CustCustomerV3Entity", "account");
    store
}

fn register(store: &SqliteStateStore, name: &str, erp: &str, crm: &str) -> MapStatus {
    store
        .register_map(&MapEntities {
            name: name.to_owned(),
            erp_entity: erp.to_owned(),
            crm_entity: crm.to_owned(),
        })
        .expect("map registers")
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn image(fields: &[(&str, Value)]) -> Image {
    fields
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

fn upsert(erp_key: Key, crm_key: Key) -> LinkUpsert {
    LinkUpsert {
        map: MAP.to_owned(),
        erp_image: image(&[
            ("id", erp_key.first().cloned().unwrap_or(Value::Null)),
            ("name", text("Contoso")),
        ]),
        crm_image: image(&[
            (
                "accountnumber",
                crm_key.first().cloned().unwrap_or(Value::Null),
            ),
            ("name", text("Contoso")),
        ]),
        erp_key,
        crm_key,
        plugin_version: "sha256:aa".to_owned(),
    }
}

fn stored_change(side: Side, commit: u64, key: &str) -> StoredChange {
    StoredChange {
        map: MAP.to_owned(),
        side,
        entity: "CustCustomerV3Entity".to_owned(),
        op: ChangeOp::Update,
        position: Position::new(commit, 0),
        key: vec![text(key)],
        before: Some(image(&[("name", text("old"))])),
        after: Some(image(&[
            ("name", text("new")),
            ("credit", Value::Decimal("10.50".into())),
        ])),
        changed: vec!["name".to_owned()],
        committed_at: Some(at(0)),
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_714_557_600 + seconds, 0)
        .single()
        .expect("valid time")
}

fn batch_at(seconds: i64) -> BatchCommit {
    BatchCommit {
        at: Some(at(seconds)),
        ..BatchCommit::default()
    }
}

/// One value of every kind (JSON documents written compactly, as the store keeps them).
fn every_kind() -> Vec<Value> {
    vec![
        Value::Null,
        Value::Boolean(true),
        Value::Integer(-42),
        Value::Float(1.5),
        Value::Decimal("10.50".into()),
        text("K-001"),
        Value::Timestamp(Timestamp {
            seconds: 1_714_557_600,
            nanos: 500_000_000,
            offset_minutes: Some(120),
        }),
        Value::Timestamp(Timestamp {
            seconds: 1_714_557_600,
            nanos: 0,
            offset_minutes: None,
        }),
        Value::Date(19_844),
        Value::Bytes(vec![0, 1, 2, 255]),
        Value::Json(r#"{"a":[1,2]}"#.into()),
    ]
}

#[test]
fn a_new_store_is_wal_with_the_current_schema_version() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    drop(store);
    let conn = Connection::open(dir.path().join(STATE_FILE)).expect("raw open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("journal mode");
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row("SELECT max(version) FROM schema_version", [], |row| {
            row.get(0)
        })
        .expect("schema version");
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn maps_register_once_and_record_their_first_transition() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    let status = register(&store, MAP, "CustCustomerV3Entity", "account");
    assert_eq!(status.state, MapState::online(MapMode::Stopped));
    assert_eq!(status.queue_depth, 0);
    let again = register(&store, MAP, "CustCustomerV3Entity", "account");
    assert_eq!(again, status);
    let renamed = register(&store, MAP, "CustCustomerV3Entity", "accounts");
    assert_eq!(renamed.entities.crm_entity, "accounts");

    let transitions = store.transitions(MAP).expect("transitions");
    assert_eq!(transitions.len(), 1);
    assert_eq!(transitions[0].from, None);
    assert_eq!(transitions[0].cause, "registered");
    assert_eq!(store.maps().expect("maps").len(), 1);

    assert!(matches!(
        store.map_status("nope"),
        Err(StateError::UnknownMap { map }) if map == "nope"
    ));
    let error = store
        .commit(&BatchCommit {
            enqueue: vec![StoredChange {
                map: "nope".to_owned(),
                ..stored_change(Side::Erp, 1, "A")
            }],
            ..BatchCommit::default()
        })
        .expect_err("unknown map");
    assert!(matches!(error, StateError::UnknownMap { .. }), "{error}");
}

#[test]
fn checkpoints_are_kept_per_side_and_per_map() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    assert_eq!(store.checkpoint(Side::Erp, None).expect("read"), None);
    store
        .save_checkpoint(Checkpoint {
            side: Side::Erp,
            map: None,
            position: Position::new(u64::MAX, u32::MAX),
        })
        .expect("save");
    store
        .save_checkpoint(Checkpoint {
            side: Side::Crm,
            map: Some(MAP.to_owned()),
            position: Position::new(7, 3),
        })
        .expect("save");
    store
        .save_checkpoint(Checkpoint {
            side: Side::Erp,
            map: None,
            position: Position::new(12, 0),
        })
        .expect("overwrite");
    assert_eq!(
        store.checkpoint(Side::Erp, None).expect("read"),
        Some(Position::new(12, 0))
    );
    assert_eq!(store.checkpoint(Side::Crm, None).expect("read"), None);
    assert_eq!(
        store.checkpoint(Side::Crm, Some(MAP)).expect("read"),
        Some(Position::new(7, 3))
    );
    assert_eq!(store.checkpoints().expect("all").len(), 2);
    store
        .save_checkpoint(Checkpoint {
            side: Side::Erp,
            map: Some(MAP.to_owned()),
            position: Position::new(u64::MAX, 1),
        })
        .expect("save");
    assert_eq!(
        store.checkpoint(Side::Erp, Some(MAP)).expect("read"),
        Some(Position::new(u64::MAX, 1)),
        "every u64 commit position round-trips"
    );
}

#[test]
fn links_are_found_by_either_key_for_every_value_kind() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    let kinds = every_kind();
    let mut batch = batch_at(0);
    for (index, value) in kinds.iter().enumerate() {
        let mut link = upsert(
            vec![value.clone(), Value::Integer(index as i64)],
            vec![text(&format!("ACC-{index}")), value.clone()],
        );
        link.erp_image = kinds
            .iter()
            .enumerate()
            .map(|(field, value)| (format!("f{field}"), value.clone()))
            .collect();
        batch.links.push(LinkChange::Upsert(link));
    }
    store.commit(&batch).expect("commit");
    assert_eq!(store.link_count(MAP).expect("count"), kinds.len() as u64);

    for (index, value) in kinds.iter().enumerate() {
        let erp_key = vec![value.clone(), Value::Integer(index as i64)];
        let crm_key = vec![text(&format!("ACC-{index}")), value.clone()];
        let by_erp = store
            .link(MAP, Side::Erp, &erp_key)
            .expect("lookup")
            .unwrap_or_else(|| panic!("link of {value:?} by erp key"));
        assert_eq!(by_erp.crm_key, crm_key);
        assert_eq!(by_erp.erp_key, erp_key);
        assert_eq!(
            by_erp.erp_image.len(),
            kinds.len(),
            "every kind round-trips in images"
        );
        assert_eq!(by_erp.erp_image["f4"], Value::Decimal("10.50".into()));
        assert_eq!(by_erp.erp_hash, ImageHash::of(&by_erp.erp_image));
        assert_eq!(by_erp.crm_hash, ImageHash::of(&by_erp.crm_image));
        assert_eq!(by_erp.plugin_version, "sha256:aa");
        assert_eq!(by_erp.updated_at, at(0));
        let by_crm = store
            .link(MAP, Side::Crm, &crm_key)
            .expect("lookup")
            .unwrap_or_else(|| panic!("link of {value:?} by crm key"));
        assert_eq!(by_crm, by_erp);
    }
    let by_erp = store
        .link(MAP, Side::Erp, &[Value::Float(1.5), Value::Integer(3)])
        .expect("lookup")
        .expect("found");
    assert_eq!(
        by_erp.erp_image,
        kinds
            .iter()
            .enumerate()
            .map(|(f, v)| (format!("f{f}"), v.clone()))
            .collect()
    );
}

#[test]
fn decimal_keys_keep_their_scale() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    let mut batch = BatchCommit::default();
    batch.links.push(LinkChange::Upsert(upsert(
        vec![Value::Decimal("10.50".into())],
        vec![text("A")],
    )));
    batch.links.push(LinkChange::Upsert(upsert(
        vec![Value::Decimal("10.5".into())],
        vec![text("B")],
    )));
    store.commit(&batch).expect("commit");
    let key = |digits: &str| vec![Value::Decimal(digits.to_owned())];
    let crm_of = |digits: &str| {
        store
            .link(MAP, Side::Erp, &key(digits))
            .expect("lookup")
            .map(|link| link.crm_key)
    };
    assert_eq!(crm_of("10.50"), Some(vec![text("A")]));
    assert_eq!(crm_of("10.5"), Some(vec![text("B")]));
    assert_eq!(crm_of("10.500"), None);
    assert_eq!(
        store
            .link(MAP, Side::Erp, &[Value::Text("10.50".into())])
            .expect("lookup"),
        None,
        "a text key never matches a decimal key"
    );
}

#[test]
fn link_upserts_update_in_place_replace_moved_keys_and_delete_by_either_key() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    let (e1, e2, e3) = (vec![text("E1")], vec![text("E2")], vec![text("E3")]);
    let (c1, c2, c3) = (vec![text("C1")], vec![text("C2")], vec![text("C3")]);
    let mut batch = batch_at(0);
    batch.links = vec![
        LinkChange::Upsert(upsert(e1.clone(), c1.clone())),
        LinkChange::Upsert(upsert(e2.clone(), c2.clone())),
        LinkChange::Upsert(upsert(e3.clone(), c3.clone())),
    ];
    store.commit(&batch).expect("commit");
    let first = store
        .link(MAP, Side::Erp, &e1)
        .expect("lookup")
        .expect("found");

    // Same pair again with a new image: same link, new image and hash.
    let mut update = upsert(e1.clone(), c1.clone());
    update.crm_image.insert("name".into(), text("Contoso Ltd"));
    update.plugin_version = "sha256:bb".into();
    let mut batch = batch_at(10);
    batch.links = vec![LinkChange::Upsert(update)];
    store.commit(&batch).expect("commit");
    let updated = store
        .link(MAP, Side::Erp, &e1)
        .expect("lookup")
        .expect("found");
    assert_eq!(updated.id, first.id);
    assert_ne!(updated.crm_hash, first.crm_hash);
    assert_eq!(updated.plugin_version, "sha256:bb");
    assert_eq!(updated.updated_at, at(10));

    // E2 now pairs with C3: the link that held C3 (for E3) is displaced.
    let receipt = store
        .commit(&BatchCommit {
            links: vec![LinkChange::Upsert(upsert(e2.clone(), c3.clone()))],
            ..BatchCommit::default()
        })
        .expect("commit");
    assert_eq!(receipt.links_displaced, 1);
    assert_eq!(store.link(MAP, Side::Erp, &e3).expect("lookup"), None);
    assert_eq!(store.link(MAP, Side::Crm, &c2).expect("lookup"), None);
    assert_eq!(
        store
            .link(MAP, Side::Crm, &c3)
            .expect("lookup")
            .map(|link| link.erp_key),
        Some(e2.clone())
    );

    // Deletes by either side's key; deleting what is not there is a no-op.
    let delete = |side, key: &Key| {
        LinkChange::Delete(LinkDelete {
            map: MAP.to_owned(),
            side,
            key: key.clone(),
        })
    };
    store
        .commit(&BatchCommit {
            links: vec![
                delete(Side::Crm, &c1),
                delete(Side::Erp, &e2),
                delete(Side::Erp, &e3),
            ],
            ..BatchCommit::default()
        })
        .expect("commit");
    assert_eq!(store.link_count(MAP).expect("count"), 0);

    // Link changes apply in order: an upsert then a delete of the same key leaves none.
    store
        .commit(&BatchCommit {
            links: vec![
                LinkChange::Upsert(upsert(e1.clone(), c1.clone())),
                delete(Side::Erp, &e1),
            ],
            ..BatchCommit::default()
        })
        .expect("commit");
    assert_eq!(store.link(MAP, Side::Erp, &e1).expect("lookup"), None);
}

#[test]
fn pending_links_are_kept_until_settled_by_id_or_by_a_link_change_of_their_keys() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    let keys = |n: u32| (vec![text(&format!("E{n}"))], vec![text(&format!("C{n}"))]);
    let pending = |n: u32, target: Side, delete: bool| {
        let (erp, crm) = keys(n);
        PendingLink {
            target,
            written: (!delete)
                .then(|| image(&[("name", text("Contoso")), ("n", Value::Integer(n.into()))])),
            link: upsert(erp, crm),
        }
    };
    let saved: Vec<PendingLink> = vec![
        pending(1, Side::Crm, false),
        pending(2, Side::Erp, true),
        pending(3, Side::Crm, false),
        pending(4, Side::Erp, false),
        pending(5, Side::Crm, false),
    ];
    let receipt = store
        .commit(&BatchCommit {
            pending: saved.clone(),
            ..BatchCommit::default()
        })
        .expect("commit");
    assert_eq!(receipt.pending.len(), 5);
    let ids = receipt.pending.clone();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    // Back as saved, oldest first, and across a reopen (a crash keeps them).
    drop(store);
    let store = open(&dir);
    assert_eq!(
        store.pending_links().expect("pending"),
        ids.iter().copied().zip(saved.clone()).collect::<Vec<_>>()
    );

    // Settled by id; by a link upsert of either key; by a link delete of either key.
    let (e3, _) = keys(3);
    let (_, c4) = keys(4);
    let (_, c5) = keys(5);
    store
        .commit(&BatchCommit {
            settled: vec![ids[0]],
            links: vec![
                LinkChange::Upsert(upsert(e3, vec![text("C-other")])),
                LinkChange::Upsert(upsert(vec![text("E-other")], c4)),
                LinkChange::Delete(LinkDelete {
                    map: MAP.to_owned(),
                    side: Side::Crm,
                    key: c5,
                }),
            ],
            ..BatchCommit::default()
        })
        .expect("commit");
    assert_eq!(
        store.pending_links().expect("pending"),
        vec![(ids[1], saved[1].clone())],
        "only the delete of E2 is left"
    );
}

#[test]
fn links_page_by_id() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    let mut batch = BatchCommit::default();
    for n in 0..5 {
        batch.links.push(LinkChange::Upsert(upsert(
            vec![Value::Integer(n)],
            vec![Value::Integer(100 + n)],
        )));
    }
    store.commit(&batch).expect("commit");
    let first = store.links(MAP, 0, 3).expect("page");
    assert_eq!(first.len(), 3);
    let rest = store.links(MAP, first[2].id, 3).expect("page");
    assert_eq!(
        rest.iter()
            .map(|link| link.erp_key.clone())
            .collect::<Vec<_>>(),
        vec![vec![Value::Integer(3)], vec![Value::Integer(4)]]
    );
}

#[test]
fn translate_key_goes_through_whichever_map_links_the_entity() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    register(
        &store,
        "customer-groups",
        "CustCustomerGroupEntity",
        "msdyn_customergroup",
    );
    let mut group = upsert(vec![text("10")], vec![Value::Bytes(vec![0xab; 16])]);
    group.map = "customer-groups".to_owned();
    store
        .commit(&BatchCommit {
            links: vec![
                LinkChange::Upsert(group),
                LinkChange::Upsert(upsert(vec![text("US-001")], vec![text("A-1")])),
            ],
            ..BatchCommit::default()
        })
        .expect("commit");
    assert_eq!(
        store
            .translate_key(Side::Erp, "CustCustomerGroupEntity", &[text("10")])
            .expect("translate"),
        Some(vec![Value::Bytes(vec![0xab; 16])])
    );
    assert_eq!(
        store
            .translate_key(
                Side::Crm,
                "msdyn_customergroup",
                &[Value::Bytes(vec![0xab; 16])]
            )
            .expect("translate"),
        Some(vec![text("10")])
    );
    assert_eq!(
        store
            .translate_key(Side::Erp, "CustCustomerGroupEntity", &[text("20")])
            .expect("translate"),
        None,
        "not linked yet"
    );
    assert_eq!(
        store
            .translate_key(Side::Crm, "CustCustomerGroupEntity", &[text("10")])
            .expect("translate"),
        None,
        "the entity is on the erp side"
    );

    // A second map over the same ERP entity that links the row elsewhere: ambiguous.
    register(
        &store,
        "customers-as-contacts",
        "CustCustomerV3Entity",
        "contact",
    );
    let mut contact = upsert(vec![text("US-001")], vec![text("C-9")]);
    contact.map = "customers-as-contacts".to_owned();
    store
        .commit(&BatchCommit {
            links: vec![LinkChange::Upsert(contact)],
            ..BatchCommit::default()
        })
        .expect("commit");
    let error = store
        .translate_key(Side::Erp, "CustCustomerV3Entity", &[text("US-001")])
        .expect_err("ambiguous");
    assert!(
        matches!(error, StateError::AmbiguousTranslation { .. }),
        "{error}"
    );

    // Entities changed by a new registration take effect at once.
    register(
        &store,
        "customers-as-contacts",
        "CustCustomerV4Entity",
        "contact",
    );
    assert_eq!(
        store
            .translate_key(Side::Erp, "CustCustomerV3Entity", &[text("US-001")])
            .expect("translate"),
        Some(vec![text("A-1")])
    );
    assert_eq!(
        store
            .translate_key(Side::Erp, "CustCustomerV4Entity", &[text("US-001")])
            .expect("translate"),
        Some(vec![text("C-9")])
    );
    drop(store);
    let store = open(&dir);
    assert_eq!(
        store
            .translate_key(Side::Crm, "contact", &[text("C-9")])
            .expect("translate after reopen"),
        Some(vec![text("US-001")])
    );
}

#[test]
fn a_failing_batch_leaves_nothing_behind() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    let full_batch = || BatchCommit {
        checkpoints: vec![Checkpoint {
            side: Side::Erp,
            map: None,
            position: Position::new(5, 2),
        }],
        links: vec![LinkChange::Upsert(upsert(
            vec![text("E1")],
            vec![text("C1")],
        ))],
        enqueue: vec![stored_change(Side::Erp, 5, "E1")],
        errors: vec![NewError {
            change: stored_change(Side::Erp, 5, "E2"),
            error: SyncError::new(ErrorClass::PluginRejected, "bad"),
            next_retry: None,
            conflict: None,
            plugin_version: None,
        }],
        activity: vec![ActivityEntry::new(
            Some(MAP),
            ActivityKind::Applied,
            "applied E1",
        )],
        transitions: vec![MapTransition {
            map: MAP.to_owned(),
            to: MapState::online(MapMode::Running),
            cause: "test".to_owned(),
        }],
        initial_sync: vec![InitialSyncStep {
            map: MAP.to_owned(),
            side: Side::Erp,
            last_key: Some(vec![text("E1")]),
            rows_done: 1,
            rows_total: Some(2),
            complete: false,
        }],
        ..BatchCommit::default()
    };
    let assert_untouched = |store: &SqliteStateStore| {
        assert_eq!(store.checkpoint(Side::Erp, None).expect("read"), None);
        assert_eq!(store.link_count(MAP).expect("count"), 0);
        assert_eq!(store.queue_depth(MAP).expect("depth"), 0);
        assert!(store.queued(MAP, 0, 10).expect("queue").is_empty());
        assert_eq!(store.open_error_count(MAP).expect("errors"), 0);
        assert_eq!(
            store.map_status(MAP).expect("status").state.mode,
            MapMode::Stopped
        );
        assert_eq!(store.transitions(MAP).expect("transitions").len(), 1);
        assert_eq!(store.initial_sync(MAP).expect("progress"), None);
        let activity = store.activity(&ActivityQuery::default()).expect("activity");
        assert_eq!(activity.len(), 1, "only the registration: {activity:?}");
    };

    // The last part fails after everything else ran inside the transaction.
    let mut failing = full_batch();
    failing.error_resolutions.push(ErrorResolution {
        id: 999,
        kind: ResolutionKind::Skipped,
        by: "admin".into(),
        reason: "test".into(),
    });
    let error = store.commit(&failing).expect_err("fails");
    assert!(
        matches!(error, StateError::ErrorNotOpen { id: 999 }),
        "{error}"
    );
    assert_untouched(&store);

    // A value that cannot be stored, late in the batch.
    let mut failing = full_batch();
    failing.initial_sync[0].last_key = Some(vec![Value::Decimal("1e5".into())]);
    let error = store.commit(&failing).expect_err("fails");
    assert!(matches!(error, StateError::Invalid { .. }), "{error}");
    assert_untouched(&store);

    // A failure right before the commit itself.
    store.fail_before_commit.store(true, Ordering::SeqCst);
    store.commit(&full_batch()).expect_err("injected failure");
    assert_untouched(&store);
    drop(store);
    let store = open(&dir);
    assert_untouched(&store);

    // The same batch then commits whole.
    let receipt = store.commit(&full_batch()).expect("commit");
    assert_eq!(receipt.queued.len(), 1);
    assert_eq!(receipt.errors.len(), 1);
    assert_eq!(
        store.checkpoint(Side::Erp, None).expect("read"),
        Some(Position::new(5, 2))
    );
    assert_eq!(store.link_count(MAP).expect("count"), 1);
    assert_eq!(store.queue_depth(MAP).expect("depth"), 1);
    assert_eq!(store.open_error_count(MAP).expect("errors"), 1);
    assert_eq!(
        store.map_status(MAP).expect("status").state.mode,
        MapMode::Running
    );
}

#[test]
fn everything_survives_a_reopen() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    let conflict = ConflictImages {
        erp_base: Some(image(&[("name", text("a"))])),
        crm_base: Some(image(&[("name", text("a"))])),
        erp: Some(image(&[("name", text("b"))])),
        crm: Some(image(&[("name", text("c"))])),
    };
    let mut batch = batch_at(30);
    batch.checkpoints.push(Checkpoint {
        side: Side::Crm,
        map: None,
        position: Position::new(99, 4),
    });
    batch.links.push(LinkChange::Upsert(upsert(
        vec![text("E1")],
        vec![text("C1")],
    )));
    batch.enqueue.push(stored_change(Side::Crm, 99, "C7"));
    batch.errors.push(NewError {
        change: stored_change(Side::Crm, 98, "C1"),
        error: SyncError::new(ErrorClass::Conflict, "both sides changed name"),
        next_retry: None,
        conflict: Some(conflict.clone()),
        plugin_version: Some("sha256:aa".into()),
    });
    batch.transitions.push(MapTransition {
        map: MAP.to_owned(),
        to: MapState::online(MapMode::Paused),
        cause: "admin: pause".into(),
    });
    batch.initial_sync.push(InitialSyncStep {
        map: MAP.to_owned(),
        side: Side::Crm,
        last_key: Some(vec![text("C5")]),
        rows_done: 5,
        rows_total: None,
        complete: false,
    });
    store.commit(&batch).expect("commit");
    let before = (
        store.maps().expect("maps"),
        store.transitions(MAP).expect("transitions"),
        store.checkpoints().expect("checkpoints"),
        store.links(MAP, 0, 10).expect("links"),
        store.queued(MAP, 0, 10).expect("queue"),
        store
            .errors(&ErrorQuery {
                include_resolved: true,
                ..ErrorQuery::default()
            })
            .expect("errors"),
        store.initial_sync(MAP).expect("progress"),
        store.activity(&ActivityQuery::default()).expect("activity"),
    );
    drop(store);

    let store = open(&dir);
    let after = (
        store.maps().expect("maps"),
        store.transitions(MAP).expect("transitions"),
        store.checkpoints().expect("checkpoints"),
        store.links(MAP, 0, 10).expect("links"),
        store.queued(MAP, 0, 10).expect("queue"),
        store
            .errors(&ErrorQuery {
                include_resolved: true,
                ..ErrorQuery::default()
            })
            .expect("errors"),
        store.initial_sync(MAP).expect("progress"),
        store.activity(&ActivityQuery::default()).expect("activity"),
    );
    assert_eq!(after, before);
    assert_eq!(after.4[0].change, stored_change(Side::Crm, 99, "C7"));
    assert_eq!(after.5[0].conflict, Some(conflict));
    assert_eq!(after.0[0].state.mode, MapMode::Paused);
    assert_eq!(after.0[0].queue_depth, 1);
}

#[test]
fn a_second_store_on_the_same_file_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    let error = SqliteStateStore::open(dir.path()).expect_err("locked");
    assert!(matches!(error, StateError::Locked { .. }), "{error}");
    drop(store);
    open(&dir);
}

#[test]
fn queues_keep_order_depth_and_never_reuse_sequence_numbers() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    register(&store, "other", "X", "Y");
    let changes: Vec<StoredChange> = (1..=5)
        .map(|n| stored_change(Side::Erp, n, &format!("K{n}")))
        .collect();
    let seqs = store.enqueue(changes.clone()).expect("enqueue");
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    store
        .enqueue(vec![StoredChange {
            map: "other".into(),
            ..stored_change(Side::Crm, 1, "O1")
        }])
        .expect("enqueue other");
    assert_eq!(store.queue_depth(MAP).expect("depth"), 5);
    assert_eq!(store.queue_depth("other").expect("depth"), 1);

    let all = store.queued(MAP, 0, 100).expect("read");
    assert_eq!(
        all.iter()
            .map(|queued| queued.change.clone())
            .collect::<Vec<_>>(),
        changes
    );
    let page = store.queued(MAP, all[1].seq, 2).expect("page");
    assert_eq!(page, all[2..4].to_vec());

    assert_eq!(store.remove_queued(MAP, all[2].seq).expect("remove"), 3);
    assert_eq!(store.queue_depth(MAP).expect("depth"), 2);
    assert_eq!(store.queue_depth("other").expect("depth"), 1);
    assert_eq!(store.queued(MAP, 0, 100).expect("read"), all[3..].to_vec());

    assert_eq!(store.remove_queued(MAP, u64::MAX).expect("drain"), 2);
    assert_eq!(store.queue_depth(MAP).expect("depth"), 0);
    let next = store
        .enqueue(vec![stored_change(Side::Erp, 6, "K6")])
        .expect("enqueue");
    assert!(
        next[0] > all[4].seq,
        "sequence numbers are not reused after a drain"
    );
    drop(store);
    let store = open(&dir);
    assert_eq!(store.queue_depth(MAP).expect("depth"), 1);
    let counted: i64 = Connection::open(dir.path().join(STATE_FILE))
        .expect("raw")
        .query_row(
            "SELECT count(*) FROM queue WHERE map_id = (SELECT id FROM maps WHERE name = ?1)",
            [MAP],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(counted, 1, "the kept depth matches the queue");
}

#[test]
fn errors_are_kept_retried_and_resolved_with_who_and_why() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    let mut batch = batch_at(0);
    batch.errors = vec![
        NewError {
            change: stored_change(Side::Erp, 1, "E1"),
            error: SyncError::new(
                ErrorClass::DependencyMissing,
                "customer group 10 not linked",
            ),
            next_retry: Some(at(60)),
            conflict: None,
            plugin_version: Some("sha256:aa".into()),
        },
        NewError {
            change: stored_change(Side::Erp, 2, "E2"),
            error: SyncError {
                field: Some("name".into()),
                ..SyncError::trapped(TrapReason::Fuel, "out of fuel")
            },
            next_retry: None,
            conflict: None,
            plugin_version: Some("sha256:aa".into()),
        },
    ];
    let receipt = store.commit(&batch).expect("commit");
    let [dependency, trapped] = receipt.errors[..] else {
        panic!("two error ids: {receipt:?}");
    };

    let entry = store.error(trapped).expect("get").expect("exists");
    assert_eq!(entry.error.reason, Some(TrapReason::Fuel));
    assert_eq!(entry.error.field.as_deref(), Some("name"));
    assert!(!entry.error.retryable);
    assert_eq!(entry.attempts, 1);
    assert_eq!(entry.first_at, at(0));
    assert_eq!(entry.change, stored_change(Side::Erp, 2, "E2"));

    assert_eq!(store.open_error_count(MAP).expect("count"), 2);
    let only_dependencies = store
        .errors(&ErrorQuery {
            class: Some(ErrorClass::DependencyMissing),
            ..ErrorQuery::default()
        })
        .expect("list");
    assert_eq!(only_dependencies.len(), 1);
    assert_eq!(only_dependencies[0].id, dependency);
    assert!(store.due_errors(at(59), 10).expect("due").is_empty());
    assert_eq!(store.due_errors(at(60), 10).expect("due")[0].id, dependency);

    let mut retry = batch_at(60);
    retry.error_retries.push(ErrorRetry {
        id: dependency,
        error: SyncError::new(ErrorClass::DependencyMissing, "still not linked"),
        next_retry: Some(at(180)),
    });
    store.commit(&retry).expect("retry");
    let retried = store.error(dependency).expect("get").expect("exists");
    assert_eq!(retried.attempts, 2);
    assert_eq!(retried.error.message, "still not linked");
    assert_eq!(retried.last_attempt_at, at(60));
    assert_eq!(retried.next_retry, Some(at(180)));
    assert!(store.due_errors(at(179), 10).expect("due").is_empty());

    let mut resolve = batch_at(200);
    resolve.error_resolutions.push(ErrorResolution {
        id: trapped,
        kind: ResolutionKind::Skipped,
        by: "admin alice".into(),
        reason: "row is a test record".into(),
    });
    store.commit(&resolve).expect("resolve");
    store
        .resolve_error(ErrorResolution {
            id: dependency,
            kind: ResolutionKind::Applied,
            by: "engine".into(),
            reason: "dependency arrived".into(),
        })
        .expect("resolve");
    assert_eq!(store.open_error_count(MAP).expect("count"), 0);
    assert!(
        store
            .errors(&ErrorQuery::default())
            .expect("list")
            .is_empty()
    );
    assert!(store.due_errors(at(1000), 10).expect("due").is_empty());
    let skipped = store.error(trapped).expect("get").expect("kept");
    assert_eq!(
        skipped.resolution,
        Some(Resolution {
            at: at(200),
            kind: ResolutionKind::Skipped,
            by: "admin alice".into(),
            reason: "row is a test record".into(),
        })
    );
    let history = store
        .errors(&ErrorQuery {
            include_resolved: true,
            map: Some(MAP.into()),
            ..ErrorQuery::default()
        })
        .expect("list");
    assert_eq!(history.len(), 2);

    for twice in [
        store.resolve_error(ErrorResolution {
            id: trapped,
            kind: ResolutionKind::Skipped,
            by: "bob".into(),
            reason: "again".into(),
        }),
        store.mark_retried(ErrorRetry {
            id: trapped,
            error: SyncError::new(ErrorClass::PluginTrapped, "x"),
            next_retry: None,
        }),
    ] {
        assert!(matches!(twice, Err(StateError::ErrorNotOpen { id }) if id == trapped));
    }

    let kinds: Vec<ActivityKind> = store
        .activity(&ActivityQuery {
            map: Some(MAP.into()),
            ..ActivityQuery::default()
        })
        .expect("activity")
        .into_iter()
        .map(|record| record.entry.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            ActivityKind::StateChange,
            ActivityKind::Error,
            ActivityKind::Error,
            ActivityKind::ErrorRetried,
            ActivityKind::ErrorResolved,
            ActivityKind::ErrorResolved,
        ]
    );
}

#[test]
fn transitions_are_recorded_with_time_and_cause() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    let running = MapState::online(MapMode::Running);
    let steps = [
        (running, "admin: play"),
        (running, "admin: play again"),
        (
            running.with_offline(Side::Crm, true),
            "crm unreachable: database is locked",
        ),
        (MapState::online(MapMode::CatchingUp), "crm back"),
        (MapState::online(MapMode::Running), "caught up"),
    ];
    for (seconds, (to, cause)) in steps.iter().enumerate() {
        let mut batch = batch_at(seconds as i64);
        batch.transitions.push(MapTransition {
            map: MAP.to_owned(),
            to: *to,
            cause: (*cause).to_owned(),
        });
        store.commit(&batch).expect("transition");
    }
    let transitions = store.transitions(MAP).expect("transitions");
    let recorded: Vec<_> = transitions
        .iter()
        .skip(1)
        .map(|transition| (transition.from, transition.to, transition.cause.as_str()))
        .collect();
    assert_eq!(
        recorded,
        [
            (
                Some(MapState::online(MapMode::Stopped)),
                running,
                "admin: play"
            ),
            (
                Some(running),
                running.with_offline(Side::Crm, true),
                "crm unreachable: database is locked"
            ),
            (
                Some(running.with_offline(Side::Crm, true)),
                MapState::online(MapMode::CatchingUp),
                "crm back"
            ),
            (
                Some(MapState::online(MapMode::CatchingUp)),
                MapState::online(MapMode::Running),
                "caught up"
            ),
        ],
        "a transition to the current state records nothing"
    );
    assert_eq!(transitions[2].at, at(2));
    let status = store.map_status(MAP).expect("status");
    assert_eq!(status.state, running);
    assert_eq!(status.since, at(4));
    let state_changes = store
        .activity(&ActivityQuery {
            kind: Some(ActivityKind::StateChange),
            ..ActivityQuery::default()
        })
        .expect("activity");
    assert_eq!(state_changes.len(), 5);
    assert_eq!(
        state_changes[2].entry.message,
        "running -> running (crm offline): crm unreachable: database is locked"
    );
}

#[test]
fn initial_sync_progress_resumes_and_resets() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    assert_eq!(store.initial_sync(MAP).expect("progress"), None);
    for (seconds, (rows_done, key)) in [(1000, "E1000"), (2000, "E2000")].into_iter().enumerate() {
        let mut batch = batch_at(seconds as i64);
        batch.initial_sync.push(InitialSyncStep {
            map: MAP.to_owned(),
            side: Side::Erp,
            last_key: Some(vec![text(key)]),
            rows_done,
            rows_total: Some(2500),
            complete: false,
        });
        batch
            .links
            .push(LinkChange::Upsert(upsert(vec![text(key)], vec![text(key)])));
        store.commit(&batch).expect("chunk");
    }
    drop(store);
    let store = open(&dir);
    let progress = store.initial_sync(MAP).expect("progress").expect("saved");
    let erp = progress.erp.expect("erp side");
    assert_eq!(erp.last_key, Some(vec![text("E2000")]));
    assert_eq!(
        (erp.rows_done, erp.rows_total, erp.complete),
        (2000, Some(2500), false)
    );
    assert_eq!((erp.started_at, erp.updated_at), (at(0), at(1)));
    assert_eq!(progress.crm, None);

    let mut batch = BatchCommit::default();
    batch.initial_sync_resets.push(MAP.to_owned());
    batch.initial_sync.push(InitialSyncStep {
        map: MAP.to_owned(),
        side: Side::Crm,
        last_key: None,
        rows_done: 0,
        rows_total: None,
        complete: true,
    });
    store.commit(&batch).expect("reset");
    let progress = store.initial_sync(MAP).expect("progress").expect("saved");
    assert_eq!(progress.erp, None);
    assert!(progress.crm.expect("crm side").complete);
}

#[test]
fn activity_is_found_by_map_kind_row_and_time() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    for (seconds, key) in ["E1", "E2", "E1"].into_iter().enumerate() {
        let mut batch = batch_at(100 + seconds as i64);
        batch.activity.push(ActivityEntry {
            source: Some(Side::Erp),
            erp_key: Some(vec![text(key)]),
            crm_key: Some(vec![text(&format!("C{key}"))]),
            position: Some(Position::new(seconds as u64, 1)),
            plugin_version: Some("sha256:aa".into()),
            detail: Some(json!({"fields": ["name"]})),
            ..ActivityEntry::new(Some(MAP), ActivityKind::Applied, format!("applied {key}"))
        });
        store.commit(&batch).expect("commit");
    }
    let mut batch = batch_at(200);
    batch
        .activity
        .push(ActivityEntry::new(None, ActivityKind::Echo, "engine-wide"));
    store.commit(&batch).expect("commit");

    let row_history = store
        .activity(&ActivityQuery {
            map: Some(MAP.into()),
            key: Some((Side::Erp, vec![text("E1")])),
            ..ActivityQuery::default()
        })
        .expect("history");
    assert_eq!(
        row_history
            .iter()
            .map(|record| record.at)
            .collect::<Vec<_>>(),
        [at(100), at(102)]
    );
    assert_eq!(row_history[0].entry.position, Some(Position::new(0, 1)));
    assert_eq!(
        row_history[0].entry.detail,
        Some(json!({"fields": ["name"]}))
    );
    let by_crm = store
        .activity(&ActivityQuery {
            map: Some(MAP.into()),
            key: Some((Side::Crm, vec![text("CE2")])),
            ..ActivityQuery::default()
        })
        .expect("history");
    assert_eq!(by_crm.len(), 1);
    let window = store
        .activity(&ActivityQuery {
            kind: Some(ActivityKind::Applied),
            since: Some(at(101)),
            until: Some(at(200)),
            ..ActivityQuery::default()
        })
        .expect("window");
    assert_eq!(window.len(), 2);
    let paged = store
        .activity(&ActivityQuery {
            after_id: window[0].id,
            limit: 1,
            ..ActivityQuery::default()
        })
        .expect("page");
    assert_eq!(paged, window[1..].to_vec());
    let echo = store
        .activity(&ActivityQuery {
            kind: Some(ActivityKind::Echo),
            ..ActivityQuery::default()
        })
        .expect("echo");
    assert_eq!(echo[0].entry.map, None);
}

#[test]
fn values_that_cannot_be_stored_are_refused_and_name_the_problem() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    let mut bad_image = upsert(vec![text("E1")], vec![text("C1")]);
    bad_image
        .crm_image
        .insert("doc".into(), Value::Json("{not json".into()));
    for (change, needle) in [
        (
            LinkChange::Upsert(upsert(vec![], vec![text("C1")])),
            "at least one value",
        ),
        (
            LinkChange::Upsert(upsert(vec![Value::Decimal("1,5".into())], vec![text("C1")])),
            "canonical decimal",
        ),
        (LinkChange::Upsert(bad_image), "field doc"),
    ] {
        let error = store
            .commit(&BatchCommit {
                links: vec![change],
                ..BatchCommit::default()
            })
            .expect_err("refused");
        assert!(
            matches!(&error, StateError::Invalid { .. }) && error.to_string().contains(needle),
            "{error}"
        );
    }
    assert_eq!(store.link_count(MAP).expect("count"), 0);
}

/// Opens the raw database of a closed store, runs `sql`, and reopens the store.
fn tamper(dir: &TempDir, sql: &str) -> SqliteStateStore {
    Connection::open(dir.path().join(STATE_FILE))
        .expect("raw open")
        .execute_batch(sql)
        .expect("tamper");
    open(dir)
}

#[test]
fn bad_data_read_back_is_an_error_naming_table_and_row() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    store
        .commit(&BatchCommit {
            links: vec![LinkChange::Upsert(upsert(
                vec![text("E1")],
                vec![text("C1")],
            ))],
            enqueue: vec![stored_change(Side::Erp, 1, "E1")],
            checkpoints: vec![Checkpoint {
                side: Side::Erp,
                map: None,
                position: Position::new(1, 0),
            }],
            ..BatchCommit::default()
        })
        .expect("commit");
    let link_id = store.links(MAP, 0, 1).expect("links")[0].id;
    drop(store);

    let store = tamper(
        &dir,
        r#"UPDATE links SET crm_image = '{"name": {"money": 1}}'"#,
    );
    let error = store
        .link(MAP, Side::Erp, &[text("E1")])
        .expect_err("corrupt");
    assert!(error.is_corrupt());
    let message = error.to_string();
    assert!(
        message.contains("table links")
            && message.contains(&format!("row {link_id}"))
            && message.contains("crm_image")
            && message.contains("money"),
        "{message}"
    );
    drop(store);

    let store = tamper(
        &dir,
        "UPDATE links SET crm_image = '{}', erp_hash = x'00'; UPDATE queue SET op = 'upsert'",
    );
    let error = store.links(MAP, 0, 10).expect_err("corrupt");
    assert!(
        error.to_string().contains("erp_hash: hash of 1 bytes"),
        "{error}"
    );
    let error = store.queued(MAP, 0, 10).expect_err("corrupt");
    assert!(
        error.to_string().contains("table queue")
            && error.to_string().contains("unknown name \"upsert\""),
        "{error}"
    );
    drop(store);

    let store = tamper(
        &dir,
        "UPDATE checkpoints SET change_index = 'x'; UPDATE maps SET mode = 'flying'",
    );
    let error = store.checkpoint(Side::Erp, None).expect_err("corrupt");
    assert!(
        error
            .to_string()
            .contains("table checkpoints, row erp/(side)"),
        "{error}"
    );
    let error = store.map_status(MAP).expect_err("corrupt");
    assert!(error.to_string().contains("table maps"), "{error}");
}

#[test]
fn a_store_from_a_newer_dualwrite_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    drop(open(&dir));
    let newer = SCHEMA_VERSION + 1;
    Connection::open(dir.path().join(STATE_FILE))
        .expect("raw open")
        .execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, 0)",
            [newer],
        )
        .expect("bump version");
    let error = SqliteStateStore::open(dir.path()).expect_err("newer schema");
    assert!(
        matches!(error, StateError::NewerSchema { found, supported, .. }
            if found == newer && supported == SCHEMA_VERSION),
        "{error}"
    );
    assert!(error.to_string().contains("newer dualwrite"), "{error}");
}

#[test]
fn files_that_are_not_state_stores_are_refused() {
    let dir = TempDir::new().expect("tempdir");
    let other = dir.path().join("erp.db");
    Connection::open(&other)
        .expect("raw open")
        .execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
        .expect("create");
    let error =
        SqliteStateStore::open_file(&other, &SqliteOptions::default()).expect_err("foreign");
    assert!(
        matches!(error, StateError::NotAStateStore { .. }),
        "{error}"
    );

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x42; 8192]).expect("write");
    let error =
        SqliteStateStore::open_file(&garbage, &SqliteOptions::default()).expect_err("garbage");
    assert!(
        matches!(error, StateError::NotAStateStore { .. }),
        "{error}"
    );
}

const CHILD_DIR: &str = "DUALWRITE_STATE_TEST_CHILD_DIR";

/// The child half of `commits_survive_kill_9`: commits batches until killed, printing
/// each batch number once its commit has returned. Does nothing in a normal test run.
#[test]
fn kill_9_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let store = SqliteStateStore::open(std::path::Path::new(&dir)).expect("child opens");
    register(&store, MAP, "CustCustomerV3Entity", "account");
    for n in 1..=100_000u64 {
        let batch = BatchCommit {
            checkpoints: vec![Checkpoint {
                side: Side::Erp,
                map: None,
                position: Position::new(n, 0),
            }],
            links: vec![LinkChange::Upsert(upsert(
                vec![Value::Integer(n as i64)],
                vec![text(&format!("C{n}"))],
            ))],
            enqueue: vec![stored_change(Side::Erp, n, "K")],
            ..BatchCommit::default()
        };
        store.commit(&batch).expect("child commits");
        println!("committed {n}");
    }
}

#[test]
fn commits_survive_kill_9_and_stay_whole() {
    let dir = TempDir::new().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "state::tests::kill_9_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acknowledged = 0u64;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        if let Some(n) = line.strip_prefix("committed ") {
            acknowledged = n.parse().expect("batch number");
            if acknowledged >= 40 {
                break;
            }
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert!(
        acknowledged >= 40,
        "the child committed only {acknowledged} batches"
    );

    let store = open(&dir);
    let checkpoint = store
        .checkpoint(Side::Erp, None)
        .expect("read")
        .expect("a checkpoint survived")
        .sequence;
    assert!(
        checkpoint >= acknowledged,
        "acknowledged {acknowledged}, found {checkpoint}"
    );
    assert_eq!(
        store.link_count(MAP).expect("count"),
        checkpoint,
        "links match the checkpoint"
    );
    assert_eq!(
        store.queue_depth(MAP).expect("depth"),
        checkpoint,
        "queue matches the checkpoint"
    );
    assert_eq!(
        store.queued(MAP, 0, usize::MAX).expect("queue").len() as u64,
        checkpoint
    );
}

#[test]
fn the_clock_is_used_when_a_batch_has_no_time() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    let store: std::sync::Arc<dyn StateStore> = std::sync::Arc::new(store);
    let before = Utc::now() - Duration::seconds(1);
    store
        .commit(&BatchCommit {
            links: vec![LinkChange::Upsert(upsert(
                vec![text("E1")],
                vec![text("C1")],
            ))],
            ..BatchCommit::default()
        })
        .expect("commit");
    let link = store
        .link(MAP, Side::Erp, &[text("E1")])
        .expect("lookup")
        .expect("found");
    assert!(link.updated_at >= before && link.updated_at <= Utc::now());
    assert_eq!(
        store.commit(&BatchCommit::default()).expect("empty"),
        CommitReceipt::default()
    );
}

#[test]
fn recorded_changes_come_back_as_captured_by_time_range_and_are_pruned() {
    let dir = TempDir::new().expect("tempdir");
    let store = open_with_map(&dir);
    let mut first = stored_change(Side::Erp, 1, "C-1");
    first.after = Some(image(&[
        ("NAME", text("Contoso")),
        ("LIMIT", every_kind()[3].clone()),
    ]));
    first.op = ChangeOp::Insert;
    first.before = None;
    let second = stored_change(Side::Crm, 2, "C-2");
    store
        .commit(&BatchCommit {
            record: vec![first.clone()],
            ..batch_at(10)
        })
        .expect("commit");
    store
        .commit(&BatchCommit {
            record: vec![second.clone()],
            ..batch_at(20)
        })
        .expect("commit");
    let query = RecordingQuery {
        map: MAP.to_owned(),
        since: None,
        until: None,
        after_id: 0,
        limit: 100,
    };
    let all = store.recorded_changes(&query).expect("read");
    assert_eq!(
        all.iter()
            .map(|record| record.change.clone())
            .collect::<Vec<_>>(),
        [first.clone(), second.clone()],
        "every field comes back exactly"
    );
    assert_eq!(all[0].recorded_at, at(10));
    let later = store
        .recorded_changes(&RecordingQuery {
            since: Some(at(15)),
            ..query.clone()
        })
        .expect("read");
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].change, second);
    let paged = store
        .recorded_changes(&RecordingQuery {
            after_id: all[0].id,
            limit: 1,
            ..query.clone()
        })
        .expect("read");
    assert_eq!(paged[0].id, all[1].id);

    assert_eq!(store.prune_recorded(Some(at(15)), None).expect("prune"), 1);
    assert_eq!(store.recorded_changes(&query).expect("read").len(), 1);
    assert_eq!(store.prune_recorded(None, Some(0)).expect("prune"), 1);
    assert!(store.recorded_changes(&query).expect("read").is_empty());
    assert!(matches!(
        store.recorded_changes(&RecordingQuery {
            map: "unknown".to_owned(),
            ..query
        }),
        Err(StateError::UnknownMap { .. })
    ));
}

#[test]
fn operations_settings_are_replaced_by_name_and_deletions_are_kept() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    store
        .save_setting("alert-rule", "b", Some(&json!({"when": "lag"})), "ann")
        .expect("save");
    store
        .save_setting("alert-rule", "a", Some(&json!({"when": "errors"})), "ann")
        .expect("save");
    store
        .save_setting("alert-rule", "b", None, "bob")
        .expect("delete");
    store
        .save_setting("error-mode", "customers", Some(&json!("block")), "ann")
        .expect("save");
    let rules = store.settings("alert-rule").expect("read");
    let view: Vec<(&str, Option<&serde_json::Value>, &str)> = rules
        .iter()
        .map(|setting| {
            (
                setting.name.as_str(),
                setting.body.as_ref(),
                setting.updated_by.as_str(),
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("a", Some(&json!({"when": "errors"})), "ann"),
            ("b", None, "bob")
        ]
    );
    assert_eq!(store.settings("error-mode").expect("read").len(), 1);
    assert!(store.settings("subscriber").expect("read").is_empty());
    drop(store);
    let reopened = open(&dir);
    assert_eq!(reopened.settings("alert-rule").expect("read"), rules);
}
