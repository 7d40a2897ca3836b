//! Gradients against finite differences (each layer and every network kind), overfitting a
//! tiny set, determinism, save/load and resume.

use super::config::{ModelKind, NetConfig, Objective, StopMetric, TrainConfig};
use super::estimator::{FusionModel, Songs, Validation};
use super::layers::{ConvPool, Embedding, Linear, Lstm, ParamStore};
use super::metadata::{MetadataOptions, SongMetadata};
use super::model::{Batch, Network};
use super::wpe::SongMetric;
use crate::parallel::{Progress, Step, Threads, ignore_progress};
use candle_core::{Device, Tensor, Var};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_tensor(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Compare the backprop gradient of `loss()` w.r.t. each var with central differences on a
/// sample of entries. f32 arithmetic: eps 1e-2 keeps truncation (~eps^2) and rounding
/// (~1e-7/eps) both near 1e-4 relative.
fn check_gradients(vars: &[(String, Var)], loss: &dyn Fn() -> Tensor) {
    let grads = loss().backward().unwrap();
    let eps = 1e-2f32;
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    for (name, var) in vars {
        let analytic = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"))
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let n = base.len();
        for _ in 0..n.min(12) {
            let i = rng.random_range(0..n);
            let at = |delta: f32| {
                let mut values = base.clone();
                values[i] += delta;
                var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss().to_scalar::<f32>().unwrap()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let err = (numeric - analytic[i]).abs();
            assert!(
                err <= 2e-3 + 2e-2 * numeric.abs().max(analytic[i].abs()),
                "{name}[{i}]: finite difference {numeric}, backprop {}",
                analytic[i]
            );
        }
    }
}

/// Weighted sum of a layer's output with fixed random weights: every output entry matters.
fn probe(output: &Tensor, rng: &mut ChaCha8Rng) -> impl Fn(&Tensor) -> Tensor + use<> {
    let weights = random_tensor(output.dims(), rng);
    move |y: &Tensor| (y * &weights).unwrap().sum_all().unwrap()
}

/// Gradients of a layer's parameters and of its input `x`, through a fixed weighted sum.
fn check_layer(store: &ParamStore, x: &Var, forward: &dyn Fn(&Tensor) -> Tensor, rng: &mut ChaCha8Rng) {
    let score = probe(&forward(x.as_tensor()), rng);
    let mut vars = store.vars.clone();
    vars.push(("input".into(), x.clone()));
    check_gradients(&vars, &|| score(&forward(x.as_tensor())));
}

fn input_var(shape: &[usize], rng: &mut ChaCha8Rng) -> Var {
    Var::from_tensor(&random_tensor(shape, rng)).unwrap()
}

#[test]
fn linear_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut store = ParamStore::default();
    let layer = Linear::new(&mut store, "fc", 5, 4, &mut rng).unwrap();
    let x = input_var(&[3, 5], &mut rng);
    check_layer(&store, &x, &|t| layer.forward(t).unwrap(), &mut rng);
}

#[test]
fn convolution_and_pooling_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut store = ParamStore::default();
    let layer = ConvPool::new(&mut store, "conv", (4, 3, 3, 2), &mut rng).unwrap();
    // An odd length exercises the frames dropped before pooling.
    let x = input_var(&[2, 11, 4], &mut rng);
    assert_eq!(layer.forward(x.as_tensor(), true).unwrap().dims(), &[2, 5, 3]);
    check_layer(&store, &x, &|t| layer.forward(t, true).unwrap(), &mut rng);
    // Width 3 runs Winograd's transform, other widths the unfolded product.
    let mut store = ParamStore::default();
    let layer = ConvPool::new(&mut store, "conv", (4, 3, 5, 2), &mut rng).unwrap();
    check_layer(&store, &x, &|t| layer.forward(t, true).unwrap(), &mut rng);
}

#[test]
fn lstm_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut store = ParamStore::default();
    let layer = Lstm::new(&mut store, "lstm", (3, 4, 0.0), &mut rng).unwrap();
    let x = input_var(&[2, 5, 3], &mut rng);
    check_layer(&store, &x, &|t| layer.forward(t).unwrap(), &mut rng);
}

#[test]
fn lstm_matches_a_scalar_reference() {
    // One hidden unit, one input, two steps, written out by hand.
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut store = ParamStore::default();
    let layer = Lstm::new(&mut store, "lstm", (1, 1, 0.0), &mut rng).unwrap();
    let get = |k: usize| {
        store.vars[k]
            .1
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (wi, wh, b) = (get(0), get(1), get(2));
    let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
    let (mut h, mut c) = (0.0f32, 0.0f32);
    for x in [0.5f32, -1.5] {
        let g: Vec<f32> = (0..4).map(|k| x * wi[k] + h * wh[k] + b[k]).collect();
        c = sigmoid(g[1]) * c + sigmoid(g[0]) * g[2].tanh();
        h = sigmoid(g[3]) * c.tanh();
    }
    let x = Tensor::from_vec(vec![0.5f32, -1.5], (1, 2, 1), &Device::Cpu).unwrap();
    let out = layer
        .forward(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!((out[0] - h).abs() < 1e-6, "{} vs {h}", out[0]);
}

#[test]
fn embedding_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut store = ParamStore::default();
    let table = Embedding::new(&mut store, "emb", 6, 3, &mut rng).unwrap();
    let ids = Tensor::new(&[1u32, 4, 4, 0], &Device::Cpu).unwrap();
    let weights = Tensor::new(
        &[[0.5f32, 0.5, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.25, 0.0, 0.0, 0.75]],
        &Device::Cpu,
    )
    .unwrap();
    let lookup = probe(&table.lookup(&ids).unwrap(), &mut rng);
    let pooled = probe(&table.pool(&weights).unwrap(), &mut rng);
    check_gradients(&store.vars, &|| {
        (lookup(&table.lookup(&ids).unwrap()) + pooled(&table.pool(&weights).unwrap())).unwrap()
    });
}

fn tiny_config(kind: ModelKind) -> NetConfig {
    let mut c = NetConfig::new(kind, 3, 6, 16);
    c.conv_channels = vec![5, 4, 4];
    c.pool_sizes = vec![2, 2, 2];
    c.lstm_hidden = 4;
    c.tag_dim = 3;
    c.artist_dim = 3;
    c.year_dim = 2;
    c.mlp_hidden = 6;
    c.audio_hidden = 5;
    c.dropout = 0.0;
    c.reconstruction_segments = 4;
    c.n_tags = 5;
    c.n_artists = 4;
    c.n_years = 3;
    // The deep parts' gradients: beside a (frozen) linear part the head starts at zero,
    // which would make every deep gradient zero too. Without a linear part, fusion needs its
    // deep metadata branch.
    c.wide = kind.is_linear();
    c.deep_metadata = true;
    // Fusion's default random features are tested on their own (and in the Python tests).
    c.random_features = 0;
    c
}

fn tiny_batch(config: &NetConfig, rng: &mut ChaCha8Rng) -> Batch {
    let b = 3;
    let dev = &Device::Cpu;
    Batch {
        audio: Some(random_tensor(&[b, config.n_frames, config.n_mels], rng)),
        tags: Some(
            Tensor::new(
                &[
                    [0.5f32, 0.5, 0.0, 0.0, 0.0],
                    [0.0, 0.0, 1.0, 0.0, 0.0],
                    [0.2, 0.0, 0.0, 0.0, 0.8],
                ],
                dev,
            )
            .unwrap(),
        ),
        artists: Some(Tensor::new(&[1u32, 3, 0], dev).unwrap()),
        years: Some(Tensor::new(&[2u32, 0, 1], dev).unwrap()),
        targets: Some(random_tensor(&[b, config.n_factors], rng)),
        reconstruction: Some(random_tensor(&[b, config.n_mels * config.reconstruction_segments], rng)),
        metric: None,
        stats: Some(random_tensor(&[b, config.stats_per_band() * config.n_mels], rng)),
        tag_targets: None,
    }
}

/// The tag task's head and loss: correct gradients (the head's and, through it, the audio
/// branch's), the other weights drawn as without it, and refused for a kind without audio.
#[test]
fn tag_task_has_correct_gradients() {
    for kind in [ModelKind::CnnLstm, ModelKind::Cnn, ModelKind::Autoencoder] {
        let config = NetConfig {
            tag_task: 2.0,
            ..tiny_config(kind)
        };
        let net = Network::new(config.clone(), 7).unwrap();
        let mut batch = tiny_batch(&config, &mut ChaCha8Rng::seed_from_u64(8));
        batch.tag_targets = Some((batch.tags.clone().unwrap(), 1.5));
        assert!(net.params.vars.iter().any(|(name, _)| name.starts_with("tag_head")));
        check_gradients(&net.params.vars, &|| net.loss(&batch, None).unwrap());
        let plain = Network::new(tiny_config(kind), 7).unwrap();
        for ((name, a), (_, b)) in plain.params.vars.iter().zip(&net.params.vars) {
            let (a, b) = (a.flatten_all().unwrap(), b.flatten_all().unwrap());
            assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap(), "{name}");
        }
    }
    let embedding = NetConfig {
        tag_task: 1.0,
        ..tiny_config(ModelKind::Embedding)
    };
    assert!(crate::error::invalid_message(embedding.validate()).contains("tag_task applies to the audio networks"));
    let negative = NetConfig {
        tag_task: -1.0,
        ..tiny_config(ModelKind::Cnn)
    };
    assert!(crate::error::invalid_message(negative.validate()).contains("tag_task must be"));
}

/// An audio network with the tag task trains on the songs' tags, needs them to train, and
/// predicts without them.
#[test]
fn tag_task_trains_with_metadata_and_predicts_without() {
    let set = toy_set(24, 3);
    let threads = Threads::new(0).unwrap();
    let mut model = tiny_model(ModelKind::CnnLstm, 3);
    model.template.tag_task = 1.0;
    let mut no_meta = songs(&set);
    no_meta.metadata = None;
    let err = try_fit(&mut model, &no_meta, Validation::None).unwrap_err();
    assert!(
        err.to_string().contains("tag_task needs the training songs' metadata"),
        "{err}"
    );
    fit_plain(&mut model, &set);
    let fitted = model.fitted().unwrap();
    let scale = fitted.spec.standardizer.tag_scale;
    assert!(scale.is_finite() && scale > 0.0 && scale != 1.0, "{scale}");
    let with = model.predict(&songs(&set), 64, &threads).unwrap();
    let without = model.predict(&no_meta, 64, &threads).unwrap();
    assert_eq!(with, without, "the tags are a training target, not an input");
    assert!(with.iter().all(|v| v.is_finite()));
    // Not the same model as without the task.
    let mut plain = tiny_model(ModelKind::CnnLstm, 3);
    fit_plain(&mut plain, &set);
    assert_ne!(plain.predict(&no_meta, 64, &threads).unwrap(), with);
}

#[test]
fn every_kind_has_correct_gradients() {
    for kind in ModelKind::ALL {
        for (branch_relu, pool_max, audio_hidden) in [(false, true, 5), (true, false, 0), (false, false, 5)] {
            let config = NetConfig {
                branch_relu,
                pool_max,
                audio_hidden,
                ..tiny_config(kind)
            };
            let net = Network::new(config.clone(), 7).unwrap();
            let batch = tiny_batch(&config, &mut ChaCha8Rng::seed_from_u64(8));
            check_gradients(&net.params.vars, &|| net.loss(&batch, None).unwrap());
        }
    }
}

/// In a wide & deep network the linear part is a constant: no gradient reaches it, while
/// the zero-initialised head does get one (so the deep branches start learning).
#[test]
fn wide_part_is_frozen_beside_deep_branches() {
    let config = NetConfig {
        wide: true,
        ..tiny_config(ModelKind::Fusion)
    };
    let net = Network::new(config.clone(), 7).unwrap();
    let batch = tiny_batch(&config, &mut ChaCha8Rng::seed_from_u64(8));
    let grads = net.loss(&batch, None).unwrap().backward().unwrap();
    let mut wide = 0;
    for (name, var) in &net.params.vars {
        if name.starts_with("wide.") {
            wide += 1;
            assert!(grads.get(var.as_tensor()).is_none(), "{name} has a gradient");
        }
    }
    assert_eq!(wide, 5); // audio, tags, artists, years, bias
    let head = net.params.vars.iter().find(|(n, _)| n == "head.weight").unwrap();
    let g = grads.get(head.1.as_tensor()).unwrap().abs().unwrap().sum_all().unwrap();
    assert!(g.to_scalar::<f32>().unwrap() > 0.0);
}

/// Songs whose target vector is a fixed function of their audio and metadata.
#[derive(Default)]
struct ToySet {
    spectrograms: Vec<f32>,
    metadata: Vec<SongMetadata>,
    targets: Vec<f32>,
}

fn toy_set(n: usize, seed: u64) -> ToySet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (m, t) = (6, 16);
    let mut spectrograms = Vec::new();
    let mut metadata = Vec::new();
    let mut targets = Vec::new();
    for _ in 0..n {
        let loud = rng.random_range(0..m);
        let artist = rng.random_range(0..4usize);
        for band in 0..m {
            for _ in 0..t {
                spectrograms.push(if band == loud { -10.0 } else { -60.0 } + rng.random::<f32>());
            }
        }
        metadata.push(SongMetadata {
            tags: vec![(format!("tag{}", artist % 2), 1.0)],
            artist: Some(format!("artist{artist}")),
            year: Some(1990 + 5 * artist as i32),
        });
        targets.extend([loud as f32 / m as f32, artist as f32 / 4.0, 0.5]);
    }
    ToySet {
        spectrograms,
        metadata,
        targets,
    }
}

fn songs(set: &ToySet) -> Songs<'_> {
    Songs {
        n: set.metadata.len(),
        spectrograms: Some(&set.spectrograms),
        n_excerpts: 1,
        n_mels: 6,
        n_frames: 16,
        metadata: Some(&set.metadata),
        targets: Some(&set.targets),
        n_factors: 3,
    }
}

fn tiny_model(kind: ModelKind, epochs: usize) -> FusionModel {
    let mut template = tiny_config(kind);
    template.conv_channels = vec![8, 8, 8];
    template.lstm_hidden = 8;
    template.mlp_hidden = 16;
    let train = TrainConfig {
        learning_rate: 1e-2,
        batch_size: 8,
        max_epochs: epochs,
        patience: 0,
        ..TrainConfig::default()
    };
    let options = MetadataOptions {
        min_count: 1,
        ..MetadataOptions::default()
    };
    FusionModel::new(template, train, options).unwrap()
}

/// Train without validation, checkpoint or progress.
fn fit_plain(model: &mut FusionModel, set: &ToySet) {
    fit_songs(model, &songs(set));
}

/// Train with separate validation songs, without checkpoint or progress.
fn fit_validated(model: &mut FusionModel, set: &ToySet, validation: &ToySet) {
    fit_with(model, &songs(set), Validation::Songs(songs(validation)));
}

fn fit_songs(model: &mut FusionModel, songs: &Songs) {
    fit_with(model, songs, Validation::None);
}

fn fit_with(model: &mut FusionModel, songs: &Songs, validation: Validation) {
    try_fit(model, songs, validation).unwrap();
}

/// `fit` without users, metric, checkpoint or progress, its result returned.
fn try_fit(model: &mut FusionModel, songs: &Songs, validation: Validation) -> crate::error::Result<()> {
    let threads = Threads::new(0).unwrap();
    model.fit(
        songs,
        validation,
        None,
        None,
        None,
        false,
        &threads,
        &mut ignore_progress,
    )
}

/// Several excerpts per song: identical excerpts train and predict exactly as one, and a
/// prediction from several is the mean of the predictions from each alone (the linear
/// part's statistics average over the excerpts too).
#[test]
fn several_excerpts_train_as_one_and_predict_their_mean() {
    let set = toy_set(24, 5);
    let threads = Threads::new(0).unwrap();
    let (n, per_clip, e) = (24, 6 * 16, 3);
    let close = |a: &[f32], b: &[f32], what: &str| {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-4 * (1.0 + y.abs()), "{what}: {x} vs {y}");
        }
    };
    for kind in [ModelKind::Fusion, ModelKind::Cnn, ModelKind::RidgeAudio] {
        let wide_model = || {
            let mut model = tiny_model(kind, 3);
            model.template.wide = true;
            model
        };
        let mut one = wide_model();
        fit_plain(&mut one, &set);
        let tripled: Vec<f32> = set.spectrograms.chunks(per_clip).flat_map(|c| c.repeat(e)).collect();
        let three_songs = Songs {
            spectrograms: Some(&tripled),
            n_excerpts: e,
            ..songs(&set)
        };
        let mut three = wide_model();
        fit_songs(&mut three, &three_songs);
        let single = one.predict(&songs(&set), 64, &threads).unwrap();
        close(
            &three.predict(&three_songs, 64, &threads).unwrap(),
            &single,
            kind.name(),
        );

        // Excerpt k of song r is song (r + k)'s spectrogram.
        let excerpt = |k: usize| -> Vec<f32> {
            (0..n)
                .flat_map(|r| set.spectrograms[((r + k) % n) * per_clip..((r + k) % n + 1) * per_clip].to_vec())
                .collect()
        };
        let mixed: Vec<f32> = (0..n)
            .flat_map(|r| (0..e).flat_map(move |k| ((r + k) % n) * per_clip..((r + k) % n + 1) * per_clip))
            .map(|i| set.spectrograms[i])
            .collect();
        let mixed_songs = Songs {
            spectrograms: Some(&mixed),
            n_excerpts: e,
            ..songs(&set)
        };
        let together = one.predict(&mixed_songs, 64, &threads).unwrap();
        let mut mean = vec![0.0f32; together.len()];
        for k in 0..e {
            let clips = excerpt(k);
            let alone = Songs {
                spectrograms: Some(&clips),
                ..songs(&set)
            };
            for (m, v) in mean.iter_mut().zip(one.predict(&alone, 64, &threads).unwrap()) {
                *m += v / e as f32;
            }
        }
        close(&together, &mean, kind.name());
    }
}

#[test]
fn tiny_fusion_model_overfits_a_tiny_set() {
    let set = toy_set(16, 1);
    let mut model = tiny_model(ModelKind::Fusion, 300);
    fit_plain(&mut model, &set);
    let history = &model.fitted.as_ref().unwrap().state.history;
    let (first, last) = (history.train_loss[0], *history.train_loss.last().unwrap());
    // Losses are in units of the targets' variance: 0.01 is 1% of it left unexplained.
    assert!(last < 0.01 && last < first / 100.0, "loss went {first} -> {last}");
    assert!(model.score(&songs(&set), 64, &Threads::new(0).unwrap()).unwrap() < 2e-3);
}

#[test]
fn training_is_deterministic_and_save_load_round_trips() {
    let set = toy_set(20, 2);
    let fit = || {
        let mut model = tiny_model(ModelKind::Fusion, 3);
        model.template.dropout = 0.3;
        fit_plain(&mut model, &set);
        model
    };
    let (a, b) = (fit(), fit());
    let pa = a.predict(&songs(&set), 7, &Threads::new(0).unwrap()).unwrap();
    assert_eq!(pa, b.predict(&songs(&set), 64, &Threads::new(0).unwrap()).unwrap());
    let dir = std::env::temp_dir().join(format!("musrec-nn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    a.save(&path).unwrap();
    let loaded = FusionModel::load(&path).unwrap();
    assert_eq!(loaded.predict(&songs(&set), 5, &Threads::new(0).unwrap()).unwrap(), pa);
    assert_eq!(
        loaded.fitted.as_ref().unwrap().state.history,
        a.fitted.as_ref().unwrap().state.history
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_continues_the_loss_curve() {
    let set = toy_set(24, 3);
    let validation = toy_set(8, 4);
    let mut fraction = tiny_model(ModelKind::CnnLstm, 2);
    fraction
        .fit(
            &songs(&set),
            Validation::Fraction(0.25),
            None,
            None,
            None,
            false,
            &Threads::new(0).unwrap(),
            &mut ignore_progress,
        )
        .unwrap();
    assert_eq!(fraction.fitted.as_ref().unwrap().state.history.validation_loss.len(), 2);

    let dir = std::env::temp_dir().join(format!("musrec-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("ckpt.safetensors");

    // With the learning-rate schedule on, so its state resumes too.
    let scheduled = |epochs| {
        let mut model = tiny_model(ModelKind::CnnLstm, epochs);
        model.train_config.lr_patience = 1;
        model.train_config.lr_decay = 0.5;
        model
    };
    let mut straight = scheduled(6);
    fit_validated(&mut straight, &set, &validation);

    // Killed after the third epoch: the progress callback refuses to go on.
    let mut first = scheduled(6);
    let batches_per_epoch = 3;
    let mut stop_after = |s: Step| {
        if s.done > 3 * batches_per_epoch {
            Err(crate::Error::Interrupted)
        } else {
            Ok(())
        }
    };
    let err = first.fit(
        &songs(&set),
        Validation::Songs(songs(&validation)),
        None,
        None,
        Some(&ckpt),
        true,
        &Threads::new(0).unwrap(),
        &mut stop_after,
    );
    assert!(matches!(err, Err(crate::Error::Interrupted)));

    let mut resumed = scheduled(6);
    resumed
        .fit(
            &songs(&set),
            Validation::Songs(songs(&validation)),
            None,
            None,
            Some(&ckpt),
            true,
            &Threads::new(0).unwrap(),
            &mut ignore_progress,
        )
        .unwrap();
    let (a, b) = (
        &straight.fitted.as_ref().unwrap().state,
        &resumed.fitted.as_ref().unwrap().state,
    );
    assert_eq!(a.history, b.history);
    assert_eq!(a.history.train_loss.len(), 6);
    assert_eq!(
        straight
            .predict(&songs(&validation), 64, &Threads::new(0).unwrap())
            .unwrap(),
        resumed
            .predict(&songs(&validation), 64, &Threads::new(0).unwrap())
            .unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_metadata_and_missing_fields_predict() {
    let set = toy_set(16, 5);
    let mut model = tiny_model(ModelKind::Embedding, 2);
    fit_plain(&mut model, &set);
    let new = [
        SongMetadata::default(),
        SongMetadata {
            tags: vec![("never seen".into(), 3.0)],
            artist: Some("nobody".into()),
            year: Some(2099),
        },
    ];
    let query = Songs {
        n: 2,
        spectrograms: None,
        n_excerpts: 1,
        n_mels: 0,
        n_frames: 0,
        metadata: Some(&new),
        targets: None,
        n_factors: 3,
    };
    let out = model.predict(&query, 64, &Threads::new(0).unwrap()).unwrap();
    assert_eq!(out.len(), 6);
    assert!(out.iter().all(|v| v.is_finite()));
}

#[test]
fn bad_inputs_are_refused() {
    let set = toy_set(8, 6);
    let mut model = tiny_model(ModelKind::Fusion, 1);
    let mut bad = songs(&set);
    bad.metadata = None;
    assert!(
        model
            .fit(
                &bad,
                Validation::None,
                None,
                None,
                None,
                false,
                &Threads::new(0).unwrap(),
                &mut ignore_progress
            )
            .is_err()
    );
    let mut nan = toy_set(8, 6);
    nan.spectrograms[100] = f32::NAN;
    let err = model
        .fit(
            &songs(&nan),
            Validation::None,
            None,
            None,
            None,
            false,
            &Threads::new(0).unwrap(),
            &mut ignore_progress,
        )
        .unwrap_err();
    assert!(err.to_string().contains("song 1"), "{err}");
    assert!(model.predict(&songs(&set), 64, &Threads::new(0).unwrap()).is_err()); // not fitted
}

#[test]
fn convolution_matches_a_direct_sum() {
    // y[b, t, o] = max-free check (pool 1): relu(bias[o] + sum_{j, c} w[j*C + c, o] x[b, t+j-1, c]).
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut store = ParamStore::default();
    let (c, o, t) = (3, 2, 5);
    let layer = ConvPool::new(&mut store, "conv", (c, o, 3, 1), &mut rng).unwrap();
    let x = random_tensor(&[1, t, c], &mut rng);
    let out = layer
        .forward(&x, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let w = store.vars[0]
        .1
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let bias = store.vars[1].1.as_tensor().to_vec1::<f32>().unwrap();
    let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for frame in 0..t {
        for oc in 0..o {
            let mut sum = bias[oc];
            for j in 0..3 {
                let Some(s) = (frame + j).checked_sub(1).filter(|&s| s < t) else {
                    continue;
                };
                for ch in 0..c {
                    sum += w[(j * c + ch) * o + oc] * xs[s * c + ch];
                }
            }
            assert!((out[frame * o + oc] - sum.max(0.0)).abs() < 1e-5);
        }
    }
}

/// A fusion model without its deep metadata branch reads metadata through its linear part
/// only, so it needs one.
#[test]
fn fusion_without_deep_metadata_keeps_metadata_in_the_linear_part() {
    let base = NetConfig {
        deep_metadata: false,
        ..tiny_config(ModelKind::Fusion)
    };
    assert!(
        Network::new(base.clone(), 7).is_err(),
        "no linear part: no metadata at all"
    );
    let config = NetConfig { wide: true, ..base };
    let net = Network::new(config.clone(), 7).unwrap();
    let names: Vec<&str> = net.params.vars.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.iter().all(|n| !n.starts_with("tags") && !n.starts_with("mlp")),
        "{names:?}"
    );
    assert!(
        names.contains(&"wide.tags") && names.contains(&"audio_fc.weight"),
        "{names:?}"
    );
    let batch = tiny_batch(&config, &mut ChaCha8Rng::seed_from_u64(8));
    let (prediction, _) = net.forward(&batch, None).unwrap();
    assert_eq!(prediction.dims(), &[3, config.n_factors]);
}

/// The ranking criterion against a brute-force count, and early stopping by it.
#[test]
fn top_k_overlap_counts_shared_top_songs() {
    use crate::nn::train::top_k_overlap;
    let d = 2;
    // Three items on a line; user 0 likes the first axis, user 1 the second.
    let users = [1.0, 0.0, 0.0, 1.0];
    let truth = [3.0, 0.0, 2.0, 1.0, 1.0, 2.0];
    // Same ranking for user 0 (items 0 > 1 > 2); reversed for user 1.
    let predicted = [3.0, 2.0, 2.0, 1.0, 1.0, 0.0];
    // k = 1: user 0 agrees (item 0), user 1 does not (truth: item 2, predicted: item 0).
    assert_eq!(top_k_overlap(&users, &predicted, &truth, d, 1).unwrap(), 0.5);
    // k = 2: user 0 {0,1} vs {0,1} = 2; user 1 {2,1} vs {0,1} = 1 -> 3 / 4.
    assert_eq!(top_k_overlap(&users, &predicted, &truth, d, 2).unwrap(), 0.75);
    // k beyond the items is capped: everything overlaps.
    assert_eq!(top_k_overlap(&users, &predicted, &truth, d, 10).unwrap(), 1.0);
    assert!(top_k_overlap(&users[..3], &predicted, &truth, d, 1).is_err());
}

#[test]
fn early_stopping_by_recall_keeps_the_best_ranking_epoch() {
    let set = toy_set(32, 5);
    let validation = toy_set(12, 6);
    let users: Vec<f32> = (0..20)
        .flat_map(|u| [((u % 5) as f32) - 2.0, ((u % 3) as f32) - 1.0, 1.0])
        .collect();
    let mut model = tiny_model(ModelKind::CnnLstm, 5);
    model.train_config.stop_metric = StopMetric::Recall;
    model.train_config.recall_k = 3;
    let threads = Threads::new(0).unwrap();
    // Without the users' vectors, recall cannot be computed.
    let err = try_fit(&mut model, &songs(&set), Validation::Songs(songs(&validation)));
    assert!(err.unwrap_err().to_string().contains("users"));
    model
        .fit(
            &songs(&set),
            Validation::Songs(songs(&validation)),
            Some(&users),
            None,
            None,
            false,
            &threads,
            &mut ignore_progress,
        )
        .unwrap();
    let state = &model.fitted.as_ref().unwrap().state;
    let recall = &state.history.validation_recall;
    assert_eq!(recall.len(), 5);
    assert!(recall.iter().all(|r| (0.0..=1.0).contains(r)));
    let best = state.best_epoch.unwrap();
    // The kept epoch is the first with the highest recall, whatever its MSE.
    let top = recall.iter().cloned().fold(f64::MIN, f64::max);
    assert_eq!(recall.iter().position(|&r| r == top).unwrap(), best);
    assert_eq!(state.best_validation, Some(1.0 - top));
    // The model holds that epoch's weights: its validation recall is the best one.
    let predicted = model.predict(&songs(&validation), 64, &threads).unwrap();
    let again = crate::nn::train::top_k_overlap(&users, &predicted, &validation.targets, 3, 3).unwrap();
    assert!((again - top).abs() < 1e-9, "{again} vs {top}");
}

/// Learning-rate decay on a plateau: the rate of every epoch follows the rule replayed from
/// the validation history (a decay after `lr_patience` epochs without a better criterion,
/// counted from the best epoch or the last decay), and it does fall.
#[test]
fn learning_rate_decays_on_a_validation_plateau() {
    let set = toy_set(32, 7);
    let validation = toy_set(12, 8);
    let mut model = tiny_model(ModelKind::Cnn, 12);
    model.train_config.learning_rate = 0.2;
    model.train_config.lr_patience = 1;
    model.train_config.lr_decay = 0.5;
    fit_validated(&mut model, &set, &validation);
    let history = &model.fitted.as_ref().unwrap().state.history;
    assert_eq!(history.learning_rate.len(), 12);
    let (mut rate, mut best, mut since_best, mut since_decay) = (0.2, f64::INFINITY, 0, usize::MAX);
    for (epoch, &loss) in history.validation_loss.iter().enumerate() {
        assert_eq!(history.learning_rate[epoch], rate, "epoch {epoch}");
        if loss < best {
            (best, since_best) = (loss, 0);
        } else {
            since_best += 1;
            since_decay = since_decay.saturating_add(1);
            if since_best.min(since_decay) >= 1 {
                rate *= 0.5;
                since_decay = 0;
            }
        }
    }
    assert!(
        history.learning_rate.last().unwrap() < &0.2,
        "{:?}",
        history.learning_rate
    );

    let train = TrainConfig {
        lr_decay: 1.5,
        ..TrainConfig::default()
    };
    let err = FusionModel::new(tiny_config(ModelKind::Cnn), train, MetadataOptions::default());
    assert!(err.err().unwrap().to_string().contains("lr_decay"));
}

/// A stacked fusion model: interrupted and resumed it ends as the unbroken run does, the
/// model kept at the interrupt is already combined, and resuming a finished checkpoint
/// changes nothing.
#[test]
fn stacked_fusion_resumes_and_combines_once() {
    let set = toy_set(24, 3);
    let validation = toy_set(8, 4);
    let stacked = |epochs| {
        let mut model = tiny_model(ModelKind::Fusion, epochs);
        model.template.wide = true;
        model.template.deep_metadata = false;
        model.template.stacked = true;
        model
    };
    let threads = Threads::new(0).unwrap();
    let dir = std::env::temp_dir().join(format!("musrec-stack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("ckpt.safetensors");
    let fit = |model: &mut FusionModel, path: Option<&std::path::Path>, progress: Progress| {
        model.fit(
            &songs(&set),
            Validation::Songs(songs(&validation)),
            None,
            None,
            path,
            true,
            &threads,
            progress,
        )
    };
    let mut straight = stacked(4);
    fit(&mut straight, None, &mut ignore_progress).unwrap();
    let report = straight.fitted().unwrap().spec.stacking.clone().unwrap();
    assert!(
        report.validation_mse.unwrap()
            <= report
                .validation_mse_audio
                .unwrap()
                .min(report.validation_mse_metadata.unwrap())
                + 1e-12
    );
    let predicted = straight.predict(&songs(&validation), 64, &threads).unwrap();

    let mut first = stacked(4);
    let mut stop_after = |s: Step| {
        if s.done > 2 * 3 {
            Err(crate::Error::Interrupted)
        } else {
            Ok(())
        }
    };
    assert!(matches!(
        fit(&mut first, Some(&ckpt), &mut stop_after),
        Err(crate::Error::Interrupted)
    ));
    assert!(first.fitted().unwrap().spec.stacking.is_some());

    for _ in 0..2 {
        // The first pass resumes training; the second finds the finished model.
        let mut resumed = stacked(4);
        fit(&mut resumed, Some(&ckpt), &mut ignore_progress).unwrap();
        assert_eq!(resumed.fitted().unwrap().spec.stacking.as_ref(), Some(&report));
        assert_eq!(resumed.fitted().unwrap().state.history.train_loss.len(), 4);
        assert_eq!(resumed.predict(&songs(&validation), 64, &threads).unwrap(), predicted);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// SpecAugment masking: `make_batch` zeroes exactly the drawn bands and frames of the audio
/// input (standardised units, so the bands' means) and nothing of the linear part's
/// statistics; masked training is deterministic, differs from unmasked training, and the
/// masks never reach prediction.
#[test]
fn spec_augment_masks_training_input_only() {
    use super::data::{Excerpts, Inputs, Mask, Standardizer, make_batch};
    let set = toy_set(4, 5);
    let mut config = tiny_config(ModelKind::Cnn);
    config.n_mels = 6;
    config.n_frames = 16;
    let inputs = Inputs {
        n: 4,
        spectrograms: Some(&set.spectrograms),
        n_excerpts: 1,
        metadata: None,
        targets: None,
        metric: None,
        stats: None,
    };
    let standardizer = Standardizer {
        mean: vec![-50.0; 6],
        scale: vec![0.1; 6],
        target_scale: 1.0,
        tag_scale: 1.0,
    };
    let rows = [0, 1, 2, 3];
    let masks = [
        Mask::default(),
        Mask {
            bands: (2, 3),
            frames: (0, 0),
        },
        Mask {
            bands: (0, 0),
            frames: (5, 4),
        },
        Mask {
            bands: (5, 1),
            frames: (15, 1),
        },
    ];
    let plain = make_batch(&config, &inputs, &standardizer, &rows, Excerpts::All(0), None).unwrap();
    let masked = make_batch(&config, &inputs, &standardizer, &rows, Excerpts::All(0), Some(&masks)).unwrap();
    let (p, q) = (
        plain.audio.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        masked.audio.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    let (m, t) = (6, 16);
    for (i, mask) in masks.iter().enumerate() {
        for frame in 0..t {
            for band in 0..m {
                let k = i * m * t + frame * m + band;
                let hidden = (band >= mask.bands.0 && band < mask.bands.0 + mask.bands.1)
                    || (frame >= mask.frames.0 && frame < mask.frames.0 + mask.frames.1);
                assert_eq!(
                    q[k],
                    if hidden { 0.0 } else { p[k] },
                    "song {i} band {band} frame {frame}"
                );
                assert_ne!(p[k], 0.0);
            }
        }
    }
    if let (Some(a), Some(b)) = (plain.stats, masked.stats) {
        assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
    }

    let set = toy_set(20, 2);
    let fit = |freq: usize, time: usize| {
        let mut model = tiny_model(ModelKind::CnnLstm, 3);
        model.train_config.freq_mask = freq;
        model.train_config.time_mask = time;
        fit_plain(&mut model, &set);
        model.predict(&songs(&set), 7, &Threads::new(0).unwrap()).unwrap()
    };
    let masked = fit(2, 4);
    assert_eq!(masked, fit(2, 4));
    assert_ne!(masked, fit(0, 0));
    assert!(masked.iter().all(|v| v.is_finite()));
}

/// A WPE metric over `n_songs` songs of 20 users with `k` factors: song s is played by the
/// users u with (u + s) % 3 == 0, u + 1 times.
fn toy_metric(n_songs: usize, k: usize) -> (Vec<f32>, SongMetric) {
    let users: Vec<f32> = (0..20 * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 6.0).collect();
    let triplets: Vec<(u32, u32, f32)> = (0..n_songs as u32)
        .flat_map(|s| {
            (0..20u32)
                .filter(move |u| (u + s) % 3 == 0)
                .map(move |u| (s, u, (u + 1) as f32))
        })
        .collect();
    let plays = crate::sparse::Csr::from_triplets(n_songs, 20, &triplets).unwrap();
    let params = crate::wmf::WmfParams {
        alpha: 0.5,
        ..Default::default()
    };
    let metric = SongMetric::new(&users, k, plays.view(), &params).unwrap();
    (users, metric)
}

#[test]
fn wpe_loss_has_correct_gradients() {
    for kind in [ModelKind::Fusion, ModelKind::CnnLstm, ModelKind::Embedding] {
        let config = tiny_config(kind);
        let net = Network::new(config.clone(), 7).unwrap();
        let mut batch = tiny_batch(&config, &mut ChaCha8Rng::seed_from_u64(8));
        let (_, metric) = toy_metric(5, config.n_factors);
        batch.metric = Some(metric.batch(&[4, 0, 2]).unwrap());
        let wpe = net.loss(&batch, None).unwrap().to_scalar::<f32>().unwrap();
        check_gradients(&net.params.vars, &|| net.loss(&batch, None).unwrap());
        batch.metric = None;
        let mse = net.loss(&batch, None).unwrap().to_scalar::<f32>().unwrap();
        assert!(wpe.is_finite() && wpe > 0.0 && wpe != mse, "{wpe} {mse}");
    }
}

#[test]
fn wpe_training_needs_the_plays_and_trains_by_them() {
    let set = toy_set(32, 5);
    let validation = toy_set(12, 6);
    let threads = Threads::new(0).unwrap();
    let fit = |objective: Objective, metric: Option<&SongMetric>| {
        let mut model = tiny_model(ModelKind::CnnLstm, 4);
        model.train_config.objective = objective;
        let result = model.fit(
            &songs(&set),
            Validation::Songs(songs(&validation)),
            None,
            metric,
            None,
            false,
            &threads,
            &mut ignore_progress,
        );
        result.map(|()| model)
    };
    let err = fit(Objective::Wpe, None).err().unwrap().to_string();
    assert!(err.contains("plays"), "{err}");
    let k = songs(&set).n_factors;
    let (_, wrong) = toy_metric(31, k);
    assert!(fit(Objective::Wpe, Some(&wrong)).is_err());
    let (_, metric) = toy_metric(32, k);
    let wpe = fit(Objective::Wpe, Some(&metric)).unwrap();
    let again = fit(Objective::Wpe, Some(&metric)).unwrap();
    let mse = fit(Objective::Mse, Some(&metric)).unwrap();
    let history = |m: &FusionModel| m.fitted.as_ref().unwrap().state.history.train_loss.clone();
    assert!(history(&wpe).iter().all(|l| l.is_finite()));
    assert_eq!(history(&wpe), history(&again), "WPE training is deterministic");
    assert_ne!(history(&wpe), history(&mse), "the objective changes training");
    // With the MSE objective the metric is ignored: same as fitting without it.
    assert_eq!(history(&mse), history(&fit(Objective::Mse, None).unwrap()));
}

/// A `ridge_audio` model configured by `configure`, fitted on `sets.0` with `sets.1` for
/// validation: its MSE on `sets.2`, the model and its predictions there.
fn ridge_audio_test_mse(
    sets: (&ToySet, &ToySet, &ToySet),
    configure: impl Fn(&mut NetConfig),
) -> (f32, FusionModel, Vec<f32>) {
    let (train, val, test) = sets;
    let mut model = tiny_model(ModelKind::RidgeAudio, 1);
    configure(&mut model.template);
    fit_validated(&mut model, train, val);
    let p = model.predict(&songs(test), 32, &Threads::new(0).unwrap()).unwrap();
    let mse = p.iter().zip(&test.targets).map(|(a, b)| (a - b).powi(2)).sum::<f32>() / p.len() as f32;
    (mse, model, p)
}

/// Songs whose first band's loudness L (uniform in [-60, -10] dB) sets the target through a
/// V, |L + 35| / 25, which no linear function of the band statistics fits.
fn v_shaped_set(n: usize, seed: u64) -> ToySet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (m, t) = (6, 16);
    let mut set = ToySet::default();
    for _ in 0..n {
        let level = -60.0 + 50.0 * rng.random::<f32>();
        for band in 0..m {
            for _ in 0..t {
                let base = if band == 0 { level } else { -40.0 };
                set.spectrograms.push(base + rng.random::<f32>());
            }
        }
        set.metadata.push(SongMetadata::default());
        set.targets.extend([(level + 35.0).abs() / 25.0, 0.0, 0.0]);
    }
    set
}

#[test]
fn random_features_make_ridge_fit_a_non_linear_target() {
    let (train, val, test) = (v_shaped_set(300, 1), v_shaped_set(100, 2), v_shaped_set(100, 3));
    let threads = Threads::new(0).unwrap();
    // Without flux: its noise would be 6 more dimensions of the isotropic kernel.
    let test_mse = |features: usize| {
        ridge_audio_test_mse((&train, &val, &test), |c| {
            c.random_features = features;
            c.wide_flux = false;
        })
    };
    let (linear, _, _) = test_mse(0);
    let (kernel, model, predicted) = test_mse(256);
    // Ridge does no better than the mean here (the V is symmetric); the kernel machine halves
    // the error, though 11 of the 12 statistics are noise to its isotropic kernel.
    assert!(
        kernel < 0.6 * linear,
        "random features: test MSE {kernel} against ridge's {linear}"
    );
    let report = model.fitted.as_ref().unwrap().spec.ridge.clone().unwrap();
    assert!(
        report.lambda_random.is_some() && report.random_path.len() == 11,
        "{report:?}"
    );
    // The fitted model saves and loads with its projection, and refits the same.
    let dir = std::env::temp_dir().join(format!("musrec-rff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let loaded = FusionModel::load(&path).unwrap();
    assert_eq!(loaded.predict(&songs(&test), 7, &threads).unwrap(), predicted);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(test_mse(256).2, predicted, "deterministic for a fixed seed");
}

#[test]
fn random_features_and_flux_apply_only_where_the_linear_part_reads_audio() {
    let set = toy_set(24, 5);
    for (kind, asked, want) in [
        (ModelKind::RidgeMetadata, 16, 0),
        (ModelKind::Ridge, 16, 16),
        (ModelKind::Ridge, 500, 24), // at most one per training song
    ] {
        let mut model = tiny_model(kind, 1);
        model.template.random_features = asked;
        model.template.wide_flux = true;
        fit_songs(&mut model, &songs(&set));
        let net = &model.fitted.as_ref().unwrap().spec.net;
        assert_eq!(net.random_features, want, "{kind:?} asked for {asked}");
        assert_eq!(net.wide_flux, kind.uses_audio(), "{kind:?}");
    }
    let mut c = NetConfig::new(ModelKind::Ridge, 3, 6, 16);
    c.random_features = super::config::MAX_RANDOM_FEATURES + 1;
    assert!(crate::error::invalid_message(c.validate()).contains("random_features must be at most"));
    c.random_features = 16;
    c.rff_scale = 0.0;
    assert!(crate::error::invalid_message(c.validate()).contains("rff_scale must be"));
    c.rff_scale = 0.5;
    assert!(c.validate().is_ok());
    // The defaults: flux wherever audio is read, random features for fusion only.
    for kind in ModelKind::ALL {
        let c = NetConfig::new(kind, 3, 6, 16);
        assert_eq!(c.wide_flux, kind.uses_audio(), "{kind:?}");
        assert_eq!(c.random_features > 0, kind == ModelKind::Fusion, "{kind:?}");
    }
}

/// Songs whose first band alternates between +a and -a dB every frame (target 1) or holds +a
/// for half the excerpt and -a for the other half (target 0), a in [1, 5]: the same mean and
/// spread either way, so only the band's flux tells them apart.
fn flux_set(n: usize, seed: u64) -> ToySet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (m, t) = (6, 16);
    let mut set = ToySet::default();
    for _ in 0..n {
        let a = 1.0 + 4.0 * rng.random::<f32>();
        let alternating = rng.random::<bool>();
        for band in 0..m {
            for frame in 0..t {
                let v = if band > 0 {
                    -40.0 + rng.random::<f32>()
                } else if (alternating && frame % 2 == 0) || (!alternating && frame < t / 2) {
                    -30.0 + a
                } else {
                    -30.0 - a
                };
                set.spectrograms.push(v);
            }
        }
        set.metadata.push(SongMetadata::default());
        set.targets.extend([f32::from(u8::from(alternating)), 0.0, 0.0]);
    }
    set
}

#[test]
fn flux_statistics_are_each_bands_mean_absolute_change() {
    // Two songs of two excerpts, 2 bands x 4 frames each, a unit standardiser but for band 1.
    let spec: Vec<f32> = (0..2 * 2 * 2 * 4).map(|i| ((i * 7) % 5) as f32).collect();
    let standardizer = super::data::Standardizer {
        mean: vec![0.0, 1.0],
        scale: vec![1.0, 0.5],
        target_scale: 1.0,
        tag_scale: 1.0,
    };
    let stats = super::wide::song_stats(&spec, &standardizer, 2, 4, 2, true, &[1, 0]);
    assert_eq!(stats.len(), 2 * 6);
    let plain = super::wide::song_stats(&spec, &standardizer, 2, 4, 2, false, &[1, 0]);
    for (song, &r) in [1usize, 0].iter().enumerate() {
        let row = &stats[song * 6..(song + 1) * 6];
        assert_eq!(&row[..4], &plain[song * 4..(song + 1) * 4], "mean and spread unchanged");
        for band in 0..2 {
            let mut expected = 0.0;
            for e in 0..2 {
                let x = &spec[((r * 2 + e) * 2 + band) * 4..][..4];
                let s = f64::from(standardizer.scale[band]);
                expected += x.windows(2).map(|w| (f64::from(w[1] - w[0]) * s).abs()).sum::<f64>() / 3.0 / 2.0;
            }
            assert!(
                (row[4 + band] - expected).abs() < 1e-9,
                "song {r} band {band}: {} vs {expected}",
                row[4 + band]
            );
        }
    }
}

#[test]
fn flux_lets_ridge_tell_a_moving_band_from_a_still_one() {
    let (train, val, test) = (flux_set(200, 1), flux_set(100, 2), flux_set(100, 3));
    let fit_and_score = |flux: bool| ridge_audio_test_mse((&train, &val, &test), |c| c.wide_flux = flux);
    let (without, _, _) = fit_and_score(false);
    let (with, _, predicted) = fit_and_score(true);
    // Without flux ridge can only predict the mean (an MSE of about 0.25 / 3 per entry).
    assert!(without > 0.06, "without flux: {without}");
    assert!(with < 0.2 * without, "with flux: {with} against {without}");
    assert_eq!(fit_and_score(true).2, predicted, "deterministic");
}

/// `align_output` maps a model with random features exactly: their projection and phases
/// are on the input side and stay, their weights are mapped with the rest.
#[test]
fn aligning_a_kernel_ridge_maps_its_predictions() {
    let set = toy_set(24, 5);
    let threads = Threads::new(0).unwrap();
    let mut model = tiny_model(ModelKind::Ridge, 1);
    model.template.random_features = 10;
    fit_songs(&mut model, &songs(&set));
    let before = model.predict(&songs(&set), 8, &threads).unwrap();
    let w: Vec<f32> = (0..9).map(|i| ((i * 5 % 7) as f32 - 3.0) * 0.3).collect();
    model.align_output(&w).unwrap();
    let after = model.predict(&songs(&set), 8, &threads).unwrap();
    for (p, q) in before.chunks_exact(3).zip(after.chunks_exact(3)) {
        for j in 0..3 {
            let want: f32 = (0..3).map(|i| p[i] * w[i * 3 + j]).sum();
            assert!((q[j] - want).abs() < 1e-4 * (1.0 + want.abs()), "{} vs {want}", q[j]);
        }
    }
}

/// Training-step and inference timing of the default fusion network at the benchmark's size
/// (batch 64, 128 Mel bands x 130 frames, 2 threads); a measurement, not a check, so ignored:
/// `cargo test --release --lib nn::tests::step_timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn step_timing() {
    use super::adam::Adam;
    let mut config = NetConfig::new(ModelKind::Fusion, 100, 128, 130);
    (config.n_tags, config.n_artists, config.n_years) = (300, 100, 13);
    config.random_features = 640;
    let net = Network::new(config.clone(), 0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let b = 64;
    let dev = &Device::Cpu;
    let onehot = |n: usize, rng: &mut ChaCha8Rng| {
        let ids: Vec<u32> = (0..b).map(|_| rng.random_range(0..n as u32)).collect();
        Tensor::new(ids, dev).unwrap()
    };
    let tags: Vec<f32> = (0..b * 300).map(|i| if i % 97 == 0 { 1.0 } else { 0.0 }).collect();
    let batch = Batch {
        audio: Some(random_tensor(&[b, 130, 128], &mut rng)),
        tags: Some(Tensor::from_vec(tags, (b, 300), dev).unwrap()),
        artists: Some(onehot(100, &mut rng)),
        years: Some(onehot(13, &mut rng)),
        targets: Some(random_tensor(&[b, 100], &mut rng)),
        stats: Some(random_tensor(&[b, config.stats_per_band() * 128], &mut rng)),
        ..Batch::default()
    };
    let threads = Threads::new(2).unwrap();
    // as train() runs: freed buffers kept for the next step (see crate::memory)
    let _retain = crate::memory::Retain::new();
    let mut adam = Adam::new(&net.params.vars);
    let (mut times, mut parts) = (Vec::new(), [0.0f64; 3]);
    for step in 0..33 {
        let t0 = std::time::Instant::now();
        let split = threads.run(|| {
            let loss = net.loss(&batch, Some(&mut rng)).unwrap();
            let t1 = std::time::Instant::now();
            let grads = loss.backward().unwrap();
            let t2 = std::time::Instant::now();
            adam.update(&net.params.vars, &grads, 1e-3, 0.0, 5.0).unwrap();
            [t1 - t0, t2 - t1, t2.elapsed()]
        });
        if step >= 3 {
            times.push(t0.elapsed().as_secs_f64());
            parts
                .iter_mut()
                .zip(split)
                .for_each(|(p, d)| *p += d.as_secs_f64() / 30.0);
        }
    }
    println!(
        "mean forward {:.4} s, backward {:.4} s, Adam {:.4} s",
        parts[0], parts[1], parts[2]
    );
    let mut infer = Vec::new();
    for _ in 0..20 {
        let t0 = std::time::Instant::now();
        threads.run(|| net.forward(&batch, None).unwrap());
        infer.push(t0.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (m, lo, hi) = median(&mut times);
    let (mi, ilo, ihi) = median(&mut infer);
    println!("train step {m:.4} s [{lo:.4}-{hi:.4}], forward of 64 {mi:.4} s [{ilo:.4}-{ihi:.4}]");
}
