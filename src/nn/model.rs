//! The five networks of the paper's Table 1 as one struct whose branches exist or not by
//! kind: the audio branch (convolutions, then LSTM or time averaging, then a d-unit layer),
//! the metadata branch (tag/artist/year embeddings, MLP of `mlp_hidden` and d units), the
//! autoencoder's decoder, and the output layer that predicts the d-dim song vector.

use super::config::{ModelKind, NetConfig};
use super::layers::{ConvPool, Embedding, Linear, Lstm, ParamStore, average_over_time, dropout, mse};
use crate::error::Result;
use candle_core::{D, Tensor};
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
}

pub struct Network {
    pub config: NetConfig,
    pub params: ParamStore,
    conv: Vec<ConvPool>,
    lstm: Option<Lstm>,
    audio_fc: Option<Linear>,
    tags: Option<Embedding>,
    artists: Option<Embedding>,
    years: Option<Embedding>,
    mlp_hidden: Option<Linear>,
    mlp_out: Option<Linear>,
    decoder: Option<Linear>,
    head: Linear,
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
        let mut lstm = None;
        if kind.uses_audio() {
            let mut channels = c.n_mels;
            for (layer, (&out, &pool)) in c.conv_channels.iter().zip(&c.pool_sizes).enumerate() {
                let sizes = (channels, out, c.kernel_size, pool);
                conv.push(ConvPool::new(&mut store, &format!("conv{layer}"), sizes, &mut rng)?);
                channels = out;
            }
            let summary = if kind.uses_lstm() {
                lstm = Some(Lstm::new(&mut store, "lstm", channels, c.lstm_hidden, &mut rng)?);
                c.lstm_hidden
            } else {
                channels
            };
            audio_fc = Some(Linear::new(&mut store, "audio_fc", summary, d, &mut rng)?);
        }

        let (mut tags, mut artists, mut years, mut mlp_hidden, mut mlp_out) = (None, None, None, None, None);
        if kind.uses_metadata() {
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
        let head_inputs = if kind == ModelKind::Fusion { 2 * d } else { d };
        let head = Linear::new(&mut store, "head", head_inputs, d, &mut rng)?;

        Ok(Network {
            config,
            params: store,
            conv,
            lstm,
            audio_fc,
            tags,
            artists,
            years,
            mlp_hidden,
            mlp_out,
            decoder,
            head,
        })
    }

    /// Predicted song vectors (batch, d) and, for the autoencoder, the reconstruction.
    /// `rng` turns dropout on (training); `None` is inference.
    pub fn forward(&self, batch: &Batch, mut rng: Option<&mut ChaCha8Rng>) -> Result<(Tensor, Option<Tensor>)> {
        let p = self.config.dropout;
        let audio = match &self.audio_fc {
            Some(fc) => {
                let mut x = batch.audio.clone().ok_or_else(|| missing("audio"))?;
                for layer in &self.conv {
                    x = layer.forward(&x)?;
                }
                let summary = match &self.lstm {
                    Some(lstm) => lstm.forward(&x)?,
                    None => average_over_time(&x)?,
                };
                Some(dropout(&fc.forward(&summary)?.relu()?, p, rng.as_deref_mut())?)
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
                Some(dropout(&out.forward(&x)?.relu()?, p, rng)?)
            }
            _ => None,
        };
        let features = match (audio, metadata) {
            (Some(a), Some(m)) => Tensor::cat(&[&a, &m], D::Minus1)?,
            (Some(a), None) => a,
            (None, Some(m)) => m,
            (None, None) => unreachable!("every kind has a branch"),
        };
        let reconstruction = match &self.decoder {
            Some(decoder) => Some(decoder.forward(&features)?),
            None => None,
        };
        Ok((self.head.forward(&features)?, reconstruction))
    }

    /// Training objective: MSE to the song vectors (plus the weighted reconstruction MSE for
    /// the autoencoder).
    pub fn loss(&self, batch: &Batch, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        let (prediction, reconstruction) = self.forward(batch, rng)?;
        let targets = batch.targets.as_ref().ok_or_else(|| missing("targets"))?;
        let loss = mse(&prediction, targets)?;
        match (reconstruction, &batch.reconstruction) {
            (Some(r), Some(t)) => Ok((loss + (mse(&r, t)? * self.config.reconstruction_weight as f64)?)?),
            _ => Ok(loss),
        }
    }

    /// The regression part of the loss alone, comparable across kinds (validation).
    pub fn prediction_error(&self, batch: &Batch) -> Result<f64> {
        let (prediction, _) = self.forward(batch, None)?;
        let targets = batch.targets.as_ref().ok_or_else(|| missing("targets"))?;
        Ok(mse(&prediction, targets)?.to_scalar::<f32>()? as f64)
    }
}

fn missing(what: &str) -> crate::Error {
    crate::Error::Compute(format!("batch has no {what}"))
}
