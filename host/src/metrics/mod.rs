//! `GET /metrics`: the engine's numbers in the Prometheus text format (0.0.4), encoded
//! by `prometheus-client`.
//!
//! Nothing is counted twice: the sync loop keeps its counters (per map, since start),
//! the plugin runners their call times, the state store the queues, errors, checkpoints
//! and initial sync progress. A scrape gathers them ([`gather`]: the latest
//! [`EngineSnapshot`] plus a few store reads) and encodes them ([`encode`]):
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `dualwrite_changes_captured_total` | map, direction | changes read from the source side |
//! | `dualwrite_rows_applied_total` | map, direction | rows written on the target side |
//! | `dualwrite_changes_filtered_total` | map | changes the plugin filtered out |
//! | `dualwrite_changes_noop_total` | map | changes that needed no write (echoes included) |
//! | `dualwrite_conflicts_total` | map | conflicts detected |
//! | `dualwrite_errors_total` | map | changes sent to the error queue |
//! | `dualwrite_open_errors` | map, class | errors waiting in the queue, by class |
//! | `dualwrite_queue_depth` | map | changes waiting in the map's queue |
//! | `dualwrite_lag_seconds` | map | age of the oldest waiting change |
//! | `dualwrite_lag_changes` | map | changes the map is behind (its queue) |
//! | `dualwrite_checkpoint_position` | side | last acknowledged position of the side's stream |
//! | `dualwrite_plugin_call_seconds` | map | histogram of `transform` call times |
//! | `dualwrite_initial_sync_rows_done`, `_rows_total` | map | initial sync progress |
//! | `dualwrite_map_mode` | map, mode | 1 for the map's current mode |
//! | `dualwrite_side_offline_seconds` | side | how long an offline side has been down |
//! | `dualwrite_slot_lag_bytes` | side | log the side keeps for the engine (PostgreSQL: replication slot lag) |
//! | `dualwrite_alerts_firing` | rule | alerts firing now |
//!
//! Direction is `erp-to-crm` or `crm-to-erp`.

use std::fmt::Write as _;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::admin::EngineSnapshot;
use crate::change::ErrorClass;
use crate::plugin::CallTimes;
use crate::state::{ErrorQuery, StateError, StateStore};

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything one scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    snapshot: EngineSnapshot,
    open_errors: Vec<(String, &'static str, u64)>,
    checkpoints: Vec<(String, u64)>,
    initial_sync: Vec<(String, u64, u64)>,
}

/// Reads what the store holds for a scrape of `snapshot`'s maps.
pub fn gather(snapshot: &EngineSnapshot, store: &dyn StateStore) -> Result<Scrape, StateError> {
    let mut open_errors = Vec::new();
    let mut initial_sync = Vec::new();
    for map in &snapshot.maps {
        let mut by_class: std::collections::BTreeMap<&'static str, u64> = Default::default();
        let mut after_id = 0;
        loop {
            let page = store.errors(&ErrorQuery {
                map: Some(map.name.clone()),
                after_id,
                limit: 5_000,
                ..ErrorQuery::default()
            })?;
            let Some(last) = page.last() else { break };
            after_id = last.id;
            for entry in &page {
                *by_class.entry(entry.error.class.as_str()).or_default() += 1;
            }
        }
        for class in ALL_CLASSES {
            let name = class.as_str();
            open_errors.push((
                map.name.clone(),
                name,
                by_class.get(name).copied().unwrap_or(0),
            ));
        }
        if let Some(progress) = store.initial_sync(&map.name)? {
            let (done, total) = [progress.erp, progress.crm]
                .iter()
                .flatten()
                .fold((0, 0), |(done, total), side| {
                    (done + side.rows_done, total + side.rows_total.unwrap_or(0))
                });
            initial_sync.push((map.name.clone(), done, total));
        }
    }
    let checkpoints = store
        .checkpoints()?
        .into_iter()
        .filter(|checkpoint| checkpoint.map.is_none())
        .map(|checkpoint| {
            (
                checkpoint.side.as_str().to_owned(),
                checkpoint.position.sequence,
            )
        })
        .collect();
    Ok(Scrape {
        snapshot: snapshot.clone(),
        open_errors,
        checkpoints,
        initial_sync,
    })
}

const ALL_CLASSES: [ErrorClass; 6] = [
    ErrorClass::PluginRejected,
    ErrorClass::PluginTrapped,
    ErrorClass::TargetRejected,
    ErrorClass::TargetUnavailable,
    ErrorClass::DependencyMissing,
    ErrorClass::Conflict,
];

/// The scrape in the Prometheus text format.
pub fn encode(scrape: Scrape) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    if !text.ends_with('\n') {
        text.write_char('\n')?;
    }
    Ok(text)
}

type Labels = Vec<(&'static str, String)>;

fn family<V>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (Labels, V)>,
) -> Result<(), std::fmt::Error>
where
    V: prometheus_client::encoding::EncodeGaugeValue
        + prometheus_client::encoding::EncodeCounterValue,
{
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in rows {
        let mut member = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => member.encode_counter::<NoLabelSet, V, u64>(&value, None)?,
            _ => member.encode_gauge(&value)?,
        }
    }
    Ok(())
}

fn map_label(map: &str) -> Labels {
    vec![("map", map.to_owned())]
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let maps = &self.snapshot.maps;
        let directed = |map: &str, direction: &str| {
            vec![("map", map.to_owned()), ("direction", direction.to_owned())]
        };
        family(
            &mut encoder,
            "dualwrite_changes_captured",
            "Changes read from the source side, per map and direction.",
            MetricType::Counter,
            maps.iter().flat_map(|map| {
                [
                    (
                        directed(&map.name, "erp-to-crm"),
                        map.counters.captured_from_erp,
                    ),
                    (
                        directed(&map.name, "crm-to-erp"),
                        map.counters.captured_from_crm,
                    ),
                ]
            }),
        )?;
        family(
            &mut encoder,
            "dualwrite_rows_applied",
            "Rows written on the target side, per map and direction.",
            MetricType::Counter,
            maps.iter().flat_map(|map| {
                [
                    (
                        directed(&map.name, "erp-to-crm"),
                        map.counters.written_to_crm,
                    ),
                    (
                        directed(&map.name, "crm-to-erp"),
                        map.counters.written_to_erp,
                    ),
                ]
            }),
        )?;
        for (name, help, pick) in [
            (
                "dualwrite_changes_filtered",
                "Changes the map's plugin filtered out.",
                (|c: &crate::sync::MapCounters| c.filtered) as fn(&crate::sync::MapCounters) -> u64,
            ),
            (
                "dualwrite_changes_noop",
                "Changes that needed no write (echoes and redeliveries included).",
                |c| c.no_ops,
            ),
            (
                "dualwrite_conflicts",
                "Conflicts detected (both sides changed a row since the last sync).",
                |c| c.conflicts,
            ),
            (
                "dualwrite_errors",
                "Changes sent to the map's error queue.",
                |c| c.errors,
            ),
        ] {
            family(
                &mut encoder,
                name,
                help,
                MetricType::Counter,
                maps.iter()
                    .map(|map| (map_label(&map.name), pick(&map.counters))),
            )?;
        }
        family(
            &mut encoder,
            "dualwrite_open_errors",
            "Errors waiting in the map's error queue, by class.",
            MetricType::Gauge,
            self.open_errors.iter().map(|(map, class, count)| {
                (
                    vec![("map", map.clone()), ("class", (*class).to_owned())],
                    *count,
                )
            }),
        )?;
        family(
            &mut encoder,
            "dualwrite_queue_depth",
            "Changes waiting in the map's queue (paused, catching up, or a side offline).",
            MetricType::Gauge,
            maps.iter()
                .map(|map| (map_label(&map.name), map.queue_depth)),
        )?;
        family(
            &mut encoder,
            "dualwrite_lag_seconds",
            "Age of the map's oldest waiting change.",
            MetricType::Gauge,
            maps.iter()
                .map(|map| (map_label(&map.name), map.lag.as_secs_f64())),
        )?;
        family(
            &mut encoder,
            "dualwrite_lag_changes",
            "Changes the map is behind (waiting in its queue).",
            MetricType::Gauge,
            maps.iter()
                .map(|map| (map_label(&map.name), map.queue_depth)),
        )?;
        family(
            &mut encoder,
            "dualwrite_checkpoint_position",
            "Last acknowledged position (sequence) of the side's change stream.",
            MetricType::Gauge,
            self.checkpoints
                .iter()
                .map(|(side, position)| (vec![("side", side.clone())], *position)),
        )?;
        {
            let mut metric = encoder.encode_descriptor(
                "dualwrite_plugin_call_seconds",
                "Time of the map plugin's transform calls.",
                None,
                MetricType::Histogram,
            )?;
            for plugin in &self.snapshot.plugins {
                let labels = map_label(&plugin.map);
                let times = &plugin.stats.call_times;
                let mut buckets: Vec<(f64, u64)> = CallTimes::BOUNDS
                    .iter()
                    .copied()
                    .zip(times.buckets.iter().copied())
                    .collect();
                let counted: u64 = times.buckets.iter().sum();
                buckets.push((f64::INFINITY, times.count.saturating_sub(counted)));
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(
                        times.sum_seconds,
                        times.count,
                        &buckets,
                        None,
                    )?;
            }
        }
        family(
            &mut encoder,
            "dualwrite_initial_sync_rows_done",
            "Rows the map's initial sync has read, both sides.",
            MetricType::Gauge,
            self.initial_sync
                .iter()
                .map(|(map, done, _)| (map_label(map), *done)),
        )?;
        family(
            &mut encoder,
            "dualwrite_initial_sync_rows_total",
            "Rows on both sides when the map's initial sync began reading them.",
            MetricType::Gauge,
            self.initial_sync
                .iter()
                .map(|(map, _, total)| (map_label(map), *total)),
        )?;
        family(
            &mut encoder,
            "dualwrite_map_mode",
            "1 for the map's current mode.",
            MetricType::Gauge,
            maps.iter().map(|map| {
                (
                    vec![
                        ("map", map.name.clone()),
                        ("mode", map.mode.as_str().to_owned()),
                    ],
                    1u64,
                )
            }),
        )?;
        family(
            &mut encoder,
            "dualwrite_side_offline_seconds",
            "How long an unreachable side has been offline.",
            MetricType::Gauge,
            self.snapshot
                .offline
                .iter()
                .map(|side| (vec![("side", side.side.clone())], side.seconds)),
        )?;
        family(
            &mut encoder,
            "dualwrite_slot_lag_bytes",
            "Bytes of log the side keeps for the engine, not confirmed yet (PostgreSQL: \
             the replication slot's lag behind the current WAL position).",
            MetricType::Gauge,
            self.snapshot
                .retained_bytes
                .iter()
                .map(|(side, bytes)| (vec![("side", side.clone())], *bytes)),
        )?;
        family(
            &mut encoder,
            "dualwrite_alerts_firing",
            "Alerts firing now, per rule.",
            MetricType::Gauge,
            self.snapshot.alert_rules.iter().map(|rule| {
                let firing = self
                    .snapshot
                    .firing
                    .iter()
                    .filter(|alert| alert.rule == rule.name)
                    .count() as u64;
                (vec![("rule", rule.name.clone())], firing)
            }),
        )?;
        Ok(())
    }
}
