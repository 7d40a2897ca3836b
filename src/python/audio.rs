//! Python bindings of the audio front end.

use super::config::PyFeatureConfig;
use super::convert::{enter, from_py, matrix, slice1, slice2};
use crate::audio::cache::{CachedBatch, FeatureCache as Cache};
use crate::audio::db::{DbRef, power_to_db};
use crate::audio::decode::load;
use crate::audio::extract::{FileFailure, extract};
use crate::audio::features::{FeatureConfig, LogMel, LogMelScratch, LogScale};
use crate::audio::mel::{MelConfig, MelFilterbank};
use crate::audio::spectrum::{Stft, StftConfig};
use crate::error::Error;
use crate::parallel::Threads;
use numpy::ndarray::{Array3, ArrayD, IxDyn};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayDyn, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArrayDyn,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rayon::prelude::*;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, TryLockError};

/// Decode and resample one file: (samples, sample_rate, truncated).
#[pyfunction]
#[pyo3(signature = (path, sr=None, offset=0.0, duration=None))]
fn audio_load(
    py: Python<'_>,
    path: PathBuf,
    sr: Option<u32>,
    offset: f64,
    duration: Option<f64>,
) -> PyResult<(Bound<'_, PyArray1<f32>>, u32, bool)> {
    let loaded = py.detach(|| load(&path, sr, offset, duration))?;
    Ok((loaded.samples.into_pyarray(py), loaded.sample_rate, loaded.truncated))
}

/// |STFT|^power, bins x frames.
#[pyfunction]
fn stft_power<'py>(
    py: Python<'py>,
    y: PyReadonlyArray1<'py, f32>,
    stft: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let cfg: StftConfig = from_py("STFT configuration", stft)?;
    let y = slice1(&y, "y")?;
    let stft = Stft::new(&cfg)?;
    let frames = stft.n_frames(y.len());
    let out = py.detach(|| stft.spectrogram(y))?;
    matrix(py, out, stft.n_bins(), frames)
}

/// A planned log-Mel transform (FFT plan, filterbank), built once and reused for every call.
#[pyclass(frozen)]
struct LogMelPlan {
    inner: LogMel,
}

#[pymethods]
impl LogMelPlan {
    #[new]
    fn new(stft: &Bound<'_, PyAny>, mel: &Bound<'_, PyAny>, log: &Bound<'_, PyAny>) -> PyResult<Self> {
        let stft: StftConfig = from_py("STFT configuration", stft)?;
        let mel: MelConfig = from_py("Mel configuration", mel)?;
        let log: LogScale = from_py("log scale", log)?;
        Ok(LogMelPlan {
            inner: LogMel::new(&stft, &mel, log)?,
        })
    }

    /// The transform of a whole feature configuration (its clip settings are not used).
    #[staticmethod]
    fn from_config(config: PyRef<'_, PyFeatureConfig>) -> PyResult<Self> {
        Ok(LogMelPlan {
            inner: LogMel::from_config(&config.inner)?,
        })
    }

    /// Features (n_mels x frames) of one signal.
    fn compute<'py>(&self, py: Python<'py>, y: PyReadonlyArray1<'py, f32>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let y = slice1(&y, "y")?;
        let frames = self.inner.n_frames(y.len());
        let out = py.detach(|| self.inner.compute(y))?;
        matrix(py, out, self.inner.n_mels(), frames)
    }

    /// Features (clips x n_mels x frames) of equal-length signals, rows in parallel.
    #[pyo3(signature = (y, num_threads=0))]
    fn compute_batch<'py>(
        &self,
        py: Python<'py>,
        y: PyReadonlyArray2<'py, f32>,
        num_threads: usize,
    ) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let (y, clips, len) = slice2(&y, "y")?;
        let (n_mels, frames) = (self.inner.n_mels(), self.inner.n_frames(len));
        let threads = Threads::new(num_threads)?;
        let mut out = vec![0f32; clips * n_mels * frames];
        if clips > 0 && len > 0 {
            py.detach(|| {
                threads.run(|| {
                    out.par_chunks_mut(n_mels * frames)
                        .zip(y.par_chunks(len))
                        .try_for_each_init(LogMelScratch::default, |scratch, (dst, signal)| {
                            self.inner.compute_into(signal, dst, scratch)
                        })
                })
            })?;
        }
        let arr = Array3::from_shape_vec((clips, n_mels, frames), out).map_err(|e| Error::invalid(e.to_string()))?;
        Ok(arr.into_pyarray(py))
    }
}

/// The Mel filterbank, n_mels x (1 + n_fft / 2), as librosa.filters.mel returns it.
#[pyfunction]
fn mel_filters<'py>(py: Python<'py>, mel: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyArray2<f32>>, Vec<usize>)> {
    let cfg: MelConfig = from_py("Mel configuration", mel)?;
    let bank = MelFilterbank::new(&cfg)?;
    Ok((
        matrix(py, bank.dense(), bank.n_mels(), bank.n_bins())?,
        bank.empty_bands(),
    ))
}

/// power_to_db on a copy of `s` (any shape).
#[pyfunction]
#[pyo3(signature = (s, reference, amin, top_db=None))]
fn db<'py>(
    py: Python<'py>,
    s: PyReadonlyArrayDyn<'py, f32>,
    reference: &Bound<'py, PyAny>,
    amin: f32,
    top_db: Option<f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let reference: DbRef = from_py("reference", reference)?;
    let shape = s.shape().to_vec();
    let mut data = s
        .as_slice()
        .map_err(|_| Error::invalid("S must be a contiguous array"))?
        .to_vec();
    py.detach(|| power_to_db(&mut data, reference, amin, top_db))?;
    let arr = ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|e| Error::invalid(e.to_string()))?;
    Ok(arr.into_pyarray(py))
}

/// One dict per failed file: index, path, reason, message.
fn failure_dicts<'py>(py: Python<'py>, failures: &[FileFailure]) -> PyResult<Vec<Bound<'py, PyDict>>> {
    failures
        .iter()
        .map(|f| {
            let d = PyDict::new(py);
            d.set_item("index", f.index)?;
            d.set_item("path", &f.path)?;
            d.set_item("reason", f.kind.as_str())?;
            d.set_item("message", &f.message)?;
            Ok(d)
        })
        .collect()
}

type Batch<'py> = (
    Bound<'py, PyArray3<f32>>,
    Vec<bool>,
    Vec<bool>,
    Vec<bool>,
    Vec<Bound<'py, PyDict>>,
);

/// Features of many files: (features files x n_mels x frames, ok, padded, truncated,
/// failures as dicts).
#[pyfunction]
#[pyo3(signature = (paths, config, num_threads=0, callback=None))]
fn audio_extract<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    config: PyRef<'py, PyFeatureConfig>,
    num_threads: usize,
    callback: Option<Py<PyAny>>,
) -> PyResult<Batch<'py>> {
    let cfg: FeatureConfig = config.inner.clone();
    let threads = Threads::new(num_threads)?;
    let out = enter(py, callback, |progress| extract(&paths, &cfg, &threads, progress))?;
    let failures = failure_dicts(py, &out.failures)?;
    let n = paths.len();
    let features =
        Array3::from_shape_vec((n, out.n_mels, out.frames), out.features).map_err(|e| Error::invalid(e.to_string()))?;
    Ok((features.into_pyarray(py), out.ok, out.padded, out.truncated, failures))
}

/// The on-disk cache of one feature configuration (see `audio::cache`). One extract call at a
/// time per object: a second one, from another thread or from the progress callback, raises
/// RuntimeError rather than waiting on a lock the callback's own thread may hold.
#[pyclass(frozen)]
struct FeatureCache {
    inner: Mutex<Cache>,
    dir: PathBuf,
    removed: Vec<(PathBuf, String)>,
}

impl FeatureCache {
    fn lock(&self) -> PyResult<MutexGuard<'_, Cache>> {
        match self.inner.try_lock() {
            Ok(guard) => Ok(guard),
            // A panic cannot leave the index half-updated in a way reads would trip on.
            Err(TryLockError::Poisoned(poisoned)) => Ok(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => Err(PyRuntimeError::new_err(
                "this FeatureCache is busy with another extract call; use one FeatureCache per thread",
            )),
        }
    }
}

#[pymethods]
impl FeatureCache {
    #[new]
    fn new(py: Python<'_>, root: PathBuf, config: PyRef<'_, PyFeatureConfig>) -> PyResult<Self> {
        let cfg: FeatureConfig = config.inner.clone();
        let inner = py.detach(|| Cache::open(&root, &cfg))?;
        Ok(FeatureCache {
            dir: inner.dir().to_path_buf(),
            removed: inner.removed().to_vec(),
            inner: Mutex::new(inner),
        })
    }

    /// The configuration's directory, `<root>/<fingerprint>`.
    #[getter]
    fn path(&self) -> PathBuf {
        self.dir.clone()
    }

    /// Invalid shards deleted on opening: (path, reason).
    #[getter]
    fn removed(&self) -> Vec<(PathBuf, String)> {
        self.removed.clone()
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.lock()?.len())
    }

    /// (CachedFeatures, failures as dicts, exception or None), as audio_extract.
    #[pyo3(signature = (paths, num_threads=0, callback=None))]
    fn extract<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
        num_threads: usize,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<CacheBatch<'py>> {
        let threads = Threads::new(num_threads)?;
        let mut guard = self.lock()?;
        let cache: &mut Cache = &mut guard;
        // The finished chunks stay in the cache when the extraction is stopped.
        let batch = enter(py, callback, |progress| cache.extract(&paths, &threads, progress));
        drop(guard);
        let batch = batch?;
        let failures = failure_dicts(py, &batch.failures)?;
        Ok((CachedFeatures { inner: batch }, failures))
    }
}

type CacheBatch<'py> = (CachedFeatures, Vec<Bound<'py, PyDict>>);

/// Where a batch's features are in the cache; rows are read on demand.
#[pyclass(frozen)]
struct CachedFeatures {
    inner: CachedBatch,
}

#[pymethods]
impl CachedFeatures {
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// (n_mels, frames) of one clip.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        (self.inner.n_mels, self.inner.frames)
    }

    /// Per file: (ok, padded, truncated, cached).
    fn flags(&self) -> (Vec<bool>, Vec<bool>, Vec<bool>, Vec<bool>) {
        let b = &self.inner;
        (b.ok.clone(), b.padded.clone(), b.truncated.clone(), b.cached.clone())
    }

    /// Files extracted in this call (the others came from the cache).
    #[getter]
    fn extracted(&self) -> usize {
        self.inner.extracted
    }

    #[getter]
    fn interrupted(&self) -> bool {
        self.inner.interrupted
    }

    /// Features of rows `indices` (len(indices) x n_mels x frames); failed files are zeros.
    fn read<'py>(&self, py: Python<'py>, indices: Vec<usize>) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let (n_mels, frames) = (self.inner.n_mels, self.inner.frames);
        let mut out = vec![0f32; indices.len() * n_mels * frames];
        py.detach(|| self.inner.read(&indices, &mut out))?;
        let arr =
            Array3::from_shape_vec((indices.len(), n_mels, frames), out).map_err(|e| Error::invalid(e.to_string()))?;
        Ok(arr.into_pyarray(py))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FeatureCache>()?;
    m.add_class::<CachedFeatures>()?;
    m.add_function(wrap_pyfunction!(audio_load, m)?)?;
    m.add_function(wrap_pyfunction!(stft_power, m)?)?;
    m.add_class::<LogMelPlan>()?;
    m.add_function(wrap_pyfunction!(mel_filters, m)?)?;
    m.add_function(wrap_pyfunction!(db, m)?)?;
    m.add_function(wrap_pyfunction!(audio_extract, m)?)?;
    Ok(())
}
