//! Python bindings of the experiment's presets (`experiment.rs`): `ExperimentPreset("tiny")`,
//! read by `musrec.experiment`.

use super::config::PyWorldConfig;
use super::convert::report;
use crate::experiment::{ExperimentPreset, PRESET_NAMES};
use pyo3::prelude::*;

/// A preset of the experiment: its synthetic world and its Pipeline settings.
#[pyclass(module = "musrec._musrec", name = "ExperimentPreset", frozen)]
pub struct PyExperimentPreset {
    inner: ExperimentPreset,
}

#[pymethods]
impl PyExperimentPreset {
    #[new]
    fn new(name: &str) -> PyResult<Self> {
        Ok(PyExperimentPreset {
            inner: ExperimentPreset::named(name)?,
        })
    }

    /// The names of the presets, smallest first.
    #[classattr]
    #[pyo3(name = "NAMES")]
    fn names() -> Vec<&'static str> {
        PRESET_NAMES.to_vec()
    }

    #[getter]
    fn name(&self) -> &'static str {
        self.inner.name
    }

    /// The synthetic world (a `WorldConfig`), seed 0.
    #[getter]
    fn world(&self) -> PyWorldConfig {
        PyWorldConfig {
            inner: self.inner.world.clone(),
        }
    }

    /// The Pipeline's keyword settings (`n_factors`, `model`, `N`, and `n_users`/`n_songs`
    /// where real data is de-sparsified to a size other than the world's), a new dict.
    fn pipeline_settings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        report(py, &self.inner.pipeline)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Self>().is_ok_and(|o| self.inner == o.get().inner)
    }

    fn __hash__(&self) -> u64 {
        crate::audio::features::fnv1a(self.inner.name.as_bytes())
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (&'static str,))> {
        Ok((slf.get_type().into_any(), (slf.get().inner.name,)))
    }

    fn __repr__(&self) -> String {
        format!("ExperimentPreset({:?})", self.inner.name)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyExperimentPreset>()
}
