//! `FusionModel`: the user-facing model of stage 2 — fit on training songs (vocabularies,
//! standardisation, network, training with optional resumable checkpoints), predict song
//! vectors for new songs, save and load.

use super::checkpoint::{self, ModelSpec};
use super::config::Objective;
use super::config::{ModelKind, NetConfig, StopMetric, TrainConfig};
use super::data::{Inputs, Standardizer, target_scale};
use super::metadata::{EncodedMetadata, MetadataEncoder, MetadataOptions, SongMetadata};
use super::model::Network;
use super::stack;
use super::train::{Ranking, TrainState, evaluate, predict, snapshot, train, validate};
use super::wide;
use super::wpe::SongMetric;
use crate::ensure;
use crate::error::{Error, Result};
use crate::parallel::{Progress, Threads};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// Songs as the caller gives them. `n_excerpts`/`n_mels`/`n_frames` describe
/// `spectrograms` (n x n_excerpts x n_mels x n_frames: one or more excerpts of each song);
/// `n_factors` describes `targets` (n x n_factors).
#[derive(Clone, Copy)]
pub struct Songs<'a> {
    pub n: usize,
    pub spectrograms: Option<&'a [f32]>,
    pub n_excerpts: usize,
    pub n_mels: usize,
    pub n_frames: usize,
    pub metadata: Option<&'a [SongMetadata]>,
    pub targets: Option<&'a [f32]>,
    pub n_factors: usize,
}

/// Where early stopping looks: nowhere, a seeded random fraction of the training songs, or
/// separate songs.
pub enum Validation<'a> {
    None,
    Fraction(f64),
    Songs(Songs<'a>),
}

/// A seeded split of `0..n` into (training, validation) rows, both sorted.
fn split_rows(n: usize, fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    ensure!(
        fraction > 0.0 && fraction < 1.0,
        "validation fraction must be in (0, 1), got {fraction}"
    );
    let n_validation = ((n as f64 * fraction).round() as usize).max(1);
    ensure!(
        n_validation < n,
        "{n} songs are too few to hold out a validation fraction of {fraction}"
    );
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::MAX);
    order.shuffle(&mut rng);
    let mut validation = order[..n_validation].to_vec();
    let mut train = order[n_validation..].to_vec();
    validation.sort_unstable();
    train.sort_unstable();
    Ok((train, validation))
}

/// A trained network with everything needed to feed it.
pub struct Fitted {
    pub net: Network,
    pub spec: ModelSpec,
    pub state: TrainState,
}

pub struct FusionModel {
    /// Kind and layer sizes; the input and vocabulary sizes are filled in by `fit`.
    pub template: NetConfig,
    pub train_config: TrainConfig,
    pub metadata_options: MetadataOptions,
    pub fitted: Option<Fitted>,
}

impl FusionModel {
    pub fn new(template: NetConfig, train_config: TrainConfig, metadata_options: MetadataOptions) -> Result<Self> {
        train_config.validate()?;
        ensure!(metadata_options.year_bucket > 0, "year_bucket must be positive");
        Ok(FusionModel {
            template,
            train_config,
            metadata_options,
            fitted: None,
        })
    }

    pub fn kind(&self) -> ModelKind {
        self.template.kind
    }

    /// Train on `songs` (targets required), early-stopping on the validation songs when
    /// there are any. `users` (n_users x n_factors, the WMF vectors the targets came from)
    /// adds the validation songs' recall to the history, and is what early stopping ranks
    /// by when `stop_metric` is recall. With `checkpoint`, the state is written there after
    /// every epoch; with `resume` and an existing checkpoint, training continues from it. On
    /// an interrupt the model keeps the best weights so far and the error is returned.
    /// `metric` (one per song of `songs`) is what `Objective::Wpe` trains by, and required
    /// by it.
    // Each argument is a distinct role; bundling them would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn fit(
        &mut self,
        songs: &Songs,
        validation: Validation,
        users: Option<&[f32]>,
        metric: Option<&SongMetric>,
        checkpoint: Option<&Path>,
        resume: bool,
        threads: &Threads,
        progress: Progress,
    ) -> Result<()> {
        ensure!(songs.targets.is_some(), "fit needs the songs' target vectors");
        let wpe = self.train_config.objective == Objective::Wpe && self.template.has_deep();
        if wpe {
            let metric = metric.ok_or_else(|| {
                Error::invalid("objective='wpe' needs the songs' plays and the users' WMF vectors (fit(..., plays=..., users=...))")
            })?;
            ensure!(
                metric.n_songs() == songs.n && metric.n_factors == songs.n_factors,
                "the plays cover {} songs with {}-factor users, but {} songs with {} factors were given",
                metric.n_songs(),
                metric.n_factors,
                songs.n,
                songs.n_factors
            );
        }
        ensure!(songs.n > 0, "no training songs given");
        if let Some(u) = users {
            ensure!(
                !u.is_empty() && u.len().is_multiple_of(songs.n_factors.max(1)),
                "the users' vectors have {} values, not a (users x {}) array",
                u.len(),
                songs.n_factors
            );
            ensure!(
                u.iter().all(|x| x.is_finite()),
                "the users' vectors contain NaN or infinite values"
            );
        }
        ensure!(
            self.train_config.stop_metric != StopMetric::Recall
                || users.is_some()
                || matches!(validation, Validation::None),
            "stop_metric='recall' needs the users' WMF vectors (fit(..., users=...))"
        );
        let ranking = users.map(|users| Ranking {
            users,
            k: self.train_config.recall_k,
        });
        let all: Vec<usize> = (0..songs.n).collect();
        let (train_rows, held_out) = match &validation {
            Validation::Fraction(f) => split_rows(songs.n, *f, self.train_config.seed)?,
            _ => (all, Vec::new()),
        };
        let resumable = match checkpoint {
            Some(path) if resume && path.exists() => Some(path),
            _ => None,
        };
        let fitted = match resumable {
            Some(path) => self.resume_from(path, songs, train_rows.len())?,
            None => self.fresh(songs, &train_rows)?,
        };
        ensure!(
            !fitted.net.config.has_tag_task() || songs.metadata.is_some(),
            "tag_task needs the training songs' metadata (their tags)"
        );
        let encoded = encode(&fitted.spec, songs)?;
        let train_set = inputs(songs, encoded.as_ref());
        train_set.validate(&fitted.net.config, true)?;
        let other = match &validation {
            Validation::Songs(v) => Some((v, encode(&fitted.spec, v)?, (0..v.n).collect::<Vec<_>>())),
            _ => None,
        };
        let other_set = other.as_ref().map(|(v, e, _)| inputs(v, e.as_ref()));
        let validation_set = match (&other_set, &other) {
            (Some(set), Some((v, _, rows))) => {
                check_shape(&fitted.net.config, v)?;
                set.validate(&fitted.net.config, true)?;
                Some((set, rows.as_slice()))
            }
            _ if !held_out.is_empty() => Some((&train_set, held_out.as_slice())),
            _ => None,
        };
        let Fitted {
            net,
            mut spec,
            mut state,
        } = fitted;
        if resumable.is_none() && net.config.has_wide() {
            let c = &net.config;
            // A stacked model's audio network starts from ridge on the audio alone; the
            // metadata joins after training (see `stack`).
            let mut shape = stack::wide_shape(c, c.wide_reads_audio(), c.kind.uses_metadata() && !c.is_stacked());
            shape.seed = self.train_config.seed;
            let standardizer = &spec.standardizer;
            let (weights, report) =
                threads.run(|| wide::fit(&shape, standardizer, (&train_set, &train_rows), validation_set))?;
            net.set_wide(&weights)?;
            spec.ridge = Some(report);
            // A wide & deep network starts from the linear model: that is the best so far.
            if let (true, Some((set, rows))) = (c.has_deep(), validation_set) {
                let batch = self.train_config.batch_size.max(256);
                let scores = threads.run(|| validate(&net, standardizer, set, rows, batch, ranking))?;
                state.best_validation = Some(scores.criterion(self.train_config.stop_metric));
                state.best_params = Some(snapshot(&net)?);
            }
        }
        if !net.config.has_deep() {
            // The linear kinds are fitted in closed form: no epochs.
            state.best_validation = spec.ridge.as_ref().and_then(|r| r.validation_mse);
            let result = match checkpoint {
                Some(path) => checkpoint::save(path, &net, &spec, &state, true),
                None => Ok(()),
            };
            self.fitted = Some(Fitted { net, spec, state });
            return result;
        }
        // A stacked model whose checkpoint already holds the combination is finished.
        let finished = spec.stacking.is_some();
        let mut save = |net: &Network, state: &TrainState| match checkpoint {
            Some(path) => checkpoint::save(path, net, &spec, state, true),
            None => Ok(()),
        };
        let mut result = match finished {
            true => Ok(()),
            false => train(
                &net,
                &spec.standardizer,
                (
                    &Inputs {
                        metric: if wpe { metric } else { None },
                        ..train_set
                    },
                    &train_rows,
                ),
                validation_set,
                ranking,
                &self.train_config,
                &mut state,
                threads,
                &mut save,
                progress,
            ),
        };
        if net.config.is_stacked() && !finished {
            // Also after an interrupt: the model kept is then still a whole fusion model.
            let standardizer = &spec.standardizer;
            let seed = self.train_config.seed;
            let combined =
                threads.run(|| stack::stack(&net, standardizer, (&train_set, &train_rows), validation_set, seed));
            match combined {
                Ok(report) => {
                    spec.stacking = Some(report);
                    state.best_params = Some(snapshot(&net)?);
                    if let (Ok(()), Some(path)) = (&result, checkpoint) {
                        result = checkpoint::save(path, &net, &spec, &state, true);
                    }
                }
                Err(e) => result = result.and(Err(e)),
            }
        }
        self.fitted = Some(Fitted { net, spec, state });
        result
    }

    fn fresh(&self, songs: &Songs, train_rows: &[usize]) -> Result<Fitted> {
        let kind = self.template.kind;
        let mut net = self.template.clone();
        net.n_factors = songs.n_factors;
        net.n_mels = songs.n_mels;
        net.n_frames = songs.n_frames;
        let encoder = if kind.uses_metadata() || net.has_tag_task() {
            let meta = songs.metadata.ok_or_else(|| match kind.uses_metadata() {
                true => Error::invalid(format!("model kind {:?} needs metadata", kind.name())),
                false => Error::invalid("tag_task needs the training songs' metadata (their tags)"),
            })?;
            ensure!(
                meta.len() == songs.n,
                "metadata has {} songs, expected {}",
                meta.len(),
                songs.n
            );
            let training: Vec<SongMetadata> = train_rows.iter().map(|&r| meta[r].clone()).collect();
            let encoder = MetadataEncoder::fit(&training, &self.metadata_options)?;
            net.n_tags = encoder.tags.len();
            net.n_artists = encoder.artists.len();
            net.n_years = encoder.n_years;
            Some(encoder)
        } else {
            None
        };
        net.resolve_linear_audio(train_rows.len());
        let standardizer = match songs.spectrograms {
            Some(spec) if kind.uses_audio() => {
                ensure!(
                    spec.len() == songs.n * songs.n_excerpts * songs.n_mels * songs.n_frames
                        && songs.n_mels > 0
                        && songs.n_excerpts > 0,
                    "spectrograms do not match ({}, {}, {}, {})",
                    songs.n,
                    songs.n_excerpts,
                    songs.n_mels,
                    songs.n_frames
                );
                Standardizer::fit(spec, songs.n_mels, songs.n_frames, songs.n_excerpts, train_rows)
            }
            _ => Standardizer::identity(songs.n_mels),
        };
        let target_scale = songs
            .targets
            .map_or(1.0, |t| target_scale(t, songs.n_factors, train_rows));
        let tag_scale = match (&encoder, songs.metadata, songs.targets) {
            (Some(encoder), Some(meta), Some(targets)) if net.has_tag_task() => {
                let training: Vec<SongMetadata> = train_rows.iter().map(|&r| meta[r].clone()).collect();
                let encoded = encoder.encode(&training)?;
                let rows: Vec<usize> = (0..training.len()).collect();
                let tags = super::data::dense_tags(&encoded, &rows, net.n_tags);
                let d = songs.n_factors;
                let scaled: Vec<f32> = train_rows
                    .iter()
                    .flat_map(|&r| targets[r * d..(r + 1) * d].iter().map(|v| v / target_scale))
                    .collect();
                let (v_targets, v_tags) = (mean_variance(&scaled, d), mean_variance(&tags, net.n_tags));
                if v_tags > 0.0 { (v_targets / v_tags) as f32 } else { 1.0 }
            }
            _ => 1.0,
        };
        let standardizer = Standardizer {
            target_scale,
            tag_scale,
            ..standardizer
        };
        let network = Network::new(net.clone(), self.train_config.seed)?;
        Ok(Fitted {
            net: network,
            spec: ModelSpec {
                net,
                train: self.train_config.clone(),
                metadata_options: self.metadata_options.clone(),
                encoder,
                standardizer,
                ridge: None,
                stacking: None,
            },
            state: TrainState::default(),
        })
    }

    fn resume_from(&self, path: &Path, songs: &Songs, n_train: usize) -> Result<Fitted> {
        let (net, spec, state) = checkpoint::load(path)?;
        let mut expected = self.template.clone();
        expected.n_factors = songs.n_factors;
        expected.n_mels = songs.n_mels;
        expected.n_frames = songs.n_frames;
        expected.n_tags = spec.net.n_tags;
        expected.n_artists = spec.net.n_artists;
        expected.n_years = spec.net.n_years;
        expected.resolve_linear_audio(n_train);
        ensure!(
            spec.net == expected,
            "checkpoint {} was written by a different model or for different input shapes; \
             delete it or pass resume=False",
            path.display()
        );
        let same_training = TrainConfig {
            max_epochs: spec.train.max_epochs,
            patience: spec.train.patience,
            ..self.train_config.clone()
        };
        ensure!(
            spec.train == same_training,
            "checkpoint {} was trained with other settings (learning rate, batch size, seed or weight decay)",
            path.display()
        );
        Ok(Fitted { net, spec, state })
    }

    pub fn fitted(&self) -> Result<&Fitted> {
        self.fitted
            .as_ref()
            .ok_or_else(|| Error::NotFitted("this FusionModel is not fitted yet: call fit() or load() first".into()))
    }

    /// Predicted song vectors (n x n_factors, row-major).
    pub fn predict(&self, songs: &Songs, batch_size: usize, threads: &Threads) -> Result<Vec<f32>> {
        let fitted = self.fitted()?;
        let encoded = encode(&fitted.spec, songs)?;
        let set = inputs(songs, encoded.as_ref());
        check_shape(&fitted.net.config, songs)?;
        set.validate(&fitted.net.config, false)?;
        threads.run(|| predict(&fitted.net, &fitted.spec.standardizer, &set, batch_size.max(1)))
    }

    /// Mean squared error of the predictions against `songs`' targets.
    pub fn score(&self, songs: &Songs, batch_size: usize, threads: &Threads) -> Result<f64> {
        let fitted = self.fitted()?;
        let encoded = encode(&fitted.spec, songs)?;
        let set = inputs(songs, encoded.as_ref());
        check_shape(&fitted.net.config, songs)?;
        set.validate(&fitted.net.config, true)?;
        let rows: Vec<usize> = (0..songs.n).collect();
        let standardizer = &fitted.spec.standardizer;
        let scaled = threads.run(|| evaluate(&fitted.net, standardizer, &set, &rows, batch_size.max(1)))?;
        Ok(scaled * (standardizer.target_scale as f64).powi(2))
    }

    /// Map the model's predictions through `w` (d x d, row-major): afterwards it predicts
    /// `old prediction · w`. The output layers (the linear part and the head) are linear in
    /// the prediction, so the map is exact. The cloud round uses it to carry a content model
    /// into a refitted WMF space (`serve::align`).
    pub fn align_output(&self, w: &[f32]) -> Result<()> {
        let fitted = self.fitted()?;
        let d = fitted.net.config.n_factors;
        ensure!(
            w.len() == d * d,
            "the alignment must be a {d} x {d} matrix, got {} values",
            w.len()
        );
        ensure!(
            w.iter().all(|v| v.is_finite()),
            "the alignment has NaN or infinite values"
        );
        for (name, var) in &fitted.net.params.vars {
            // The random features' projection and phases act on the input side: not mapped.
            let output_side = (name.starts_with("wide.") || name.starts_with("head."))
                && !matches!(name.as_str(), "wide.random_projection" | "wide.random_phase");
            if !output_side {
                continue;
            }
            let values = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let mut out = vec![0f32; values.len()];
            for (row, dst) in values.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
                for (&x, w_row) in row.iter().zip(w.chunks_exact(d)) {
                    dst.iter_mut().zip(w_row).for_each(|(o, &wij)| *o += x * wij);
                }
            }
            var.set(&candle_core::Tensor::from_vec(out, var.shape(), var.device())?)?;
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let fitted = self.fitted()?;
        checkpoint::save(path, &fitted.net, &fitted.spec, &fitted.state, false)
    }

    /// The model as the bytes of its file (what pickling sends).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let fitted = self.fitted()?;
        checkpoint::to_bytes(&fitted.net, &fitted.spec, &fitted.state, false)
    }

    /// A model from the bytes of its file; `source` names them in errors.
    pub fn from_bytes(bytes: &[u8], source: &Path) -> Result<Self> {
        Self::from_parts(checkpoint::from_bytes(bytes, source)?)
    }

    /// Load a saved model or a checkpoint (its best weights when it has them).
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_parts(checkpoint::load(path)?)
    }

    fn from_parts((net, spec, mut state): (Network, ModelSpec, TrainState)) -> Result<Self> {
        if let Some(best) = state.best_params.take() {
            super::train::set_params(&net, &best)?;
        }
        Ok(FusionModel {
            template: spec.net.clone(),
            train_config: spec.train.clone(),
            metadata_options: spec.metadata_options.clone(),
            fitted: Some(Fitted { net, spec, state }),
        })
    }
}

/// The mean over columns of each column's variance, of a row-major (rows, columns) matrix.
fn mean_variance(values: &[f32], columns: usize) -> f64 {
    let rows = values.len() / columns.max(1);
    if rows == 0 {
        return 0.0;
    }
    let mut sum = vec![0.0f64; columns];
    let mut sum_sq = vec![0.0f64; columns];
    for row in values.chunks_exact(columns) {
        for (j, &v) in row.iter().enumerate() {
            sum[j] += f64::from(v);
            sum_sq[j] += f64::from(v) * f64::from(v);
        }
    }
    let n = rows as f64;
    sum.iter()
        .zip(&sum_sq)
        .map(|(s, q)| (q / n - (s / n).powi(2)).max(0.0))
        .sum::<f64>()
        / columns as f64
}

fn check_shape(config: &NetConfig, songs: &Songs) -> Result<()> {
    if config.kind.uses_audio() {
        ensure!(
            songs.n_mels == config.n_mels && songs.n_frames == config.n_frames,
            "the model was trained on ({}, {}) spectrograms; got ({}, {})",
            config.n_mels,
            config.n_frames,
            songs.n_mels,
            songs.n_frames
        );
    }
    Ok(())
}

fn encode(spec: &ModelSpec, songs: &Songs) -> Result<Option<EncodedMetadata>> {
    match (&spec.encoder, songs.metadata) {
        (Some(encoder), Some(meta)) => {
            ensure!(
                meta.len() == songs.n,
                "metadata has {} songs, expected {}",
                meta.len(),
                songs.n
            );
            Ok(Some(encoder.encode(meta)?))
        }
        _ => Ok(None),
    }
}

fn inputs<'a>(songs: &Songs<'a>, encoded: Option<&'a EncodedMetadata>) -> Inputs<'a> {
    Inputs {
        n: songs.n,
        spectrograms: songs.spectrograms,
        n_excerpts: songs.n_excerpts,
        metadata: encoded,
        targets: songs.targets,
        metric: None,
        stats: None,
    }
}
