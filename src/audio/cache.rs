//! On-disk feature cache: the log-Mel clips of audio files, keyed by configuration and by
//! file (canonical path, modification time, size), so extracting the same files twice costs
//! one pass and a large directory streams through in bounded memory.
//!
//! Layout: `<root>/<fingerprint>/` per [`FeatureConfig::fingerprint`], holding `config.json`
//! (the configuration itself, to catch fingerprint collisions and for people to read) and
//! `shards/*.safetensors`: one per chunk of newly extracted files, with the tensor `features`
//! (clips x n_mels x frames, f32) and the metadata `entries`, a JSON list naming each row's
//! file. There is no central index to keep up to date: opening the cache reads the shards'
//! headers. A shard is written to a temporary file under a unique name and renamed into place,
//! so two processes filling one cache never see a half-written shard nor overwrite each
//! other's work; a file extracted by both is simply stored twice. Failed files are not stored:
//! they are tried again next time.

use super::clip::{ClipPosition, path_key};
use super::extract::{CHUNK, FileFailure, extract_chunk, plan_transform};
use super::features::FeatureConfig;
use crate::ensure;
use crate::error::{Error, Result};
use crate::io::{save_tensors, write_atomic};
use crate::parallel::{Progress, Step, Threads, keep_going};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FORMAT: &str = "musrec.feature_cache";
const FORMAT_VERSION: &str = "1";
/// Largest shard header read (an entry takes ~150 bytes): anything bigger is not ours.
const MAX_HEADER: u64 = 64 << 20;
/// Temporary files older than this are left over from a crashed writer and are removed.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// What the cache knows of a file's content without reading it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
struct FileKey {
    /// Canonical (absolute, symlinks resolved).
    path: String,
    mtime_ns: u64,
    size: u64,
    /// [`path_key`] (of the file name) when the excerpt is random, since it seeds the
    /// excerpt; 0 otherwise.
    clip_key: u64,
}

/// One row of a shard.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    /// `None` for a file the cache cannot key (a path that is not UTF-8): stored so the batch
    /// that extracted it can read it, never found again.
    key: Option<FileKey>,
    padded: bool,
    truncated: bool,
}

/// A shard file: where its rows start, and how many it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Shard {
    pub path: PathBuf,
    data_start: u64,
    rows: usize,
}

/// Row `row` of shard `shard` (an index into the batch's shard list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub shard: usize,
    pub row: usize,
}

#[derive(Clone, Copy, Debug)]
struct Cached {
    location: Location,
    padded: bool,
    truncated: bool,
}

/// The cache of one configuration under a root directory.
pub struct FeatureCache {
    dir: PathBuf,
    cfg: FeatureConfig,
    fingerprint: String,
    n_mels: usize,
    frames: usize,
    shards: Vec<Shard>,
    index: HashMap<FileKey, Cached>,
    removed: Vec<(PathBuf, String)>,
}

/// The outcome of [`FeatureCache::extract`]: where each file's features are, not the
/// features themselves, so a batch of any size takes little memory; [`CachedBatch::read`]
/// fetches rows.
#[derive(Clone, Debug, Default)]
pub struct CachedBatch {
    pub n_mels: usize,
    pub frames: usize,
    pub locations: Vec<Option<Location>>,
    pub ok: Vec<bool>,
    pub padded: Vec<bool>,
    pub truncated: Vec<bool>,
    /// Read from the cache rather than extracted in this call.
    pub cached: Vec<bool>,
    pub failures: Vec<FileFailure>,
    /// Files extracted in this call (successes and failures).
    pub extracted: usize,
    /// The progress callback stopped the batch; files not yet reached have `ok == false` and no
    /// failure.
    pub interrupted: bool,
    pub shards: Vec<Shard>,
}

impl FeatureCache {
    /// Open (creating as needed) the cache of `cfg` under `root`. Shards that are not valid
    /// (cut off, overwritten, another configuration's) are deleted and listed in
    /// [`FeatureCache::removed`]; their files are extracted again when asked for.
    pub fn open(root: &Path, cfg: &FeatureConfig) -> Result<FeatureCache> {
        let (_, n_mels, frames) = plan_transform(cfg)?;
        let fingerprint = format!("{:016x}", cfg.fingerprint()?);
        let dir = root.join(&fingerprint);
        let shard_dir = dir.join("shards");
        std::fs::create_dir_all(&shard_dir).map_err(|e| Error::io(&shard_dir, e))?;
        check_config(&dir.join("config.json"), cfg)?;
        let mut cache = FeatureCache {
            dir,
            cfg: cfg.clone(),
            fingerprint,
            n_mels,
            frames,
            shards: Vec::new(),
            index: HashMap::new(),
            removed: Vec::new(),
        };
        cache.scan(&shard_dir)?;
        Ok(cache)
    }

    /// `<root>/<fingerprint>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files with cached features.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Invalid shards deleted when the cache was opened, with the reason.
    pub fn removed(&self) -> &[(PathBuf, String)] {
        &self.removed
    }

    fn scan(&mut self, shard_dir: &Path) -> Result<()> {
        let mut names = Vec::new();
        for item in std::fs::read_dir(shard_dir).map_err(|e| Error::io(shard_dir, e))? {
            let item = item.map_err(|e| Error::io(shard_dir, e))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                remove_if_stale(&item.path());
            } else if name.ends_with(".safetensors") {
                names.push(name);
            }
        }
        // Name order (creation time first) so the index does not depend on directory order.
        names.sort();
        for name in names {
            let path = shard_dir.join(name);
            match read_header(&path, &self.fingerprint, self.n_mels, self.frames) {
                Ok((shard, entries)) => {
                    self.add_shard(shard, &entries);
                }
                Err(why) => {
                    // A shard only appears under its name once complete (rename), so an invalid
                    // one is damaged, not in progress.
                    let _ = std::fs::remove_file(&path);
                    self.removed.push((path, why));
                }
            }
        }
        Ok(())
    }

    fn add_shard(&mut self, shard: Shard, entries: &[Entry]) -> Vec<Location> {
        let id = self.shards.len();
        self.shards.push(shard);
        let locations: Vec<Location> = (0..entries.len()).map(|row| Location { shard: id, row }).collect();
        for (entry, &location) in entries.iter().zip(&locations) {
            if let Some(key) = &entry.key {
                let cached = Cached {
                    location,
                    padded: entry.padded,
                    truncated: entry.truncated,
                };
                self.index.insert(key.clone(), cached);
            }
        }
        locations
    }

    /// Features of every file in `paths`: cached ones are found, the others are extracted
    /// in chunks, each chunk's successes written as one new shard before the next starts.
    pub fn extract(&mut self, paths: &[PathBuf], threads: &Threads, progress: Progress<'_>) -> Result<CachedBatch> {
        let n = paths.len();
        let random = matches!(self.cfg.position, ClipPosition::Random { .. });
        let keys: Vec<Option<FileKey>> = paths.iter().map(|p| file_key(p, random)).collect();
        let mut batch = CachedBatch {
            n_mels: self.n_mels,
            frames: self.frames,
            locations: vec![None; n],
            ok: vec![false; n],
            padded: vec![false; n],
            truncated: vec![false; n],
            cached: vec![false; n],
            ..CachedBatch::default()
        };
        let mut misses = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match key.as_ref().and_then(|k| self.index.get(k)) {
                Some(c) => {
                    batch.locations[i] = Some(c.location);
                    batch.ok[i] = true;
                    batch.padded[i] = c.padded;
                    batch.truncated[i] = c.truncated;
                    batch.cached[i] = true;
                }
                None => misses.push(i),
            }
        }
        let (transform, ..) = plan_transform(&self.cfg)?;
        let row = self.n_mels * self.frames;
        let mut buffer = vec![0f32; CHUNK.min(misses.len()) * row];
        let mut done = n - misses.len();
        // The hits at once, so a progress bar moves (and Ctrl-C is seen) before the first chunk.
        if done > 0
            && !keep_going(
                &mut *progress,
                Step {
                    done,
                    total: n,
                    loss: None,
                },
            )?
        {
            batch.interrupted = true;
            misses.clear();
        }
        for chunk in misses.chunks(CHUNK) {
            let chunk_paths: Vec<&Path> = chunk.iter().map(|&i| paths[i].as_path()).collect();
            let rows = &mut buffer[..chunk.len() * row];
            let outcomes = extract_chunk(&chunk_paths, &self.cfg, &transform, threads, rows);
            // The successes, moved to the front of the buffer, make the shard.
            let mut entries = Vec::new();
            let mut owners = Vec::new();
            for (j, (&i, outcome)) in chunk.iter().zip(outcomes).enumerate() {
                match outcome {
                    Ok((padded, truncated)) => {
                        rows.copy_within(j * row..(j + 1) * row, entries.len() * row);
                        entries.push(Entry {
                            key: keys[i].clone(),
                            padded,
                            truncated,
                        });
                        owners.push(i);
                        batch.ok[i] = true;
                        batch.padded[i] = padded;
                        batch.truncated[i] = truncated;
                    }
                    Err((kind, message)) => batch.failures.push(FileFailure {
                        index: i,
                        path: paths[i].clone(),
                        kind,
                        message,
                    }),
                }
            }
            if !entries.is_empty() {
                let shard = self.write_shard(&entries, &rows[..entries.len() * row])?;
                for (&i, location) in owners.iter().zip(self.add_shard(shard, &entries)) {
                    batch.locations[i] = Some(location);
                }
            }
            batch.extracted += chunk.len();
            done += chunk.len();
            let step = Step {
                done,
                total: n,
                loss: None,
            };
            if !keep_going(&mut *progress, step)? {
                batch.interrupted = true;
                break;
            }
        }
        batch.failures.sort_by_key(|f| f.index);
        batch.shards = self.shards.clone();
        Ok(batch)
    }

    fn write_shard(&self, entries: &[Entry], features: &[f32]) -> Result<Shard> {
        static SHARDS: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        // Creation time first (so names sort by age), then what makes the name unique to this
        // writer: process id and a per-process counter.
        let name = format!(
            "{:020}-{:x}-{:x}.safetensors",
            nanos,
            std::process::id(),
            SHARDS.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.dir.join("shards").join(name);
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
            ("fingerprint".to_string(), self.fingerprint.clone()),
            ("musrec_version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            (
                "entries".to_string(),
                serde_json::to_string(entries).map_err(|e| Error::invalid(e.to_string()))?,
            ),
        ]);
        let shape = [entries.len(), self.n_mels, self.frames];
        save_tensors(&path, &[("features", &shape, features)], metadata)?;
        read_header(&path, &self.fingerprint, self.n_mels, self.frames)
            .map(|(shard, _)| shard)
            .map_err(|why| Error::format(&path, why))
    }
}

impl CachedBatch {
    pub fn len(&self) -> usize {
        self.ok.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ok.is_empty()
    }

    /// Rows `indices` of the batch into `out` (indices.len() x n_mels x frames); rows of
    /// failed files are zeros. Each shard is opened once, and only the rows asked for are read.
    pub fn read(&self, indices: &[usize], out: &mut [f32]) -> Result<()> {
        let row = self.n_mels * self.frames;
        ensure!(
            out.len() == indices.len() * row,
            "output holds {} values, expected {} rows of {row}",
            out.len(),
            indices.len()
        );
        let mut wanted = Vec::with_capacity(indices.len());
        for (slot, &i) in indices.iter().enumerate() {
            ensure!(
                i < self.len(),
                "index {i} is out of range for a batch of {}",
                self.len()
            );
            match self.locations[i] {
                Some(location) => wanted.push((location, slot)),
                None => out[slot * row..(slot + 1) * row].fill(0.0),
            }
        }
        wanted.sort_unstable_by_key(|&(l, _)| (l.shard, l.row));
        let mut bytes = vec![0u8; row * 4];
        let mut open: Option<(usize, File)> = None;
        for (location, slot) in wanted {
            let shard = &self.shards[location.shard];
            ensure!(
                location.row < shard.rows,
                "row {} is beyond the {} of {}",
                location.row,
                shard.rows,
                shard.path.display()
            );
            if open.as_ref().is_none_or(|(id, _)| *id != location.shard) {
                let file = File::open(&shard.path).map_err(|e| Error::io(&shard.path, e))?;
                open = Some((location.shard, file));
            }
            let Some((_, file)) = open.as_mut() else { unreachable!() };
            let offset = shard.data_start + (location.row * row * 4) as u64;
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut bytes))
                .map_err(|e| {
                    Error::format(
                        &shard.path,
                        format!("cache shard changed or was removed since it was indexed ({e})"),
                    )
                })?;
            for (v, b) in out[slot * row..(slot + 1) * row].iter_mut().zip(bytes.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Ok(())
    }
}

/// The configuration stored beside the shards must be `cfg` itself: a different one with the
/// same fingerprint is a hash collision, and mixing their features would be silent damage.
fn check_config(path: &Path, cfg: &FeatureConfig) -> Result<()> {
    if let Ok(text) = std::fs::read_to_string(path)
        && let Ok(stored) = serde_json::from_str::<FeatureConfig>(&text)
    {
        if stored != *cfg {
            return Err(Error::format(
                path,
                "holds a different feature configuration with the same fingerprint; use another cache directory",
            ));
        }
        return Ok(());
    }
    // Missing or unreadable: (re)write it.
    let json = serde_json::to_string_pretty(cfg).map_err(|e| Error::invalid(e.to_string()))?;
    write_atomic(path, |w| w.write_all(json.as_bytes()))
}

fn file_key(path: &Path, random: bool) -> Option<FileKey> {
    let canonical = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&canonical).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Some(FileKey {
        path: canonical.to_str()?.to_owned(),
        mtime_ns,
        size: meta.len(),
        clip_key: if random { path_key(path) } else { 0 },
    })
}

#[derive(Deserialize)]
struct Header {
    #[serde(rename = "__metadata__")]
    metadata: HashMap<String, String>,
    features: TensorInfo,
}

#[derive(Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Read and check a shard's header (safetensors: an 8-byte length, then JSON) without its
/// data; the file's length must match what the header describes, which catches a shard cut
/// off or overwritten. The values themselves are not checksummed.
fn read_header(
    path: &Path,
    fingerprint: &str,
    n_mels: usize,
    frames: usize,
) -> std::result::Result<(Shard, Vec<Entry>), String> {
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| "shorter than a header".to_string())?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER || header_len + 8 > file_len {
        return Err(format!(
            "header length {header_len} does not fit the file ({file_len} bytes)"
        ));
    }
    let mut text = vec![0u8; header_len as usize];
    file.read_exact(&mut text).map_err(|e| e.to_string())?;
    let header: Header = serde_json::from_slice(&text).map_err(|e| format!("not a feature shard header ({e})"))?;
    let meta = |key: &str| header.metadata.get(key).map(String::as_str);
    if meta("format") != Some(FORMAT) || meta("format_version") != Some(FORMAT_VERSION) {
        return Err("not a musrec feature cache shard of this version".into());
    }
    if meta("fingerprint") != Some(fingerprint) {
        return Err("belongs to another feature configuration".into());
    }
    let entries: Vec<Entry> =
        serde_json::from_str(meta("entries").unwrap_or("")).map_err(|e| format!("bad entry list ({e})"))?;
    let info = &header.features;
    let rows = entries.len();
    let data_len = (rows * n_mels * frames * 4) as u64;
    if info.dtype != "F32" || info.shape != [rows, n_mels, frames] || info.data_offsets != [0, data_len] {
        return Err(format!(
            "tensor is {} {:?}, expected F32 [{rows}, {n_mels}, {frames}]",
            info.dtype, info.shape
        ));
    }
    let data_start = 8 + header_len;
    if data_start + data_len != file_len {
        return Err(format!(
            "{file_len} bytes where the header describes {}",
            data_start + data_len
        ));
    }
    Ok((
        Shard {
            path: path.to_path_buf(),
            data_start,
            rows,
        },
        entries,
    ))
}

fn remove_if_stale(path: &Path) {
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    if path.to_string_lossy().contains(".tmp-") && age.is_some_and(|a| a > STALE_TEMP) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::extract::{FailureKind, extract};
    use crate::audio::test_files::{Scratch, fixture, wav_bytes};
    use crate::parallel::ignore_progress;

    /// `n` one-second 8 kHz WAVs, each a different tone, plus a missing file and a text file.
    fn files(scratch: &Scratch, n: usize) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = (0..n)
            .map(|i| {
                let x: Vec<f32> = (0..8000)
                    .map(|t| (0.3 * (t as f64 * (0.05 + 0.01 * i as f64)).sin()) as f32)
                    .collect();
                scratch.write(&format!("{i:03}.wav"), &wav_bytes(8000, 1, &x, false))
            })
            .collect();
        paths.push(scratch.path("missing.wav"));
        paths.push(fixture("not_audio.mp3"));
        paths
    }

    fn cfg() -> FeatureConfig {
        FeatureConfig {
            clip_seconds: 0.5,
            min_seconds: 0.1,
            ..FeatureConfig::paper()
        }
    }

    fn run(root: &Path, cfg: &FeatureConfig, paths: &[PathBuf]) -> (FeatureCache, CachedBatch) {
        let mut cache = FeatureCache::open(root, cfg).unwrap();
        let batch = cache
            .extract(paths, &Threads::new(2).unwrap(), &mut ignore_progress)
            .unwrap();
        (cache, batch)
    }

    fn all_rows(batch: &CachedBatch) -> Vec<f32> {
        let mut out = vec![1f32; batch.len() * batch.n_mels * batch.frames];
        batch.read(&(0..batch.len()).collect::<Vec<_>>(), &mut out).unwrap();
        out
    }

    fn failures(batch: &CachedBatch) -> Vec<(usize, FailureKind)> {
        batch.failures.iter().map(|f| (f.index, f.kind)).collect()
    }

    #[test]
    fn second_pass_reads_everything_from_the_cache() {
        let scratch = Scratch::new("cache-second-pass");
        let root = scratch.path("cache");
        // More than one chunk, so more than one shard.
        let paths = files(&scratch, CHUNK + 6);
        let n = paths.len();
        let direct = extract(&paths, &cfg(), &Threads::new(2).unwrap(), &mut ignore_progress).unwrap();

        let (cache, first) = run(&root, &cfg(), &paths);
        assert_eq!(first.extracted, n);
        assert!(first.cached.iter().all(|&c| !c));
        assert_eq!(first.ok, direct.ok);
        assert_eq!(first.shards.len(), 2);
        assert_eq!(cache.len(), CHUNK + 6);
        assert_eq!(
            failures(&first),
            vec![(n - 2, FailureKind::Missing), (n - 1, FailureKind::Corrupt)]
        );
        assert_eq!(all_rows(&first), direct.features);

        let mut steps = Vec::new();
        let mut record = |step: Step| {
            steps.push(step.done);
            Ok(())
        };
        let mut cache = FeatureCache::open(&root, &cfg()).unwrap();
        let second = cache.extract(&paths, &Threads::new(2).unwrap(), &mut record).unwrap();
        // The hits are reported at once, then the chunk of misses.
        assert_eq!(steps, [n - 2, n]);
        // Only the two failures are tried again.
        assert_eq!(second.extracted, 2);
        assert_eq!(second.cached[..n - 2], vec![true; n - 2][..]);
        assert_eq!(failures(&second), failures(&first));
        assert_eq!(all_rows(&second), direct.features);
        // Any subset, in any order.
        let pick = [n - 1, 5, 0, CHUNK + 1];
        let row = second.n_mels * second.frames;
        let mut out = vec![0f32; pick.len() * row];
        second.read(&pick, &mut out).unwrap();
        for (slot, &i) in pick.iter().enumerate() {
            assert_eq!(
                out[slot * row..(slot + 1) * row],
                direct.features[i * row..(i + 1) * row]
            );
        }
        assert!(second.read(&[n], &mut out[..row]).is_err());
    }

    #[test]
    fn a_changed_file_is_extracted_again() {
        let scratch = Scratch::new("cache-changed");
        let root = scratch.path("cache");
        let paths = files(&scratch, 3);
        let (_, first) = run(&root, &cfg(), &paths);
        // New content, same size, and a modification time set apart from the old one.
        let louder: Vec<f32> = (0..8000).map(|t| (0.6 * (t as f64 * 0.05).sin()) as f32).collect();
        std::fs::write(&paths[1], wav_bytes(8000, 1, &louder, false)).unwrap();
        let file = File::options().write(true).open(&paths[1]).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(10)).unwrap();
        drop(file);
        let (_, second) = run(&root, &cfg(), &paths);
        assert_eq!(second.cached[..3], [true, false, true]);
        assert_eq!(second.extracted, 3); // the changed file and the two failures
        let row = first.n_mels * first.frames;
        let (a, b) = (all_rows(&first), all_rows(&second));
        assert_eq!(a[..row], b[..row]);
        assert_ne!(a[row..2 * row], b[row..2 * row]);
    }

    #[test]
    fn each_configuration_has_its_own_cache() {
        let scratch = Scratch::new("cache-configs");
        let root = scratch.path("cache");
        let paths = files(&scratch, 2);
        let (a, _) = run(&root, &cfg(), &paths);
        let other = FeatureConfig { n_mels: 64, ..cfg() };
        let (b, batch) = run(&root, &other, &paths);
        assert_ne!(a.dir(), b.dir());
        assert!(batch.cached.iter().all(|&c| !c));
        assert_eq!((batch.n_mels, batch.frames), (64, 8));
        let stored: FeatureConfig =
            serde_json::from_str(&std::fs::read_to_string(b.dir().join("config.json")).unwrap()).unwrap();
        assert_eq!(stored, other);
        // A different configuration under the same fingerprint is refused, not mixed in.
        std::fs::write(b.dir().join("config.json"), serde_json::to_string(&cfg()).unwrap()).unwrap();
        let err = FeatureCache::open(&root, &other).err().unwrap();
        assert!(
            matches!(&err, Error::Format { message, .. } if message.contains("fingerprint")),
            "{err}"
        );
    }

    #[test]
    fn random_excerpts_follow_the_file_name_not_its_location() {
        let scratch = Scratch::new("cache-spelling");
        let root = scratch.path("cache");
        let paths = files(&scratch, 1);
        let (_, first) = run(&root, &cfg(), &paths[..1]);
        // Another spelling of the same file is the same entry.
        let dotted = vec![scratch.0.join(".").join("000.wav")];
        let (_, batch) = run(&root, &cfg(), &dotted);
        assert_eq!(batch.cached, [true]);
        // A copy elsewhere is another file, extracted again, with the same random excerpt.
        std::fs::create_dir_all(scratch.path("moved")).unwrap();
        let moved = vec![scratch.path("moved").join("000.wav")];
        std::fs::copy(&paths[0], &moved[0]).unwrap();
        let (_, batch) = run(&root, &cfg(), &moved);
        assert_eq!(batch.cached, [false]);
        assert_eq!(all_rows(&batch), all_rows(&first));
    }

    #[test]
    fn damaged_shards_are_removed_and_their_files_extracted_again() {
        let scratch = Scratch::new("cache-damaged");
        let root = scratch.path("cache");
        let paths = files(&scratch, CHUNK + 3);
        let (cache, first) = run(&root, &cfg(), &paths);
        let reference = all_rows(&first);
        let shard_dir = cache.dir().join("shards");
        let (big, small) = (&first.shards[0].path, &first.shards[1].path);
        // One cut off, one overwritten; a stranger's file and a fresh temporary file are left.
        let bytes = std::fs::read(big).unwrap();
        std::fs::write(big, &bytes[..bytes.len() / 2]).unwrap();
        std::fs::write(small, b"not a shard at all").unwrap();
        std::fs::write(shard_dir.join(".x.safetensors.tmp-1-0"), b"in progress").unwrap();
        let (reopened, second) = run(&root, &cfg(), &paths);
        assert_eq!(reopened.removed().len(), 2);
        assert!(!big.exists() && !small.exists());
        assert!(shard_dir.join(".x.safetensors.tmp-1-0").exists());
        assert_eq!(second.extracted, paths.len());
        assert_eq!(all_rows(&second), reference);
        let (_, third) = run(&root, &cfg(), &paths);
        assert_eq!(third.extracted, 2);
    }

    #[test]
    fn two_writers_at_once_leave_a_valid_cache() {
        let scratch = Scratch::new("cache-concurrent");
        let root = scratch.path("cache");
        let paths = files(&scratch, 20);
        let batches: Vec<CachedBatch> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..2).map(|_| s.spawn(|| run(&root, &cfg(), &paths).1)).collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert_eq!(all_rows(&batches[0]), all_rows(&batches[1]));
        let (cache, batch) = run(&root, &cfg(), &paths);
        assert!(cache.removed().is_empty());
        assert_eq!(batch.extracted, 2);
        assert_eq!(all_rows(&batch), all_rows(&batches[0]));
    }

    #[test]
    fn an_interrupted_batch_keeps_the_chunks_it_finished() {
        let scratch = Scratch::new("cache-interrupted");
        let root = scratch.path("cache");
        let paths = files(&scratch, CHUNK + 5);
        let mut cache = FeatureCache::open(&root, &cfg()).unwrap();
        let mut stop = |_: Step| Err(Error::Interrupted);
        let batch = cache.extract(&paths, &Threads::new(2).unwrap(), &mut stop).unwrap();
        assert!(batch.interrupted);
        assert_eq!(batch.extracted, CHUNK);
        assert!(batch.ok[..CHUNK].iter().all(|&ok| ok) && !batch.ok[CHUNK]);
        let (_, again) = run(&root, &cfg(), &paths);
        assert_eq!(again.extracted, 7);
    }
}
