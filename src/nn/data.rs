//! Training and prediction inputs: validation of shapes and values, per-band spectrogram
//! standardisation fitted on the training songs, and assembly of mini-batches as tensors.

use super::config::{ModelKind, NetConfig};
use super::metadata::EncodedMetadata;
use super::model::Batch;
use super::wpe::SongMetric;
use crate::ensure;
use crate::error::Result;
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Borrowed inputs for `n` songs; each kind reads only what it needs.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub n: usize,
    /// n x n_excerpts x n_mels x n_frames log-Mel spectrograms, row-major: several excerpts
    /// of each song (training draws one per epoch, prediction averages over all).
    pub spectrograms: Option<&'a [f32]>,
    pub n_excerpts: usize,
    pub metadata: Option<&'a EncodedMetadata>,
    /// n x n_factors WMF song vectors (training and evaluation only).
    pub targets: Option<&'a [f32]>,
    /// Each song's WPE metric (training with `Objective::Wpe` only).
    pub metric: Option<&'a SongMetric>,
    /// Each song's statistics for the linear part (`wide::song_stats`, n x its width),
    /// computed once before training; `None`: computed per batch.
    pub stats: Option<&'a [f32]>,
}

impl Inputs<'_> {
    /// Check that everything `config.kind` reads is present, of the right size and finite.
    pub fn validate(&self, config: &NetConfig, need_targets: bool) -> Result<()> {
        ensure!(self.n > 0, "no songs given");
        if config.kind.uses_audio() {
            let spec = self.spectrograms.ok_or_else(|| {
                crate::Error::invalid(format!("model kind {:?} needs spectrograms", config.kind.name()))
            })?;
            ensure!(self.n_excerpts > 0, "each song needs at least one excerpt");
            let per_song = self.n_excerpts * config.n_mels * config.n_frames;
            ensure!(
                spec.len() == self.n * per_song,
                "spectrograms must be ({}, {}, {}, {}) to match the model; got {} values",
                self.n,
                self.n_excerpts,
                config.n_mels,
                config.n_frames,
                spec.len()
            );
            if let Some(bad) = spec.par_chunks(per_song).position_first(|song| !all_finite(song)) {
                return Err(crate::Error::invalid(format!(
                    "spectrogram of song {bad} has a non-finite value (NaN or inf)"
                )));
            }
        }
        if config.kind.uses_metadata() {
            let meta = self
                .metadata
                .ok_or_else(|| crate::Error::invalid(format!("model kind {:?} needs metadata", config.kind.name())))?;
            ensure!(
                meta.len() == self.n,
                "metadata has {} songs, spectrograms/targets have {}",
                meta.len(),
                self.n
            );
        }
        if need_targets {
            let targets = self
                .targets
                .ok_or_else(|| crate::Error::invalid("targets are required"))?;
            ensure!(
                targets.len() == self.n * config.n_factors,
                "targets must be ({}, {}); got {} values",
                self.n,
                config.n_factors,
                targets.len()
            );
            if let Some(bad) = targets.iter().position(|v| !v.is_finite()) {
                return Err(crate::Error::invalid(format!(
                    "target vector of song {} has a non-finite value",
                    bad / config.n_factors
                )));
            }
        }
        Ok(())
    }
}

/// Whether every value is finite, as a sum that vectorises: v * 0 is 0 for finite values and
/// NaN for NaN or inf (an element-wise test with early exit ran at a quarter of a predict).
fn all_finite(values: &[f32]) -> bool {
    values.iter().fold(0.0f32, |acc, &v| acc + v * 0.0) == 0.0
}

/// Per-Mel-band affine map to zero mean and unit variance, fitted on the training songs
/// (dB values sit around -80..0, which would swamp the first layer otherwise).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    /// The training targets' standard deviation: the network learns targets divided by it.
    /// WMF vectors are often tiny (0.01 spread at small regularisation), far below a fresh
    /// network's output scale; unscaled, the models learned to predict little more than the
    /// mean (measured on the synthetic world: cold-start recall@10 0.11-0.14 unscaled, 0.26-0.38
    /// scaled).
    #[serde(default = "unit")]
    pub target_scale: f32,
    /// The tag task's loss scale: the scaled training targets' mean variance over the tag
    /// strengths' (so `tag_task` 1 weighs the two losses alike at the mean predictor).
    #[serde(default = "unit")]
    pub tag_scale: f32,
}

fn unit() -> f32 {
    1.0
}

/// Standard deviation of the `rows` of `targets` (n x d) over all their values; 1 if they
/// are constant.
pub fn target_scale(targets: &[f32], d: usize, rows: &[usize]) -> f32 {
    let n = (rows.len() * d).max(1) as f64;
    let values = || {
        rows.iter()
            .flat_map(|&r| &targets[r * d..(r + 1) * d])
            .map(|&v| v as f64)
    };
    let mean = values().sum::<f64>() / n;
    let var = values().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    if var > 1e-24 { var.sqrt() as f32 } else { 1.0 }
}

impl Standardizer {
    pub fn identity(n_mels: usize) -> Self {
        Standardizer {
            mean: vec![0.0; n_mels],
            scale: vec![1.0; n_mels],
            target_scale: 1.0,
            tag_scale: 1.0,
        }
    }

    /// Fitted on every excerpt of the songs `rows` of `spectrograms` (n x n_excerpts x
    /// n_mels x n_frames).
    pub fn fit(spectrograms: &[f32], n_mels: usize, n_frames: usize, n_excerpts: usize, rows: &[usize]) -> Self {
        let per_song = n_excerpts * n_mels * n_frames;
        // Per-song sums in parallel, then added in song order: deterministic whatever the
        // scheduling.
        let partials: Vec<(Vec<f64>, Vec<f64>)> = rows
            .par_iter()
            .map(|&r| {
                let song = &spectrograms[r * per_song..(r + 1) * per_song];
                let mut sum = vec![0.0f64; n_mels];
                let mut sum_sq = vec![0.0f64; n_mels];
                for (k, row) in song.chunks_exact(n_frames).enumerate() {
                    let band = k % n_mels;
                    for &v in row {
                        sum[band] += v as f64;
                        sum_sq[band] += (v as f64) * (v as f64);
                    }
                }
                (sum, sum_sq)
            })
            .collect();
        let mut sum = vec![0.0f64; n_mels];
        let mut sum_sq = vec![0.0f64; n_mels];
        for (s, q) in &partials {
            sum.iter_mut().zip(s).for_each(|(a, v)| *a += v);
            sum_sq.iter_mut().zip(q).for_each(|(a, v)| *a += v);
        }
        let count = (rows.len() * n_excerpts * n_frames).max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
        let scale = sum
            .iter()
            .zip(&sum_sq)
            .map(|(s, q)| {
                let var = (q / count - (s / count).powi(2)).max(0.0);
                // A constant band (e.g. silence floor) carries nothing; leave it unscaled.
                if var > 1e-12 { (1.0 / var.sqrt()) as f32 } else { 1.0 }
            })
            .collect();
        Standardizer {
            mean,
            scale,
            target_scale: 1.0,
            tag_scale: 1.0,
        }
    }
}

/// Which excerpt of each song a batch shows the deep audio branch.
#[derive(Clone, Copy)]
pub enum Excerpts<'a> {
    /// The same excerpt of every song.
    All(usize),
    /// One per row of the batch.
    PerRow(&'a [usize]),
}

/// The stretch of Mel bands and of frames masked in one training excerpt (see
/// `TrainConfig::freq_mask`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mask {
    pub bands: (usize, usize),
    pub frames: (usize, usize),
}

impl Excerpts<'_> {
    fn of(&self, i: usize) -> usize {
        match self {
            Excerpts::All(e) => *e,
            Excerpts::PerRow(v) => v[i],
        }
    }
}

/// Assemble the rows `rows` of `inputs` as one batch, with `excerpts` the excerpt of each
/// song the audio branch sees. The linear part's statistics cover all of a song's excerpts.
pub fn make_batch(
    config: &NetConfig,
    inputs: &Inputs,
    standardizer: &Standardizer,
    rows: &[usize],
    excerpts: Excerpts,
    masks: Option<&[Mask]>,
) -> Result<Batch> {
    let b = rows.len();
    let dev = &Device::Cpu;
    let mut batch = Batch::default();
    if config.wide_reads_audio()
        && let Some(spec) = inputs.spectrograms
    {
        let width = config.stats_per_band() * config.n_mels;
        let stats: Vec<f32> = match inputs.stats {
            Some(table) => rows
                .iter()
                .flat_map(|&r| &table[r * width..(r + 1) * width])
                .copied()
                .collect(),
            None => super::wide::song_stats(
                spec,
                standardizer,
                config.n_mels,
                config.n_frames,
                inputs.n_excerpts,
                config.wide_flux,
                rows,
            )
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        };
        batch.stats = Some(Tensor::from_vec(
            stats,
            (b, config.stats_per_band() * config.n_mels),
            dev,
        )?);
    }
    if config.kind.uses_audio()
        && config.has_deep()
        && let Some(spec) = inputs.spectrograms
    {
        let (m, t, e) = (config.n_mels, config.n_frames, inputs.n_excerpts);
        // Transposed to time-major while standardising: the audio branch reads frames as rows.
        let mut audio = vec![0.0f32; b * m * t];
        audio
            .par_chunks_mut(m * t)
            .zip(rows)
            .enumerate()
            .for_each(|(i, (out, &r))| {
                let clip = r * e + excerpts.of(i).min(e - 1);
                let song = &spec[clip * m * t..(clip + 1) * m * t];
                // In 16 x 16 tiles: a plain transpose writes every value to a different cache line.
                const TILE: usize = 16;
                for b0 in (0..m).step_by(TILE) {
                    for f0 in (0..t).step_by(TILE) {
                        for band in b0..(b0 + TILE).min(m) {
                            let (mu, s) = (standardizer.mean[band], standardizer.scale[band]);
                            for frame in f0..(f0 + TILE).min(t) {
                                out[frame * m + band] = (song[band * t + frame] - mu) * s;
                            }
                        }
                    }
                }
                if let Some(mask) = masks.map(|all| all[i]) {
                    let (b0, nb) = mask.bands;
                    let (f0, nf) = mask.frames;
                    for frame in 0..t {
                        let row = &mut out[frame * m..(frame + 1) * m];
                        if frame >= f0 && frame < f0 + nf {
                            row.fill(0.0);
                        } else {
                            row[b0.min(m)..(b0 + nb).min(m)].fill(0.0);
                        }
                    }
                }
            });
        if config.kind == ModelKind::Autoencoder {
            let segments = config.reconstruction_segments;
            let target = segment_means(&audio, b, m, t, segments);
            batch.reconstruction = Some(Tensor::from_vec(target, (b, m * segments), dev)?);
        }
        batch.audio = Some(Tensor::from_vec(audio, (b, t, m), dev)?);
    }
    if config.has_tag_task()
        && inputs.targets.is_some()
        && let Some(meta) = inputs.metadata
    {
        let weight = f64::from(config.tag_task) * f64::from(standardizer.tag_scale);
        let tags = dense_tags(meta, rows, config.n_tags);
        batch.tag_targets = Some((Tensor::from_vec(tags, (b, config.n_tags), dev)?, weight));
    }
    if config.kind.uses_metadata()
        && let Some(meta) = inputs.metadata
    {
        let tags = dense_tags(meta, rows, config.n_tags);
        let clamp = |id: u32, n: usize| id.min(n as u32 - 1);
        let artists: Vec<u32> = rows.iter().map(|&r| clamp(meta.artists[r], config.n_artists)).collect();
        let years: Vec<u32> = rows.iter().map(|&r| clamp(meta.years[r], config.n_years)).collect();
        batch.tags = Some(Tensor::from_vec(tags, (b, config.n_tags), dev)?);
        batch.artists = Some(Tensor::from_vec(artists, b, dev)?);
        batch.years = Some(Tensor::from_vec(years, b, dev)?);
    }
    if let Some(targets) = inputs.targets {
        let d = config.n_factors;
        let mut out = Vec::with_capacity(b * d);
        for &r in rows {
            out.extend(
                targets[r * d..(r + 1) * d]
                    .iter()
                    .map(|v| v / standardizer.target_scale),
            );
        }
        batch.targets = Some(Tensor::from_vec(out, (b, d), dev)?);
        if let Some(metric) = inputs.metric {
            batch.metric = Some(metric.batch(rows)?);
        }
    }
    Ok(batch)
}

/// The rows' tag weights as a dense (rows, n_tags) matrix, row-major.
pub fn dense_tags(meta: &EncodedMetadata, rows: &[usize], n_tags: usize) -> Vec<f32> {
    let mut tags = vec![0.0f32; rows.len() * n_tags];
    for (i, &r) in rows.iter().enumerate() {
        for k in meta.tag_indptr[r]..meta.tag_indptr[r + 1] {
            let id = (meta.tag_ids[k] as usize).min(n_tags - 1);
            tags[i * n_tags + id] += meta.tag_weights[k];
        }
    }
    tags
}

/// Each band's mean over `segments` equal stretches of time (from time-major songs): what
/// the autoencoder rebuilds.
fn segment_means(audio: &[f32], b: usize, m: usize, t: usize, segments: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; b * m * segments];
    for (song, dst) in audio.chunks_exact(m * t).zip(out.chunks_exact_mut(m * segments)) {
        for s in 0..segments {
            let (lo, hi) = (s * t / segments, (s + 1) * t / segments);
            for frame in &song[lo * m..hi * m].chunks_exact(m).collect::<Vec<_>>() {
                for band in 0..m {
                    dst[band * segments + s] += frame[band] / (hi - lo) as f32;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::all_finite;

    #[test]
    fn finite_check_catches_nan_and_both_infinities() {
        assert!(all_finite(&[0.0, -80.0, 1e30, f32::MIN, f32::MAX]));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut v = vec![1.0f32; 1000];
            v[617] = bad;
            assert!(!all_finite(&v), "{bad}");
        }
    }
}
