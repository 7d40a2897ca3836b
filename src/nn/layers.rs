//! The layers the networks are built from, as candle operations on trainable `Var`s, and
//! the seeded parameter initialisation (candle's own initialisers draw from an unseeded
//! generator, which would break determinism).

use super::ops;
use crate::error::Result;
use candle_core::{Device, Tensor, Var};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Every trainable tensor of a network, by name, in creation order (the checkpoint order).
#[derive(Default)]
pub struct ParamStore {
    pub vars: Vec<(String, Var)>,
}

impl ParamStore {
    /// U(-bound, bound): PyTorch's default for linear, convolution and LSTM weights and
    /// biases with bound = 1/sqrt(fan_in).
    pub fn uniform(&mut self, name: &str, shape: &[usize], bound: f32, rng: &mut ChaCha8Rng) -> Result<Var> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * bound).collect();
        self.add(name, Tensor::from_vec(data, shape, &Device::Cpu)?)
    }

    /// N(0, std) by Box-Muller: embedding tables.
    pub fn normal(&mut self, name: &str, shape: &[usize], std: f32, rng: &mut ChaCha8Rng) -> Result<Var> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                let u1 = rng.random::<f32>().max(f32::MIN_POSITIVE);
                let u2 = rng.random::<f32>();
                std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
            })
            .collect();
        self.add(name, Tensor::from_vec(data, shape, &Device::Cpu)?)
    }

    /// All zeros (parameters set later, or a layer that must start silent).
    pub fn zeros(&mut self, name: &str, shape: &[usize]) -> Result<Var> {
        self.add(name, Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu)?)
    }

    fn add(&mut self, name: &str, tensor: Tensor) -> Result<Var> {
        let var = Var::from_tensor(&tensor)?;
        self.vars.push((name.to_string(), var.clone()));
        Ok(var)
    }

    pub fn n_parameters(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }
}

/// y = x W + b, W stored (in, out) so the forward pass needs no transpose.
pub struct Linear {
    w: Var,
    b: Var,
}

impl Linear {
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        inputs: usize,
        outputs: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        let bound = 1.0 / (inputs as f32).sqrt();
        Ok(Linear {
            w: store.uniform(&format!("{name}.weight"), &[inputs, outputs], bound, rng)?,
            b: store.uniform(&format!("{name}.bias"), &[outputs], bound, rng)?,
        })
    }

    /// A layer that outputs zeros until trained.
    pub fn zeros(store: &mut ParamStore, name: &str, inputs: usize, outputs: usize) -> Result<Self> {
        Ok(Linear {
            w: store.zeros(&format!("{name}.weight"), &[inputs, outputs])?,
            b: store.zeros(&format!("{name}.bias"), &[outputs])?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(ops::linear(x, self.w.as_tensor(), self.b.as_tensor())?)
    }
}

/// 1-D convolution over time with "same" padding, then non-overlapping max-pooling and
/// ReLU. Time-major: (batch, frames, channels) in and out; the kernel is stored as
/// (kernel * inputs, outputs) to multiply the unfolded input directly.
pub struct ConvPool {
    w: Var,
    b: Var,
    kernel: usize,
    pool: usize,
}

impl ConvPool {
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        (inputs, outputs, kernel, pool): (usize, usize, usize, usize),
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        let bound = 1.0 / ((inputs * kernel) as f32).sqrt();
        Ok(ConvPool {
            w: store.uniform(&format!("{name}.weight"), &[kernel * inputs, outputs], bound, rng)?,
            b: store.uniform(&format!("{name}.bias"), &[outputs], bound, rng)?,
            kernel,
            pool,
        })
    }

    /// (batch, frames, inputs) -> (batch, frames / pool, outputs). `input_grad`: whether
    /// the input's gradient is wanted (not for the spectrogram itself).
    pub fn forward(&self, x: &Tensor, input_grad: bool) -> Result<Tensor> {
        let (w, b) = (self.w.as_tensor(), self.b.as_tensor());
        Ok(ops::conv_pool_relu(x, w, b, self.kernel, self.pool, input_grad)?)
    }
}

/// LSTM (PyTorch's gate order i, f, g, o) returning the last hidden state.
pub struct Lstm {
    w_input: Var,
    w_hidden: Var,
    b: Var,
    hidden: usize,
}

impl Lstm {
    /// PyTorch's initialisation, except the forget gate's bias, set to `forget_bias` when
    /// it is not 0.
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        (inputs, hidden, forget_bias): (usize, usize, f32),
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        let bound = 1.0 / (hidden as f32).sqrt();
        let w_input = store.uniform(&format!("{name}.weight_input"), &[inputs, 4 * hidden], bound, rng)?;
        let w_hidden = store.uniform(&format!("{name}.weight_hidden"), &[hidden, 4 * hidden], bound, rng)?;
        let b = store.uniform(&format!("{name}.bias"), &[4 * hidden], bound, rng)?;
        if forget_bias != 0.0 {
            let mut values = b.as_tensor().to_vec1::<f32>()?;
            values[hidden..2 * hidden].iter_mut().for_each(|v| *v = forget_bias);
            b.set(&Tensor::from_vec(values, 4 * hidden, &Device::Cpu)?)?;
        }
        Ok(Lstm {
            w_input,
            w_hidden,
            b,
            hidden,
        })
    }

    /// (batch, steps, inputs) -> (batch, hidden).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, steps, inputs) = x.dims3()?;
        // The input projection of every step in one GEMM; only h W_hh is sequential.
        let projected = ops::linear(
            &x.reshape((batch * steps, inputs))?,
            self.w_input.as_tensor(),
            self.b.as_tensor(),
        )?
        .reshape((batch, steps, 4 * self.hidden))?;
        Ok(ops::lstm_last(&projected, self.w_hidden.as_tensor())?)
    }
}

/// An embedding table: rows looked up by id, or pooled with weights (a song's tags).
pub struct Embedding {
    table: Var,
}

impl Embedding {
    pub fn new(store: &mut ParamStore, name: &str, rows: usize, dim: usize, rng: &mut ChaCha8Rng) -> Result<Self> {
        Ok(Embedding {
            table: store.normal(&format!("{name}.weight"), &[rows, dim], 1.0, rng)?,
        })
    }

    /// ids: (batch,) u32 -> (batch, dim).
    pub fn lookup(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.table.as_tensor().embedding(ids)?)
    }

    /// weights: (batch, rows) with each row summing to 1 -> weighted mean of embeddings.
    pub fn pool(&self, weights: &Tensor) -> Result<Tensor> {
        Ok(weights.matmul(self.table.as_tensor())?)
    }
}

/// Inverted dropout with a seeded mask: kept units are scaled by 1 / (1 - p).
pub fn dropout(x: &Tensor, p: f32, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
    let Some(rng) = rng else { return Ok(x.clone()) };
    if p == 0.0 {
        return Ok(x.clone());
    }
    let scale = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| if rng.random::<f32>() < p { 0.0 } else { scale })
        .collect();
    Ok((x * Tensor::from_vec(mask, x.shape(), x.device())?)?)
}

/// Mean over time of (batch, frames, channels).
pub fn average_over_time(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean(1)?)
}

pub fn mse(prediction: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok((prediction - target)?.sqr()?.mean_all()?)
}
