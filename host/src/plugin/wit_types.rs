//! The `dualwrite:table-map/types` interface as the bindings see it: the hand-written
//! types of [`crate::change`], plus the (empty) host-side traits bindgen expects of an
//! imported interface. `types` has no functions, so there is nothing to link.

pub use crate::change::{
    Change, ChangeOp, ConfigError, Descriptor, Direction, EntitySpec, ErrorKind, FieldId,
    FieldMapping, FieldSpec, FieldValue, HostError, LogLevel, Outcome, PluginError, Row, Side,
    Timestamp, Value, ValueKind, Write, WriteOp,
};

use wasmtime::component::{HasData, Linker};

/// Host functions of `types`: none.
pub trait Host {}

impl<T: ?Sized> Host for T {}

/// Host functions of `types` that take the store: none.
pub trait HostWithStore<T>: HasData {}

impl<T, D: HasData> HostWithStore<T> for D {}

/// Links the functions of `types`: there are none.
pub fn add_to_linker<T, D>(
    _linker: &mut Linker<T>,
    _host_getter: fn(&mut T) -> D::Data<'_>,
) -> wasmtime::Result<()>
where
    D: HostWithStore<T>,
    T: 'static,
{
    Ok(())
}
