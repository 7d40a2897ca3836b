//! Python bindings of the real-format loaders (`data/`) and the synthetic world writer.
//! Reports cross as JSON strings (the Python side turns them into dicts).

use super::config::PyWorldConfig;
use super::convert::{CsrArgs, CsrOut, csr, csr_out, enter, from_py, report, slice1};
use crate::data::dataset::{self, LoadOptions};
use crate::data::desparsify::desparsify as desparsify_core;
use crate::data::join::SongTable;
use crate::data::{audio_index, metadata, tags, triplets, unique_tracks};
use crate::error::Error;
use crate::io::load_tensors;
use crate::memory;
use crate::parallel::Threads;
use crate::sparse::Csr;
use crate::synthetic::world::{self, AudioFormat, WorldFilesConfig};
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::path::PathBuf;

/// A core report as Python objects (dicts and lists).
type Report<'py> = Bound<'py, PyAny>;

#[pyfunction]
#[pyo3(signature = (path, strict=false, callback=None))]
fn read_triplets<'py>(
    py: Python<'py>,
    path: PathBuf,
    strict: bool,
    callback: Option<Py<PyAny>>,
) -> PyResult<(CsrOut<'py>, Bound<'py, PyList>, Bound<'py, PyList>, Report<'py>)> {
    let t = enter(py, callback, |progress| triplets::read(&path, strict, progress))?;
    let report = report(py, &t.report)?;
    // The ids become Python strings here; the Rust ones, a million small allocations on the
    // full Taste Profile, are freed and their pages handed back before the caller's next stage.
    let (users, songs) = (PyList::new(py, t.user_ids)?, PyList::new(py, t.song_ids)?);
    memory::release_free_memory();
    Ok((csr_out(py, t.plays), users, songs, report))
}

#[pyfunction]
fn read_track_metadata<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let t = py.detach(|| metadata::read(&path))?;
    let d = PyDict::new(py);
    d.set_item("track_id", t.track_id)?;
    d.set_item("title", t.title)?;
    d.set_item("song_id", t.song_id)?;
    d.set_item("release", t.release)?;
    d.set_item("artist_id", t.artist_id)?;
    d.set_item("artist_mbid", t.artist_mbid)?;
    d.set_item("artist_name", t.artist_name)?;
    d.set_item("duration", t.duration.into_pyarray(py))?;
    d.set_item("artist_familiarity", t.artist_familiarity.into_pyarray(py))?;
    d.set_item("artist_hotttnesss", t.artist_hotttnesss.into_pyarray(py))?;
    d.set_item("year", t.year.into_pyarray(py))?;
    d.set_item("report", report(py, &t.skipped)?)?;
    Ok(d)
}

#[pyfunction]
fn read_tags<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let t = py.detach(|| tags::read(&path))?;
    let d = PyDict::new(py);
    let report = report(py, &t.report)?;
    let n_tags = t.tag_names.len();
    let n_tracks = t.track_id.len();
    let indices: Vec<i32> = t.tag.iter().map(|&g| g as i32).collect();
    let matrix = Csr {
        n_rows: n_tracks,
        n_cols: n_tags,
        indptr: t.indptr,
        indices,
        data: t.value,
    };
    d.set_item("track_id", t.track_id)?;
    d.set_item("tag_names", t.tag_names)?;
    d.set_item("matrix", csr_out(py, matrix))?;
    d.set_item("report", report)?;
    Ok(d)
}

#[pyfunction]
fn read_unique_tracks<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let t = py.detach(|| unique_tracks::read(&path))?;
    let d = PyDict::new(py);
    d.set_item("report", report(py, &t.malformed)?)?;
    d.set_item("track_id", t.track_id)?;
    d.set_item("song_id", t.song_id)?;
    d.set_item("artist_name", t.artist_name)?;
    d.set_item("title", t.title)?;
    Ok(d)
}

#[pyfunction]
fn index_audio(py: Python<'_>, path: PathBuf) -> PyResult<(Vec<String>, Vec<PathBuf>, Bound<'_, PyAny>)> {
    let idx = py.detach(|| audio_index::index(&path))?;
    let report = report(py, &idx.report)?;
    Ok((idx.track_id, idx.path, report))
}

#[pyfunction]
fn desparsify<'py>(
    py: Python<'py>,
    user_items: CsrArgs<'py>,
    eligible: PyReadonlyArray1<'py, bool>,
    n_users: usize,
    n_songs: usize,
    rounds: usize,
) -> PyResult<(CsrOut<'py>, Vec<usize>, Vec<usize>, Report<'py>)> {
    let m = csr(&user_items)?;
    let eligible = slice1(&eligible, "eligible")?;
    let d = py.detach(|| desparsify_core(m, eligible, n_users, n_songs, rounds))?;
    let report = report(py, &d.report)?;
    Ok((csr_out(py, d.plays), d.users, d.songs, report))
}

fn song_table<'py>(py: Python<'py>, t: SongTable) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let n_tags = t.tag_names.len();
    let n_songs = t.song_id.len();
    let tag_matrix = Csr {
        n_rows: n_songs,
        n_cols: n_tags,
        indptr: t.tag_indptr,
        indices: t.tag.iter().map(|&g| g as i32).collect(),
        data: t.tag_value,
    };
    d.set_item("song_id", t.song_id)?;
    d.set_item("track_id", t.track_id)?;
    d.set_item("audio_path", t.audio_path)?;
    d.set_item("artist_id", t.artist_id)?;
    d.set_item("artist_name", t.artist_name)?;
    d.set_item("title", t.title)?;
    d.set_item("release", t.release)?;
    d.set_item("year", t.year.into_pyarray(py))?;
    d.set_item("duration", t.duration.into_pyarray(py))?;
    d.set_item("tag_names", t.tag_names)?;
    d.set_item("tags", csr_out(py, tag_matrix))?;
    Ok(d)
}

/// Load a dataset directory with `options` (the fields of `LoadOptions`).
#[pyfunction]
#[pyo3(signature = (path, options, callback=None))]
fn load_dataset<'py>(
    py: Python<'py>,
    path: PathBuf,
    options: &Bound<'py, PyAny>,
    callback: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let options: LoadOptions = from_py("load options", options)?;
    let data = enter(py, callback, |progress| dataset::load(&path, &options, progress))?;
    let d = PyDict::new(py);
    d.set_item("plays", csr_out(py, data.plays))?;
    d.set_item("user_ids", data.user_ids)?;
    d.set_item("songs", song_table(py, data.songs)?)?;
    d.set_item("report", report(py, &data.report)?)?;
    Ok(d)
}

/// The audio formats this build writes (MP3 only with the `lame` feature).
#[pyfunction]
fn world_audio_formats() -> Vec<&'static str> {
    AudioFormat::writable()
        .into_iter()
        .map(AudioFormat::extension)
        .collect()
}

/// Write a synthetic world into `path`; returns the summary of what was written and planted.
#[pyfunction]
#[pyo3(signature = (path, config, num_threads=0, callback=None))]
fn write_world<'py>(
    py: Python<'py>,
    path: PathBuf,
    config: PyRef<'py, PyWorldConfig>,
    num_threads: usize,
    callback: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let cfg: WorldFilesConfig = config.inner.clone();
    let threads = Threads::new(num_threads)?;
    let summary = enter(py, callback, |progress| {
        world::write_world(&path, &cfg, &threads, progress)
    })?;
    report(py, &summary)
}

/// Every f32 tensor of a safetensors file, as numpy arrays of their shapes.
#[pyfunction]
fn read_tensors<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let (tensors, _) = py.detach(|| load_tensors(&path))?;
    let d = PyDict::new(py);
    for (name, t) in tensors {
        let array = ArrayD::from_shape_vec(IxDyn(&t.shape), t.data).map_err(|e| Error::invalid(e.to_string()))?;
        d.set_item(name, array.into_pyarray(py))?;
    }
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(read_triplets, m)?)?;
    m.add_function(wrap_pyfunction!(read_track_metadata, m)?)?;
    m.add_function(wrap_pyfunction!(read_tags, m)?)?;
    m.add_function(wrap_pyfunction!(read_unique_tracks, m)?)?;
    m.add_function(wrap_pyfunction!(index_audio, m)?)?;
    m.add_function(wrap_pyfunction!(desparsify, m)?)?;
    m.add_function(wrap_pyfunction!(load_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(world_audio_formats, m)?)?;
    m.add_function(wrap_pyfunction!(write_world, m)?)?;
    m.add_function(wrap_pyfunction!(read_tensors, m)?)?;
    Ok(())
}
