//! What the admin side asks of a running engine beyond modes and counters: each map's
//! plugin (file, content hash, version, runner statistics), retrying one error now, and
//! which sides are offline since when.
//!
//! Everything here reads the loop's own state or runs one retry through the same path
//! as the automatic retries, so it is called between steps, never during one.

use std::time::Duration;

use super::Engine;
use crate::change::Side;
use crate::plugin::RunnerStats;

/// A map's plugin as the engine runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginStatus {
    /// The map.
    pub map: String,
    /// The plugin file name.
    pub file: String,
    /// The SHA-256 of the file, lowercase hex.
    pub hash: String,
    /// The `dualwrite:table-map` version it implements.
    pub world_version: String,
    /// The plugin's own name and version, from `describe`.
    pub name: String,
    /// The plugin's own version, from `describe`.
    pub version: String,
    /// Why the plugin is quarantined (no longer called), if it is.
    pub quarantined: Option<String>,
    /// Calls, changes, traps, call times.
    pub stats: RunnerStats,
}

/// What an admin's "retry now" of one error did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The change was applied and the error resolved.
    Applied,
    /// It failed again (its attempts and next retry were updated), its row is gone, or
    /// one of its sides is offline.
    NotApplied,
}

impl Engine {
    /// Each running map's plugin, in dependency order.
    pub fn plugins(&self) -> Vec<PluginStatus> {
        self.maps
            .iter()
            .map(|map| {
                let plugin = map.runner.plugin();
                let descriptor = map.runner.descriptor();
                PluginStatus {
                    map: map.plan.name.clone(),
                    file: plugin.file().to_owned(),
                    hash: plugin.hash().hex(),
                    world_version: plugin.world_version().to_owned(),
                    name: descriptor.name.clone(),
                    version: descriptor.version.clone(),
                    quarantined: map.runner.quarantined().map(str::to_owned),
                    stats: map.runner.stats().clone(),
                }
            })
            .collect()
    }

    /// Each running map's declared fields and key columns per side (what a recorded
    /// change set may name).
    pub fn map_shapes(
        &self,
    ) -> std::collections::BTreeMap<String, crate::replay::record::MapShape> {
        self.maps
            .iter()
            .map(|map| (map.plan.name.clone(), shape_of(&map.runner, &map.plan)))
            .collect()
    }

    /// Each running map's `depends_on` (maps of the plan, maybe not running).
    pub fn map_dependencies(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        self.maps
            .iter()
            .map(|map| (map.plan.name.clone(), map.plan.depends_on.clone()))
            .collect()
    }

    /// Each running map's ERP and CRM side names.
    pub fn map_sides(&self) -> std::collections::BTreeMap<String, [String; 2]> {
        self.maps
            .iter()
            .map(|map| {
                (
                    map.plan.name.clone(),
                    [map.plan.erp.side.clone(), map.plan.crm.side.clone()],
                )
            })
            .collect()
    }

    /// Each online side's bytes of log kept for the engine
    /// ([`CaptureStream::retained_bytes`](crate::capture::CaptureStream::retained_bytes)),
    /// measured at most every five seconds; sides without such a measure are left out.
    pub fn retained_bytes(&mut self) -> Vec<(String, u64)> {
        const MEASURE_EVERY: Duration = Duration::from_secs(5);
        let mut found = Vec::new();
        for side in &mut self.sides {
            let due = side
                .retained
                .is_none_or(|(_, at)| at.elapsed() >= MEASURE_EVERY);
            if due && side.offline.is_none() {
                match side.capture.retained_bytes() {
                    Ok(Some(bytes)) => side.retained = Some((bytes, std::time::Instant::now())),
                    Ok(None) => side.retained = None,
                    // The step that meets the fault puts the side offline; the last
                    // figure stays until then.
                    Err(error) => {
                        tracing::debug!(side = %side.name, %error, "retained bytes not measured")
                    }
                }
            }
            if let Some((bytes, _)) = side.retained {
                found.push((side.name.clone(), bytes));
            }
        }
        found
    }

    /// How long each offline side has been offline, with why.
    pub fn offline_durations(&self) -> Vec<(String, Duration, String)> {
        self.sides
            .iter()
            .filter_map(|side| {
                side.offline.as_ref().map(|offline| {
                    (
                        side.name.clone(),
                        offline.since.elapsed(),
                        offline.reason.clone(),
                    )
                })
            })
            .collect()
    }

    /// Retries open error `id` now, the way automatic retries do (the row as it is now
    /// on its source side). Fails if there is no such open error.
    pub fn retry_error(&mut self, id: u64) -> anyhow::Result<RetryOutcome> {
        let Some(entry) = self.store.error(id)? else {
            anyhow::bail!("no error with id {id}");
        };
        if entry.resolution.is_some() {
            anyhow::bail!("error {id} is already resolved");
        }
        Ok(if self.retry_one(&entry)? {
            RetryOutcome::Applied
        } else {
            RetryOutcome::NotApplied
        })
    }
}

/// The fields `runner`'s plugin declares and the map's keys: what a recorded change is
/// cut to so it replays through that plugin.
pub(super) fn shape_of(
    runner: &crate::plugin::MapPluginRunner,
    plan: &crate::config::MapPlan,
) -> crate::replay::record::MapShape {
    let descriptor = runner.descriptor();
    let names = |side: Side| -> Vec<String> {
        descriptor
            .entity(side)
            .fields
            .iter()
            .map(|field| field.name.clone())
            .collect()
    };
    crate::replay::record::MapShape {
        fields: [names(Side::Erp), names(Side::Crm)],
        key: [plan.erp.key.clone(), plan.crm.key.clone()],
    }
}
