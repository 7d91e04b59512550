//! Pickling support shared by every frozen pyclass: `__reduce__` returns
//! `(cls._from_state, (state_bytes,))`, where the state comes from [`crate::codec`] and is
//! therefore deterministic (identical objects pickle to identical bytes).

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Builds the `__reduce__` tuple for `obj` whose class has a `_from_state(bytes)` classmethod.
pub(crate) fn reduce<'py>(
    obj: &Bound<'py, PyAny>,
    state: &[u8],
) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
    let py = obj.py();
    let ctor = obj.get_type().getattr("_from_state")?;
    Ok((ctor, (PyBytes::new(py, state),)))
}
