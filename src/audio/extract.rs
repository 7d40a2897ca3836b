//! Many files at once: decode, clip, resample and log-Mel in parallel, one output row per
//! input file. A bad file (missing, unreadable, corrupt, silent, too short) is reported with
//! its reason and leaves a zero row; it never stops the batch.

use super::clip::{Span, clip_span, path_key};
use super::decode::{AudioFile, decode};
use super::features::{FeatureConfig, LogMel, LogMelScratch};
use super::resample::resample;
use crate::error::{Error, Result};
use crate::parallel::{Progress, Step, Threads, keep_going};
use rayon::prelude::*;
use serde::Serialize;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// Files handed to the pool between two progress reports (and clips per cache shard).
pub(crate) const CHUNK: usize = 64;
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

pub(crate) type Failure = (FailureKind, String);

fn classify(e: Error) -> Failure {
    let kind = match e {
        Error::NotFound(_) => FailureKind::Missing,
        Error::PermissionDenied(_) | Error::Io { .. } => FailureKind::Unreadable,
        Error::InvalidInput(_) => FailureKind::TooShort,
        _ => FailureKind::Corrupt,
    };
    (kind, e.to_string())
}

/// The clip of one file at the configured rate, and whether it was padded / truncated.
///
/// When the header's length is verified (WAV, FLAC, Ogg, MP3 with a Xing/LAME header), the
/// excerpt is chosen from it and only its span (plus the resampler's margins) is decoded: the
/// same native samples a full decode would give, so the same features. Anything unusual (no
/// or estimated length, a cut-off or damaged file, a format that cannot seek) falls back to
/// decoding the whole file.
fn clip_of(path: &Path, cfg: &FeatureConfig) -> std::result::Result<Excerpt, Failure> {
    match clip_from_span(path, cfg)? {
        Some(excerpt) => Ok(excerpt),
        None => clip_from_full_decode(path, cfg),
    }
}

/// The clip, its padding and truncation flags.
type Excerpt = (Vec<f32>, bool, bool);

/// The fast path of [`clip_of`]; `None` when the file needs the full decode.
fn clip_from_span(path: &Path, cfg: &FeatureConfig) -> std::result::Result<Option<Excerpt>, Failure> {
    let mut file = AudioFile::open(path).map_err(classify)?;
    let native = file.sample_rate();
    let Some(len) = file.verified_frames().and_then(|n| usize::try_from(n).ok()) else {
        return Ok(None);
    };
    let (span, lo, hi) = plan(len, native, path, cfg)?;
    match file.decode_span(lo as u64, hi as u64) {
        Ok(Some(decoded)) => {
            let samples = finish_clip(&decoded.samples, span.start - lo, native, path, cfg)?;
            Ok(Some((samples, span.start + span.len > len, false)))
        }
        _ => Ok(None),
    }
}

fn clip_from_full_decode(path: &Path, cfg: &FeatureConfig) -> std::result::Result<Excerpt, Failure> {
    let decoded = decode(path, 0.0, None).map_err(classify)?;
    let len = decoded.samples.len();
    let native = decoded.sample_rate;
    let (span, lo, hi) = plan(len, native, path, cfg)?;
    let samples = finish_clip(&decoded.samples[lo..hi], span.start - lo, native, path, cfg)?;
    Ok((samples, span.start + span.len > len, decoded.truncated))
}

/// The excerpt of a source of `len` native-rate samples, and the native samples `[lo, hi)`
/// needed to make it: the excerpt plus margins for the resampler's edges.
fn plan(
    len: usize,
    native: u32,
    path: &Path,
    cfg: &FeatureConfig,
) -> std::result::Result<(Span, usize, usize), Failure> {
    let seconds = len as f64 / native as f64;
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
    let span = clip_span(len, native, cfg.clip_seconds, cfg.position, path_key(path)).map_err(classify)?;
    if native == cfg.sample_rate {
        return Ok((span, span.start, (span.start + span.len).min(len)));
    }
    // The lead-in must be a whole number of samples at both rates, or the excerpt would start
    // a fraction of a sample off: a multiple of native / gcd(native, target).
    let step = (native / gcd(native, cfg.sample_rate)) as usize;
    let lead = (MARGIN.div_ceil(step) * step).min(span.start / step * step);
    let used = span.len.min(len.saturating_sub(span.start));
    Ok((span, span.start - lead, (span.start + used + MARGIN).min(len)))
}

/// The clip at the configured rate from the native samples `region` of [`plan`], whose
/// first `lead` samples come before the excerpt; zero-padded to the clip's length.
fn finish_clip(
    region: &[f32],
    lead: usize,
    native: u32,
    path: &Path,
    cfg: &FeatureConfig,
) -> std::result::Result<Vec<f32>, Failure> {
    let want = cfg.clip_samples();
    let mut samples = if native == cfg.sample_rate {
        region[lead..].to_vec()
    } else {
        let resampled = resample(region, native, cfg.sample_rate).map_err(classify)?;
        let step = (native / gcd(native, cfg.sample_rate)) as usize;
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
    Ok(samples)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// What happened to one file of a chunk: its (padded, truncated) flags, or why it failed.
pub(crate) type Outcome = std::result::Result<(bool, bool), Failure>;

/// Features of `paths` into `rows` (one row of n_mels x frames per path) on `threads`; the
/// row of a file that failed is zeroed. The one place batch work is spread over threads, for
/// [`extract`] and the on-disk cache.
pub(crate) fn extract_chunk<P: AsRef<Path> + Sync>(
    paths: &[P],
    cfg: &FeatureConfig,
    transform: &LogMel,
    threads: &Threads,
    rows: &mut [f32],
) -> Vec<Outcome> {
    let row = rows.len() / paths.len().max(1);
    threads.run(|| {
        paths
            .par_iter()
            .zip(rows.par_chunks_mut(row.max(1)))
            .map(|(path, dst)| {
                let result = clip_of(path.as_ref(), cfg).and_then(|(clip, padded, truncated)| {
                    SCRATCH
                        .with(|s| transform.compute_into(&clip, dst, &mut s.borrow_mut()))
                        .map_err(|e| (FailureKind::Corrupt, e.to_string()))?;
                    Ok((padded, truncated))
                });
                if result.is_err() {
                    dst.fill(0.0);
                }
                result
            })
            .collect()
    })
}

/// The transform of `cfg` and the (n_mels, frames) of one clip's features.
pub(crate) fn plan_transform(cfg: &FeatureConfig) -> Result<(LogMel, usize, usize)> {
    let transform = LogMel::from_config(cfg)?;
    let (n_mels, frames) = (transform.n_mels(), transform.n_frames(cfg.clip_samples()));
    Ok((transform, n_mels, frames))
}

/// Extract the log-Mel features of every file in `paths`.
pub fn extract(paths: &[PathBuf], cfg: &FeatureConfig, threads: &Threads, progress: Progress<'_>) -> Result<Extracted> {
    let (transform, n_mels, frames) = plan_transform(cfg)?;
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
        for (offset, result) in extract_chunk(chunk, cfg, &transform, threads, rows)
            .into_iter()
            .enumerate()
        {
            let index = first + offset;
            out.ok.push(result.is_ok());
            let (padded, truncated) = match result {
                Ok(flags) => flags,
                Err((kind, message)) => {
                    out.failures.push(FileFailure {
                        index,
                        path: paths[index].clone(),
                        kind,
                        message,
                    });
                    (false, false)
                }
            };
            out.padded.push(padded);
            out.truncated.push(truncated);
        }
        let step = Step {
            done: first + chunk.len(),
            total: paths.len(),
            loss: None,
        };
        if !keep_going(&mut *progress, step)? {
            out.interrupted = true;
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::clip::ClipPosition;
    use crate::audio::test_files::{Scratch, fixture, wav_bytes};

    /// `seconds` of a chirp plus a little noise, interleaved over `channels`.
    fn music(rate: u32, channels: u16, seconds: f64) -> Vec<f32> {
        let n = (seconds * f64::from(rate)) as usize;
        (0..n)
            .flat_map(|i| {
                let t = i as f64 / f64::from(rate);
                let v = (0.3 * (2.0 * std::f64::consts::PI * (200.0 + 150.0 * t) * t).sin()) as f32;
                let noise = ((i.wrapping_mul(2_654_435_761) >> 7) % 1000) as f32 / 1e5;
                (0..channels).map(move |c| v * (1.0 - 0.2 * f32::from(c)) + noise)
            })
            .collect()
    }

    fn configs() -> Vec<FeatureConfig> {
        let mut out = Vec::new();
        for base in [FeatureConfig::paper(), FeatureConfig::common()] {
            for position in [
                ClipPosition::Random { seed: 7 },
                ClipPosition::Centre,
                ClipPosition::Offset { seconds: 0.0 },
                ClipPosition::Offset { seconds: 4.2 },
                ClipPosition::Offset { seconds: 8.5 },
                ClipPosition::Spread { index: 2, count: 3 },
            ] {
                out.push(FeatureConfig {
                    position,
                    ..base.clone()
                });
            }
        }
        out
    }

    #[test]
    fn decoding_only_the_span_gives_the_full_decode_clip() {
        let scratch = Scratch::new("extract-span");
        let files = [
            scratch.write("stereo44k.wav", &wav_bytes(44100, 2, &music(44100, 2, 10.0), false)),
            scratch.write("mono8k.wav", &wav_bytes(8000, 1, &music(8000, 1, 10.0), true)),
            scratch.write("mono22k.wav", &wav_bytes(22050, 1, &music(22050, 1, 10.0), false)),
        ];
        for cfg in configs() {
            for path in &files {
                let fast = clip_from_span(path, &cfg).unwrap();
                let fast = fast.unwrap_or_else(|| panic!("{}: header length not used", path.display()));
                let full = clip_from_full_decode(path, &cfg).unwrap();
                // Bit for bit: the same native samples reach the same resampler.
                assert_eq!(
                    fast,
                    full,
                    "{} {:?} at {} Hz",
                    path.display(),
                    cfg.position,
                    cfg.sample_rate
                );
                assert_eq!(clip_of(path, &cfg).unwrap(), full);
            }
        }
        // The offset is checked against the header's length as it was against the decoded one.
        let beyond = FeatureConfig {
            position: ClipPosition::Offset { seconds: 10.5 },
            ..FeatureConfig::paper()
        };
        let (kind, message) = clip_of(&files[0], &beyond).unwrap_err();
        assert_eq!(kind, FailureKind::TooShort);
        assert!(message.contains("beyond the end"), "{message}");
    }

    #[test]
    fn compressed_formats_take_the_span_path_too() {
        // The 1 s fixtures, a 0.5 s clip: lossless formats match exactly, lossy ones within
        // what a decoder restarted after a seek differs by.
        let cfg = FeatureConfig {
            clip_seconds: 0.5,
            min_seconds: 0.1,
            position: ClipPosition::Offset { seconds: 0.3 },
            ..FeatureConfig::common()
        };
        for (name, tolerance) in [
            ("tone.wav", 0.0),
            ("tone.flac", 0.0),
            ("tone.mp3", 1e-4),
            ("tone.ogg", 1e-4),
        ] {
            let path = fixture(name);
            let (fast, padded, truncated) = clip_from_span(&path, &cfg)
                .unwrap()
                .unwrap_or_else(|| panic!("{name}: header length not used"));
            let (full, ..) = clip_from_full_decode(&path, &cfg).unwrap();
            assert!(!padded && !truncated, "{name}");
            let diff = fast.iter().zip(&full).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(diff <= tolerance, "{name}: differs by {diff}");
        }
    }

    #[test]
    fn damaged_files_fall_back_to_the_full_decode() {
        let scratch = Scratch::new("extract-fallback");
        let bytes = wav_bytes(8000, 1, &music(8000, 1, 5.0), false);
        // The header promises 5 s; 3 s are there.
        let cut = scratch.write("cut.wav", &bytes[..44 + 2 * 24_000]);
        let cfg = FeatureConfig {
            position: ClipPosition::Centre,
            ..FeatureConfig::paper()
        };
        assert_eq!(clip_from_span(&cut, &cfg).unwrap(), None);
        let (clip, padded, truncated) = clip_of(&cut, &cfg).unwrap();
        assert!(truncated && !padded);
        assert_eq!((clip, padded, truncated), clip_from_full_decode(&cut, &cfg).unwrap());
        // truncated.mp3's header promises 1 s; about 0.45 s decodes.
        let short = FeatureConfig {
            min_seconds: 0.1,
            ..cfg.clone()
        };
        let (_, padded, truncated) = clip_of(&fixture("truncated.mp3"), &short).unwrap();
        assert!(padded && truncated);
        assert_eq!(
            clip_of(&fixture("not_audio.mp3"), &cfg).unwrap_err().0,
            FailureKind::Corrupt
        );
        assert_eq!(
            clip_of(&scratch.path("missing.wav"), &cfg).unwrap_err().0,
            FailureKind::Missing
        );
    }
}
