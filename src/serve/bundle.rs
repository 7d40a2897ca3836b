//! Model bundles: everything an edge service needs, in one directory that is written whole
//! or not at all and is refused when any file fails its checksum.
//!
//! Layout (format `musrec.bundle`, version 1):
//! - `manifest.json`: format and model version, creation time, the WMF hyperparameters,
//!   the log-Mel feature config and excerpt count, the sha256 and size of every other file,
//!   the song-vector encoding (and its measured top-10 overlap with exact f32) and the event
//!   offsets consumed per edge;
//! - `vectors.safetensors`: `user_factors` (F32, users x factors) and `song_factors` (F32,
//!   F16, or I8 with `song_scales`, F32 per row);
//! - `plays.safetensors`: the users x songs play counts as CSR (`indptr` I64, `indices` I32,
//!   `data` F32), so served rankings can leave out what a user played;
//! - `ids.safetensors`: the id maps, each as its UTF-8 bytes concatenated (`user_ids`,
//!   `song_ids`, U8) and where each id ends (`user_id_ends`, `song_id_ends`, I64);
//! - `fusion.safetensors` (optional): the content model (weights, vocabularies and
//!   standardisation in one musrec.fusion file, see `nn::checkpoint`).
//!
//! Every file is plain safetensors or JSON, readable without musrec.

use crate::audio::features::FeatureConfig;
use crate::ensure;
use crate::error::{Error, Result};
use crate::sparse::{Csr, CsrRef};
use crate::topk::{Exclusions, top_n};
use crate::wmf::WmfParams;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "musrec.bundle";
pub const FORMAT_VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";
const VECTORS: &str = "vectors.safetensors";
const PLAYS: &str = "plays.safetensors";
const IDS: &str = "ids.safetensors";
const FUSION: &str = "fusion.safetensors";
/// Users whose top-10 lists measure a compact encoding against exact f32.
const OVERLAP_USERS: usize = 1000;

/// How the song vectors are stored. They are always decoded to f32 on load, so every score
/// is computed in f32; the compact encodings only shrink the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SongEncoding {
    #[default]
    F32,
    F16,
    /// One byte per value with one f32 scale per song (max |value| / 127).
    Int8,
}

impl SongEncoding {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "f32" => Ok(SongEncoding::F32),
            "f16" => Ok(SongEncoding::F16),
            "int8" => Ok(SongEncoding::Int8),
            other => Err(Error::invalid(format!(
                "unknown song vector encoding {other:?}; expected 'f32', 'f16' or 'int8'"
            ))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// Names the model in every served response; by default a digest of the files.
    pub model_version: String,
    /// UTC, RFC 3339.
    pub created: String,
    pub n_users: usize,
    pub n_songs: usize,
    pub factors: usize,
    /// Songs from this index on were added from their content (no listening history).
    pub n_known: usize,
    pub wmf: WmfParams,
    pub features: FeatureConfig,
    pub excerpts: usize,
    pub song_encoding: SongEncoding,
    /// Mean share of each user's exact f32 top-10 that the stored encoding keeps (1 for f32),
    /// measured at export on up to 1,000 users.
    pub song_encoding_top10_overlap: f64,
    /// The last event sequence number of each edge that the model has consumed.
    pub edge_offsets: BTreeMap<String, u64>,
    pub files: BTreeMap<String, FileEntry>,
}

/// A bundle in memory, song vectors decoded to f32.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub model_version: Option<String>,
    pub wmf: WmfParams,
    pub features: FeatureConfig,
    pub excerpts: usize,
    pub user_ids: Vec<String>,
    pub song_ids: Vec<String>,
    /// n_users x factors, row-major.
    pub user_factors: Vec<f32>,
    /// n_songs x factors, row-major: the songs with listening history, then (from
    /// `n_known` on) the songs added from content.
    pub song_factors: Vec<f32>,
    pub n_known: usize,
    /// n_users x n_songs.
    pub plays: Csr,
    /// A musrec.fusion model file's bytes.
    pub fusion: Option<Vec<u8>>,
    pub edge_offsets: BTreeMap<String, u64>,
}

impl Bundle {
    /// Check that the parts fit together (shapes, unique ids, finite values).
    pub fn validate(&self) -> Result<()> {
        let k = self.wmf.factors;
        self.wmf.validate()?;
        self.features.validate()?;
        ensure!(self.excerpts >= 1, "excerpts must be at least 1");
        let (n_users, n_songs) = (self.user_ids.len(), self.song_ids.len());
        ensure!(
            n_users > 0 && n_songs > 0,
            "a bundle needs at least one user and one song"
        );
        ensure!(
            self.user_factors.len() == n_users * k,
            "user factors hold {} values for {n_users} users x {k} factors",
            self.user_factors.len()
        );
        ensure!(
            self.song_factors.len() == n_songs * k,
            "song factors hold {} values for {n_songs} songs x {k} factors",
            self.song_factors.len()
        );
        ensure!(
            self.user_factors
                .iter()
                .chain(&self.song_factors)
                .all(|v| v.is_finite()),
            "the factors contain NaN or infinite values"
        );
        ensure!(
            self.n_known <= n_songs,
            "n_known is {} but there are {n_songs} songs",
            self.n_known
        );
        unique(&self.user_ids, "user")?;
        unique(&self.song_ids, "song")?;
        ensure!(
            self.plays.n_rows == n_users && self.plays.n_cols == n_songs,
            "plays are {} x {}, expected users x songs = {n_users} x {n_songs}",
            self.plays.n_rows,
            self.plays.n_cols
        );
        CsrRef::new(
            self.plays.n_rows,
            self.plays.n_cols,
            &self.plays.indptr,
            &self.plays.indices,
            &self.plays.data,
        )?;
        Ok(())
    }

    /// Write the bundle to the directory `dir`, which must not exist yet: every file goes
    /// to a temporary sibling directory, is fsynced, and the directory is renamed into place.
    pub fn write(&self, dir: &Path, encoding: SongEncoding) -> Result<Manifest> {
        self.validate()?;
        if dir.exists() {
            return Err(Error::invalid(format!(
                "{} already exists; a bundle is written to a new directory",
                dir.display()
            )));
        }
        let tmp = crate::io::temp_sibling(dir)?;
        let parent = tmp.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let result = self.write_into(&tmp, encoding).and_then(|manifest| {
            std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
            sync_dir(&parent)?;
            Ok(manifest)
        });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    fn write_into(&self, dir: &Path, encoding: SongEncoding) -> Result<Manifest> {
        let k = self.wmf.factors;
        let (n_users, n_songs) = (self.user_ids.len(), self.song_ids.len());
        let mut files = BTreeMap::new();
        let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
            let path = dir.join(name);
            let mut file = File::create(&path).map_err(|e| Error::io(&path, e))?;
            file.write_all(bytes)
                .and_then(|_| file.sync_all())
                .map_err(|e| Error::io(&path, e))?;
            let entry = FileEntry {
                sha256: sha256_hex(bytes),
                bytes: bytes.len() as u64,
            };
            files.insert(name.to_string(), entry);
            Ok(())
        };

        let (songs, overlap) = encode_songs(&self.song_factors, &self.user_factors, k, encoding)?;
        let mut vectors = vec![Raw::f32("user_factors", vec![n_users, k], &self.user_factors)];
        vectors.extend(songs);
        put(VECTORS, &serialize(&vectors)?)?;
        let plays = [
            Raw::new(
                "indptr",
                Dtype::I64,
                vec![self.plays.indptr.len()],
                le_bytes(&self.plays.indptr),
            ),
            Raw::new(
                "indices",
                Dtype::I32,
                vec![self.plays.indices.len()],
                le_bytes(&self.plays.indices),
            ),
            Raw::f32("data", vec![self.plays.data.len()], &self.plays.data),
        ];
        put(PLAYS, &serialize(&plays)?)?;
        let mut ids = Vec::new();
        for (name, list) in [("user", &self.user_ids), ("song", &self.song_ids)] {
            let (text, ends) = join_ids(list);
            ids.push(Raw::new(&format!("{name}_ids"), Dtype::U8, vec![text.len()], text));
            ids.push(Raw::new(
                &format!("{name}_id_ends"),
                Dtype::I64,
                vec![ends.len()],
                le_bytes(&ends),
            ));
        }
        put(IDS, &serialize(&ids)?)?;
        if let Some(fusion) = &self.fusion {
            // Refuse a model file that would not load back.
            crate::nn::FusionModel::from_bytes(fusion, Path::new(FUSION))?;
            put(FUSION, fusion)?;
        }

        let model_version = match &self.model_version {
            Some(v) => {
                ensure!(
                    !v.is_empty() && v.len() <= 128 && !v.chars().any(char::is_control),
                    "model_version must be 1-128 printable characters, got {v:?}"
                );
                v.clone()
            }
            None => {
                let digests: String = files.values().map(|f| f.sha256.as_str()).collect();
                sha256_hex(digests.as_bytes())[..12].to_string()
            }
        };
        let manifest = Manifest {
            format: FORMAT.to_string(),
            format_version: FORMAT_VERSION,
            model_version,
            created: rfc3339_now(),
            n_users,
            n_songs,
            factors: k,
            n_known: self.n_known,
            wmf: self.wmf.clone(),
            features: self.features.clone(),
            excerpts: self.excerpts,
            song_encoding: encoding,
            song_encoding_top10_overlap: overlap,
            edge_offsets: self.edge_offsets.clone(),
            files,
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::invalid(e.to_string()))?;
        let path = dir.join(MANIFEST);
        let mut file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        file.write_all(&json)
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::io(&path, e))?;
        sync_dir(dir)?;
        Ok(manifest)
    }

    /// Read a bundle directory, verifying every file against the manifest's sha256 first.
    pub fn read(dir: &Path) -> Result<(Bundle, Manifest)> {
        let manifest = read_manifest(dir)?;
        let mut contents: HashMap<&str, Vec<u8>> = HashMap::new();
        for required in [VECTORS, PLAYS, IDS] {
            if !manifest.files.contains_key(required) {
                return Err(Error::format(dir.join(MANIFEST), format!("lists no {required}")));
            }
        }
        for (name, entry) in &manifest.files {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::format(&path, "missing from the bundle"),
                _ => Error::io(&path, e),
            })?;
            let digest = sha256_hex(&bytes);
            if digest != entry.sha256 {
                return Err(Error::format(
                    &path,
                    format!(
                        "checksum mismatch: the file's sha256 is {digest}, the manifest says {}; the bundle is \
                         corrupt or was modified, refusing to load it",
                        entry.sha256
                    ),
                ));
            }
            let known = [VECTORS, PLAYS, IDS, FUSION];
            if let Some(key) = known.iter().find(|k| **k == name.as_str()) {
                contents.insert(key, bytes);
            }
        }
        let k = manifest.factors;
        let (n_users, n_songs) = (manifest.n_users, manifest.n_songs);
        let bad = |file: &str, msg: String| Error::format(dir.join(file), msg);

        let vectors = Tensors::parse(&contents[VECTORS], &dir.join(VECTORS))?;
        let user_factors = vectors.f32("user_factors", &[n_users, k])?;
        let song_factors = decode_songs(&vectors, manifest.song_encoding, n_songs, k)?;
        let plays_file = Tensors::parse(&contents[PLAYS], &dir.join(PLAYS))?;
        let indptr: Vec<i64> = plays_file.ints("indptr", Dtype::I64)?;
        let indices: Vec<i32> = plays_file
            .ints::<i64>("indices", Dtype::I32)?
            .into_iter()
            .map(|v| v as i32)
            .collect();
        let data = plays_file.f32("data", &[indices.len()])?;
        let plays = Csr {
            n_rows: n_users,
            n_cols: n_songs,
            indptr,
            indices,
            data,
        };
        let ids = Tensors::parse(&contents[IDS], &dir.join(IDS))?;
        let user_ids = ids.strings("user")?;
        let song_ids = ids.strings("song")?;
        let bundle = Bundle {
            model_version: Some(manifest.model_version.clone()),
            wmf: manifest.wmf.clone(),
            features: manifest.features.clone(),
            excerpts: manifest.excerpts,
            user_ids,
            song_ids,
            user_factors,
            song_factors,
            n_known: manifest.n_known,
            plays,
            fusion: contents.remove(FUSION),
            edge_offsets: manifest.edge_offsets.clone(),
        };
        bundle
            .validate()
            .map_err(|e| bad(MANIFEST, format!("the bundle's parts do not fit together: {e}")))?;
        Ok((bundle, manifest))
    }
}

/// The manifest of a bundle directory, format and version checked (files not verified).
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    if !dir.is_dir() {
        return Err(Error::NotFound(dir.to_path_buf()));
    }
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::format(dir, "not a musrec bundle (no manifest.json)"),
        _ => Error::io(&path, e),
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| Error::format(&path, format!("not valid JSON: {e}")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(Error::format(
            &path,
            format!("not a musrec bundle manifest (format = {:?})", value.get("format")),
        ));
    }
    if value.get("format_version").and_then(|f| f.as_u64()) != Some(u64::from(FORMAT_VERSION)) {
        return Err(Error::format(
            &path,
            format!(
                "unsupported bundle format version {:?} (this musrec reads {FORMAT_VERSION})",
                value.get("format_version")
            ),
        ));
    }
    serde_json::from_value(value).map_err(|e| Error::format(&path, format!("unreadable manifest: {e}")))
}

fn unique(ids: &[String], what: &str) -> Result<()> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    for id in ids {
        ensure!(seen.insert(id.as_str()), "{what} id {id:?} appears twice");
    }
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ` (the civil-from-days conversion of H. Hinnant's date
/// algorithms; std has no calendar).
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A tensor to serialise: its raw little-endian bytes.
struct Raw {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Raw {
    fn new(name: &str, dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) -> Self {
        Raw {
            name: name.to_string(),
            dtype,
            shape,
            bytes,
        }
    }

    fn f32(name: &str, shape: Vec<usize>, values: &[f32]) -> Self {
        Raw::new(name, Dtype::F32, shape, le_bytes(values))
    }
}

trait LeBytes: Copy {
    fn put(self, out: &mut Vec<u8>);
}
impl LeBytes for f32 {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl LeBytes for i32 {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl LeBytes for i64 {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl LeBytes for i8 {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl LeBytes for half::f16 {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

fn le_bytes<T: LeBytes>(values: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(std::mem::size_of_val(values));
    for &v in values {
        v.put(&mut out);
    }
    out
}

fn serialize(tensors: &[Raw]) -> Result<Vec<u8>> {
    let mut views = Vec::with_capacity(tensors.len());
    for t in tensors {
        let view = TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
            .map_err(|e| Error::invalid(format!("tensor {}: {e}", t.name)))?;
        views.push((t.name.as_str(), view));
    }
    let metadata = HashMap::from([("format".to_string(), FORMAT.to_string())]);
    safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| Error::invalid(format!("cannot serialise: {e}")))
}

/// A parsed safetensors file of a bundle.
struct Tensors<'a> {
    file: SafeTensors<'a>,
    path: PathBuf,
}

impl<'a> Tensors<'a> {
    fn parse(bytes: &'a [u8], path: &Path) -> Result<Self> {
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::format(path, format!("not a valid safetensors file ({e})")))?;
        Ok(Tensors {
            file,
            path: path.to_path_buf(),
        })
    }

    fn view(&self, name: &str, dtype: Dtype) -> Result<TensorView<'a>> {
        let view = self
            .file
            .tensor(name)
            .map_err(|_| Error::format(&self.path, format!("missing tensor {name}")))?;
        if view.dtype() != dtype {
            return Err(Error::format(
                &self.path,
                format!("tensor {name} is {:?}, expected {dtype:?}", view.dtype()),
            ));
        }
        Ok(view)
    }

    fn check_shape(&self, name: &str, view: &TensorView, shape: &[usize]) -> Result<()> {
        if view.shape() != shape {
            return Err(Error::format(
                &self.path,
                format!("tensor {name} has shape {:?}, expected {shape:?}", view.shape()),
            ));
        }
        Ok(())
    }

    fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let view = self.view(name, Dtype::F32)?;
        self.check_shape(name, &view, shape)?;
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// A 1-D integer tensor of `dtype` (I32, I64 or U8) widened to `T`.
    fn ints<T: From<i32> + TryFrom<i64>>(&self, name: &str, dtype: Dtype) -> Result<Vec<T>> {
        let view = self.view(name, dtype)?;
        if view.shape().len() != 1 {
            return Err(Error::format(&self.path, format!("tensor {name} must be 1-D")));
        }
        let data = view.data();
        let wide: Vec<i64> = match dtype {
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect(),
            Dtype::I32 => data
                .chunks_exact(4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            _ => data.iter().map(|&b| i64::from(b)).collect(),
        };
        wide.into_iter()
            .map(|v| T::try_from(v).map_err(|_| Error::format(&self.path, format!("{name}: value {v} out of range"))))
            .collect()
    }

    fn strings(&self, what: &str) -> Result<Vec<String>> {
        let text = self.view(&format!("{what}_ids"), Dtype::U8)?.data().to_vec();
        let ends: Vec<i64> = self.ints(&format!("{what}_id_ends"), Dtype::I64)?;
        let bad = |msg: &str| Error::format(&self.path, format!("{what} ids: {msg}"));
        let mut out = Vec::with_capacity(ends.len());
        let mut start = 0usize;
        for end in ends {
            let end = usize::try_from(end).map_err(|_| bad("negative end"))?;
            if end < start || end > text.len() {
                return Err(bad("ends out of order or past the text"));
            }
            let id = std::str::from_utf8(&text[start..end]).map_err(|_| bad("not UTF-8"))?;
            out.push(id.to_string());
            start = end;
        }
        Ok(out)
    }
}

fn join_ids(ids: &[String]) -> (Vec<u8>, Vec<i64>) {
    let mut text = Vec::new();
    let mut ends = Vec::with_capacity(ids.len());
    for id in ids {
        text.extend_from_slice(id.as_bytes());
        ends.push(text.len() as i64);
    }
    (text, ends)
}

/// Per-row int8 quantisation: (codes, scales) with value ~= code * scale.
pub fn quantize_int8(values: &[f32], k: usize) -> (Vec<i8>, Vec<f32>) {
    let mut codes = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len() / k.max(1));
    for row in values.chunks_exact(k) {
        let peak = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if peak > 0.0 { peak / 127.0 } else { 1.0 };
        scales.push(scale);
        codes.extend(row.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8));
    }
    (codes, scales)
}

/// The song vectors as `encoding` stores them, decoded back to f32.
pub fn round_trip(values: &[f32], k: usize, encoding: SongEncoding) -> Vec<f32> {
    match encoding {
        SongEncoding::F32 => values.to_vec(),
        SongEncoding::F16 => values.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect(),
        SongEncoding::Int8 => {
            let (codes, scales) = quantize_int8(values, k);
            codes
                .chunks_exact(k)
                .zip(&scales)
                .flat_map(|(row, &s)| row.iter().map(move |&c| f32::from(c) * s))
                .collect()
        }
    }
}

/// Mean share of the exact top-10 songs (by inner product with f32 vectors) that the
/// decoded `approx` vectors also rank in their top 10, over up to 1,000 evenly spaced users.
pub fn top10_overlap(users: &[f32], exact: &[f32], approx: &[f32], k: usize) -> Result<f64> {
    let n_users = users.len() / k;
    let n_songs = exact.len() / k;
    if n_users == 0 || n_songs == 0 {
        return Ok(1.0);
    }
    let step = n_users.div_ceil(OVERLAP_USERS).max(1);
    let queries: Vec<f32> = users.chunks_exact(k).step_by(step).flatten().copied().collect();
    let n = 10.min(n_songs);
    let (a, _) = top_n(&queries, exact, k, n, Exclusions::default(), None)?;
    let (b, _) = top_n(&queries, approx, k, n, Exclusions::default(), None)?;
    let rows = queries.len() / k;
    let mut shared = 0usize;
    for (ra, rb) in a.chunks_exact(n).zip(b.chunks_exact(n)) {
        shared += ra.iter().filter(|id| rb.contains(id)).count();
    }
    Ok(shared as f64 / (rows * n) as f64)
}

fn encode_songs(songs: &[f32], users: &[f32], k: usize, encoding: SongEncoding) -> Result<(Vec<Raw>, f64)> {
    let n = songs.len() / k;
    let raws = match encoding {
        SongEncoding::F32 => vec![Raw::f32("song_factors", vec![n, k], songs)],
        SongEncoding::F16 => {
            let half: Vec<half::f16> = songs.iter().map(|&v| half::f16::from_f32(v)).collect();
            vec![Raw::new("song_factors", Dtype::F16, vec![n, k], le_bytes(&half))]
        }
        SongEncoding::Int8 => {
            let (codes, scales) = quantize_int8(songs, k);
            vec![
                Raw::new("song_factors", Dtype::I8, vec![n, k], le_bytes(&codes)),
                Raw::f32("song_scales", vec![n], &scales),
            ]
        }
    };
    let overlap = match encoding {
        SongEncoding::F32 => 1.0,
        _ => top10_overlap(users, songs, &round_trip(songs, k, encoding), k)?,
    };
    Ok((raws, overlap))
}

fn decode_songs(t: &Tensors, encoding: SongEncoding, n: usize, k: usize) -> Result<Vec<f32>> {
    match encoding {
        SongEncoding::F32 => t.f32("song_factors", &[n, k]),
        SongEncoding::F16 => {
            let view = t.view("song_factors", Dtype::F16)?;
            t.check_shape("song_factors", &view, &[n, k])?;
            Ok(view
                .data()
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect())
        }
        SongEncoding::Int8 => {
            let view = t.view("song_factors", Dtype::I8)?;
            t.check_shape("song_factors", &view, &[n, k])?;
            let scales = t.f32("song_scales", &[n])?;
            Ok(view
                .data()
                .chunks_exact(k.max(1))
                .zip(&scales)
                .flat_map(|(row, &s)| row.iter().map(move |&c| f32::from(c as i8) * s))
                .collect())
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small random bundle: 30 users, 40 songs, 8 factors, a few plays each.
    pub(crate) fn tiny_bundle() -> Bundle {
        let k = 8;
        let (n_users, n_songs) = (30, 40);
        let value = |i: usize| (((i * 2_654_435_761) % 1000) as f32 / 500.0) - 1.0;
        let mut indptr = vec![0i64];
        let mut indices = Vec::new();
        for u in 0..n_users {
            let mut row: Vec<i32> = (0..3).map(|j| ((u * 7 + j * 13) % n_songs) as i32).collect();
            row.sort_unstable();
            row.dedup();
            indices.extend(row);
            indptr.push(indices.len() as i64);
        }
        let data = vec![2.0; indices.len()];
        Bundle {
            model_version: None,
            wmf: WmfParams {
                factors: k,
                ..WmfParams::default()
            },
            features: FeatureConfig::paper(),
            excerpts: 1,
            user_ids: (0..n_users).map(|u| format!("user{u}")).collect(),
            song_ids: (0..n_songs).map(|s| format!("song{s}")).collect(),
            user_factors: (0..n_users * k).map(value).collect(),
            song_factors: (0..n_songs * k).map(|i| value(i + 7919)).collect(),
            n_known: n_songs,
            plays: Csr {
                n_rows: n_users,
                n_cols: n_songs,
                indptr,
                indices,
                data,
            },
            fusion: None,
            edge_offsets: BTreeMap::from([("edge-a".to_string(), 41)]),
        }
    }

    pub(crate) fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("musrec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn round_trips_and_names_every_file() {
        let root = scratch("bundle-rt");
        let bundle = tiny_bundle();
        let dir = root.join("b1");
        let manifest = bundle.write(&dir, SongEncoding::F32).unwrap();
        assert_eq!(manifest.files.len(), 3);
        assert_eq!(manifest.model_version.len(), 12);
        assert_eq!(manifest.created.len(), 20);
        let (back, read) = Bundle::read(&dir).unwrap();
        assert_eq!(read, manifest);
        assert_eq!(back.user_ids, bundle.user_ids);
        assert_eq!(back.song_factors, bundle.song_factors);
        assert_eq!(back.plays, bundle.plays);
        assert_eq!(back.edge_offsets["edge-a"], 41);
        // Nothing but the bundle is left in the parent directory.
        let names: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("b1")]);
        // A second write to the same place is refused rather than mixed into it.
        assert!(matches!(
            bundle.write(&dir, SongEncoding::F32),
            Err(Error::InvalidInput(_))
        ));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_flipped_byte_is_refused() {
        let root = scratch("bundle-crc");
        let dir = root.join("b");
        tiny_bundle().write(&dir, SongEncoding::F32).unwrap();
        let path = dir.join(VECTORS);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = Bundle::read(&dir).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        std::fs::remove_file(&path).unwrap();
        assert!(Bundle::read(&dir).unwrap_err().to_string().contains("missing"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn compact_encodings_decode_close_and_report_overlap() {
        let root = scratch("bundle-compact");
        let bundle = tiny_bundle();
        for (encoding, tolerance) in [(SongEncoding::F16, 1e-3), (SongEncoding::Int8, 1.0 / 127.0)] {
            let dir = root.join(format!("{encoding:?}"));
            let manifest = bundle.write(&dir, encoding).unwrap();
            assert!(manifest.song_encoding_top10_overlap > 0.8, "{manifest:?}");
            assert!(manifest.song_encoding_top10_overlap <= 1.0);
            let (back, _) = Bundle::read(&dir).unwrap();
            let worst = back
                .song_factors
                .iter()
                .zip(&bundle.song_factors)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst <= tolerance, "{encoding:?}: {worst}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn bad_parts_are_refused_before_writing() {
        let root = scratch("bundle-bad");
        let mut bundle = tiny_bundle();
        bundle.song_ids[3] = "song0".into();
        let err = bundle.write(&root.join("b"), SongEncoding::F32).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
        assert!(!root.join("b").exists());
        let not_a_bundle = Bundle::read(&root).unwrap_err();
        assert!(not_a_bundle.to_string().contains("no manifest.json"), "{not_a_bundle}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
