//! Write dualwrite map plugins in Rust.
//!
//! A map plugin holds the filter and transform logic of one table map. It is compiled to
//! a WebAssembly component that implements the `dualwrite:table-map@0.1.0` world (`wit/table-map.wit`),
//! and the engine runs it in a sandbox. This crate is the whole Rust facade over that
//! contract:
//!
//! - the data types ([`Value`], [`Change`], [`Write`], [`Outcome`], [`Descriptor`], ...),
//!   hand-written mirrors of the WIT types with helpers for field access;
//! - the [`MapPlugin`] trait a plugin implements, and [`export_plugin!`] to export it;
//! - the [`Host`] trait through which a plugin logs, translates keys through the engine's
//!   links and reads rows for lookups;
//! - [`testing::FakeHost`], so the same plugin code runs natively under `cargo test`
//!   with recorded links and rows, no Wasm and no database needed;
//! - [`table`], a data-driven toolkit for the usual map: declare both sides' fields and
//!   the mapping lines (copies, value maps, lookups through links, constants) and the
//!   standard config options, and let a [`table::Table`] carry each change across.
//!
//! ```
//! use dualwrite_guest::{Change, Descriptor, EntitySpec, Host, MapPlugin, Outcome, Write, ValueKind};
//!
//! #[derive(Default)]
//! struct Copy;
//!
//! impl MapPlugin for Copy {
//!     fn configure(&mut self, _config: &str) -> Result<(), dualwrite_guest::ConfigError> { Ok(()) }
//!     fn describe(&self) -> Descriptor {
//!         Descriptor::new("copy", "0.1.0", "copies the name both ways")
//!             .erp(EntitySpec::new("Things").key("ID", ValueKind::Text).field("NAME", ValueKind::Text))
//!             .crm(EntitySpec::new("things").key("id", ValueKind::Text).field("name", ValueKind::Text))
//!     }
//!     fn transform(&self, change: &Change, _host: &dyn Host) -> Outcome {
//!         let write = if change.is_delete() { Write::delete() } else { Write::upsert() };
//!         Outcome::write(write.set(0, change.get(0).clone()).set(1, change.get(1).clone()))
//!     }
//! }
//! dualwrite_guest::export_plugin!(Copy);
//! ```

mod host;
mod types;

pub mod table;
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __glue;

pub use host::Host;
pub use types::*;

/// The world version this SDK builds plugins for.
pub const WORLD_VERSION: &str = "0.1.0";

/// The logic of one table map.
///
/// The engine creates the plugin with [`Default`], calls [`configure`](Self::configure)
/// with the admin's config, then [`describe`](Self::describe), then
/// [`transform`](Self::transform) for every change. An instance may be thrown away and
/// recreated at any time between calls (after a trap, on a hot swap), so a plugin must
/// keep no state other than what `configure` sets up.
pub trait MapPlugin: Default + 'static {
    /// Applies the map's config, a JSON document (`{}` when the admin set none). On
    /// error the previous config stays in force; name the offending part in
    /// [`ConfigError::path`].
    fn configure(&mut self, config: &str) -> Result<(), ConfigError>;

    /// Describes the plugin as currently configured. Field ids used in changes and
    /// writes are positions in the field lists returned here.
    fn describe(&self) -> Descriptor;

    /// Filters and transforms one change.
    fn transform(&self, change: &Change, host: &dyn Host) -> Outcome;

    /// Filters and transforms a batch of changes, one outcome per change in the same
    /// order. The default calls [`transform`](Self::transform) for each change.
    fn transform_batch(&self, batch: &[Change], host: &dyn Host) -> Vec<Outcome> {
        batch
            .iter()
            .map(|change| self.transform(change, host))
            .collect()
    }
}

/// Exports a [`MapPlugin`] type as the component's `dualwrite:table-map/plugin` interface.
///
/// Use it once, at the crate root of a `cdylib` built for `wasm32-unknown-unknown`. On
/// other targets it expands to nothing, so the crate also builds natively for tests.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static PLUGIN: ::std::cell::RefCell<$plugin> =
                    ::std::cell::RefCell::new(<$plugin as ::std::default::Default>::default());
            }
            struct DualwriteExport;
            impl $crate::__glue::Guest for DualwriteExport {
                fn configure(
                    config: ::std::string::String,
                ) -> ::std::result::Result<(), $crate::__glue::WitConfigError> {
                    $crate::__glue::configure(&PLUGIN, config)
                }
                fn describe() -> $crate::__glue::WitDescriptor {
                    $crate::__glue::describe(&PLUGIN)
                }
                fn transform(
                    batch: ::std::vec::Vec<$crate::__glue::WitChange>,
                ) -> ::std::vec::Vec<$crate::__glue::WitOutcome> {
                    $crate::__glue::transform(&PLUGIN, batch)
                }
            }
    $crate::__glue::export!(DualwriteExport with_types_in $crate::__glue::bindings);
        };
    };
}
