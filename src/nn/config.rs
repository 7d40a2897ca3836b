//! What a network is (its kind and layer sizes) and how it trains; both serialise to JSON
//! inside checkpoints so a saved model rebuilds itself.

use crate::ensure;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The paper's model and the four baselines of its Table 1. All predict a song's WMF vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Audio (CNN + LSTM) and metadata (embeddings + MLP) fused: the paper's model.
    Fusion,
    /// A spectrogram autoencoder whose code is regressed to the song vector.
    Autoencoder,
    /// Audio convolutions, global average pooling, no LSTM.
    Cnn,
    /// Audio only: convolutions then LSTM.
    CnnLstm,
    /// Metadata only: tag, artist and year embeddings + MLP.
    Embedding,
    /// The linear baseline: closed-form ridge regression on per-band log-Mel statistics and
    /// one-hot metadata (tags, artist, year bucket), the penalties picked on validation songs.
    Ridge,
    /// Ridge on the audio statistics alone: cnn_lstm's linear counterpart.
    RidgeAudio,
    /// Ridge on the one-hot metadata alone: embedding's linear counterpart.
    RidgeMetadata,
}

impl ModelKind {
    pub const ALL: [ModelKind; 8] = [
        ModelKind::Fusion,
        ModelKind::Autoencoder,
        ModelKind::Cnn,
        ModelKind::CnnLstm,
        ModelKind::Embedding,
        ModelKind::Ridge,
        ModelKind::RidgeAudio,
        ModelKind::RidgeMetadata,
    ];

    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
            Error::invalid(format!("unknown model kind {name:?}; expected one of {names:?}"))
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Fusion => "fusion",
            ModelKind::Autoencoder => "autoencoder",
            ModelKind::Cnn => "cnn",
            ModelKind::CnnLstm => "cnn_lstm",
            ModelKind::Embedding => "embedding",
            ModelKind::Ridge => "ridge",
            ModelKind::RidgeAudio => "ridge_audio",
            ModelKind::RidgeMetadata => "ridge_metadata",
        }
    }

    pub fn uses_audio(self) -> bool {
        !matches!(self, ModelKind::Embedding | ModelKind::RidgeMetadata)
    }

    pub fn uses_metadata(self) -> bool {
        matches!(
            self,
            ModelKind::Fusion | ModelKind::Embedding | ModelKind::Ridge | ModelKind::RidgeMetadata
        )
    }

    /// The closed-form linear kinds: no deep branches, no gradient training.
    pub fn is_linear(self) -> bool {
        matches!(
            self,
            ModelKind::Ridge | ModelKind::RidgeAudio | ModelKind::RidgeMetadata
        )
    }

    /// The linear model reading the same inputs: what this kind must beat.
    pub fn linear_counterpart(self) -> ModelKind {
        match (self.uses_audio(), self.uses_metadata()) {
            (true, false) => ModelKind::RidgeAudio,
            (false, true) => ModelKind::RidgeMetadata,
            _ => ModelKind::Ridge,
        }
    }

    pub fn uses_lstm(self) -> bool {
        matches!(self, ModelKind::Fusion | ModelKind::CnnLstm)
    }
}

/// Layer sizes. The paper gives the layer types and the 512-unit MLP only; the rest are our
/// documented defaults (see `NetConfig::new`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    pub kind: ModelKind,
    /// d: size of the predicted song vector (the WMF factor count; 100 in the paper) and of
    /// each branch's output.
    pub n_factors: usize,
    /// Input spectrogram shape: Mel bands (the convolution's input channels) x frames.
    pub n_mels: usize,
    pub n_frames: usize,
    /// Output channels of the three 1-D convolutions over time.
    pub conv_channels: Vec<usize>,
    /// Convolution width in frames ("same" padding, so only pooling shortens the sequence).
    pub kernel_size: usize,
    /// Non-overlapping max-pooling after each convolution (kernel = stride).
    pub pool_sizes: Vec<usize>,
    pub lstm_hidden: usize,
    pub tag_dim: usize,
    pub artist_dim: usize,
    pub year_dim: usize,
    pub mlp_hidden: usize,
    /// Dropout on the hidden fully connected layers while training.
    pub dropout: f32,
    /// Autoencoder only: weight of the reconstruction loss next to the regression loss, and
    /// how many time segments of the (standardised) spectrogram the decoder reconstructs.
    pub reconstruction_weight: f32,
    pub reconstruction_segments: usize,
    /// Vocabulary sizes, set from the training metadata (index 0 is out-of-vocabulary).
    pub n_tags: usize,
    pub n_artists: usize,
    pub n_years: usize,
    /// Wide & deep: the kind's linear counterpart (ridge on the same inputs) is fitted in
    /// closed form first, frozen, and added to the output, so the deep branches learn only
    /// what it misses and training starts from the linear model's predictions. Always on for
    /// the linear kinds; off in files written before it existed.
    #[serde(default)]
    pub wide: bool,
    /// ReLU on each branch's d-unit output before the head (the paper's "ReLU in the fully
    /// connected layers"). Off by default: a ReLU there can zero a whole branch, which is
    /// how the paper-size CNN+LSTM collapsed to the mean. On in files written before it.
    #[serde(default = "yes")]
    pub branch_relu: bool,
    /// Initial bias of the LSTM's forget gate (1 is the usual choice: remember by default).
    #[serde(default)]
    pub forget_bias: f32,
    /// The audio summary also takes each channel's maximum over time of the last
    /// convolution, beside its mean (beside the LSTM's state for the LSTM kinds): global
    /// mean and max pooling as in van den Oord et al. (2013). Off in the paper's design and in
    /// files written before it.
    #[serde(default)]
    pub pool_max: bool,
    /// Units of a hidden ReLU layer between the audio summary and the branch's d-unit
    /// output (0: none, the paper's design). Without it everything after the time pooling is
    /// linear, so the branch cannot combine song-level qualities non-linearly.
    #[serde(default)]
    pub audio_hidden: usize,
    /// The fusion model's deep metadata branch (embeddings and MLP). Off by default: the
    /// metadata then reaches the output through the linear part only (`wide`), and the deep
    /// part is the audio branch learning what the linear model misses. With the branch, the
    /// artist embeddings overfit within 2-5 epochs and early stopping ends training before
    /// the audio branch has learned anything (measured on real sound with new artists:
    /// recall@10 0.187 with it, 0.212 without; level elsewhere). On in the paper's design
    /// and in files written before it.
    #[serde(default = "yes")]
    pub deep_metadata: bool,
    /// Whether a network's linear part reads the audio statistics (per-band mean and
    /// standard deviation) as well as the metadata. With `false`, fusion's linear part is
    /// ridge on the metadata alone and the deep audio branch carries all of the sound. The
    /// linear kinds always read what their kind says. On in files written before it.
    #[serde(default = "yes")]
    pub wide_audio: bool,
    /// Fusion only: late fusion by stacking. The audio network (ridge on the audio statistics
    /// plus the deep audio branch learning its residual, as `cnn_lstm` trains) and ridge on
    /// the metadata are fitted separately, then combined as `a * audio + m * metadata + c`
    /// with the two weights and a per-dimension intercept fitted by least squares on the
    /// validation songs. The combination folds into the network's own parameters (the linear
    /// part and the scaled head), so prediction and files are the network's. Jointly trained
    /// (`false`), the audio branch learns only what ridge on everything misses, and early
    /// stopping ends it within a few epochs. It applies to a fusion model whose linear part
    /// reads audio and metadata and which has no deep metadata branch (the defaults), and is
    /// ignored otherwise (see [`NetConfig::is_stacked`]). Off in files written before it.
    #[serde(default)]
    pub stacked: bool,
    /// Multi-task learning: weight of a second training loss, a linear head on the audio
    /// branch predicting each training song's tag strengths, beside the loss on the song
    /// vectors (each relative to its targets' variance, so 1 weighs them alike). Tags are
    /// denser evidence of a song's sound than the WMF vector of its few listeners; the head
    /// is used in training only (prediction needs no metadata). 0 (the default) is off.
    /// Audio kinds without a deep metadata branch only; training then needs metadata.
    #[serde(default)]
    pub tag_task: f32,
    /// Random Fourier features of the audio statistics in the linear part: this many
    /// features `sqrt(2) cos(z W + b)` of the standardised statistics `z`, with
    /// `W ~ N(0, 2 gamma)` and `b ~ U(0, 2 pi)` drawn from the training seed (the random
    /// features of an RBF kernel), under a ridge penalty of their own chosen on the
    /// validation songs. The linear model becomes a kernel machine, still fitted in closed
    /// form; a wide & deep network starts from it. At most one per training song is drawn;
    /// no effect where the linear part reads no audio. 0 (off) by default, but
    /// [`FUSION_RANDOM_FEATURES`] for fusion, whose stacked ridge is best with them.
    #[serde(default)]
    pub random_features: usize,
    /// The RBF kernel's `gamma` times the number of statistics (`3 n_mels`): at 0.5 (the
    /// default) `exp(-gamma |z - z'|^2)` is about `e^-1` for two typical songs.
    #[serde(default = "half")]
    pub rff_scale: f32,
    /// Each band's spectral flux beside its mean and spread in the linear part's statistics:
    /// the mean absolute change of the standardised log-Mel from one frame to the next,
    /// averaged over the excerpts (how much the band moves in time, which a mean and a spread
    /// cannot tell). On by default for the kinds that read audio (models saved before it
    /// existed read mean and spread only); no effect where the linear part reads no audio.
    #[serde(default)]
    pub wide_flux: bool,
    /// With `stacked`: the ridge stacked beside the audio network reads the audio statistics
    /// (and their random features) as well as the metadata, instead of the metadata alone.
    /// On (for fusion) by default; models saved before it existed stacked ridge on metadata.
    #[serde(default)]
    pub stacked_ridge_audio: bool,
}

/// The random features fusion's linear parts take by default (at most one per training song).
pub const FUSION_RANDOM_FEATURES: usize = 2_000;

fn half() -> f32 {
    0.5
}

/// The most random features the linear part takes (its normal equations grow as their square).
pub const MAX_RANDOM_FEATURES: usize = 16_384;

fn yes() -> bool {
    true
}

impl NetConfig {
    /// Defaults: three 1-D convolutions of 256 channels, width 3, pooled 4, 2, 2 (a 3 s clip
    /// at 22,050 Hz — 130 frames — reaches the LSTM as 8 steps, at 8 kHz as 2); LSTM of 256;
    /// tag and artist embeddings of 64, year 16; MLP 512 -> d (the embedding kind's; fusion
    /// has no deep metadata branch by default, see `deep_metadata`); dropout 0.2. `pool_max` and
    /// `audio_hidden` are off: on the real-sound world they moved recall@10 by -0.005 to +0.011
    /// (cnn +0.011, fusion -0.005), within run-to-run noise.
    pub fn new(kind: ModelKind, n_factors: usize, n_mels: usize, n_frames: usize) -> Self {
        NetConfig {
            kind,
            n_factors,
            n_mels,
            n_frames,
            conv_channels: vec![256, 256, 256],
            kernel_size: 3,
            pool_sizes: vec![4, 2, 2],
            lstm_hidden: 256,
            tag_dim: 64,
            artist_dim: 64,
            year_dim: 16,
            mlp_hidden: 512,
            dropout: 0.2,
            reconstruction_weight: 1.0,
            reconstruction_segments: 8,
            n_tags: 1,
            n_artists: 1,
            n_years: 1,
            wide: true,
            branch_relu: false,
            forget_bias: 1.0,
            pool_max: false,
            audio_hidden: 0,
            deep_metadata: false,
            wide_audio: true,
            stacked: kind == ModelKind::Fusion,
            tag_task: 0.0,
            random_features: if kind == ModelKind::Fusion {
                FUSION_RANDOM_FEATURES
            } else {
                0
            },
            rff_scale: 0.5,
            wide_flux: kind.uses_audio(),
            stacked_ridge_audio: kind == ModelKind::Fusion,
        }
    }

    /// The paper's architecture as it describes it: no linear part, ReLU on every fully
    /// connected layer, PyTorch's default LSTM initialisation, average pooling straight into
    /// the branch's output layer.
    pub fn paper(kind: ModelKind, n_factors: usize, n_mels: usize, n_frames: usize) -> Self {
        NetConfig {
            wide: false,
            branch_relu: true,
            forget_bias: 0.0,
            deep_metadata: true,
            stacked: false,
            stacked_ridge_audio: false,
            random_features: 0,
            wide_flux: false,
            ..Self::new(kind, n_factors, n_mels, n_frames)
        }
    }

    /// Whether the network has a linear (ridge) part.
    pub fn has_wide(&self) -> bool {
        self.wide || self.kind.is_linear()
    }

    /// Whether the linear part reads the audio statistics.
    pub fn wide_reads_audio(&self) -> bool {
        self.has_wide() && self.kind.uses_audio() && (self.wide_audio || self.kind.is_linear())
    }

    /// The linear part's audio settings as they apply to a fit on `n_train` songs: none
    /// without audio statistics, and at most one random feature per training song (more add
    /// nothing to the kernel's rank).
    pub fn resolve_linear_audio(&mut self, n_train: usize) {
        if !self.wide_reads_audio() {
            self.random_features = 0;
            self.wide_flux = false;
        }
        self.random_features = self.random_features.min(n_train);
    }

    /// How many audio statistics the linear part reads per band (mean, spread and, with
    /// `wide_flux`, flux).
    pub fn stats_per_band(&self) -> usize {
        if self.wide_flux { 3 } else { 2 }
    }

    /// Whether training stacks the audio network and ridge on the metadata (see `stacked`).
    pub fn is_stacked(&self) -> bool {
        self.stacked && self.kind == ModelKind::Fusion && self.wide && self.wide_audio && !self.deep_metadata
    }

    /// Whether training adds the tag-prediction loss (see `tag_task`).
    pub fn has_tag_task(&self) -> bool {
        self.tag_task > 0.0
    }

    /// Whether it has deep branches and a head.
    pub fn has_deep(&self) -> bool {
        !self.kind.is_linear()
    }

    /// Whether the metadata has a deep branch (embeddings and MLP).
    pub fn has_deep_metadata(&self) -> bool {
        self.kind.uses_metadata() && self.has_deep() && (self.deep_metadata || !self.kind.uses_audio())
    }

    /// Frames left after every pooling layer: the LSTM's sequence length.
    pub fn pooled_frames(&self) -> usize {
        self.pool_sizes.iter().fold(self.n_frames, |t, p| t / p)
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(self.n_factors > 0, "n_factors must be positive");
        ensure!(
            (0.0..1.0).contains(&self.dropout),
            "dropout must be in [0, 1), got {}",
            self.dropout
        );
        if self.kind.uses_audio() {
            ensure!(
                self.n_mels > 0 && self.n_frames > 0,
                "spectrograms must have Mel bands and frames"
            );
        }
        ensure!(self.forget_bias.is_finite(), "forget_bias must be finite");
        if self.kind.uses_audio() && self.has_deep() {
            ensure!(
                !self.conv_channels.is_empty() && self.conv_channels.iter().all(|&c| c > 0),
                "conv_channels must be a non-empty list of positive sizes"
            );
            ensure!(
                self.pool_sizes.len() == self.conv_channels.len(),
                "pool_sizes needs one entry per convolution ({} given for {} layers)",
                self.pool_sizes.len(),
                self.conv_channels.len()
            );
            ensure!(self.pool_sizes.iter().all(|&p| p > 0), "pool sizes must be positive");
            ensure!(
                self.kernel_size % 2 == 1,
                "kernel_size must be odd (same padding), got {}",
                self.kernel_size
            );
            ensure!(
                self.pooled_frames() > 0,
                "a {}-frame spectrogram is too short for pooling {:?}",
                self.n_frames,
                self.pool_sizes
            );
            ensure!(self.lstm_hidden > 0, "lstm_hidden must be positive");
        }
        if self.kind == ModelKind::Autoencoder {
            ensure!(
                self.reconstruction_segments > 0 && self.reconstruction_segments <= self.n_frames,
                "reconstruction_segments must be in 1..={}",
                self.n_frames
            );
            ensure!(self.reconstruction_weight >= 0.0, "reconstruction_weight must be >= 0");
        }
        if self.kind == ModelKind::Fusion && !self.deep_metadata {
            ensure!(
                self.has_wide(),
                "a fusion model without its deep metadata branch needs the linear part (wide=True) to read metadata"
            );
        }
        ensure!(
            !self.wide || !self.has_deep() || self.wide_audio || self.kind.uses_metadata(),
            "wide_audio=False leaves the linear part of a {:?} model nothing to read; use wide=False",
            self.kind.name()
        );
        ensure!(
            self.tag_task.is_finite() && self.tag_task >= 0.0,
            "tag_task must be a finite weight >= 0, got {}",
            self.tag_task
        );
        if self.has_tag_task() {
            ensure!(
                self.kind.uses_audio() && self.has_deep() && !self.has_deep_metadata(),
                "tag_task applies to the audio networks (cnn, cnn_lstm, autoencoder, fusion without its deep metadata branch), not {:?}",
                self.kind.name()
            );
        }
        ensure!(
            self.random_features <= MAX_RANDOM_FEATURES,
            "random_features must be at most {MAX_RANDOM_FEATURES}, got {}",
            self.random_features
        );
        ensure!(
            self.rff_scale.is_finite() && self.rff_scale > 0.0,
            "rff_scale must be a finite number > 0, got {}",
            self.rff_scale
        );
        if self.stacked {
            ensure!(
                self.kind == ModelKind::Fusion,
                "stacked applies to the fusion kind only, not {:?}",
                self.kind.name()
            );
        }
        if self.has_deep_metadata() {
            ensure!(
                self.tag_dim > 0 && self.artist_dim > 0 && self.year_dim > 0 && self.mlp_hidden > 0,
                "embedding and MLP sizes must be positive"
            );
        }
        Ok(())
    }
}

/// Optimisation settings. Adam (AdamW with weight decay 0) at 1e-3 as in the paper.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation loss (0: never stop early).
    pub patience: usize,
    pub seed: u64,
    /// Gradients are scaled down to at most this global L2 norm before each step (0: no
    /// clipping). Off in files written before it existed.
    #[serde(default)]
    pub clip_norm: f64,
    /// What early stopping minimises on the validation songs: their vectors' MSE, or (with
    /// the users' WMF vectors given to `fit`) one minus their recall@`recall_k`, the overlap
    /// of each user's top-`recall_k` validation songs by predicted and by true vector.
    #[serde(default)]
    pub stop_metric: StopMetric,
    #[serde(default = "default_recall_k")]
    pub recall_k: usize,
    /// SpecAugment-style masking of the audio branch's training input (Park et al. 2019):
    /// each training excerpt gets one band of `freq_mask` Mel bands at most (width drawn
    /// uniformly from 0..=freq_mask) and one stretch of `time_mask` frames at most set to
    /// the bands' mean (0 after standardisation). 0 turns each off; prediction never masks.
    #[serde(default)]
    pub freq_mask: usize,
    #[serde(default)]
    pub time_mask: usize,
    /// What training minimises: the squared distance to the WMF song vectors, or WMF's own
    /// loss for each song around its vector (WPE, van den Oord et al. 2013; `fit` then needs
    /// the users' vectors and the songs' plays: see [`super::SongMetric`]).
    #[serde(default)]
    pub objective: Objective,
    /// Learning-rate decay on a plateau (ReduceLROnPlateau): after `lr_patience` epochs
    /// without a better validation criterion (counted from the best epoch or the last
    /// decay, whichever is later) the learning rate is multiplied by `lr_decay`. 0 epochs
    /// or a factor of 1 turn it off (the default); early stopping's `patience` still ends
    /// training, so it should exceed `lr_patience` for a decay to happen.
    #[serde(default)]
    pub lr_patience: usize,
    #[serde(default = "default_lr_decay")]
    pub lr_decay: f64,
}

fn default_lr_decay() -> f64 {
    1.0
}

/// The training loss (see [`TrainConfig::objective`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    #[default]
    Mse,
    Wpe,
}

/// The validation criterion of early stopping (see [`TrainConfig::stop_metric`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopMetric {
    #[default]
    Mse,
    Recall,
}

fn default_recall_k() -> usize {
    10
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            learning_rate: 1e-3,
            weight_decay: 0.0,
            batch_size: 64,
            max_epochs: 100,
            patience: 10,
            seed: 0,
            clip_norm: 5.0,
            stop_metric: StopMetric::Mse,
            recall_k: default_recall_k(),
            freq_mask: 0,
            time_mask: 0,
            objective: Objective::Mse,
            lr_patience: 0,
            lr_decay: default_lr_decay(),
        }
    }
}

impl TrainConfig {
    /// The paper's training: Adam at 1e-3, no gradient clipping.
    pub fn paper() -> Self {
        TrainConfig {
            clip_norm: 0.0,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.learning_rate > 0.0 && self.learning_rate.is_finite(),
            "learning_rate must be positive, got {}",
            self.learning_rate
        );
        ensure!(self.weight_decay >= 0.0, "weight_decay must be >= 0");
        ensure!(self.batch_size > 0, "batch_size must be positive");
        ensure!(self.max_epochs > 0, "max_epochs must be positive");
        ensure!(self.recall_k > 0, "recall_k must be positive");
        ensure!(
            self.lr_decay > 0.0 && self.lr_decay <= 1.0,
            "lr_decay must be in (0, 1] (1 turns the decay off), got {}",
            self.lr_decay
        );
        ensure!(
            self.clip_norm >= 0.0 && self.clip_norm.is_finite(),
            "clip_norm must be finite and >= 0 (0 turns clipping off), got {}",
            self.clip_norm
        );
        Ok(())
    }
}
