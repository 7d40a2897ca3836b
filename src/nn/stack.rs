//! Late fusion by stacking (`NetConfig::stacked`): the fusion model's audio network (ridge on
//! the audio statistics plus the deep audio branch learning its residual) is trained first,
//! a ridge model is fitted beside it (on the metadata and, with `stacked_ridge_audio`, the
//! audio statistics and their random features too: the `ridge` kind's model), and the two
//! are combined as `a * audio + m * ridge + c`, with the weights `a`, `m` and the
//! per-dimension intercept `c` fitted by least squares on the validation songs (the songs
//! neither was fitted on).
//!
//! The combination is folded into the network's own parameters: the head is scaled by `a`,
//! each linear weight is `a` times the audio network's plus `m` times the ridge's (the
//! random features of both share one projection, drawn from the same seed over the same
//! standardised statistics), and the biases are summed. The fitted model is then an
//! ordinary fusion network, so prediction, saving and loading need nothing of their own.

use super::config::{ModelKind, NetConfig};
use super::data::{Inputs, Standardizer};
use super::model::Network;
use super::train::predict_scaled;
use super::wide::{self, WideShape, WideWeights};
use crate::ensure;
use crate::error::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// Inference chunk of the validation predictions.
const BATCH: usize = 256;

/// How the audio network and the stacked ridge were combined (its fields keep the names
/// of the metadata-only design: `metadata_*` is the stacked ridge's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StackingReport {
    /// `a` and `m`: the weights of the audio network's and the stacked ridge's predictions.
    pub audio_weight: f64,
    pub metadata_weight: f64,
    /// `c`, in the units of the scaled targets (the network's).
    pub intercept: Vec<f64>,
    /// The stacked ridge's metadata penalty (chosen on the validation songs).
    pub lambda_metadata: f64,
    /// Validation MSE (scaled targets) of the audio network alone, of the metadata ridge
    /// alone and of the combination; None without validation songs, when the two are simply
    /// averaged.
    pub validation_mse_audio: Option<f64>,
    pub validation_mse_metadata: Option<f64>,
    pub validation_mse: Option<f64>,
}

/// The linear part of `c` restricted to audio statistics and/or metadata.
pub fn wide_shape(c: &NetConfig, audio: bool, metadata: bool) -> WideShape {
    WideShape {
        audio,
        metadata,
        n_mels: c.n_mels,
        n_frames: c.n_frames,
        n_tags: c.n_tags,
        n_artists: c.n_artists,
        n_years: c.n_years,
        d: c.n_factors,
        random_features: if audio { c.random_features } else { 0 },
        rff_scale: f64::from(c.rff_scale),
        flux: audio && c.wide_flux,
        seed: 0,
    }
}

/// Fit the stacked ridge on `train` (its random features drawn from `seed`, as the audio
/// network's were), combine it with the trained audio network `net` on the `validation`
/// songs and fold the combination into `net`'s parameters.
pub fn stack(
    net: &Network,
    standardizer: &Standardizer,
    train: (&Inputs, &[usize]),
    validation: Option<(&Inputs, &[usize])>,
    seed: u64,
) -> Result<StackingReport> {
    let c = &net.config;
    ensure!(c.is_stacked(), "only a stacked fusion network is combined");
    let d = c.n_factors;
    let mut shape = wide_shape(c, c.stacked_ridge_audio, true);
    shape.seed = seed;
    let (metadata, ridge) = wide::fit(&shape, standardizer, train, validation)?;
    let mut report = StackingReport {
        audio_weight: 0.5,
        metadata_weight: 0.5,
        intercept: vec![0.0; d],
        lambda_metadata: ridge.lambda_metadata,
        ..Default::default()
    };
    if let Some((set, rows)) = validation.filter(|(_, rows)| !rows.is_empty()) {
        let targets = set
            .targets
            .ok_or_else(|| crate::Error::invalid("the validation songs need target vectors"))?;
        let scale = f64::from(standardizer.target_scale);
        let truth: Vec<f64> = rows
            .iter()
            .flat_map(|&r| targets[r * d..(r + 1) * d].iter().map(move |&t| f64::from(t) / scale))
            .collect();
        let audio = predict_scaled(net, standardizer, set, rows, BATCH)?;
        let linear = Network::new(
            NetConfig {
                kind: if c.stacked_ridge_audio {
                    ModelKind::Ridge
                } else {
                    ModelKind::RidgeMetadata
                },
                stacked: false,
                tag_task: 0.0,
                ..c.clone()
            },
            0,
        )?;
        linear.set_wide(&metadata)?;
        let meta = predict_scaled(&linear, standardizer, set, rows, BATCH)?;
        let fit = least_squares(&audio, &meta, &truth, d);
        report.audio_weight = fit.weights.0;
        report.metadata_weight = fit.weights.1;
        report.intercept = fit.intercept;
        report.validation_mse_audio = Some(fit.mse_audio);
        report.validation_mse_metadata = Some(fit.mse_metadata);
        report.validation_mse = Some(fit.mse);
    }
    fold(net, &metadata, &report)?;
    Ok(report)
}

struct Combination {
    /// (audio, metadata).
    weights: (f64, f64),
    intercept: Vec<f64>,
    mse_audio: f64,
    mse_metadata: f64,
    mse: f64,
}

/// The least-squares `(a, m, c)` of `truth ≈ a * audio + m * metadata + c` over rows of
/// width `d` (two weights shared by every dimension, an intercept per dimension).
fn least_squares(audio: &[f32], metadata: &[f32], truth: &[f64], d: usize) -> Combination {
    let n = truth.len() / d;
    let column_means = |x: &dyn Fn(usize) -> f64| -> Vec<f64> {
        let mut m = vec![0.0; d];
        for i in 0..n * d {
            m[i % d] += x(i) / n as f64;
        }
        m
    };
    let (ma, mm, mt) = (
        column_means(&|i| f64::from(audio[i])),
        column_means(&|i| f64::from(metadata[i])),
        column_means(&|i| truth[i]),
    );
    let (mut aa, mut am, mut mmm, mut at, mut mtt) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for i in 0..n * d {
        let j = i % d;
        let (a, m, t) = (
            f64::from(audio[i]) - ma[j],
            f64::from(metadata[i]) - mm[j],
            truth[i] - mt[j],
        );
        aa += a * a;
        am += a * m;
        mmm += m * m;
        at += a * t;
        mtt += m * t;
    }
    // A whisper of ridge keeps the 2 x 2 system definite when the two predictions coincide.
    let eps = 1e-12 * (aa + mmm) + 1e-300;
    let (aa, mmm) = (aa + eps, mmm + eps);
    let det = aa * mmm - am * am;
    let a = (mmm * at - am * mtt) / det;
    let m = (aa * mtt - am * at) / det;
    let intercept: Vec<f64> = (0..d).map(|j| mt[j] - a * ma[j] - m * mm[j]).collect();
    let error = |predict: &dyn Fn(usize) -> f64| -> f64 {
        (0..n * d).map(|i| (predict(i) - truth[i]).powi(2)).sum::<f64>() / (n * d).max(1) as f64
    };
    Combination {
        weights: (a, m),
        mse_audio: error(&|i| f64::from(audio[i])),
        mse_metadata: error(&|i| f64::from(metadata[i])),
        mse: error(&|i| a * f64::from(audio[i]) + m * f64::from(metadata[i]) + intercept[i % d]),
        intercept,
    }
}

/// Rewrite `net`'s parameters so that it predicts the combination: the audio network's
/// parts (linear weights, head) scaled by `a`, the stacked ridge's weights by `m`.
fn fold(net: &Network, metadata: &WideWeights, report: &StackingReport) -> Result<()> {
    let c = &net.config;
    let (a, m) = (report.audio_weight as f32, report.metadata_weight as f32);
    let scaled = |values: &[f32], by: f32| values.iter().map(|v| v * by).collect::<Vec<f32>>();
    for (name, var) in &net.params.vars {
        let current = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let new = match name.as_str() {
            "wide.audio" | "wide.random" => match (name.as_str(), c.stacked_ridge_audio) {
                (_, false) => scaled(&current, a),
                (part, true) => {
                    let theirs = if part == "wide.audio" {
                        &metadata.audio
                    } else {
                        &metadata.random
                    };
                    let theirs = theirs
                        .as_ref()
                        .ok_or_else(|| crate::Error::Compute(format!("the stacked ridge has no {name}")))?;
                    ensure!(theirs.len() == current.len(), "{name} does not match the stacked ridge");
                    current.iter().zip(theirs).map(|(x, y)| a * x + m * y).collect()
                }
            },
            "wide.random_projection" | "wide.random_phase" => {
                // The same draw over the same statistics on both sides: nothing to combine.
                let theirs = match name.as_str() {
                    "wide.random_projection" => &metadata.random_projection,
                    _ => &metadata.random_phase,
                };
                if let Some(theirs) = theirs.as_ref().filter(|_| c.stacked_ridge_audio) {
                    let same = theirs.len() == current.len()
                        && theirs
                            .iter()
                            .zip(&current)
                            .all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()));
                    ensure!(same, "{name} of the stacked ridge differs from the audio network's");
                }
                continue;
            }
            "wide.tags" | "wide.artists" | "wide.years" => {
                let part = match name.as_str() {
                    "wide.tags" => &metadata.tags,
                    "wide.artists" => &metadata.artists,
                    _ => &metadata.years,
                };
                let part = part
                    .as_ref()
                    .ok_or_else(|| crate::Error::Compute(format!("the metadata ridge has no {name}")))?;
                ensure!(part.len() == current.len(), "{name} does not match the metadata ridge");
                scaled(part, m)
            }
            "wide.bias" => current
                .iter()
                .zip(&metadata.bias)
                .zip(&report.intercept)
                .map(|((b, mb), c)| a * b + m * mb + *c as f32)
                .collect(),
            head if head.starts_with("head.") => scaled(&current, a),
            _ => continue,
        };
        var.set(&Tensor::from_vec(new, var.shape(), var.device())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2 x 2 normal equations recover known weights and intercepts exactly.
    #[test]
    fn least_squares_recovers_a_known_combination() {
        let (n, d) = (40, 3);
        let audio: Vec<f32> = (0..n * d).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1).collect();
        let meta: Vec<f32> = (0..n * d).map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.2).collect();
        let truth: Vec<f64> = (0..n * d)
            .map(|i| 0.7 * f64::from(audio[i]) + 0.4 * f64::from(meta[i]) + [0.1, -0.2, 0.3][i % d])
            .collect();
        let fit = least_squares(&audio, &meta, &truth, d);
        assert!((fit.weights.0 - 0.7).abs() < 1e-9 && (fit.weights.1 - 0.4).abs() < 1e-9);
        for (c, want) in fit.intercept.iter().zip([0.1, -0.2, 0.3]) {
            assert!((c - want).abs() < 1e-9);
        }
        assert!(fit.mse < 1e-18 && fit.mse_audio > 0.0 && fit.mse_metadata > 0.0);
    }
}
