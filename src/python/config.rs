//! Typed configuration classes: the Rust type is the one schema. A class takes keyword
//! settings (unknown names are a TypeError, a wrong type a TypeError naming the setting, a
//! bad value the core's ValueError), has a getter per setting, `replace(**changes)`,
//! `__repr__`, `__eq__` and pickling. The Python front re-exports them; it validates nothing.

use super::convert::to_json;
use crate::audio::clip::ClipPosition;
use crate::audio::db::DbRef;
use crate::audio::features::{FeatureConfig, LogMel, LogScale};
use crate::audio::mel::{MelNorm, MelScale};
use crate::audio::spectrum::{PadMode, Window};
use crate::error::Error;
use crate::synthetic::world::WorldFilesConfig;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use serde_json::Value;

/// An f32 setting as the shortest decimal that reads back to it (1e-10, not 1.0000000133e-10).
fn short(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// serde's complaint about one setting, as the exception a Python user expects.
pub fn setting_error(class: &str, name: &str, e: serde_json::Error) -> PyErr {
    let message = format!("{class}: bad value for {name}: {e}");
    if message.contains("invalid type") {
        PyTypeError::new_err(message)
    } else {
        Error::invalid(message).into()
    }
}

/// Set one JSON field of a config and read the config back through serde (the type check).
fn set_field<T: serde::Serialize + serde::de::DeserializeOwned>(
    class: &str,
    config: &T,
    path: &[&str],
    name: &str,
    value: Value,
) -> PyResult<T> {
    let mut json = serde_json::to_value(config).map_err(|e| Error::invalid(e.to_string()))?;
    let mut slot = &mut json;
    for key in path {
        slot = slot
            .get_mut(*key)
            .ok_or_else(|| Error::invalid(format!("{class}: no field {key}")))?;
    }
    *slot = value;
    serde_json::from_value(json).map_err(|e| setting_error(class, name, e))
}

/// The settings of [`PyFeatureConfig`], flat, as Python spells them.
const FEATURE_SETTINGS: &[&str] = &[
    "sample_rate",
    "clip_seconds",
    "position",
    "seed",
    "min_seconds",
    "n_fft",
    "hop_length",
    "win_length",
    "window",
    "center",
    "pad_mode",
    "power",
    "n_mels",
    "fmin",
    "fmax",
    "htk",
    "norm",
    "log",
    "ref",
    "amin",
    "top_db",
    "log1p_c",
];

/// Everything that defines a clip's log-Mel feature.
///
/// `FeatureConfig(**settings)` starts from the paper's front end (`FeatureConfig.paper()`:
/// 8 kHz, a random 3 s excerpt, 1024-sample Hamming window, hop 512, 128 Slaney Mel bands,
/// log energy in dB re 1, amin 1e-10, top_db 80) and changes the settings given;
/// `FeatureConfig.common()` is the same at 22,050 Hz. `position` is "random" (with `seed`),
/// "centre", an offset in seconds, or ("spread", index, count): excerpt `index` of `count`
/// spread evenly from the start of the file to its end (what `excerpts()` gives). `htk`
/// picks the HTK Mel scale, `norm` is "slaney" or None; `log` is "db" (with `ref`, a number
/// or "max", `amin`, `top_db`), "log1p" (log(1 + log1p_c * S)) or "none".
#[pyclass(module = "musrec._musrec", name = "FeatureConfig", frozen)]
#[derive(Clone, PartialEq)]
pub struct PyFeatureConfig {
    pub inner: FeatureConfig,
}

impl PyFeatureConfig {
    fn changed(&self, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut cfg = self.inner.clone();
        let Some(changes) = changes else {
            return Ok(self.clone());
        };
        // `position` before `seed`, so `seed` applies to the new position.
        let mut items: Vec<(String, Bound<'_, PyAny>)> = Vec::new();
        for (k, v) in changes.iter() {
            items.push((k.extract::<String>()?, v));
        }
        items.sort_by_key(|(k, _)| k != "position");
        for (name, v) in &items {
            cfg = apply_feature_setting(cfg, name, v)?;
        }
        cfg.validate()?;
        // Also what the transform checks (frames, bands against the FFT size).
        LogMel::from_config(&cfg)?;
        Ok(PyFeatureConfig { inner: cfg })
    }
}

fn apply_feature_setting(cfg: FeatureConfig, name: &str, v: &Bound<'_, PyAny>) -> PyResult<FeatureConfig> {
    const C: &str = "FeatureConfig";
    let mut cfg = cfg;
    match name {
        "sample_rate" | "clip_seconds" | "min_seconds" | "n_mels" | "fmin" | "fmax" => {
            cfg = set_field(C, &cfg, &[name], name, to_json(name, v)?)?;
        }
        "n_fft" | "hop_length" | "win_length" | "window" | "center" | "pad_mode" | "power" => {
            cfg = set_field(C, &cfg, &["stft", name], name, to_json(name, v)?)?;
        }
        "position" => {
            cfg.position = if let Ok(tuple) = v.cast::<PyTuple>() {
                match tuple.extract::<(String, usize, usize)>() {
                    Ok((kind, index, count)) if kind == "spread" => ClipPosition::Spread { index, count },
                    _ => return Err(bad_position(v)),
                }
            } else if let Ok(s) = v.extract::<String>() {
                match s.as_str() {
                    "random" => ClipPosition::Random {
                        seed: match cfg.position {
                            ClipPosition::Random { seed } => seed,
                            _ => 0,
                        },
                    },
                    "centre" | "center" => ClipPosition::Centre,
                    _ => return Err(bad_position(v)),
                }
            } else if !v.is_instance_of::<pyo3::types::PyBool>()
                && let Ok(seconds) = v.extract::<f64>()
            {
                ClipPosition::Offset { seconds }
            } else {
                return Err(bad_position(v));
            };
        }
        "seed" => {
            let seed: u64 = v
                .extract()
                .map_err(|_| PyTypeError::new_err("FeatureConfig: seed must be a non-negative integer"))?;
            match &mut cfg.position {
                ClipPosition::Random { seed: s } => *s = seed,
                _ => return Err(Error::invalid("FeatureConfig: seed only applies to position='random'").into()),
            }
        }
        "htk" => {
            let htk: bool = v
                .extract()
                .map_err(|_| PyTypeError::new_err("FeatureConfig: htk must be True or False"))?;
            cfg.mel_scale = if htk { MelScale::Htk } else { MelScale::Slaney };
        }
        "norm" => {
            cfg.mel_norm = match v.extract::<Option<String>>()?.as_deref() {
                Some("slaney") => MelNorm::Slaney,
                None => MelNorm::None,
                Some(other) => {
                    return Err(
                        Error::invalid(format!("FeatureConfig: norm must be 'slaney' or None, got {other:?}")).into(),
                    );
                }
            };
        }
        "log" => {
            let kind: String = v
                .extract()
                .map_err(|_| PyTypeError::new_err("FeatureConfig: log must be 'db', 'log1p' or 'none'"))?;
            cfg.log = match (kind.as_str(), cfg.log) {
                ("db", LogScale::Db { .. }) | ("log1p", LogScale::Log1p { .. }) | ("none", LogScale::None) => cfg.log,
                ("db", _) => LogScale::Db {
                    reference: DbRef::Value { value: 1.0 },
                    amin: 1e-10,
                    top_db: Some(80.0),
                },
                ("log1p", _) => LogScale::Log1p { c: 1.0 },
                ("none", _) => LogScale::None,
                _ => {
                    return Err(Error::invalid(format!(
                        "FeatureConfig: log must be 'db', 'log1p' or 'none', got {kind:?}"
                    ))
                    .into());
                }
            };
        }
        "ref" | "amin" | "top_db" => {
            let LogScale::Db {
                reference,
                amin,
                top_db,
            } = &mut cfg.log
            else {
                return Err(Error::invalid(format!("FeatureConfig: {name} only applies to log='db'")).into());
            };
            match name {
                "ref" => {
                    *reference = match v.extract::<String>() {
                        Ok(s) if s == "max" => DbRef::Max,
                        Ok(s) => {
                            return Err(Error::invalid(format!(
                                "FeatureConfig: ref must be a number or 'max', got {s:?}"
                            ))
                            .into());
                        }
                        Err(_) => DbRef::Value {
                            value: v
                                .extract()
                                .map_err(|_| PyTypeError::new_err("FeatureConfig: ref must be a number or 'max'"))?,
                        },
                    }
                }
                "amin" => {
                    *amin = v
                        .extract()
                        .map_err(|_| PyTypeError::new_err("FeatureConfig: amin must be a number"))?
                }
                _ => {
                    *top_db = v
                        .extract()
                        .map_err(|_| PyTypeError::new_err("FeatureConfig: top_db must be a number or None"))?
                }
            }
        }
        "log1p_c" => {
            let LogScale::Log1p { c } = &mut cfg.log else {
                return Err(Error::invalid("FeatureConfig: log1p_c only applies to log='log1p'").into());
            };
            *c = v
                .extract()
                .map_err(|_| PyTypeError::new_err("FeatureConfig: log1p_c must be a number"))?;
        }
        other => {
            return Err(PyTypeError::new_err(format!(
                "FeatureConfig got an unknown setting {other:?}; the settings are {}",
                FEATURE_SETTINGS.join(", ")
            )));
        }
    }
    Ok(cfg)
}

fn bad_position(v: &Bound<'_, PyAny>) -> PyErr {
    Error::invalid(format!(
        "FeatureConfig: position must be 'random', 'centre', seconds or ('spread', index, count), got {}",
        v.repr().map_or_else(|_| "?".to_string(), |r| r.to_string())
    ))
    .into()
}

#[pymethods]
impl PyFeatureConfig {
    #[new]
    #[pyo3(signature = (**settings))]
    fn new(settings: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        PyFeatureConfig {
            inner: FeatureConfig::paper(),
        }
        .changed(settings)
    }

    /// The paper's front end, with any settings changed.
    #[staticmethod]
    #[pyo3(signature = (**settings))]
    fn paper(settings: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Self::new(settings)
    }

    /// The paper's front end at 22,050 Hz, with any settings changed.
    #[staticmethod]
    #[pyo3(signature = (**settings))]
    fn common(settings: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        PyFeatureConfig {
            inner: FeatureConfig::common(),
        }
        .changed(settings)
    }

    /// A copy with the given settings changed.
    #[pyo3(signature = (**changes))]
    fn replace(&self, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        self.changed(changes)
    }

    /// `count` configs for excerpts spread evenly over each file, from its start to its end:
    /// the several excerpts per song that FusionModel trains on. One alone is centred.
    fn excerpts(&self, count: usize) -> PyResult<Vec<Self>> {
        if count == 0 {
            return Err(Error::invalid("excerpts: count must be positive").into());
        }
        Ok((0..count)
            .map(|index| PyFeatureConfig {
                inner: FeatureConfig {
                    position: ClipPosition::Spread { index, count },
                    ..self.inner.clone()
                },
            })
            .collect())
    }

    /// (n_mels, frames) of one clip's features.
    #[getter]
    fn shape(&self) -> PyResult<(usize, usize)> {
        let transform = LogMel::from_config(&self.inner)?;
        Ok((transform.n_mels(), transform.n_frames(self.inner.clip_samples())))
    }

    /// The configuration as the core's JSON (a stable key for caches).
    fn to_json(&self) -> PyResult<String> {
        Ok(serde_json::to_string(&self.inner).map_err(|e| Error::invalid(e.to_string()))?)
    }

    /// The configuration as the core's nested dict (what `from_dict` takes back).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        super::convert::report(py, &self.inner)
    }

    /// A configuration from `to_dict`'s nested form, validated by the core.
    #[staticmethod]
    fn from_dict(settings: &Bound<'_, PyAny>) -> PyResult<Self> {
        let inner: FeatureConfig = super::convert::from_py("FeatureConfig", settings)?;
        inner.validate()?;
        Ok(PyFeatureConfig { inner })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyAny>,))> {
        let from_dict = slf.get_type().getattr("from_dict")?;
        Ok((from_dict, (slf.get().to_dict(slf.py())?,)))
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: pyo3::basic::CompareOp) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let Ok(other) = other.cast::<Self>() else {
            return Ok(py.NotImplemented());
        };
        let same = self.inner == other.get().inner;
        match op {
            pyo3::basic::CompareOp::Eq => Ok(same.into_pyobject(py)?.to_owned().into_any().unbind()),
            pyo3::basic::CompareOp::Ne => Ok((!same).into_pyobject(py)?.to_owned().into_any().unbind()),
            _ => Ok(py.NotImplemented()),
        }
    }

    /// Equal configs hash equal (the fingerprint of the feature cache).
    fn __hash__(&self) -> PyResult<u64> {
        Ok(self.inner.fingerprint()?)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let mut parts = Vec::new();
        let cfg = &slf.get().inner;
        for name in FEATURE_SETTINGS {
            let applies = match *name {
                "seed" => matches!(cfg.position, ClipPosition::Random { .. }),
                "ref" | "amin" | "top_db" => matches!(cfg.log, LogScale::Db { .. }),
                "log1p_c" => matches!(cfg.log, LogScale::Log1p { .. }),
                _ => true,
            };
            if applies {
                parts.push(format!("{name}={}", slf.getattr(*name)?.repr()?));
            }
        }
        Ok(format!("FeatureConfig({})", parts.join(", ")))
    }

    #[getter]
    fn sample_rate(&self) -> u32 {
        self.inner.sample_rate
    }
    #[getter]
    fn clip_seconds(&self) -> f64 {
        self.inner.clip_seconds
    }
    /// "random", "centre", seconds, or ("spread", index, count).
    #[getter]
    fn position<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.inner.position {
            ClipPosition::Random { .. } => "random".into_pyobject(py)?.into_any(),
            ClipPosition::Centre => "centre".into_pyobject(py)?.into_any(),
            ClipPosition::Offset { seconds } => seconds.into_pyobject(py)?.into_any(),
            ClipPosition::Spread { index, count } => ("spread", index, count).into_pyobject(py)?.into_any(),
        })
    }
    /// The random position's seed (None for the other positions).
    #[getter]
    fn seed(&self) -> Option<u64> {
        match self.inner.position {
            ClipPosition::Random { seed } => Some(seed),
            _ => None,
        }
    }
    #[getter]
    fn min_seconds(&self) -> f64 {
        self.inner.min_seconds
    }
    #[getter]
    fn n_fft(&self) -> usize {
        self.inner.stft.n_fft
    }
    #[getter]
    fn hop_length(&self) -> usize {
        self.inner.stft.hop_length
    }
    #[getter]
    fn win_length(&self) -> usize {
        self.inner.stft.win_length
    }
    #[getter]
    fn window(&self) -> &'static str {
        match self.inner.stft.window {
            Window::Hann => "hann",
            Window::Hamming => "hamming",
        }
    }
    #[getter]
    fn center(&self) -> bool {
        self.inner.stft.center
    }
    #[getter]
    fn pad_mode(&self) -> &'static str {
        match self.inner.stft.pad_mode {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
        }
    }
    #[getter]
    fn power(&self) -> f64 {
        short(self.inner.stft.power)
    }
    #[getter]
    fn n_mels(&self) -> usize {
        self.inner.n_mels
    }
    #[getter]
    fn fmin(&self) -> f64 {
        short(self.inner.fmin)
    }
    /// None: the Nyquist frequency.
    #[getter]
    fn fmax(&self) -> Option<f64> {
        self.inner.fmax.map(short)
    }
    #[getter]
    fn htk(&self) -> bool {
        self.inner.mel_scale == MelScale::Htk
    }
    #[getter]
    fn norm(&self) -> Option<&'static str> {
        match self.inner.mel_norm {
            MelNorm::Slaney => Some("slaney"),
            MelNorm::None => None,
        }
    }
    #[getter]
    fn log(&self) -> &'static str {
        match self.inner.log {
            LogScale::Db { .. } => "db",
            LogScale::Log1p { .. } => "log1p",
            LogScale::None => "none",
        }
    }
    /// The dB reference: a number or "max" (None unless log="db").
    #[getter]
    #[pyo3(name = "ref")]
    fn reference<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(match self.inner.log {
            LogScale::Db {
                reference: DbRef::Max, ..
            } => Some("max".into_pyobject(py)?.into_any()),
            LogScale::Db {
                reference: DbRef::Value { value },
                ..
            } => Some(short(value).into_pyobject(py)?.into_any()),
            _ => None,
        })
    }
    #[getter]
    fn amin(&self) -> Option<f64> {
        match self.inner.log {
            LogScale::Db { amin, .. } => Some(short(amin)),
            _ => None,
        }
    }
    #[getter]
    fn top_db(&self) -> Option<f64> {
        match self.inner.log {
            LogScale::Db { top_db, .. } => top_db.map(short),
            _ => None,
        }
    }
    #[getter]
    fn log1p_c(&self) -> Option<f64> {
        match self.inner.log {
            LogScale::Log1p { c } => Some(short(c)),
            _ => None,
        }
    }
}

/// The hyperparameters of a `musrec.WMF` (see its docstring for their meaning), validated by
/// the core's `WmfParams`. `random_state` None means a fresh seed at every fit.
#[pyclass(module = "musrec._musrec", name = "WMFParams", frozen)]
#[derive(Clone, PartialEq)]
pub struct PyWmfParams {
    pub factors: usize,
    pub regularization: f32,
    pub alpha: f32,
    pub confidence: String,
    pub eps: f32,
    pub iterations: usize,
    pub solver: String,
    pub cg_steps: usize,
    pub random_state: Option<u64>,
    pub calculate_training_loss: bool,
}

const WMF_SETTINGS: &[&str] = &[
    "factors",
    "regularization",
    "alpha",
    "confidence",
    "eps",
    "iterations",
    "solver",
    "cg_steps",
    "random_state",
    "calculate_training_loss",
];

impl PyWmfParams {
    /// The core's parameters, fitting with `seed` (the random state's, else 0).
    pub fn core(&self, seed: Option<u64>) -> crate::error::Result<crate::wmf::WmfParams> {
        use crate::wmf::{Confidence, Solver, WmfParams};
        let confidence = match self.confidence.as_str() {
            "linear" => Confidence::Linear,
            "log" => Confidence::Log { eps: self.eps },
            other => {
                return Err(Error::invalid(format!(
                    "confidence must be 'linear' or 'log', got {other:?}"
                )));
            }
        };
        let solver = match self.solver.as_str() {
            "cg" => Solver::Cg { steps: self.cg_steps },
            "cholesky" => Solver::Cholesky,
            other => {
                return Err(Error::invalid(format!(
                    "solver must be 'cg' or 'cholesky', got {other:?}"
                )));
            }
        };
        crate::ensure!(self.cg_steps >= 1, "cg_steps must be at least 1, got {}", self.cg_steps);
        crate::ensure!(
            self.eps.is_finite() && self.eps > 0.0,
            "eps must be a finite number > 0, got {}",
            self.eps
        );
        let params = WmfParams {
            factors: self.factors,
            regularization: self.regularization,
            alpha: self.alpha,
            confidence,
            iterations: self.iterations,
            solver,
            seed: seed.or(self.random_state).unwrap_or(0),
            compute_loss: self.calculate_training_loss,
        };
        params.validate()?;
        Ok(params)
    }

    /// The Python class's view of the core's parameters (a loaded model's).
    pub fn from_core(p: &crate::wmf::WmfParams) -> Self {
        use crate::wmf::{Confidence, Solver};
        let (confidence, eps) = match p.confidence {
            Confidence::Linear => ("linear", 1.0),
            Confidence::Log { eps } => ("log", eps),
        };
        let (solver, cg_steps) = match p.solver {
            Solver::Cg { steps } => ("cg", steps),
            Solver::Cholesky => ("cholesky", 3),
        };
        PyWmfParams {
            factors: p.factors,
            regularization: p.regularization,
            alpha: p.alpha,
            confidence: confidence.into(),
            eps,
            iterations: p.iterations,
            solver: solver.into(),
            cg_steps,
            random_state: Some(p.seed),
            calculate_training_loss: p.compute_loss,
        }
    }

    fn settings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("factors", self.factors)?;
        d.set_item("regularization", short(self.regularization))?;
        d.set_item("alpha", short(self.alpha))?;
        d.set_item("confidence", &self.confidence)?;
        d.set_item("eps", short(self.eps))?;
        d.set_item("iterations", self.iterations)?;
        d.set_item("solver", &self.solver)?;
        d.set_item("cg_steps", self.cg_steps)?;
        d.set_item("random_state", self.random_state)?;
        d.set_item("calculate_training_loss", self.calculate_training_loss)?;
        Ok(d)
    }
}

#[pymethods]
impl PyWmfParams {
    #[new]
    #[pyo3(signature = (*, factors=None, regularization=None, alpha=None, confidence="linear".to_string(), eps=None,
        iterations=None, solver="cg".to_string(), cg_steps=None, random_state=None, calculate_training_loss=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        factors: Option<&Bound<'_, PyAny>>,
        regularization: Option<&Bound<'_, PyAny>>,
        alpha: Option<&Bound<'_, PyAny>>,
        confidence: String,
        eps: Option<&Bound<'_, PyAny>>,
        iterations: Option<&Bound<'_, PyAny>>,
        solver: String,
        cg_steps: Option<&Bound<'_, PyAny>>,
        random_state: Option<&Bound<'_, PyAny>>,
        calculate_training_loss: bool,
    ) -> PyResult<Self> {
        let p = PyWmfParams {
            factors: count("factors", factors, 100, 1)?,
            regularization: number("regularization", regularization, 0.01)?,
            alpha: number("alpha", alpha, 1.0)?,
            confidence,
            eps: number("eps", eps, 1.0)?,
            iterations: count("iterations", iterations, 15, 0)?,
            solver,
            cg_steps: count("cg_steps", cg_steps, 3, 1)?,
            random_state: match random_state {
                Some(v) if !v.is_none() => Some(count("random_state", Some(v), 0, 0)? as u64),
                _ => None,
            },
            calculate_training_loss,
        };
        p.core(None)?;
        Ok(p)
    }

    /// The names of the settings, in the constructor's order.
    #[classattr]
    #[pyo3(name = "SETTINGS")]
    fn settings_names() -> Vec<&'static str> {
        WMF_SETTINGS.to_vec()
    }

    /// A copy with the given settings changed (checked as the constructor checks them).
    #[pyo3(signature = (**changes))]
    fn replace<'py>(slf: &Bound<'py, Self>, changes: Option<&Bound<'py, PyDict>>) -> PyResult<Bound<'py, PyAny>> {
        let settings = slf.get().settings(slf.py())?;
        if let Some(changes) = changes {
            for (k, v) in changes.iter() {
                let name: String = k.extract()?;
                if !WMF_SETTINGS.contains(&name.as_str()) {
                    return Err(PyTypeError::new_err(format!(
                        "WMFParams got an unknown setting {name:?}; the settings are {}",
                        WMF_SETTINGS.join(", ")
                    )));
                }
                settings.set_item(name, v)?;
            }
        }
        slf.get_type().call((), Some(&settings))
    }

    /// The settings as a dict (what `WMFParams(**d)` takes).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.settings(py)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Self>().is_ok_and(|o| self == o.get())
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<u64> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.__repr__(py)?.hash(&mut h);
        Ok(h.finish())
    }

    #[getter]
    fn factors(&self) -> usize {
        self.factors
    }
    #[getter]
    fn regularization(&self) -> f64 {
        short(self.regularization)
    }
    #[getter]
    fn alpha(&self) -> f64 {
        short(self.alpha)
    }
    #[getter]
    fn confidence(&self) -> &str {
        &self.confidence
    }
    #[getter]
    fn eps(&self) -> f64 {
        short(self.eps)
    }
    #[getter]
    fn iterations(&self) -> usize {
        self.iterations
    }
    #[getter]
    fn solver(&self) -> &str {
        &self.solver
    }
    #[getter]
    fn cg_steps(&self) -> usize {
        self.cg_steps
    }
    #[getter]
    fn random_state(&self) -> Option<u64> {
        self.random_state
    }
    #[getter]
    fn calculate_training_loss(&self) -> bool {
        self.calculate_training_loss
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyAny>,))> {
        let py = slf.py();
        let builtins = py.import("musrec._musrec")?;
        let rebuild = builtins.getattr("_wmf_params")?;
        Ok((rebuild, (slf.get().settings(py)?.into_any(),)))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let d = self.settings(py)?;
        let mut parts = Vec::new();
        for name in WMF_SETTINGS {
            if let Some(v) = d.get_item(name)? {
                parts.push(format!("{name}={}", v.repr()?));
            }
        }
        Ok(format!("WMFParams({})", parts.join(", ")))
    }
}

/// An integer setting >= `minimum` (not a bool, not a float), named in its errors.
fn count(name: &str, v: Option<&Bound<'_, PyAny>>, default: usize, minimum: usize) -> PyResult<usize> {
    let Some(v) = v.filter(|v| !v.is_none()) else {
        return Ok(default);
    };
    // Python and numpy integers have __index__; floats and strings do not.
    if v.is_instance_of::<pyo3::types::PyBool>() || !v.hasattr("__index__")? {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an integer, got {}",
            v.get_type().name()?
        )));
    }
    let value: i128 = v.call_method0("__index__")?.extract()?;
    if value < minimum as i128 || value > usize::MAX as i128 {
        return Err(Error::invalid(format!("{name} must be at least {minimum}, got {value}")).into());
    }
    Ok(value as usize)
}

/// A real-number setting (not a bool), named in its errors; the core checks its range.
fn number(name: &str, v: Option<&Bound<'_, PyAny>>, default: f32) -> PyResult<f32> {
    let Some(v) = v.filter(|v| !v.is_none()) else {
        return Ok(default);
    };
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(format!("{name} must be a number, got bool")));
    }
    v.extract::<f64>().map(|x| x as f32).map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a number, got {}",
            v.get_type().name().map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    })
}

/// Pickling's rebuild of a WMFParams from its settings dict.
#[pyfunction]
fn _wmf_params(py: Python<'_>, settings: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
    let class = py.get_type::<PyWmfParams>();
    Ok(class.call((), Some(settings))?.unbind())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFeatureConfig>()?;
    m.add_class::<PyWmfParams>()?;
    m.add_class::<PyWorldConfig>()?;
    m.add_function(wrap_pyfunction!(_wmf_params, m)?)?;
    Ok(())
}

/// The synthetic world's configuration (`musrec.synthetic.WorldConfig`): the core's
/// `WorldFilesConfig`, whose listening part's settings are given and read flat beside the
/// files' (`WorldConfig("tiny", n_users=600, sample_rate=8000)`, `cfg.n_users`).
#[pyclass(module = "musrec._musrec", name = "WorldConfig", frozen)]
#[derive(Clone, PartialEq)]
pub struct PyWorldConfig {
    pub inner: WorldFilesConfig,
}

/// (flat name, JSON path) of every world setting: the listening part's first.
fn world_settings() -> Vec<(String, Vec<String>)> {
    let json = serde_json::to_value(WorldFilesConfig::default()).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(top) = json.as_object() {
        if let Some(listening) = top.get("listening").and_then(|v| v.as_object()) {
            out.extend(
                listening
                    .keys()
                    .map(|k| (k.clone(), vec!["listening".to_string(), k.clone()])),
            );
        }
        out.extend(
            top.keys()
                .filter(|k| *k != "listening")
                .map(|k| (k.clone(), vec![k.clone()])),
        );
    }
    out
}

impl PyWorldConfig {
    fn changed(&self, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut cfg = self.inner.clone();
        if let Some(changes) = changes {
            let known = world_settings();
            for (k, v) in changes.iter() {
                let name: String = k.extract()?;
                let Some((_, path)) = known.iter().find(|(n, _)| *n == name) else {
                    let names: Vec<&str> = known.iter().map(|(n, _)| n.as_str()).collect();
                    return Err(Error::invalid(format!(
                        "unknown world setting {name:?}; expected one of {}",
                        names.join(", ")
                    ))
                    .into());
                };
                // Paths (source_audio) may be os.PathLike.
                let v = if name == "source_audio" && !v.is_none() {
                    v.py().import("os")?.call_method1("fspath", (v,))?
                } else {
                    v
                };
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                cfg = set_field("WorldConfig", &cfg, &path, &name, to_json(&name, &v)?)?;
            }
        }
        cfg.validate()?;
        Ok(PyWorldConfig { inner: cfg })
    }

    fn json(&self) -> PyResult<Value> {
        Ok(serde_json::to_value(&self.inner).map_err(|e| Error::invalid(e.to_string()))?)
    }
}

#[pymethods]
impl PyWorldConfig {
    /// A preset ("tiny": 600 users x 800 songs; "small": 2,000 x 5,000; "paper": 10,000 users
    /// x 56,000 songs) with the given settings changed.
    #[new]
    #[pyo3(signature = (preset="tiny", **settings))]
    fn new(preset: &str, settings: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        PyWorldConfig {
            inner: WorldFilesConfig::preset(preset)?,
        }
        .changed(settings)
    }

    /// The names of the settings: the listening part's, then the files'.
    #[classattr]
    #[pyo3(name = "SETTINGS")]
    fn setting_names() -> Vec<String> {
        world_settings().into_iter().map(|(n, _)| n).collect()
    }

    #[pyo3(signature = (**changes))]
    fn replace(&self, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        self.changed(changes)
    }

    /// The nested form `world.json` records (`{"listening": {...}, "sample_rate": ...}`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        super::convert::from_json(py, &self.json()?)
    }

    fn to_json(&self) -> PyResult<String> {
        Ok(self.json()?.to_string())
    }

    /// A configuration from `to_dict`'s nested form, validated by the core.
    #[staticmethod]
    fn from_dict(settings: &Bound<'_, PyAny>) -> PyResult<Self> {
        let inner: WorldFilesConfig = super::convert::from_py("WorldConfig", settings)?;
        inner.validate()?;
        Ok(PyWorldConfig { inner })
    }

    fn __getattr__<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let json = self.json()?;
        let found = world_settings()
            .into_iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, path)| path.iter().try_fold(&json, |v, k| v.get(k)).cloned());
        match found {
            Some(v) => super::convert::from_json(py, &v),
            None => Err(pyo3::exceptions::PyAttributeError::new_err(format!(
                "'WorldConfig' object has no attribute {name:?}"
            ))),
        }
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Self>().is_ok_and(|o| self == o.get())
    }

    fn __hash__(&self) -> PyResult<u64> {
        Ok(crate::audio::features::fnv1a(self.to_json()?.as_bytes()))
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyAny>,))> {
        Ok((slf.get_type().getattr("from_dict")?, (slf.get().to_dict(slf.py())?,)))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let mut parts = Vec::new();
        for (name, _) in world_settings() {
            parts.push(format!("{name}={}", slf.getattr(name.as_str())?.repr()?));
        }
        Ok(format!("WorldConfig({})", parts.join(", ")))
    }
}
