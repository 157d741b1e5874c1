//! The one place that generates host bindings for the plugin world.
//!
//! The `types` interface is not generated: it maps to [`crate::change`], whose types
//! derive the component traits under the WIT names. The runtime type-checks them against
//! each component at load time.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "dualwrite:table-map/map-plugin@0.1.0",
    with: {
        "dualwrite:table-map/types@0.1.0": super::wit_types,
    },
});

pub use self::dualwrite::table_map::host::{
    Host as HostImports, add_to_linker as add_host_to_linker,
};
