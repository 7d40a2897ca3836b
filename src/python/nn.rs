//! Python bindings of the stage-2 networks: `FusionCore` wraps `nn::FusionModel`; the
//! Python `musrec.FusionModel` adds argument handling on top.

use super::config::PyWmfParams;
use super::config::setting_error;
use super::convert::{CsrArgs, csr, enter, matrix, report, to_json};
use crate::ensure;
use crate::error::{Error, Result};
use crate::nn::{
    FusionModel, MetadataOptions, ModelKind, NetConfig, SongMetadata, SongMetric, Songs, TrainConfig, Validation,
};
use crate::parallel::Threads;
use numpy::{PyArray2, PyReadonlyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::path::PathBuf;

/// (tags with weights, artist, year) per song, as the wrapper normalises them.
type MetadataArg = (Vec<Vec<(String, f32)>>, Vec<Option<String>>, Vec<Option<i64>>);

/// The three settings structs with the keys of the JSON object `settings` replaced, each key
/// going to the struct that has a field of that name; a key none of them has is an error.
fn with_settings(
    net: NetConfig,
    train: TrainConfig,
    options: MetadataOptions,
    given: serde_json::Map<String, serde_json::Value>,
) -> PyResult<(NetConfig, TrainConfig, MetadataOptions)> {
    let bad = |e: serde_json::Error| Error::invalid(format!("bad model settings: {e}"));
    let mut values = [
        serde_json::to_value(net).map_err(bad)?,
        serde_json::to_value(train).map_err(bad)?,
        serde_json::to_value(options).map_err(bad)?,
    ];
    for (key, v) in given {
        ensure!(
            !INTERNAL.contains(&key.as_str()),
            "{key} is not a setting: it is set from the data (or given as the kind)"
        );
        let index = values
            .iter()
            .position(|value| value.as_object().is_some_and(|fields| fields.contains_key(&key)))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown model setting {key:?}; the settings are {}",
                    settings().join(", ")
                ))
            })?;
        if let Some(fields) = values[index].as_object_mut() {
            fields.insert(key.clone(), v);
        }
        // Read back at once, so a bad value is reported under its own name.
        let value = values[index].clone();
        let checked = match index {
            0 => serde_json::from_value::<NetConfig>(value).map(|_| ()),
            1 => serde_json::from_value::<TrainConfig>(value).map(|_| ()),
            _ => serde_json::from_value::<MetadataOptions>(value).map(|_| ()),
        };
        checked.map_err(|e| setting_error("FusionModel", &key, e))?;
    }
    let [net, train, options] = values;
    Ok((
        serde_json::from_value(net).map_err(bad)?,
        serde_json::from_value(train).map_err(bad)?,
        serde_json::from_value(options).map_err(bad)?,
    ))
}

/// Fields of the configs that come from the data or the kind, not from the user.
const INTERNAL: &[&str] = &[
    "kind",
    "n_factors",
    "n_mels",
    "n_frames",
    "n_tags",
    "n_artists",
    "n_years",
];

/// Every model setting a user may give, in the structs' order: network, training, metadata.
fn settings() -> Vec<String> {
    let net = NetConfig::new(ModelKind::Fusion, 1, 1, 1);
    let fields = |v: serde_json::Value| -> Vec<String> {
        v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    };
    [
        serde_json::to_value(net).unwrap_or_default(),
        serde_json::to_value(TrainConfig::default()).unwrap_or_default(),
        serde_json::to_value(MetadataOptions::default()).unwrap_or_default(),
    ]
    .into_iter()
    .flat_map(fields)
    .filter(|k| !INTERNAL.contains(&k.as_str()))
    .collect()
}

fn metadata(arg: Option<MetadataArg>) -> Result<Option<Vec<SongMetadata>>> {
    let Some((tags, artists, years)) = arg else {
        return Ok(None);
    };
    ensure!(
        tags.len() == artists.len() && tags.len() == years.len(),
        "metadata fields differ in length: {} tag lists, {} artists, {} years",
        tags.len(),
        artists.len(),
        years.len()
    );
    let mut out = Vec::with_capacity(tags.len());
    for (i, ((tags, artist), year)) in tags.into_iter().zip(artists).zip(years).enumerate() {
        let year = match year {
            Some(y) => {
                Some(i32::try_from(y).map_err(|_| Error::invalid(format!("song {i}: year {y} is out of range")))?)
            }
            None => None,
        };
        out.push(SongMetadata { tags, artist, year });
    }
    Ok(Some(out))
}

/// Borrowed song arrays plus their owned metadata, checked for a common song count.
struct SongArgs<'a> {
    /// (values, excerpts, n_mels, frames).
    spectrograms: Option<(&'a [f32], usize, usize, usize)>,
    metadata: Option<Vec<SongMetadata>>,
    targets: Option<(&'a [f32], usize)>,
    n: usize,
}

impl<'a> SongArgs<'a> {
    fn new(
        spectrograms: &'a Option<PyReadonlyArrayDyn<'_, f32>>,
        metadata_arg: Option<MetadataArg>,
        targets: &'a Option<PyReadonlyArray2<'_, f32>>,
    ) -> Result<Self> {
        let spec = match spectrograms {
            Some(a) => {
                let s = a.shape();
                // (songs, n_mels, frames): one excerpt per song; (songs, excerpts, n_mels,
                // frames): several.
                let (n, e, m, t) = match *s {
                    [n, m, t] => (n, 1, m, t),
                    [n, e, m, t] => (n, e, m, t),
                    _ => {
                        return Err(Error::invalid(format!(
                            "spectrograms must be 3-D (songs, n_mels, frames) or 4-D (songs, excerpts, n_mels, \
                             frames); got shape {s:?}"
                        )));
                    }
                };
                ensure!(e > 0, "spectrograms have no excerpts (shape {s:?})");
                let data = a
                    .as_slice()
                    .map_err(|_| Error::invalid("spectrograms must be a C-contiguous float32 array"))?;
                Some((data, e, m, t, n))
            }
            None => None,
        };
        let tgt = match targets {
            Some(a) => {
                let s = a.shape();
                let data = a
                    .as_slice()
                    .map_err(|_| Error::invalid("targets must be a C-contiguous float32 array"))?;
                Some((data, s[1], s[0]))
            }
            None => None,
        };
        let meta = metadata(metadata_arg)?;
        let counts: Vec<(&str, usize)> = [
            spec.map(|s| ("spectrograms", s.4)),
            meta.as_ref().map(|m| ("metadata", m.len())),
            tgt.map(|t| ("targets", t.2)),
        ]
        .into_iter()
        .flatten()
        .collect();
        ensure!(!counts.is_empty(), "give spectrograms, metadata or both");
        let n = counts[0].1;
        ensure!(
            counts.iter().all(|&(_, c)| c == n),
            "inputs disagree on the number of songs: {}",
            counts
                .iter()
                .map(|(k, c)| format!("{k} {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(SongArgs {
            spectrograms: spec.map(|(d, e, m, t, _)| (d, e, m, t)),
            metadata: meta,
            targets: tgt.map(|(d, k, _)| (d, k)),
            n,
        })
    }

    fn songs(&self) -> Songs<'_> {
        Songs {
            n: self.n,
            spectrograms: self.spectrograms.map(|s| s.0),
            n_excerpts: self.spectrograms.map_or(1, |s| s.1),
            n_mels: self.spectrograms.map_or(0, |s| s.2),
            n_frames: self.spectrograms.map_or(0, |s| s.3),
            metadata: self.metadata.as_deref(),
            targets: self.targets.map(|t| t.0),
            n_factors: self.targets.map_or(0, |t| t.1),
        }
    }
}

#[pyclass(module = "musrec._musrec", name = "FusionCore")]
pub struct FusionCore {
    inner: FusionModel,
}

#[pymethods]
impl FusionCore {
    /// `settings`: network, training and metadata settings (`SETTINGS`) that replace the
    /// defaults (musrec's, or with `paper` the paper's architecture).
    #[new]
    #[pyo3(signature = (kind, paper=false, **settings))]
    fn new(kind: &str, paper: bool, settings: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut given = serde_json::Map::new();
        if let Some(settings) = settings {
            for (k, v) in settings.iter() {
                let name: String = k.extract()?;
                let value = to_json(&name, &v)?;
                given.insert(name, value);
            }
        }
        let kind = ModelKind::parse(kind)?;
        let (net, train) = if paper {
            (NetConfig::paper(kind, 1, 1, 1), TrainConfig::paper())
        } else {
            (NetConfig::new(kind, 1, 1, 1), TrainConfig::default())
        };
        let (template, train, options) = with_settings(net, train, MetadataOptions::default(), given)?;
        Ok(FusionCore {
            inner: FusionModel::new(template, train, options)?,
        })
    }

    /// Train. Ctrl-C or an exception from `callback` stops it with the best weights so far
    /// kept, then propagates.
    #[pyo3(signature = (spectrograms, metadata, targets, val_spectrograms=None, val_metadata=None,
        val_targets=None, val_fraction=None, users=None, plays=None, wmf_params=None, checkpoint=None,
        resume=false, num_threads=0, callback=None))]
    #[allow(clippy::too_many_arguments)]
    fn fit(
        &mut self,
        py: Python<'_>,
        spectrograms: Option<PyReadonlyArrayDyn<'_, f32>>,
        metadata: Option<MetadataArg>,
        targets: Option<PyReadonlyArray2<'_, f32>>,
        val_spectrograms: Option<PyReadonlyArrayDyn<'_, f32>>,
        val_metadata: Option<MetadataArg>,
        val_targets: Option<PyReadonlyArray2<'_, f32>>,
        val_fraction: Option<f64>,
        users: Option<PyReadonlyArray2<'_, f32>>,
        plays: Option<CsrArgs<'_>>,
        wmf_params: Option<PyRef<'_, PyWmfParams>>,
        checkpoint: Option<PathBuf>,
        resume: bool,
        num_threads: usize,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let train = SongArgs::new(&spectrograms, metadata, &targets)?;
        let held_out = if val_targets.is_some() {
            Some(SongArgs::new(&val_spectrograms, val_metadata, &val_targets)?)
        } else {
            None
        };
        let users = match &users {
            Some(u) => {
                let d = targets.as_ref().map_or(0, |t| t.shape()[1]);
                ensure!(
                    u.shape()[1] == d,
                    "users has {} columns but the targets have {d}: pass the WMF user vectors the targets came from",
                    u.shape()[1]
                );
                Some(
                    u.as_slice()
                        .map_err(|_| Error::invalid("users must be a C-contiguous float32 array"))?,
                )
            }
            None => None,
        };
        // `plays`: one row per training song, one column per user.
        let metric = match (&plays, users) {
            (Some(p), Some(u)) => {
                let params = match &wmf_params {
                    Some(w) => w.core(None)?,
                    None => crate::wmf::WmfParams::default(),
                };
                let d = targets.as_ref().map_or(0, |t| t.shape()[1]);
                let songs = csr(p)?;
                Some(py.detach(|| SongMetric::new(u, d, songs, &params))?)
            }
            (Some(_), None) => return Err(Error::invalid("plays need the users' WMF vectors (users=...)").into()),
            (None, _) => None,
        };
        let threads = Threads::new(num_threads)?;
        let model = &mut self.inner;
        // On a stop the core keeps the best weights so far in the model, then this raises.
        enter(py, callback, |progress| {
            let validation = match (&held_out, val_fraction) {
                (Some(v), _) => Validation::Songs(v.songs()),
                (None, Some(f)) => Validation::Fraction(f),
                (None, None) => Validation::None,
            };
            model.fit(
                &train.songs(),
                validation,
                users,
                metric.as_ref(),
                checkpoint.as_deref(),
                resume,
                &threads,
                progress,
            )
        })
    }

    #[pyo3(signature = (spectrograms, metadata, batch_size=256, num_threads=0))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        spectrograms: Option<PyReadonlyArrayDyn<'py, f32>>,
        metadata: Option<MetadataArg>,
        batch_size: usize,
        num_threads: usize,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let songs = SongArgs::new(&spectrograms, metadata, &None)?;
        let threads = Threads::new(num_threads)?;
        let model = &self.inner;
        let out = py.detach(|| model.predict(&songs.songs(), batch_size, &threads))?;
        let d = out.len() / songs.n.max(1);
        matrix(py, out, songs.n, d)
    }

    #[pyo3(signature = (spectrograms, metadata, targets, batch_size=256, num_threads=0))]
    fn score(
        &self,
        py: Python<'_>,
        spectrograms: Option<PyReadonlyArrayDyn<'_, f32>>,
        metadata: Option<MetadataArg>,
        targets: PyReadonlyArray2<'_, f32>,
        batch_size: usize,
        num_threads: usize,
    ) -> PyResult<f64> {
        let targets = Some(targets);
        let songs = SongArgs::new(&spectrograms, metadata, &targets)?;
        let threads = Threads::new(num_threads)?;
        let model = &self.inner;
        Ok(py.detach(|| model.score(&songs.songs(), batch_size, &threads))?)
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let model = &self.inner;
        Ok(py.detach(|| model.save(&path))?)
    }

    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| FusionModel::load(&path))?;
        Ok(FusionCore { inner })
    }

    /// The fitted model as the bytes of its safetensors file (pickling).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let model = &self.inner;
        let bytes = py.detach(|| model.to_bytes())?;
        Ok(PyBytes::new(py, &bytes))
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let inner = py.detach(|| FusionModel::from_bytes(data, std::path::Path::new("<pickled FusionModel>")))?;
        Ok(FusionCore { inner })
    }

    /// A copy whose predictions are this model's times `matrix` (d x d): a content model
    /// carried into a refitted WMF space (`FusionModel::align_output`).
    fn aligned(&self, py: Python<'_>, matrix: PyReadonlyArray2<'_, f32>) -> PyResult<Self> {
        let w = matrix
            .as_slice()
            .map_err(|_| Error::invalid("the alignment must be a C-contiguous float32 array"))?
            .to_vec();
        let model = &self.inner;
        let inner = py.detach(|| -> Result<FusionModel> {
            let copy = FusionModel::from_bytes(&model.to_bytes()?, std::path::Path::new("<aligned FusionModel>"))?;
            copy.align_output(&w)?;
            Ok(copy)
        })?;
        Ok(FusionCore { inner })
    }

    /// Raised whenever training computes something else for the same settings and data
    /// (`nn::TRAINING_REVISION`); caches of trained models include it in their key.
    #[classattr]
    #[pyo3(name = "REVISION")]
    fn revision() -> u32 {
        crate::nn::TRAINING_REVISION
    }

    /// The names of the settings the constructor takes, in the structs' order.
    #[classattr]
    #[pyo3(name = "SETTINGS")]
    fn setting_names() -> Vec<String> {
        settings()
    }

    /// Network, training and metadata settings (with the fitted vocabularies and the ridge
    /// report once fitted), as a dict.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.inner.fitted {
            Some(f) => report(py, &f.spec),
            None => {
                #[derive(serde::Serialize)]
                struct Settings<'a> {
                    net: &'a NetConfig,
                    train: &'a TrainConfig,
                    metadata_options: &'a MetadataOptions,
                }
                let m = &self.inner;
                report(
                    py,
                    &Settings {
                        net: &m.template,
                        train: &m.train_config,
                        metadata_options: &m.metadata_options,
                    },
                )
            }
        }
    }

    /// (train_loss, validation_loss, epochs_done, best_epoch or None, stopped_early,
    /// validation_recall, learning_rate).
    #[allow(clippy::type_complexity)]
    fn training_state(&self) -> (Vec<f64>, Vec<f64>, usize, Option<usize>, bool, Vec<f64>, Vec<f64>) {
        match &self.inner.fitted {
            Some(f) => (
                f.state.history.train_loss.clone(),
                f.state.history.validation_loss.clone(),
                f.state.epochs_done,
                f.state.best_epoch,
                f.state.stopped_early,
                f.state.history.validation_recall.clone(),
                f.state.history.learning_rate.clone(),
            ),
            None => (Vec::new(), Vec::new(), 0, None, false, Vec::new(), Vec::new()),
        }
    }

    fn is_fitted(&self) -> bool {
        self.inner.fitted.is_some()
    }

    fn n_parameters(&self) -> usize {
        self.inner.fitted.as_ref().map_or(0, |f| f.net.params.n_parameters())
    }
}

/// Every model kind as (name, reads audio, reads metadata, is linear, linear counterpart).
#[pyfunction]
fn model_kinds() -> Vec<(&'static str, bool, bool, bool, &'static str)> {
    ModelKind::ALL
        .iter()
        .map(|k| {
            (
                k.name(),
                k.uses_audio(),
                k.uses_metadata(),
                k.is_linear(),
                k.linear_counterpart().name(),
            )
        })
        .collect()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FusionCore>()?;
    m.add_function(wrap_pyfunction!(model_kinds, m)?)?;
    Ok(())
}
