//! Many files at once: decode, clip, resample and log-Mel in parallel, one output row per
//! input file. A bad file (missing, unreadable, corrupt, silent, too short) is reported with
//! its reason and leaves a zero row; it never stops the batch.

use super::clip::{path_key, take_clip};
use super::decode::decode;
use super::features::{FeatureConfig, LogMel, LogMelScratch};
use super::resample::resample;
use crate::error::{Error, Result};
use crate::parallel::{Progress, Step, Threads};
use rayon::prelude::*;
use serde::Serialize;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// Files handed to the pool between two progress reports.
const CHUNK: usize = 64;
/// Native-rate samples decoded on each side of a clip so the resampler's edges fall outside it.
const MARGIN: usize = 256;
/// Peak amplitude below which a clip counts as silent (about -120 dBFS).
const SILENCE: f32 = 1e-6;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Missing,
    Unreadable,
    Corrupt,
    Silent,
    TooShort,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Missing => "missing",
            FailureKind::Unreadable => "unreadable",
            FailureKind::Corrupt => "corrupt",
            FailureKind::Silent => "silent",
            FailureKind::TooShort => "too_short",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileFailure {
    pub index: usize,
    pub path: PathBuf,
    pub kind: FailureKind,
    pub message: String,
}

/// Features of a batch: `features` is files x n_mels x frames (row-major); row i belongs to
/// `paths[i]` and is all zeros when that file failed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extracted {
    pub features: Vec<f32>,
    pub n_mels: usize,
    pub frames: usize,
    pub ok: Vec<bool>,
    /// The file was shorter than the clip and was zero-padded.
    pub padded: Vec<bool>,
    /// The file ended early (truncated stream); what could be decoded was used.
    pub truncated: Vec<bool>,
    pub failures: Vec<FileFailure>,
    /// The progress callback stopped the batch; files from `ok.len()` on were not processed.
    pub interrupted: bool,
}

thread_local! {
    static SCRATCH: RefCell<LogMelScratch> = RefCell::new(LogMelScratch::default());
}

/// The clip of one file at the configured rate, and whether it was padded / truncated.
fn clip_of(path: &Path, cfg: &FeatureConfig) -> std::result::Result<(Vec<f32>, bool, bool), (FailureKind, String)> {
    let classify = |e: Error| {
        let kind = match e {
            Error::NotFound(_) => FailureKind::Missing,
            Error::PermissionDenied(_) | Error::Io { .. } => FailureKind::Unreadable,
            Error::InvalidInput(_) => FailureKind::TooShort,
            _ => FailureKind::Corrupt,
        };
        (kind, e.to_string())
    };
    let decoded = decode(path, 0.0, None).map_err(classify)?;
    let native = decoded.sample_rate;
    let seconds = decoded.samples.len() as f64 / native as f64;
    if seconds < cfg.min_seconds {
        return Err((
            FailureKind::TooShort,
            format!(
                "{}: {seconds:.2} s of audio, less than min_seconds = {}",
                path.display(),
                cfg.min_seconds
            ),
        ));
    }
    // Choose the excerpt at the native rate, then resample only it (plus margins).
    let clip = take_clip(&decoded.samples, native, cfg.clip_seconds, cfg.position, path_key(path)).map_err(classify)?;
    let want = cfg.clip_samples();
    let mut samples = if native == cfg.sample_rate {
        clip.samples
    } else {
        // The lead-in must be a whole number of samples at both rates, or the excerpt would
        // start a fraction of a sample off: a multiple of native / gcd(native, target).
        let step = (native / gcd(native, cfg.sample_rate)) as usize;
        let lead = (MARGIN.div_ceil(step) * step).min(clip.start / step * step);
        let lo = clip.start - lead;
        let used = clip.samples.len().min(decoded.samples.len().saturating_sub(clip.start));
        let hi = (clip.start + used + MARGIN).min(decoded.samples.len());
        let resampled = resample(&decoded.samples[lo..hi], native, cfg.sample_rate).map_err(classify)?;
        let skip = lead / step * (cfg.sample_rate / gcd(native, cfg.sample_rate)) as usize;
        resampled.into_iter().skip(skip).take(want).collect()
    };
    samples.resize(want, 0.0);
    let peak = samples.iter().fold(0f32, |m, v| m.max(v.abs()));
    if !(peak >= SILENCE) {
        return Err((
            FailureKind::Silent,
            format!("{}: the clip is silent (peak {peak:.1e})", path.display()),
        ));
    }
    Ok((samples, clip.padded, decoded.truncated))
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Extract the log-Mel features of every file in `paths`.
pub fn extract(paths: &[PathBuf], cfg: &FeatureConfig, threads: &Threads, progress: Progress<'_>) -> Result<Extracted> {
    let transform = LogMel::from_config(cfg)?;
    let n_mels = transform.n_mels();
    let frames = transform.n_frames(cfg.clip_samples());
    let row = n_mels * frames;
    let mut out = Extracted {
        n_mels,
        frames,
        ..Extracted::default()
    };
    out.features = vec![0f32; paths.len() * row];
    for (chunk_index, chunk) in paths.chunks(CHUNK).enumerate() {
        let first = chunk_index * CHUNK;
        let rows = &mut out.features[first * row..(first + chunk.len()) * row];
        let results: Vec<std::result::Result<(bool, bool), (FailureKind, String)>> = threads.run(|| {
            chunk
                .par_iter()
                .zip(rows.par_chunks_mut(row))
                .map(|(path, dst)| {
                    let (clip, padded, truncated) = clip_of(path, cfg)?;
                    SCRATCH
                        .with(|s| transform.compute_into(&clip, dst, &mut s.borrow_mut()))
                        .map_err(|e| (FailureKind::Corrupt, e.to_string()))?;
                    Ok((padded, truncated))
                })
                .collect()
        });
        for (offset, result) in results.into_iter().enumerate() {
            let index = first + offset;
            match result {
                Ok((padded, truncated)) => {
                    out.ok.push(true);
                    out.padded.push(padded);
                    out.truncated.push(truncated);
                }
                Err((kind, message)) => {
                    out.features[index * row..(index + 1) * row].fill(0.0);
                    out.ok.push(false);
                    out.padded.push(false);
                    out.truncated.push(false);
                    out.failures.push(FileFailure {
                        index,
                        path: paths[index].clone(),
                        kind,
                        message,
                    });
                }
            }
        }
        match progress(Step {
            done: first + chunk.len(),
            total: paths.len(),
            loss: None,
        }) {
            Ok(()) => {}
            Err(Error::Interrupted) => {
                out.interrupted = true;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
