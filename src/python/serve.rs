//! Python bindings of the serving core (`serve::catalogue`), bundles (`serve::bundle`) and the
//! event log (`serve::events`). `musrec.Recommender` and `musrec.edge` wrap these.

use super::config::{PyFeatureConfig, PyWmfParams};
use super::convert::{CsrArgs, CsrOut, csr, csr_out, matrix, report, slice1, slice2};
use crate::ensure;
use crate::error::{Error, Result};
use crate::nn::SongMetadata;
use crate::serve::bundle::{Bundle, SongEncoding, read_manifest};
use crate::serve::catalogue::{AudioInput, Catalogue, Ranked};
use crate::serve::events::{self, Durability, Event, EventLog};
use crate::serve::http::{self, ServeConfig, ServerHandle};
use crate::sparse::Csr;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

type RankedOut<'py> = (Vec<String>, Bound<'py, PyArray1<f32>>);

fn ranked_out(py: Python<'_>, ranked: Ranked) -> RankedOut<'_> {
    let (ids, scores): (Vec<String>, Vec<f32>) = ranked.into_iter().unzip();
    (ids, scores.into_pyarray(py))
}

fn metadata(tags: Vec<(String, f32)>, artist: Option<String>, year: Option<i64>) -> Result<SongMetadata> {
    let year = match year {
        Some(y) => Some(i32::try_from(y).map_err(|_| Error::invalid(format!("year {y} is out of range")))?),
        None => None,
    };
    Ok(SongMetadata { tags, artist, year })
}

/// The catalogue behind a lock shared with the threads that release the GIL.
#[pyclass(module = "musrec._musrec", name = "ServingCore", frozen)]
pub struct ServingCore {
    pub(crate) inner: Arc<RwLock<Catalogue>>,
}

impl ServingCore {
    fn read(&self) -> Result<RwLockReadGuard<'_, Catalogue>> {
        self.inner
            .read()
            .map_err(|_| Error::invalid("the catalogue is poisoned"))
    }
    fn write(&self) -> Result<RwLockWriteGuard<'_, Catalogue>> {
        self.inner
            .write()
            .map_err(|_| Error::invalid("the catalogue is poisoned"))
    }
    /// A ranking for a query vector, computed without the GIL.
    fn by_vector<'py>(
        &self,
        py: Python<'py>,
        vector: &PyReadonlyArray1<'_, f32>,
        rank: impl FnOnce(&Catalogue, &[f32]) -> Result<Ranked> + Send,
    ) -> PyResult<RankedOut<'py>> {
        let v = slice1(vector, "vector")?.to_vec();
        let ranked = py.detach(|| rank(&*self.read()?, &v))?;
        Ok(ranked_out(py, ranked))
    }

    fn wrap(catalogue: Catalogue) -> Self {
        ServingCore {
            inner: Arc::new(RwLock::new(catalogue)),
        }
    }
}

#[pymethods]
impl ServingCore {
    /// Read and verify a bundle directory: (core, manifest as a dict).
    #[staticmethod]
    #[pyo3(signature = (path, num_threads=0))]
    fn open<'py>(py: Python<'py>, path: PathBuf, num_threads: usize) -> PyResult<(Self, Bound<'py, PyAny>)> {
        let (catalogue, manifest) = py.detach(|| Catalogue::open(&path, num_threads))?;
        Ok((Self::wrap(catalogue), report(py, &manifest)?))
    }

    #[staticmethod]
    #[pyo3(signature = (params, features, excerpts, user_ids, song_ids, user_factors, song_factors, plays=None,
        fusion=None, num_threads=0, n_known=None))]
    #[allow(clippy::too_many_arguments)]
    fn from_parts(
        py: Python<'_>,
        params: PyRef<'_, PyWmfParams>,
        features: PyRef<'_, PyFeatureConfig>,
        excerpts: usize,
        user_ids: Vec<String>,
        song_ids: Vec<String>,
        user_factors: PyReadonlyArray2<'_, f32>,
        song_factors: PyReadonlyArray2<'_, f32>,
        plays: Option<CsrArgs<'_>>,
        fusion: Option<&[u8]>,
        num_threads: usize,
        n_known: Option<usize>,
    ) -> PyResult<Self> {
        let wmf = params.core(None)?;
        let features = features.inner.clone();
        let (users, _, ku) = slice2(&user_factors, "user_factors")?;
        let (songs, _, ks) = slice2(&song_factors, "song_factors")?;
        ensure!(ku == ks, "user factors have {ku} columns, song factors {ks}");
        let plays = match &plays {
            Some(args) => {
                let m = csr(args)?;
                Csr {
                    n_rows: m.n_rows,
                    n_cols: m.n_cols,
                    indptr: m.indptr.to_vec(),
                    indices: m.indices.to_vec(),
                    data: m.data.to_vec(),
                }
            }
            None => Csr {
                n_rows: user_ids.len(),
                n_cols: song_ids.len(),
                indptr: vec![0; user_ids.len() + 1],
                indices: Vec::new(),
                data: Vec::new(),
            },
        };
        let bundle = Bundle {
            model_version: None,
            wmf,
            features,
            excerpts,
            // The songs from `n_known` on were added from content (Bundle::validate checks it).
            n_known: n_known.unwrap_or(song_ids.len()),
            user_ids,
            song_ids,
            user_factors: users.to_vec(),
            song_factors: songs.to_vec(),
            plays,
            fusion: fusion.map(<[u8]>::to_vec),
            edge_offsets: BTreeMap::new(),
        };
        let catalogue = py.detach(|| Catalogue::from_bundle(bundle, num_threads))?;
        Ok(Self::wrap(catalogue))
    }

    /// Write the catalogue as a bundle directory; returns the manifest as a dict.
    #[pyo3(signature = (path, encoding="f32", model_version=None, edge_offsets=None))]
    fn write_bundle<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
        encoding: &str,
        model_version: Option<String>,
        edge_offsets: Option<BTreeMap<String, u64>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let encoding = SongEncoding::parse(encoding)?;
        let mut bundle = self.read()?.to_bundle()?;
        bundle.model_version = model_version;
        if let Some(offsets) = edge_offsets {
            bundle.edge_offsets = offsets;
        }
        let manifest = py.detach(|| bundle.write(&path, encoding))?;
        report(py, &manifest)
    }

    #[getter]
    fn model_version(&self) -> PyResult<String> {
        Ok(self.read()?.model_version().to_string())
    }
    #[getter]
    fn n_users(&self) -> PyResult<usize> {
        Ok(self.read()?.n_users())
    }
    #[getter]
    fn n_songs(&self) -> PyResult<usize> {
        Ok(self.read()?.n_songs())
    }
    #[getter]
    fn n_known(&self) -> PyResult<usize> {
        Ok(self.read()?.n_known())
    }
    #[getter]
    fn factors(&self) -> PyResult<usize> {
        Ok(self.read()?.factors())
    }
    #[getter]
    fn user_ids(&self) -> PyResult<Vec<String>> {
        Ok(self.read()?.user_ids().to_vec())
    }
    #[getter]
    fn song_ids(&self) -> PyResult<Vec<String>> {
        Ok(self.read()?.song_ids().to_vec())
    }
    #[getter]
    fn song_factors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let c = self.read()?;
        super::convert::matrix(py, c.song_factors().to_vec(), c.n_songs(), c.factors())
    }
    #[getter]
    fn user_factors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let c = self.read()?;
        super::convert::matrix(py, c.user_factors().to_vec(), c.n_users(), c.factors())
    }
    #[getter]
    fn edge_offsets(&self) -> PyResult<BTreeMap<String, u64>> {
        Ok(self.read()?.edge_offsets().clone())
    }
    /// (excerpts, n_mels, frames) of one song's log-Mel input.
    #[getter]
    fn log_mel_shape(&self) -> PyResult<(usize, usize, usize)> {
        Ok(self.read()?.log_mel_shape()?)
    }

    /// Every user's plays as CSR parts (indptr, indices, data, n_users, n_songs).
    fn plays_csr<'py>(&self, py: Python<'py>) -> PyResult<CsrOut<'py>> {
        let plays = self.read()?.plays();
        Ok(csr_out(py, plays))
    }

    /// The content model's file bytes (a musrec.fusion safetensors file), if any.
    fn content_model_bytes<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let bytes = py.detach(|| self.read()?.content_model_bytes())?;
        Ok(bytes.map(|b| PyBytes::new(py, &b)))
    }

    /// The WMF hyperparameters of the bundle's vectors.
    #[getter]
    fn params(&self) -> PyResult<PyWmfParams> {
        Ok(PyWmfParams::from_core(self.read()?.params()))
    }

    /// The log-Mel configuration new songs are read with.
    #[getter]
    fn features(&self) -> PyResult<PyFeatureConfig> {
        Ok(PyFeatureConfig {
            inner: self.read()?.features().clone(),
        })
    }

    fn is_new(&self, song_id: &str) -> PyResult<bool> {
        Ok(self.read()?.is_new(song_id)?)
    }

    fn plays_of(&self, user_id: &str) -> PyResult<Vec<(String, f32)>> {
        Ok(self.read()?.plays_of(user_id)?)
    }

    #[pyo3(signature = (user_id, n=10, exclude_played=true, only_new=false))]
    fn recommend<'py>(
        &self,
        py: Python<'py>,
        user_id: &str,
        n: usize,
        exclude_played: bool,
        only_new: bool,
    ) -> PyResult<RankedOut<'py>> {
        let ranked = py.detach(|| self.read()?.recommend(user_id, n, exclude_played, only_new))?;
        Ok(ranked_out(py, ranked))
    }

    #[pyo3(signature = (vector, n=10, only_new=false))]
    fn recommend_for_vector<'py>(
        &self,
        py: Python<'py>,
        vector: PyReadonlyArray1<'_, f32>,
        n: usize,
        only_new: bool,
    ) -> PyResult<RankedOut<'py>> {
        self.by_vector(py, &vector, |c, v| c.rank_for_vector(v, n, &[], only_new))
    }

    #[pyo3(signature = (plays, n=10, only_new=false))]
    fn recommend_for_plays<'py>(
        &self,
        py: Python<'py>,
        plays: Vec<(String, f32)>,
        n: usize,
        only_new: bool,
    ) -> PyResult<RankedOut<'py>> {
        let ranked = py.detach(|| self.read()?.recommend_for_plays(&plays, n, only_new))?;
        Ok(ranked_out(py, ranked))
    }

    /// The vector a new user with these plays of known songs gets (exact fold-in).
    fn fold_in_plays<'py>(&self, py: Python<'py>, plays: Vec<(String, f32)>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let v = py.detach(|| self.read()?.fold_in_plays(&plays))?;
        Ok(v.into_pyarray(py))
    }

    /// Add plays to a user's history (a new id adds the user) and fold them in at once.
    fn record_plays(&self, py: Python<'_>, user_id: &str, plays: Vec<(String, f32)>) -> PyResult<()> {
        Ok(py.detach(|| self.write()?.record_plays(user_id, &plays))?)
    }

    #[pyo3(signature = (song_id, n=10))]
    fn similar<'py>(&self, py: Python<'py>, song_id: &str, n: usize) -> PyResult<RankedOut<'py>> {
        let ranked = py.detach(|| self.read()?.similar(song_id, n))?;
        Ok(ranked_out(py, ranked))
    }

    #[pyo3(signature = (vector, n=10))]
    fn similar_to_vector<'py>(
        &self,
        py: Python<'py>,
        vector: PyReadonlyArray1<'_, f32>,
        n: usize,
    ) -> PyResult<RankedOut<'py>> {
        self.by_vector(py, &vector, |c, v| c.similar_to_vector(v, n))
    }

    #[pyo3(signature = (song_id, n=100))]
    fn audience<'py>(&self, py: Python<'py>, song_id: &str, n: usize) -> PyResult<RankedOut<'py>> {
        let ranked = py.detach(|| self.read()?.audience(song_id, n))?;
        Ok(ranked_out(py, ranked))
    }

    #[pyo3(signature = (vector, n=100))]
    fn audience_of_vector<'py>(
        &self,
        py: Python<'py>,
        vector: PyReadonlyArray1<'_, f32>,
        n: usize,
    ) -> PyResult<RankedOut<'py>> {
        self.by_vector(py, &vector, |c, v| c.audience_of_vector(v, n))
    }

    /// A song's predicted vector from an audio file (`audio_path`) or log-Mel features
    /// (`log_mel`, (excerpts,) n_mels x frames) and its metadata.
    #[pyo3(signature = (audio_path=None, log_mel=None, tags=Vec::new(), artist=None, year=None))]
    fn song_vector<'py>(
        &self,
        py: Python<'py>,
        audio_path: Option<PathBuf>,
        log_mel: Option<PyReadonlyArrayDyn<'_, f32>>,
        tags: Vec<(String, f32)>,
        artist: Option<String>,
        year: Option<i64>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let audio = match (audio_path, &log_mel) {
            (Some(_), Some(_)) => return Err(Error::invalid("give audio_path or log_mel, not both").into()),
            (Some(p), None) => Some(AudioInput::File(p)),
            (None, Some(a)) => Some(AudioInput::LogMel(
                a.as_slice()
                    .map_err(|_| Error::invalid("log_mel must be a C-contiguous float32 array"))?
                    .to_vec(),
            )),
            (None, None) => None,
        };
        let meta = metadata(tags, artist, year)?;
        let v = py.detach(|| self.read()?.song_vector(audio.as_ref(), &meta))?;
        Ok(v.into_pyarray(py))
    }

    fn add_song(&self, py: Python<'_>, song_id: &str, vector: PyReadonlyArray1<'_, f32>) -> PyResult<()> {
        let v = slice1(&vector, "vector")?.to_vec();
        Ok(py.detach(|| self.write()?.add_song(song_id, &v))?)
    }
}

/// The manifest of a bundle directory as a dict (format checked, files not verified).
#[pyfunction]
fn bundle_manifest(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyAny>> {
    let manifest = read_manifest(&path)?;
    report(py, &manifest)
}

/// An open event log of one edge.
#[pyclass(module = "musrec._musrec", name = "EventLogCore", frozen)]
struct EventLogCore {
    inner: EventLog,
}

#[pymethods]
impl EventLogCore {
    /// Open or create; returns (log, bytes truncated from a torn tail).
    #[staticmethod]
    #[pyo3(signature = (path, edge_id, durability="buffered", segment_bytes=events::DEFAULT_SEGMENT_BYTES))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        edge_id: &str,
        durability: &str,
        segment_bytes: u64,
    ) -> PyResult<(Self, u64)> {
        let durability = Durability::parse(durability)?;
        let (inner, recovery) = py.detach(|| EventLog::open(&path, edge_id, durability, segment_bytes))?;
        Ok((EventLogCore { inner }, recovery.truncated_bytes))
    }

    #[getter]
    fn last_offset(&self) -> u64 {
        self.inner.last_seq()
    }

    /// Append (user_id, song_id, plays, timestamp) events; returns (first, last) offsets.
    fn append(&self, py: Python<'_>, events: Vec<(String, String, f32, f64)>) -> PyResult<(u64, u64)> {
        let events: Vec<Event> = events
            .into_iter()
            .map(|(user_id, song_id, plays, timestamp)| Event {
                user_id,
                song_id,
                plays,
                timestamp,
            })
            .collect();
        Ok(py.detach(|| self.inner.append_events(&events))?)
    }
}

/// (offset, edge id, user id, song id, plays, timestamp) of each event after `after`.
#[pyfunction]
#[pyo3(signature = (path, after=0, limit=None))]
#[allow(clippy::type_complexity)]
fn read_events(
    py: Python<'_>,
    path: PathBuf,
    after: u64,
    limit: Option<usize>,
) -> PyResult<Vec<(u64, String, String, String, f32, f64)>> {
    let records = py.detach(|| events::read(&path, after, limit))?;
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        // Song records (songs the edge added from content) are not listening events.
        if let Some(e) = r.event().map_err(|e| Error::format(&path, e.to_string()))? {
            out.push((r.seq, r.edge_id, e.user_id, e.song_id, e.plays, e.timestamp));
        }
    }
    Ok(out)
}

/// The k x k map W of `new ≈ old · W` over songs both sets of vectors have (`serve::align`).
#[pyfunction]
fn output_alignment<'py>(
    py: Python<'py>,
    old: PyReadonlyArray2<'_, f32>,
    new: PyReadonlyArray2<'_, f32>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let (o, n_old, k) = slice2(&old, "old")?;
    let (m, n_new, k_new) = slice2(&new, "new")?;
    ensure!(
        n_old == n_new && k == k_new,
        "old ({n_old} x {k}) and new ({n_new} x {k_new}) vectors differ in shape"
    );
    let w = py.detach(|| crate::serve::align::alignment(o, m, k))?;
    matrix(py, w, k, k)
}

/// One song record of an edge's log, as `read_songs` returns it.
#[derive(serde::Serialize)]
struct SongRow<'a> {
    offset: u64,
    edge_id: &'a str,
    #[serde(flatten)]
    song: &'a events::SongAdded,
    /// Where the kept audio is, if the song was uploaded with audio.
    audio_path: Option<PathBuf>,
}

/// The songs the edge added from content (their log records) after `after`, as dicts.
#[pyfunction]
#[pyo3(signature = (path, after=0))]
fn read_songs(py: Python<'_>, path: PathBuf, after: u64) -> PyResult<Vec<Bound<'_, PyAny>>> {
    let records = py.detach(|| events::read(&path, after, None))?;
    let mut out = Vec::new();
    for r in &records {
        let entry = r.entry().map_err(|e| Error::format(&path, e.to_string()))?;
        if let events::Entry::Song { song_added } = entry {
            let audio_path = song_added
                .audio
                .as_ref()
                .map(|name| path.join(events::SONGS_DIR).join(name));
            let row = SongRow {
                offset: r.seq,
                edge_id: &r.edge_id,
                song: &song_added,
                audio_path,
            };
            out.push(report(py, &row)?);
        }
    }
    Ok(out)
}

/// A running edge service (`serve::http`): it answers on its own threads, so Python keeps
/// the GIL free while it serves.
#[pyclass(module = "musrec._musrec", name = "EdgeServer", frozen)]
struct EdgeServer {
    handle: std::sync::Mutex<ServerHandle>,
    addr: (String, u16),
    model_version: String,
    replay: http::Replay,
}

#[pymethods]
impl EdgeServer {
    #[staticmethod]
    #[pyo3(signature = (bundle, host="127.0.0.1", port=8080, events_dir=None, edge_id="edge", durability="buffered", token=None, max_upload_bytes=32 << 20, workers=2, segment_bytes=events::DEFAULT_SEGMENT_BYTES))]
    #[allow(clippy::too_many_arguments)]
    fn start(
        py: Python<'_>,
        bundle: PathBuf,
        host: &str,
        port: u16,
        events_dir: Option<PathBuf>,
        edge_id: &str,
        durability: &str,
        token: Option<String>,
        max_upload_bytes: usize,
        workers: usize,
        segment_bytes: u64,
    ) -> PyResult<Self> {
        let config = ServeConfig {
            host: host.to_string(),
            port,
            events_dir,
            edge_id: edge_id.to_string(),
            durability: Durability::parse(durability)?,
            segment_bytes,
            token,
            max_upload_bytes,
            workers,
            ..ServeConfig::default()
        };
        let handle = py.detach(|| http::start(&bundle, &config))?;
        let addr = handle.addr();
        Ok(EdgeServer {
            addr: (addr.ip().to_string(), addr.port()),
            model_version: handle.model_version().to_string(),
            replay: handle.replay(),
            handle: std::sync::Mutex::new(handle),
        })
    }

    #[getter]
    fn host(&self) -> String {
        self.addr.0.clone()
    }
    #[getter]
    fn port(&self) -> u16 {
        self.addr.1
    }
    /// The model version the service started with.
    #[getter]
    fn model_version(&self) -> String {
        self.model_version.clone()
    }
    /// Logged events folded in at start (those after the bundle's offset for this edge).
    #[getter]
    fn replayed_events(&self) -> usize {
        self.replay.events
    }
    /// Songs this edge had added that the bundle lacked, taken back from the log at start:
    /// (with their logged vectors, embedded again for another model version, lost).
    #[getter]
    fn restored_songs(&self) -> (usize, usize, usize) {
        (self.replay.songs, self.replay.reembedded, self.replay.lost_songs)
    }
    #[getter]
    fn is_running(&self) -> bool {
        self.handle.lock().map(|h| h.is_running()).unwrap_or(false)
    }

    /// Stop accepting connections, let in-flight requests finish, and wait for the end.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let mut handle = self
                .handle
                .lock()
                .map_err(|_| Error::invalid("the server handle is poisoned"))?;
            handle.stop()
        })?;
        Ok(())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ServingCore>()?;
    m.add_class::<EdgeServer>()?;
    m.add_class::<EventLogCore>()?;
    m.add_function(wrap_pyfunction!(bundle_manifest, m)?)?;
    m.add_function(wrap_pyfunction!(read_events, m)?)?;
    m.add_function(wrap_pyfunction!(read_songs, m)?)?;
    m.add_function(wrap_pyfunction!(output_alignment, m)?)?;
    Ok(())
}
