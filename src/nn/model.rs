//! The five networks of the paper's Table 1 as one struct whose branches exist or not by
//! kind: the audio branch (convolutions, then LSTM or time averaging, then a d-unit layer),
//! the metadata branch (tag/artist/year embeddings, MLP of `mlp_hidden` and d units), the
//! autoencoder's decoder, and the output layer that predicts the d-dim song vector.

use super::config::{ModelKind, NetConfig};
use super::layers::{ConvPool, Embedding, Linear, Lstm, ParamStore, average_over_time, dropout, mse};
use super::wide::WideWeights;
use super::wpe::SongMetric;
use crate::error::Result;
use candle_core::{D, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One mini-batch as tensors; a field is `None` when the network kind does not read it.
#[derive(Default)]
pub struct Batch {
    /// (batch, n_frames, n_mels): time-major, standardised per Mel band.
    pub audio: Option<Tensor>,
    /// (batch, n_tags): each song's tag weights, summing to 1.
    pub tags: Option<Tensor>,
    /// (batch,) u32 ids.
    pub artists: Option<Tensor>,
    pub years: Option<Tensor>,
    /// (batch, n_factors): the WMF song vectors (training only).
    pub targets: Option<Tensor>,
    /// Autoencoder only: (batch, n_mels * segments), the spectrogram averaged over segments.
    pub reconstruction: Option<Tensor>,
    /// The linear part's audio input: (batch, 2 n_mels), each band's mean then its standard
    /// deviation over time of the standardised excerpts, averaged over the song's excerpts.
    pub stats: Option<Tensor>,
    /// WPE training only: the Gram matrix and the (listener vectors, batch positions) of the
    /// songs' listeners (see `SongMetric::batch`).
    pub metric: Option<(Tensor, Option<(Tensor, Tensor)>)>,
    /// The tag task only (training): (batch, n_tags) tag strengths, and the loss weight
    /// (`tag_task` times the standardizer's `tag_scale`).
    pub tag_targets: Option<(Tensor, f64)>,
}

pub struct Network {
    pub config: NetConfig,
    pub params: ParamStore,
    conv: Vec<ConvPool>,
    lstm: Option<Lstm>,
    audio_hidden: Option<Linear>,
    audio_fc: Option<Linear>,
    tags: Option<Embedding>,
    artists: Option<Embedding>,
    years: Option<Embedding>,
    mlp_hidden: Option<Linear>,
    mlp_out: Option<Linear>,
    decoder: Option<Linear>,
    head: Option<Linear>,
    wide: Option<Wide>,
    /// The tag task's head on the deep features (`NetConfig::tag_task`); training only.
    tag_head: Option<Linear>,
}

/// The linear part: per-band statistics, tag weights, artist and year, each times a weight
/// matrix, plus a bias. Its values come from the closed-form ridge fit (`wide::fit`).
struct Wide {
    audio: Option<Var>,
    /// Random Fourier features of the statistics (`NetConfig::random_features`): projection,
    /// phases and weights.
    random: Option<(Var, Var, Var)>,
    tags: Option<Var>,
    artists: Option<Var>,
    years: Option<Var>,
    bias: Var,
}

impl Wide {
    fn new(store: &mut ParamStore, c: &NetConfig) -> Result<Self> {
        let d = c.n_factors;
        let mut zeros = |name: &str, shape: &[usize]| store.zeros(&format!("wide.{name}"), shape);
        let audio = if c.wide_reads_audio() {
            Some(zeros("audio", &[c.stats_per_band() * c.n_mels, d])?)
        } else {
            None
        };
        let random = if c.wide_reads_audio() && c.random_features > 0 {
            let n = c.random_features;
            Some((
                zeros("random_projection", &[c.stats_per_band() * c.n_mels, n])?,
                zeros("random_phase", &[n])?,
                zeros("random", &[n, d])?,
            ))
        } else {
            None
        };
        let (tags, artists, years) = if c.kind.uses_metadata() {
            (
                Some(zeros("tags", &[c.n_tags, d])?),
                Some(zeros("artists", &[c.n_artists, d])?),
                Some(zeros("years", &[c.n_years, d])?),
            )
        } else {
            (None, None, None)
        };
        let bias = store.zeros("wide.bias", &[d])?;
        Ok(Wide {
            audio,
            random,
            tags,
            artists,
            years,
            bias,
        })
    }

    /// `frozen`: the values enter as constants (no gradient), as in a wide & deep network.
    fn forward(&self, batch: &Batch, frozen: bool) -> Result<Tensor> {
        let value = |v: &Var| {
            if frozen {
                v.as_tensor().detach()
            } else {
                v.as_tensor().clone()
            }
        };
        let mut out = value(&self.bias);
        if let Some(w) = &self.audio {
            let stats = batch.stats.as_ref().ok_or_else(|| missing("audio statistics"))?;
            out = stats.matmul(&value(w))?.broadcast_add(&out)?;
            if let Some((projection, phase, weights)) = &self.random {
                let features = stats.matmul(&value(projection))?.broadcast_add(&value(phase))?.cos()?;
                out = features.matmul(&value(weights))?.add(&out)?;
            }
        }
        if let (Some(t), Some(a), Some(y)) = (&self.tags, &self.artists, &self.years) {
            let tags = batch.tags.as_ref().ok_or_else(|| missing("tags"))?.matmul(&value(t))?;
            let artist = value(a).embedding(batch.artists.as_ref().ok_or_else(|| missing("artists"))?)?;
            let year = value(y).embedding(batch.years.as_ref().ok_or_else(|| missing("years"))?)?;
            out = tags.add(&artist)?.add(&year)?.broadcast_add(&out)?;
        }
        Ok(out)
    }

    fn set(&self, w: &WideWeights) -> Result<()> {
        let put = |var: &Option<Var>, values: &Option<Vec<f32>>| -> Result<()> {
            if let (Some(var), Some(values)) = (var, values) {
                var.set(&Tensor::from_vec(values.clone(), var.shape(), var.device())?)?;
            }
            Ok(())
        };
        put(&self.audio, &w.audio)?;
        if let Some((projection, phase, weights)) = &self.random {
            put(&Some(projection.clone()), &w.random_projection)?;
            put(&Some(phase.clone()), &w.random_phase)?;
            put(&Some(weights.clone()), &w.random)?;
        }
        put(&self.tags, &w.tags)?;
        put(&self.artists, &w.artists)?;
        put(&self.years, &w.years)?;
        self.bias.set(&Tensor::from_vec(
            w.bias.clone(),
            self.bias.shape(),
            self.bias.device(),
        )?)?;
        Ok(())
    }
}

impl Network {
    /// A freshly initialised network; the same config and seed give the same weights.
    pub fn new(config: NetConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut store = ParamStore::default();
        let c = &config;
        let d = c.n_factors;
        let kind = c.kind;

        let mut conv = Vec::new();
        let mut audio_fc = None;
        let mut audio_hidden = None;
        let mut lstm = None;
        let deep = c.has_deep();
        if kind.uses_audio() && deep {
            let mut channels = c.n_mels;
            for (layer, (&out, &pool)) in c.conv_channels.iter().zip(&c.pool_sizes).enumerate() {
                let sizes = (channels, out, c.kernel_size, pool);
                conv.push(ConvPool::new(&mut store, &format!("conv{layer}"), sizes, &mut rng)?);
                channels = out;
            }
            let mut summary = if kind.uses_lstm() {
                lstm = Some(Lstm::new(
                    &mut store,
                    "lstm",
                    (channels, c.lstm_hidden, c.forget_bias),
                    &mut rng,
                )?);
                c.lstm_hidden
            } else {
                channels
            };
            if c.pool_max {
                // max over time; with an LSTM also the mean
                summary += if kind.uses_lstm() { 2 * channels } else { channels };
            }
            if c.audio_hidden > 0 {
                audio_hidden = Some(Linear::new(
                    &mut store,
                    "audio_hidden",
                    summary,
                    c.audio_hidden,
                    &mut rng,
                )?);
                summary = c.audio_hidden;
            }
            audio_fc = Some(Linear::new(&mut store, "audio_fc", summary, d, &mut rng)?);
        }

        let (mut tags, mut artists, mut years, mut mlp_hidden, mut mlp_out) = (None, None, None, None, None);
        if c.has_deep_metadata() {
            tags = Some(Embedding::new(&mut store, "tags", c.n_tags, c.tag_dim, &mut rng)?);
            artists = Some(Embedding::new(
                &mut store,
                "artists",
                c.n_artists,
                c.artist_dim,
                &mut rng,
            )?);
            years = Some(Embedding::new(&mut store, "years", c.n_years, c.year_dim, &mut rng)?);
            let width = c.tag_dim + c.artist_dim + c.year_dim;
            mlp_hidden = Some(Linear::new(&mut store, "mlp_hidden", width, c.mlp_hidden, &mut rng)?);
            mlp_out = Some(Linear::new(&mut store, "mlp_out", c.mlp_hidden, d, &mut rng)?);
        }

        let decoder = if kind == ModelKind::Autoencoder {
            let size = c.n_mels * c.reconstruction_segments;
            Some(Linear::new(&mut store, "decoder", d, size, &mut rng)?)
        } else {
            None
        };
        let head_inputs = if kind == ModelKind::Fusion && c.has_deep_metadata() {
            2 * d
        } else {
            d
        };
        let head = match (deep, c.wide) {
            (false, _) => None,
            // Beside a linear part the head starts at zero: training starts from the linear
            // model's predictions and the deep branches learn its residual.
            (true, true) => Some(Linear::zeros(&mut store, "head", head_inputs, d)?),
            (true, false) => Some(Linear::new(&mut store, "head", head_inputs, d, &mut rng)?),
        };
        let wide = if c.has_wide() {
            Some(Wide::new(&mut store, c)?)
        } else {
            None
        };
        // Drawn last, so that the other weights are those of the same network without it.
        let tag_head = match c.has_tag_task() {
            true => Some(Linear::new(&mut store, "tag_head", head_inputs, c.n_tags, &mut rng)?),
            false => None,
        };

        Ok(Network {
            config,
            params: store,
            conv,
            lstm,
            audio_hidden,
            audio_fc,
            tags,
            artists,
            years,
            mlp_hidden,
            mlp_out,
            decoder,
            head,
            wide,
            tag_head,
        })
    }

    /// Set the linear part's weights (from `wide::fit`); an error if there is none.
    pub fn set_wide(&self, weights: &WideWeights) -> Result<()> {
        match &self.wide {
            Some(wide) => wide.set(weights),
            None => Err(crate::Error::invalid("this network has no linear part")),
        }
    }

    /// Predicted song vectors (batch, d) and, for the autoencoder, the reconstruction.
    /// `rng` turns dropout on (training); `None` is inference.
    pub fn forward(&self, batch: &Batch, rng: Option<&mut ChaCha8Rng>) -> Result<(Tensor, Option<Tensor>)> {
        let (prediction, reconstruction, _) = self.forward_parts(batch, rng)?;
        Ok((prediction, reconstruction))
    }

    /// `forward`, plus the deep features the tag head reads (when there is a deep part).
    fn forward_parts(
        &self,
        batch: &Batch,
        rng: Option<&mut ChaCha8Rng>,
    ) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
        let (deep, reconstruction, features) = match &self.head {
            Some(head) => {
                let features = self.deep_features(batch, rng)?;
                let reconstruction = match &self.decoder {
                    Some(decoder) => Some(decoder.forward(&features)?),
                    None => None,
                };
                (Some(head.forward(&features)?), reconstruction, Some(features))
            }
            None => (None, None, None),
        };
        let wide = match &self.wide {
            Some(wide) => Some(wide.forward(batch, self.head.is_some())?),
            None => None,
        };
        let prediction = match (deep, wide) {
            (Some(d), Some(w)) => (d + w)?,
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => return Err(crate::Error::Compute("the network has no output".into())),
        };
        Ok((prediction, reconstruction, features))
    }

    /// The deep branches' concatenated outputs: what the head (and the decoder) read.
    fn deep_features(&self, batch: &Batch, mut rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        let p = self.config.dropout;
        let branch = |x: Tensor| if self.config.branch_relu { x.relu() } else { Ok(x) };
        let audio = match &self.audio_fc {
            Some(fc) => {
                let mut x = batch.audio.clone().ok_or_else(|| missing("audio"))?;
                for (i, layer) in self.conv.iter().enumerate() {
                    // The spectrogram is data: no gradient for it.
                    x = layer.forward(&x, i > 0)?;
                }
                let mut summary = match &self.lstm {
                    Some(lstm) => lstm.forward(&x)?,
                    None => average_over_time(&x)?,
                };
                if self.config.pool_max {
                    let max = x.max(1)?;
                    summary = match &self.lstm {
                        Some(_) => Tensor::cat(&[&summary, &average_over_time(&x)?, &max], D::Minus1)?,
                        None => Tensor::cat(&[&summary, &max], D::Minus1)?,
                    };
                }
                if let Some(hidden) = &self.audio_hidden {
                    summary = dropout(&hidden.forward(&summary)?.relu()?, p, rng.as_deref_mut())?;
                }
                Some(dropout(&branch(fc.forward(&summary)?)?, p, rng.as_deref_mut())?)
            }
            None => None,
        };
        let metadata = match (&self.tags, &self.artists, &self.years, &self.mlp_hidden, &self.mlp_out) {
            (Some(tags), Some(artists), Some(years), Some(hidden), Some(out)) => {
                let pooled = tags.pool(batch.tags.as_ref().ok_or_else(|| missing("tags"))?)?;
                let artist = artists.lookup(batch.artists.as_ref().ok_or_else(|| missing("artists"))?)?;
                let year = years.lookup(batch.years.as_ref().ok_or_else(|| missing("years"))?)?;
                let x = Tensor::cat(&[&pooled, &artist, &year], D::Minus1)?;
                let x = dropout(&hidden.forward(&x)?.relu()?, p, rng.as_deref_mut())?;
                Some(dropout(&branch(out.forward(&x)?)?, p, rng)?)
            }
            _ => None,
        };
        match (audio, metadata) {
            (Some(a), Some(m)) => Ok(Tensor::cat(&[&a, &m], D::Minus1)?),
            (Some(x), None) | (None, Some(x)) => Ok(x),
            (None, None) => Err(crate::Error::Compute("the network has no deep branch".into())),
        }
    }

    /// Training objective: MSE to the song vectors, or WPE when the batch carries the songs'
    /// metric (plus the weighted reconstruction MSE for
    /// the autoencoder).
    pub fn loss(&self, batch: &Batch, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        let (prediction, reconstruction, features) = self.forward_parts(batch, rng)?;
        let targets = batch.targets.as_ref().ok_or_else(|| missing("targets"))?;
        let mut loss = match &batch.metric {
            Some((gram, pairs)) => SongMetric::loss(gram, pairs.as_ref(), &(&prediction - targets)?)?,
            None => mse(&prediction, targets)?,
        };
        if let (Some(head), Some(features)) = (&self.tag_head, &features) {
            let (tags, weight) = batch.tag_targets.as_ref().ok_or_else(|| missing("tag strengths"))?;
            loss = (loss + (mse(&head.forward(features)?, tags)? * *weight)?)?;
        }
        match (reconstruction, &batch.reconstruction) {
            (Some(r), Some(t)) => Ok((loss + (mse(&r, t)? * self.config.reconstruction_weight as f64)?)?),
            _ => Ok(loss),
        }
    }
}

fn missing(what: &str) -> crate::Error {
    crate::Error::Compute(format!("batch has no {what}"))
}
