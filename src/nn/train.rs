//! The training loop: seeded shuffling, mini-batch Adam, per-epoch validation, early stopping
//! that keeps the best weights, a checkpoint after every epoch, and a clean stop on request.

use super::adam::Adam;
use super::config::{StopMetric, TrainConfig};
use super::data::{Excerpts, Inputs, Mask, Standardizer, make_batch};
use super::model::Network;
use crate::error::{Error, Result};
use crate::parallel::{Progress, Step, Threads};
use candle_core::Tensor;
use rand::RngExt;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Mean training loss and validation error per completed epoch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub train_loss: Vec<f64>,
    pub validation_loss: Vec<f64>,
    /// Recall@`recall_k` of the validation songs per epoch, when the users' vectors were given.
    #[serde(default)]
    pub validation_recall: Vec<f64>,
    /// The learning rate of each epoch (it falls with `lr_decay`).
    #[serde(default)]
    pub learning_rate: Vec<f64>,
}

/// One validation pass: the MSE of the predicted vectors (scaled units) and, with the users'
/// vectors, the mean over users of the overlap between their top-k validation songs by
/// predicted and by true vector (the ranking a cold-start model is judged by).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scores {
    pub mse: f64,
    pub recall: Option<f64>,
}

impl Scores {
    /// The value early stopping minimises.
    pub fn criterion(&self, metric: StopMetric) -> f64 {
        match (metric, self.recall) {
            (StopMetric::Recall, Some(r)) => 1.0 - r,
            _ => self.mse,
        }
    }
}

/// What a validation pass ranks against: the users' WMF vectors (n_users x n_factors,
/// row-major) and the cut-off k.
#[derive(Clone, Copy)]
pub struct Ranking<'a> {
    pub users: &'a [f32],
    pub k: usize,
}

/// Everything a resumed run needs beyond the weights themselves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainState {
    pub epochs_done: usize,
    pub history: History,
    pub best_epoch: Option<usize>,
    pub best_validation: Option<f64>,
    /// Weights of the best epoch by validation loss (store order).
    pub best_params: Option<Vec<Vec<f32>>>,
    pub adam: Adam,
    /// True once early stopping fired: a resumed run has nothing left to do.
    pub stopped_early: bool,
    /// Learning-rate decays so far (the rate is `learning_rate * lr_decay^lr_decays`) and
    /// the epoch of the last one.
    pub lr_decays: u32,
    pub last_decay_epoch: Option<usize>,
}

impl TrainState {
    /// The learning rate of the next step.
    pub fn learning_rate(&self, config: &TrainConfig) -> f64 {
        config.learning_rate * config.lr_decay.powi(self.lr_decays as i32)
    }
}

/// Called after every epoch with the state so far (the checkpoint writer).
pub type EpochHook<'a> = &'a mut dyn FnMut(&Network, &TrainState) -> Result<()>;

// The loop's inputs are all distinct roles; bundling them would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn train(
    net: &Network,
    standardizer: &Standardizer,
    (train_set, train_rows): (&Inputs, &[usize]),
    validation: Option<(&Inputs, &[usize])>,
    ranking: Option<Ranking>,
    config: &TrainConfig,
    state: &mut TrainState,
    threads: &Threads,
    on_epoch: EpochHook,
    progress: Progress,
) -> Result<()> {
    config.validate()?;
    let _retain = crate::memory::Retain::new();
    if state.adam.m.is_empty() {
        state.adam = Adam::new(&net.params.vars);
    }
    crate::ensure!(!train_rows.is_empty(), "no training songs");
    // The linear part's statistics of a song do not change from epoch to epoch (they average
    // over all its excerpts): computed once, not per batch.
    let table: Vec<f32>;
    let cached;
    let train_set = match train_set.spectrograms {
        Some(spec) if net.config.wide_reads_audio() && train_set.stats.is_none() => {
            let c = &net.config;
            let all: Vec<usize> = (0..train_set.n).collect();
            let stats = threads.run(|| {
                super::wide::song_stats(
                    spec,
                    standardizer,
                    c.n_mels,
                    c.n_frames,
                    train_set.n_excerpts,
                    c.wide_flux,
                    &all,
                )
            });
            table = stats.into_iter().map(|v| v as f32).collect();
            cached = Inputs {
                stats: Some(&table),
                ..*train_set
            };
            &cached
        }
        _ => train_set,
    };
    let n_batches = train_rows.len().div_ceil(config.batch_size);
    let total = config.max_epochs * n_batches;
    let mut order = train_rows.to_vec();
    while state.epochs_done < config.max_epochs && !state.stopped_early {
        let epoch = state.epochs_done;
        // Keyed by (seed, epoch) so a resumed run sees the same batches as an unbroken one.
        order.sort_unstable();
        order.shuffle(&mut epoch_rng(config.seed, epoch, 0));
        let mut dropout_rng = epoch_rng(config.seed, epoch, 1);
        // A fresh excerpt of each song every epoch (from its own stream, so one excerpt per
        // song draws nothing and trains as before).
        let excerpts: Vec<usize> = match train_set.n_excerpts {
            0 | 1 => vec![0; order.len()],
            e => {
                let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
                rng.set_stream(u64::MAX - epoch as u64);
                order.iter().map(|_| rng.random_range(0..e)).collect()
            }
        };
        // SpecAugment masks, from a stream of their own (none drawn when both are off, so
        // training is unchanged then).
        let masks: Option<Vec<Mask>> = (config.freq_mask > 0 || config.time_mask > 0).then(|| {
            let mut rng = epoch_rng(config.seed, epoch, 2);
            let (m, t) = (net.config.n_mels, net.config.n_frames);
            let mut stretch = |max: usize, len: usize| -> (usize, usize) {
                let width = rng.random_range(0..=max.min(len));
                (rng.random_range(0..=len - width), width)
            };
            order
                .iter()
                .map(|_| Mask {
                    bands: stretch(config.freq_mask, m),
                    frames: stretch(config.time_mask, t),
                })
                .collect()
        });
        let learning_rate = state.learning_rate(config);
        let mut loss_sum = 0.0;
        for (b, rows) in order.chunks(config.batch_size).enumerate() {
            let adam = &mut state.adam;
            let rng = &mut dropout_rng;
            let span = b * config.batch_size..b * config.batch_size + rows.len();
            let picked = &excerpts[span.clone()];
            let masked = masks.as_ref().map(|all| &all[span]);
            let value = threads.run(|| -> Result<f64> {
                let batch = make_batch(
                    &net.config,
                    train_set,
                    standardizer,
                    rows,
                    Excerpts::PerRow(picked),
                    masked,
                )?;
                let loss = net.loss(&batch, Some(rng))?;
                let grads = loss.backward()?;
                adam.update(
                    &net.params.vars,
                    &grads,
                    learning_rate,
                    config.weight_decay,
                    config.clip_norm,
                )?;
                Ok(loss.to_scalar::<f32>()? as f64)
            })?;
            if !value.is_finite() {
                restore_best(net, state)?;
                return Err(Error::invalid(format!(
                    "training diverged (loss {value}) in epoch {}; try a smaller learning_rate",
                    epoch + 1
                )));
            }
            loss_sum += value * rows.len() as f64;
            let step = Step {
                done: epoch * n_batches + b + 1,
                total,
                loss: Some(loss_sum / ((b * config.batch_size + rows.len()) as f64)),
            };
            if let Err(e) = progress(step) {
                // Stop with the best weights seen so far (or the current ones before any
                // validation), the state of the last complete epoch intact.
                restore_best(net, state)?;
                return Err(e);
            }
        }
        state.history.train_loss.push(loss_sum / train_rows.len() as f64);
        state.history.learning_rate.push(learning_rate);
        state.epochs_done += 1;
        if let Some((validation, rows)) = validation {
            let batch = config.batch_size.max(256);
            let scores = threads.run(|| validate(net, standardizer, validation, rows, batch, ranking))?;
            state.history.validation_loss.push(scores.mse);
            if let Some(r) = scores.recall {
                state.history.validation_recall.push(r);
            }
            let error = scores.criterion(config.stop_metric);
            if state.best_validation.is_none_or(|best| error < best) {
                state.best_validation = Some(error);
                state.best_epoch = Some(epoch);
                state.best_params = Some(snapshot(net)?);
            } else {
                // Epochs since the best, counting a best taken before training (a wide &
                // deep network's linear start) as epoch -1.
                let since = state.best_epoch.map_or(epoch + 1, |best| epoch - best);
                if config.patience > 0 && since >= config.patience {
                    state.stopped_early = true;
                }
                let since_decay = state.last_decay_epoch.map_or(since, |d| since.min(epoch - d));
                if config.lr_patience > 0 && config.lr_decay < 1.0 && since_decay >= config.lr_patience {
                    state.lr_decays += 1;
                    state.last_decay_epoch = Some(epoch);
                }
            }
        }
        on_epoch(net, state)?;
    }
    restore_best(net, state)
}

/// Mean squared error of the predicted song vectors over `rows` of `inputs` (targets
/// required), in units of the scaled targets (multiply by `target_scale`^2 for the
/// targets' own units). Predictions average over each song's excerpts.
pub fn evaluate(
    net: &Network,
    standardizer: &Standardizer,
    inputs: &Inputs,
    rows: &[usize],
    batch_size: usize,
) -> Result<f64> {
    Ok(validate(net, standardizer, inputs, rows, batch_size, None)?.mse)
}

/// [`evaluate`]'s MSE and, with `ranking`, the recall of the predicted vectors' ranking of
/// `rows` (see [`Scores`]).
pub fn validate(
    net: &Network,
    standardizer: &Standardizer,
    inputs: &Inputs,
    rows: &[usize],
    batch_size: usize,
    ranking: Option<Ranking>,
) -> Result<Scores> {
    let targets = inputs.targets.ok_or_else(|| Error::invalid("targets are required"))?;
    let d = net.config.n_factors;
    let scale = standardizer.target_scale;
    let mut sum = 0.0;
    let mut predicted = Vec::with_capacity(if ranking.is_some() { rows.len() * d } else { 0 });
    for chunk in rows.chunks(batch_size) {
        let prediction = predict_rows(net, standardizer, inputs, chunk)?;
        for (p, &r) in prediction.chunks_exact(d).zip(chunk) {
            sum += p
                .iter()
                .zip(&targets[r * d..(r + 1) * d])
                .map(|(a, t)| f64::from(a - t / scale).powi(2))
                .sum::<f64>()
                / d as f64;
        }
        if ranking.is_some() {
            predicted.extend_from_slice(&prediction);
        }
    }
    let mse = sum / rows.len().max(1) as f64;
    let recall = match ranking {
        Some(Ranking { users, k }) if !rows.is_empty() => {
            let truth: Vec<f32> = rows
                .iter()
                .flat_map(|&r| targets[r * d..(r + 1) * d].iter().copied())
                .collect();
            Some(top_k_overlap(users, &predicted, &truth, d, k)?)
        }
        _ => None,
    };
    Ok(Scores { mse, recall })
}

/// Mean over users of |top-k by `predicted` ∩ top-k by `truth`| / k, where both are item
/// vectors (n_items x d) of the same items and k is capped at the number of items.
pub fn top_k_overlap(users: &[f32], predicted: &[f32], truth: &[f32], d: usize, k: usize) -> Result<f64> {
    crate::ensure!(
        d > 0 && users.len().is_multiple_of(d) && !users.is_empty(),
        "the users' vectors must be a non-empty (users x {d}) array"
    );
    let k = k.min(truth.len() / d).max(1);
    let none = crate::topk::Exclusions::default();
    let (by_prediction, _) = crate::topk::top_n(users, predicted, d, k, none, None)?;
    let (by_truth, _) = crate::topk::top_n(users, truth, d, k, none, None)?;
    let n_users = users.len() / d;
    let hits: usize = by_prediction
        .chunks_exact(k)
        .zip(by_truth.chunks_exact(k))
        .map(|(p, t)| p.iter().filter(|id| **id >= 0 && t.contains(id)).count())
        .sum();
    Ok(hits as f64 / (n_users * k) as f64)
}

/// The network's outputs for `rows` (scaled units, rows x n_factors), averaged over each
/// song's excerpts.
fn predict_rows(net: &Network, standardizer: &Standardizer, inputs: &Inputs, rows: &[usize]) -> Result<Vec<f32>> {
    // The linear kinds read every excerpt at once, through the statistics.
    let passes = if net.config.kind.uses_audio() && net.config.has_deep() {
        inputs.n_excerpts.max(1)
    } else {
        1
    };
    let mut mean: Option<Tensor> = None;
    for e in 0..passes {
        let batch = make_batch(&net.config, inputs, standardizer, rows, Excerpts::All(e), None)?;
        let (prediction, _) = net.forward(&batch, None)?;
        mean = Some(match mean {
            Some(m) => (m + prediction)?,
            None => prediction,
        });
    }
    let mean = mean.ok_or_else(|| Error::Compute("no prediction".into()))?;
    Ok((mean / passes as f64)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Predicted song vectors for every song of `inputs`, row-major (n x n_factors).
pub fn predict(net: &Network, standardizer: &Standardizer, inputs: &Inputs, batch_size: usize) -> Result<Vec<f32>> {
    let rows: Vec<usize> = (0..inputs.n).collect();
    let scale = standardizer.target_scale;
    let mut out = predict_scaled(net, standardizer, inputs, &rows, batch_size)?;
    out.iter_mut().for_each(|v| *v *= scale);
    Ok(out)
}

/// The network's outputs for `rows` of `inputs` in the units of the scaled targets, row-major
/// (rows x n_factors), averaged over each song's excerpts.
pub fn predict_scaled(
    net: &Network,
    standardizer: &Standardizer,
    inputs: &Inputs,
    rows: &[usize],
    batch_size: usize,
) -> Result<Vec<f32>> {
    // Larger chunks only cost memory: measured 1,800 clips/s at 32 vs 1,300 at 256 (the big
    // activations then miss the cache and come back from the allocator as fresh pages).
    let batch_size = batch_size.clamp(1, INFERENCE_CHUNK);
    let _retain = crate::memory::Retain::new();
    // Chunks in parallel: each is independent, and small GEMMs parallelise poorly inside.
    let parts: Vec<Vec<f32>> = rows
        .par_chunks(batch_size)
        .map(|chunk| predict_rows(net, standardizer, inputs, chunk))
        .collect::<Result<_>>()?;
    Ok(parts.concat())
}

/// Songs per forward pass at inference.
const INFERENCE_CHUNK: usize = 32;

fn epoch_rng(seed: u64, epoch: usize, purpose: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((epoch as u64) << 1 | purpose);
    rng
}

pub fn snapshot(net: &Network) -> Result<Vec<Vec<f32>>> {
    net.params
        .vars
        .iter()
        .map(|(_, v)| Ok(v.as_tensor().flatten_all()?.to_vec1::<f32>()?))
        .collect()
}

pub fn set_params(net: &Network, values: &[Vec<f32>]) -> Result<()> {
    for ((_, var), data) in net.params.vars.iter().zip(values) {
        var.set(&Tensor::from_vec(data.clone(), var.shape(), var.device())?)?;
    }
    Ok(())
}

fn restore_best(net: &Network, state: &TrainState) -> Result<()> {
    match &state.best_params {
        Some(best) => set_params(net, best),
        None => Ok(()),
    }
}
