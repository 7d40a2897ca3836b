//! Songs of real sound for the synthetic world: a directory of recordings (any format the
//! decoder reads) is cut into songs of `duration` seconds, and each song gets a latent style
//! derived from its own sound, which the listening then follows.
//!
//! The style, our design: from the song's log-Mel spectrogram over its whole length, 53
//! descriptors — for 16 coarse bands the mean level, its spread over time and its spectral
//! flux (mean absolute change frame to frame), the onset envelope's density, its pulse
//! clarity and tempo (the autocorrelation peak between 60 and 180 BPM and its lag), and the
//! overall loudness and its dynamics. They are standardised over the songs and mixed through
//! a fixed random projection and a tanh into the audible three quarters of the style
//! dimensions; the last quarter is drawn at random (what only metadata reveals). So listening
//! depends on timbre, rhythm and texture, in part non-linearly, and a model sees the song
//! only through a 3 s excerpt of it. Genres are k-means clusters of the styles.

use super::{GivenStyles, normal, stream_rng};
use crate::audio::decode;
use crate::audio::features::{FeatureConfig, LogMel};
use crate::data::audio_index::AUDIO_EXTENSIONS;
use crate::ensure;
use crate::error::{Error, Result};
use crate::parallel::{Progress, Step, Threads};
use rand::seq::SliceRandom;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Coarse bands the descriptors summarise (groups of adjacent Mel bands).
const COARSE_BANDS: usize = 16;
/// Descriptors per song: mean, spread and flux per coarse band, three rhythm and two
/// loudness descriptors.
pub const N_DESCRIPTORS: usize = 3 * COARSE_BANDS + 5;
/// A segment quieter than this RMS (about -50 dBFS) is silence, not a song.
const SILENCE_RMS: f32 = 3e-3;
/// Seconds skipped at the start of each recording (fade-ins, count-ins).
const LEAD_IN: f64 = 2.0;
const SALT: u64 = 0x6d75_7372_6563_0003;
const KMEANS_ITERATIONS: usize = 25;

/// Songs cut from recordings, with the style of each.
#[derive(Clone, Debug, Default)]
pub struct RealSongs {
    /// Each song's samples (mono, at the world's sample rate, `duration` seconds).
    pub samples: Vec<Vec<f32>>,
    /// The recording each song was cut from (an index into `recordings`) and where.
    pub recording: Vec<usize>,
    pub offset_seconds: Vec<f64>,
    pub recordings: Vec<PathBuf>,
    /// n x N_DESCRIPTORS, as measured (not standardised).
    pub descriptors: Vec<f32>,
    pub styles: GivenStyles,
    /// Recordings that could not be decoded (path, reason), skipped.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Segments left out as silence.
    pub silent: usize,
}

/// Every audio file under `dir`, recursively, sorted by path (so the world does not depend
/// on the order the file system lists them in).
pub fn find_recordings(dir: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    ensure!(meta.is_dir(), "{} is not a directory of recordings", dir.display());
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let path = entry.map_err(|e| Error::io(&d, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    ensure!(
        !out.is_empty(),
        "no audio files ({AUDIO_EXTENSIONS:?}) under {}",
        dir.display()
    );
    Ok(out)
}

/// Cut the recordings under `dir` into songs of `duration` seconds at `sample_rate` and
/// derive their styles (`style_dim` dimensions, `n_genres` genres). With more segments than
/// `max_songs`, a seeded subset is kept. `progress` counts recordings.
#[allow(clippy::too_many_arguments)]
pub fn cut_recordings(
    dir: &Path,
    sample_rate: u32,
    duration: f64,
    max_songs: usize,
    style_dim: usize,
    n_genres: usize,
    seed: u64,
    threads: &Threads,
    progress: Progress<'_>,
) -> Result<RealSongs> {
    ensure!(
        duration >= 1.0,
        "songs of real sound need at least 1 s each, got {duration}"
    );
    let recordings = find_recordings(dir)?;
    let len = (duration * f64::from(sample_rate)).round() as usize;
    let mut features = FeatureConfig::paper();
    features.sample_rate = sample_rate;
    let log_mel = LogMel::from_config(&features)?;
    let hop_seconds = features.stft.hop_length as f64 / f64::from(sample_rate);

    type Cut = (Vec<Vec<f32>>, Vec<f64>, Vec<Vec<f32>>, usize);
    let mut cuts: Vec<std::result::Result<Cut, String>> = Vec::with_capacity(recordings.len());
    let total = recordings.len();
    const CHUNK: usize = 8;
    for (k, chunk) in recordings.chunks(CHUNK).enumerate() {
        let part: Vec<std::result::Result<Cut, String>> = threads.run(|| {
            chunk
                .par_iter()
                .map(|path| {
                    let loaded = decode::load(path, Some(sample_rate), 0.0, None).map_err(|e| e.to_string())?;
                    let mut songs = (Vec::new(), Vec::new(), Vec::new(), 0usize);
                    let lead = (LEAD_IN * f64::from(sample_rate)) as usize;
                    let mut start = lead;
                    while start + len <= loaded.samples.len() {
                        let segment = &loaded.samples[start..start + len];
                        let rms = (segment.iter().map(|v| v * v).sum::<f32>() / len as f32).sqrt();
                        if rms < SILENCE_RMS {
                            songs.3 += 1;
                        } else {
                            let spec = log_mel.compute(segment).map_err(|e| e.to_string())?;
                            songs.2.push(describe(&spec, log_mel.n_mels(), hop_seconds));
                            songs.0.push(segment.to_vec());
                            songs.1.push(start as f64 / f64::from(sample_rate));
                        }
                        start += len;
                    }
                    Ok(songs)
                })
                .collect()
        });
        cuts.extend(part);
        progress(Step {
            done: (k * CHUNK + chunk.len()).min(total),
            total,
            loss: None,
        })?;
    }

    let mut out = RealSongs {
        recordings,
        ..Default::default()
    };
    let mut descriptors: Vec<Vec<f32>> = Vec::new();
    for (r, cut) in cuts.into_iter().enumerate() {
        match cut {
            Ok((samples, offsets, desc, silent)) => {
                out.recording.extend(std::iter::repeat_n(r, samples.len()));
                out.samples.extend(samples);
                out.offset_seconds.extend(offsets);
                descriptors.extend(desc);
                out.silent += silent;
            }
            Err(reason) => out.unreadable.push((out.recordings[r].clone(), reason)),
        }
    }
    ensure!(
        out.samples.len() >= 2 * n_genres.max(1),
        "{} recordings under {} give only {} songs of {duration} s; need at least {}",
        out.recordings.len(),
        dir.display(),
        out.samples.len(),
        2 * n_genres.max(1)
    );
    if out.samples.len() > max_songs {
        // A seeded subset, kept in recording order.
        let mut rng = stream_rng(seed ^ SALT, 1);
        let mut keep: Vec<usize> = (0..out.samples.len()).collect();
        keep.shuffle(&mut rng);
        keep.truncate(max_songs);
        keep.sort_unstable();
        let pick = |v: &mut Vec<Vec<f32>>| {
            let mut old = std::mem::take(v);
            *v = keep.iter().map(|&i| std::mem::take(&mut old[i])).collect();
        };
        pick(&mut out.samples);
        pick(&mut descriptors);
        out.recording = keep.iter().map(|&i| out.recording[i]).collect();
        out.offset_seconds = keep.iter().map(|&i| out.offset_seconds[i]).collect();
    }
    out.descriptors = descriptors.concat();
    out.styles = styles(&out.descriptors, out.samples.len(), style_dim, n_genres, seed);
    Ok(out)
}

/// The descriptors of one song's log-Mel spectrogram (n_mels x frames, dB).
pub fn describe(spec: &[f32], n_mels: usize, hop_seconds: f64) -> Vec<f32> {
    let frames = spec.len() / n_mels;
    let group = n_mels.div_ceil(COARSE_BANDS);
    // Coarse bands over time.
    let mut coarse = vec![0f32; COARSE_BANDS * frames];
    for b in 0..COARSE_BANDS {
        let bands = (b * group).min(n_mels)..((b + 1) * group).min(n_mels);
        let width = bands.len().max(1) as f32;
        for m in bands {
            for t in 0..frames {
                coarse[b * frames + t] += spec[m * frames + t] / width;
            }
        }
    }
    let mut out = Vec::with_capacity(N_DESCRIPTORS);
    let (mut means, mut spreads, mut fluxes) = (vec![], vec![], vec![]);
    for b in 0..COARSE_BANDS {
        let row = &coarse[b * frames..(b + 1) * frames];
        let mean = row.iter().sum::<f32>() / frames as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / frames as f32;
        let flux = row.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f32>() / (frames - 1).max(1) as f32;
        means.push(mean);
        spreads.push(var.sqrt());
        fluxes.push(flux);
    }
    out.extend(means);
    out.extend(spreads);
    out.extend(fluxes);
    // Onset envelope: summed positive change over the full-resolution bands.
    let onset: Vec<f32> = (1..frames)
        .map(|t| {
            (0..n_mels)
                .map(|m| (spec[m * frames + t] - spec[m * frames + t - 1]).max(0.0))
                .sum()
        })
        .collect();
    let mean_onset = onset.iter().sum::<f32>() / onset.len().max(1) as f32;
    let centred: Vec<f32> = onset.iter().map(|v| v - mean_onset).collect();
    let energy = centred.iter().map(|v| v * v).sum::<f32>().max(1e-12);
    // Lags of 60-180 BPM: a beat every 1/3 s to every 1 s.
    let (lo, hi) = ((1.0 / 3.0 / hop_seconds) as usize, (1.0 / hop_seconds).ceil() as usize);
    let (mut best, mut best_lag) = (0f32, lo);
    for lag in lo.max(1)..=hi.min(centred.len().saturating_sub(1)) {
        let r = centred.iter().zip(&centred[lag..]).map(|(a, b)| a * b).sum::<f32>() / energy;
        if r > best {
            best = r;
            best_lag = lag;
        }
    }
    out.push(mean_onset);
    out.push(best);
    out.push(best_lag as f32 * hop_seconds as f32);
    let frame_level: Vec<f32> = (0..frames)
        .map(|t| (0..n_mels).map(|m| spec[m * frames + t]).sum::<f32>() / n_mels as f32)
        .collect();
    let level = frame_level.iter().sum::<f32>() / frames as f32;
    let dynamics = (frame_level.iter().map(|v| (v - level) * (v - level)).sum::<f32>() / frames as f32).sqrt();
    out.push(level);
    out.push(dynamics);
    out
}

/// Styles from descriptors (n x N_DESCRIPTORS): standardise, project, squash; then genres
/// by k-means and a common scale that puts the genre centres near unit length.
fn styles(descriptors: &[f32], n: usize, d: usize, n_genres: usize, seed: u64) -> GivenStyles {
    let p = N_DESCRIPTORS;
    let mut z = descriptors.to_vec();
    for k in 0..p {
        let column = || (0..n).map(|i| f64::from(descriptors[i * p + k]));
        let mean = column().sum::<f64>() / n as f64;
        let sd = (column().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64).sqrt();
        for i in 0..n {
            z[i * p + k] = if sd > 1e-9 {
                ((f64::from(descriptors[i * p + k]) - mean) / sd) as f32
            } else {
                0.0
            };
        }
    }
    let mut rng = stream_rng(seed ^ SALT, 2);
    let audible = (3 * d).div_ceil(4).min(d);
    let projection: Vec<f32> = (0..audible * p)
        .map(|_| (normal(&mut rng) / (p as f64).sqrt()) as f32)
        .collect();
    let mut style = vec![0f32; n * d];
    for i in 0..n {
        let zi = &z[i * p..(i + 1) * p];
        for k in 0..audible {
            let x: f32 = projection[k * p..(k + 1) * p].iter().zip(zi).map(|(a, b)| a * b).sum();
            style[i * d + k] = (1.5 * x).tanh();
        }
        for k in audible..d {
            style[i * d + k] = normal(&mut rng) as f32;
        }
    }
    // Each dimension to unit spread, so the hidden quarter weighs as much as the rest.
    for k in 0..d {
        let mean = (0..n).map(|i| style[i * d + k]).sum::<f32>() / n as f32;
        let sd = ((0..n).map(|i| (style[i * d + k] - mean).powi(2)).sum::<f32>() / n as f32).sqrt();
        for i in 0..n {
            style[i * d + k] = (style[i * d + k] - mean) / sd.max(1e-6);
        }
    }
    let (song_genre, mut centre) = kmeans(&style, n, d, n_genres, &mut rng);
    let mean_norm = (0..n_genres)
        .map(|g| centre[g * d..(g + 1) * d].iter().map(|v| v * v).sum::<f32>().sqrt())
        .sum::<f32>()
        / n_genres as f32;
    let scale = 1.0 / mean_norm.max(1e-6);
    style.iter_mut().for_each(|v| *v *= scale);
    centre.iter_mut().for_each(|v| *v *= scale);
    GivenStyles {
        song_genre,
        song_style: style,
        genre_centre: centre,
    }
}

/// Lloyd's k-means from k distinct random songs; an emptied cluster restarts at the song
/// farthest from its centre, so every genre keeps songs.
fn kmeans(x: &[f32], n: usize, d: usize, k: usize, rng: &mut rand_chacha::ChaCha8Rng) -> (Vec<u32>, Vec<f32>) {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let mut centre: Vec<f32> = order[..k]
        .iter()
        .flat_map(|&i| x[i * d..(i + 1) * d].to_vec())
        .collect();
    let mut label = vec![0u32; n];
    let dist = |i: usize, c: &[f32]| -> f32 { x[i * d..(i + 1) * d].iter().zip(c).map(|(a, b)| (a - b).powi(2)).sum() };
    for _ in 0..KMEANS_ITERATIONS {
        for (i, l) in label.iter_mut().enumerate() {
            *l = (0..k)
                .min_by(|&a, &b| dist(i, &centre[a * d..(a + 1) * d]).total_cmp(&dist(i, &centre[b * d..(b + 1) * d])))
                .unwrap_or(0) as u32;
        }
        let mut sum = vec![0f32; k * d];
        let mut count = vec![0usize; k];
        for (i, &l) in label.iter().enumerate() {
            count[l as usize] += 1;
            for j in 0..d {
                sum[l as usize * d + j] += x[i * d + j];
            }
        }
        for g in 0..k {
            if count[g] == 0 {
                let far = (0..n)
                    .max_by(|&a, &b| {
                        let da = dist(a, &centre[label[a] as usize * d..(label[a] as usize + 1) * d]);
                        let db = dist(b, &centre[label[b] as usize * d..(label[b] as usize + 1) * d]);
                        da.total_cmp(&db)
                    })
                    .unwrap_or(0);
                centre[g * d..(g + 1) * d].copy_from_slice(&x[far * d..(far + 1) * d]);
                label[far] = g as u32;
            } else {
                for j in 0..d {
                    centre[g * d + j] = sum[g * d + j] / count[g] as f32;
                }
            }
        }
    }
    // A cluster emptied in the last round takes the song farthest from its centre among
    // those of clusters that can spare one.
    for g in 0..k {
        let mut count = vec![0usize; k];
        label.iter().for_each(|&l| count[l as usize] += 1);
        if count[g] > 0 {
            continue;
        }
        let far = (0..n).filter(|&i| count[label[i] as usize] > 1).max_by(|&a, &b| {
            let da = dist(a, &centre[label[a] as usize * d..(label[a] as usize + 1) * d]);
            let db = dist(b, &centre[label[b] as usize * d..(label[b] as usize + 1) * d]);
            da.total_cmp(&db)
        });
        if let Some(far) = far {
            label[far] = g as u32;
            centre[g * d..(g + 1) * d].copy_from_slice(&x[far * d..(far + 1) * d]);
        }
    }
    (label, centre)
}
