//! Fused candle operations with hand-written backward passes for the layers a training step
//! spends its time in. Activations stay time-major (batch, frames, channels).
//!
//! candle's autograd adds a node per elementwise operation, allocates a zero tensor for every
//! gradient before adding into it, and computes both operands' gradients of every matmul, even
//! for an input that is data (the first convolution's unfolded spectrogram: a fifth of a step's
//! arithmetic). Each layer here is one node instead:
//! - [`conv_pool_relu`]: a 1-D convolution over time ("same" padding), the bias,
//!   non-overlapping max-pooling and ReLU. Width 3 (the networks' default) runs Winograd's
//!   F(4, 3) (see [`super::winograd`]: half the multiplications), other widths one GEMM of the
//!   unfolded input. The forward pass keeps the (transformed or unfolded) input and each pooled
//!   output's winning frame, so the backward pass is the GEMMs of the two gradients (only the
//!   weights' when the input needs none) and a scatter.
//! - [`linear`]: x W + b, the bias written before the GEMM accumulates into it.
//! - [`lstm_last`]: the LSTM's recurrence (PyTorch's gates i, f, g, o) over precomputed input
//!   projections, returning the last hidden state; the forward pass keeps the gates and cells,
//!   and the backward pass runs back through time by hand, one GEMM per step for each of the
//!   hidden state's and the recurrent weights' gradients.
//!
//! Sums over the batch (bias gradients) are taken per song and added in song order, so results
//! do not depend on scheduling.

use super::winograd;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;
use std::sync::Mutex;

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("expected an f32 tensor")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("expected a contiguous tensor"),
    }
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// `f` on a tensor's values in place (made contiguous first if they are not), no copy.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => Ok(f(contiguous_f32(cpu, layout)?)),
        _ => bail!("expected a CPU tensor"),
    }
}

/// How an operand of [`sgemm`] is stored: as the matrix itself or as its transpose, row-major.
#[derive(Clone, Copy)]
pub(super) enum Stored {
    AsIs,
    Transposed,
}

/// C (m x n, row-major) = op(A) (m x k) * op(B) (k x n), plus C's old values when
/// `accumulate`. A is stored row-major as (m x k), or as (k x m) when `Transposed`; B as
/// (k x n), or (n x k). Runs on the current rayon pool.
pub(super) fn sgemm(
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    a_stored: Stored,
    b: &[f32],
    b_stored: Stored,
    c: &mut [f32],
    accumulate: bool,
) {
    sgemm_on((m, n, k), a, a_stored, b, b_stored, c, accumulate, true);
}

/// [`sgemm`], on the current pool's threads when `parallel` (and the product is large enough
/// to gain from it), else on the calling thread.
#[allow(clippy::too_many_arguments)]
pub(super) fn sgemm_on(
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    a_stored: Stored,
    b: &[f32],
    b_stored: Stored,
    c: &mut [f32],
    accumulate: bool,
    parallel: bool,
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm operand too short (a bug in the caller's shapes)"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let (a_rs, a_cs) = match a_stored {
        Stored::AsIs => (k as isize, 1),
        Stored::Transposed => (1, m as isize),
    };
    // gemm runs several times slower on a B read with swapped strides (measured: 0.66 ms
    // against 0.08 ms for 64 x 256 x 1024), so a stored transpose is copied row-major first:
    // k n values, small beside the product's m n k.
    let copied;
    let b = match b_stored {
        Stored::AsIs => b,
        Stored::Transposed => {
            copied = crate::kernels::transpose(n, k, b);
            &copied[..]
        }
    };
    let (b_rs, b_cs) = (n as isize, 1);
    let threads = rayon::current_num_threads();
    let parallelism = if parallel && threads > 1 && m * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assertion above keeps every access inside the slices: A's last element is
    // (m-1, k-1), at (m-1)k + k-1 or (k-1)m + m-1, both < m k; likewise B and C.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Row `t` of song `s`'s unfolded block is frames `t - kernel/2 ..= t + kernel/2` side by
/// side, zeros beyond the edges.
fn unfold_into(x: &[f32], (t, c, kernel): (usize, usize, usize), out: &mut [f32]) {
    let pad = kernel / 2;
    out.par_chunks_mut(t * kernel * c)
        .zip(x.par_chunks(t * c))
        .for_each(|(dst, src)| {
            for frame in 0..t {
                for j in 0..kernel {
                    let at = (frame * kernel + j) * c;
                    match (frame + j).checked_sub(pad).filter(|&s| s < t) {
                        Some(s) => dst[at..at + c].copy_from_slice(&src[s * c..(s + 1) * c]),
                        None => dst[at..at + c].fill(0.0),
                    }
                }
            }
        });
}

/// Adds each unfolded row's pieces back onto the frames they came from (the adjoint of
/// [`unfold_into`]).
fn fold(unfolded: &[f32], (b, t, c, kernel): (usize, usize, usize, usize)) -> Vec<f32> {
    let pad = kernel / 2;
    let mut out = vec![0.0f32; b * t * c];
    out.par_chunks_mut(t * c)
        .zip(unfolded.par_chunks(t * kernel * c))
        .for_each(|(dst, src)| {
            for frame in 0..t {
                for j in 0..kernel {
                    if let Some(s) = (frame + j).checked_sub(pad).filter(|&s| s < t) {
                        let at = (frame * kernel + j) * c;
                        dst[s * c..(s + 1) * c]
                            .iter_mut()
                            .zip(&src[at..at + c])
                            .for_each(|(d, v)| *d += v);
                    }
                }
            }
        });
    out
}

/// Column sums of a (rows x n) matrix whose rows come in blocks of `per_song` rows: summed per
/// block in parallel, then the blocks in order.
fn column_sums(g: &[f32], n: usize, per_song: usize) -> Vec<f32> {
    let blocks: Vec<Vec<f32>> = g
        .par_chunks(per_song.max(1) * n)
        .map(|block| {
            let mut sum = vec![0.0f32; n];
            for row in block.chunks_exact(n) {
                sum.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            sum
        })
        .collect();
    let mut sum = vec![0.0f32; n];
    for block in &blocks {
        sum.iter_mut().zip(block).for_each(|(a, v)| *a += v);
    }
    sum
}

/// Songs per task in the convolution's forward pass (a 2-song block at 130 frames is a
/// 260-row GEMM).
const SONGS_PER_BLOCK: usize = 2;

/// One song's pooling: `y` (frames x channels, before the bias) to `out` (frames / pool x
/// channels) = relu(bias + max over each run of `pool` frames), and each output's winning
/// frame within its run (the first on ties, as PyTorch).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn pool_song(y: &[f32], bias: &[f32], (to, o, p): (usize, usize, usize), out: &mut [f32], winner: &mut [u32]) {
    for i in 0..to {
        let row = &mut out[i * o..(i + 1) * o];
        let win = &mut winner[i * o..(i + 1) * o];
        let bias = &bias[..o];
        row.copy_from_slice(&y[i * p * o..(i * p + 1) * o]);
        win.fill(0);
        for j in 1..p {
            let frame = &y[(i * p + j) * o..(i * p + j + 1) * o];
            for ch in 0..o {
                // Selects, not branches, so that the loop vectorises.
                let better = frame[ch] > row[ch];
                row[ch] = if better { frame[ch] } else { row[ch] };
                win[ch] = if better { j as u32 } else { win[ch] };
            }
        }
        for ch in 0..o {
            row[ch] = (row[ch] + bias[ch]).max(0.0);
        }
    }
}

/// [`pool_song`] for each song of a block: `y` (songs x t x o) to `out` and `winner` (songs
/// x to x o).
fn pool_block(
    y: &[f32],
    bias: &[f32],
    (t, to, o, p): (usize, usize, usize, usize),
    out: &mut [f32],
    winner: &mut [u32],
) {
    for ((dst, win), src) in out
        .chunks_mut(to * o)
        .zip(winner.chunks_mut(to * o))
        .zip(y.chunks(t * o))
    {
        pool_song(src, bias, (to, o, p), dst, win);
    }
}

/// What the convolution's forward pass keeps of its input for the backward pass.
enum SavedInput {
    /// The unfolded input (batch x frames x kernel inputs).
    Unfolded(Vec<f32>),
    /// Width 3: the Winograd-transformed input and weights (see [`super::winograd`]).
    Winograd { v: Vec<f32>, u: Vec<f32> },
}

/// What the convolution's forward pass keeps for its backward pass.
struct ConvSaved {
    input: SavedInput,
    /// Per pooled output, the frame of its run that held the max (the first on ties, as
    /// PyTorch).
    winner: Vec<u32>,
}

struct ConvPoolRelu {
    kernel: usize,
    pool: usize,
    /// Whether the input's gradient is wanted (false for data: one GEMM saved).
    input_grad: bool,
    saved: Mutex<Option<ConvSaved>>,
}

impl CustomOp3 for ConvPoolRelu {
    fn name(&self) -> &'static str {
        "conv-pool-relu-time"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, t, c) = l1.shape().dims3()?;
        let (rows, o) = l2.shape().dims2()?;
        let k = self.kernel;
        if rows != k * c || l3.shape().elem_count() != o {
            bail!("convolution weights {:?} do not fit {c} channels", l2.shape());
        }
        let (x, w, bias) = (
            contiguous_f32(s1, l1)?,
            contiguous_f32(s2, l2)?,
            contiguous_f32(s3, l3)?,
        );
        let p = self.pool;
        let to = t / p;
        let mut out = vec![0.0f32; b * to * o];
        let mut winner = vec![0u32; b * to * o];
        let input = if k == 3 {
            // Half the multiplications (see the winograd module); blocks of songs as below.
            let u = winograd::transform_weights(w, c * o);
            let songs = winograd::songs_per_block(b, t);
            let outputs = out
                .par_chunks_mut(songs * to * o)
                .zip(winner.par_chunks_mut(songs * to * o));
            let v = winograd::forward(x, &u, (b, t, c, o), songs, outputs, |(dst, win), y| {
                pool_block(y, bias, (t, to, o, p), dst, win)
            });
            SavedInput::Winograd { v, u }
        } else {
            let mut unfolded = vec![0.0f32; b * t * k * c];
            // Blocks of songs, one task each: unfold, a one-thread GEMM into a block-sized
            // buffer that stays in cache, and the pooling straight from it.
            let songs = SONGS_PER_BLOCK;
            unfolded
                .par_chunks_mut(songs * t * k * c)
                .zip(x.par_chunks(songs * t * c))
                .zip(
                    out.par_chunks_mut(songs * to * o)
                        .zip(winner.par_chunks_mut(songs * to * o)),
                )
                .for_each_init(Vec::new, |y, ((u, xs), (dst, win))| {
                    let rows = xs.len() / c;
                    unfold_into(xs, (t, c, k), u);
                    y.resize(rows * o, 0.0);
                    sgemm_on((rows, o, k * c), u, Stored::AsIs, w, Stored::AsIs, y, false, false);
                    pool_block(y, bias, (t, to, o, p), dst, win);
                });
            SavedInput::Unfolded(unfolded)
        };
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(ConvSaved { input, winner });
        Ok((CpuStorage::F32(out), Shape::from((b, to, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, c) = x.dims3()?;
        let o = w.dim(1)?;
        let (k, p) = (self.kernel, self.pool);
        let to = t / p;
        let guard = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        let Some(saved) = guard.as_ref() else {
            bail!("the convolution's backward pass ran before its forward pass")
        };
        // The gradient of the convolution's output: each pooled output's (ReLU passed it)
        // goes to the frame that won its max; the bias's is their sum, per song, then in order.
        let mut dy = vec![0.0f32; b * t * o];
        let mut per_song = vec![0.0f32; b * o];
        with_f32(res, |y| {
            with_f32(grad, |g| {
                dy.par_chunks_mut(t * o)
                    .zip(per_song.par_chunks_mut(o))
                    .zip(saved.winner.par_chunks(to * o))
                    .zip(y.par_chunks(to * o).zip(g.par_chunks(to * o)))
                    .for_each(|(((dst, db), win), (ys, gs))| {
                        for frame in 0..to {
                            let at = frame * o;
                            for ch in 0..o {
                                if ys[at + ch] > 0.0 {
                                    dst[(frame * p + win[at + ch] as usize) * o + ch] = gs[at + ch];
                                    db[ch] += gs[at + ch];
                                }
                            }
                        }
                    })
            })
        })??;
        let db = column_sums(&per_song, o, 1);
        let (dw, dx) = match &saved.input {
            SavedInput::Winograd { v, u } => winograd::backward(&dy, v, u, (b, t, c, o), self.input_grad),
            SavedInput::Unfolded(unfolded) => {
                let mut dw = vec![0.0f32; k * c * o];
                sgemm(
                    (k * c, o, b * t),
                    unfolded,
                    Stored::Transposed,
                    &dy,
                    Stored::AsIs,
                    &mut dw,
                    false,
                );
                let dx = if self.input_grad {
                    let mut du = vec![0.0f32; b * t * k * c];
                    with_f32(w, |w| {
                        sgemm(
                            (b * t, k * c, o),
                            &dy,
                            Stored::AsIs,
                            w,
                            Stored::Transposed,
                            &mut du,
                            false,
                        )
                    })?;
                    Some(fold(&du, (b, t, c, k)))
                } else {
                    None
                };
                (dw, dx)
            }
        };
        let dx = match dx {
            Some(dx) => Some(Tensor::from_vec(dx, (b, t, c), x.device())?),
            None => None,
        };
        Ok((
            dx,
            Some(Tensor::from_vec(dw, (k * c, o), x.device())?),
            Some(Tensor::from_vec(db, o, x.device())?),
        ))
    }
}

/// (batch, frames, inputs) with weights (kernel * inputs, outputs) and bias (outputs) ->
/// (batch, frames / pool, outputs): relu(max over each run of `pool` frames of (conv + bias));
/// a trailing remainder of frames is dropped. `input_grad`: whether `x`'s gradient is wanted.
pub fn conv_pool_relu(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    kernel: usize,
    pool: usize,
    input_grad: bool,
) -> Result<Tensor> {
    let op = ConvPoolRelu {
        kernel,
        pool,
        input_grad,
        saved: Mutex::new(None),
    };
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, op)
}

struct Linear;

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, i) = l1.shape().dims2()?;
        let (wi, o) = l2.shape().dims2()?;
        if wi != i || l3.shape().elem_count() != o {
            bail!("linear weights {:?} do not fit inputs {:?}", l2.shape(), l1.shape());
        }
        let (x, w, bias) = (
            contiguous_f32(s1, l1)?,
            contiguous_f32(s2, l2)?,
            contiguous_f32(s3, l3)?,
        );
        let mut out: Vec<f32> = Vec::with_capacity(m * o);
        for _ in 0..m {
            out.extend_from_slice(bias);
        }
        sgemm((m, o, i), x, Stored::AsIs, w, Stored::AsIs, &mut out, true);
        Ok((CpuStorage::F32(out), Shape::from((m, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (m, i) = x.dims2()?;
        let o = w.dim(1)?;
        let (xv, wv, g) = (values(x)?, values(w)?, values(grad)?);
        let mut dx = vec![0.0f32; m * i];
        sgemm((m, i, o), &g, Stored::AsIs, &wv, Stored::Transposed, &mut dx, false);
        let mut dw = vec![0.0f32; i * o];
        sgemm((i, o, m), &xv, Stored::Transposed, &g, Stored::AsIs, &mut dw, false);
        let db = column_sums(&g, o, 1);
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (m, i), dev)?),
            Some(Tensor::from_vec(dw, (i, o), dev)?),
            Some(Tensor::from_vec(db, o, dev)?),
        ))
    }
}

/// x (rows, inputs) W (inputs, outputs) + b (outputs).
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, Linear)
}

/// e^x, branch-free so that loops over it vectorise: Cephes' `expf` (range reduction by
/// ln 2 in two parts, a degree-6 polynomial; within 2 ulp of the true value for |x| <= 87,
/// clamped beyond, where the result would leave the normal range).
#[inline(always)]
fn exp(x: f32) -> f32 {
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 87.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// 1 / (1 + e^-x); the argument clamped to +-30, where the result is 0 or 1 to f32 precision
/// anyway, so no subnormal appears.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x.clamp(-30.0, 30.0)))
}

/// tanh x = 1 - 2 / (e^2x + 1) (absolute error ~1e-7).
#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x.clamp(-15.0, 15.0)) + 1.0)
}

/// One step of the LSTM cell for one song: `gates` (4 hidden: i, f, g, o pre-activations)
/// turned into their activations in place, the cell `c = f * old + i * g` and hidden state
/// `h = o * tanh(c)` written.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn cell_forward(gates: &mut [f32], old: &[f32], c: &mut [f32], h: &mut [f32]) {
    let n = c.len();
    let (i, rest) = gates.split_at_mut(n);
    let (f, rest) = rest.split_at_mut(n);
    let (g, o) = rest.split_at_mut(n);
    let (old, h, o) = (&old[..n], &mut h[..n], &mut o[..n]);
    for u in 0..n {
        i[u] = sigmoid(i[u]);
        f[u] = sigmoid(f[u]);
        g[u] = tanh(g[u]);
        o[u] = sigmoid(o[u]);
        c[u] = f[u] * old[u] + i[u] * g[u];
        h[u] = o[u] * tanh(c[u]);
    }
}

/// The cell's backward step for one song: from the hidden state's gradient `dh` and the
/// cell's `dc` (updated in place to the previous cell's), the pre-activation gradients of
/// the gates (`dgates`, 4 hidden).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn cell_backward(gates: &[f32], cell: &[f32], old: &[f32], dh: &[f32], dc: &mut [f32], dgates: &mut [f32]) {
    let n = dc.len();
    let (i, f, g, o) = (
        &gates[..n],
        &gates[n..2 * n],
        &gates[2 * n..3 * n],
        &gates[3 * n..4 * n],
    );
    let (cell, old, dh) = (&cell[..n], &old[..n], &dh[..n]);
    let (di, rest) = dgates.split_at_mut(n);
    let (df, rest) = rest.split_at_mut(n);
    let (dg, d_o) = rest.split_at_mut(n);
    let d_o = &mut d_o[..n];
    for u in 0..n {
        let tc = tanh(cell[u]);
        let dcell = dc[u] + dh[u] * o[u] * (1.0 - tc * tc);
        di[u] = dcell * g[u] * i[u] * (1.0 - i[u]);
        df[u] = dcell * old[u] * f[u] * (1.0 - f[u]);
        dg[u] = dcell * i[u] * (1.0 - g[u] * g[u]);
        d_o[u] = dh[u] * tc * o[u] * (1.0 - o[u]);
        dc[u] = dcell * f[u];
    }
}

/// What the LSTM's forward pass keeps: per step, the gates after their nonlinearities
/// (batch x 4 hidden: i, f, g, o) and the cell and hidden states (batch x hidden).
struct LstmSaved {
    gates: Vec<Vec<f32>>,
    cells: Vec<Vec<f32>>,
    hidden: Vec<Vec<f32>>,
}

struct LstmLast {
    saved: Mutex<Option<LstmSaved>>,
}

impl CustomOp2 for LstmLast {
    fn name(&self) -> &'static str {
        "lstm-last-hidden"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, steps, four_h) = l1.shape().dims3()?;
        let (h, wo) = l2.shape().dims2()?;
        if wo != four_h || four_h != 4 * h {
            bail!("LSTM weights {:?} do not fit gates {:?}", l2.shape(), l1.shape());
        }
        if steps == 0 {
            bail!("the LSTM got a sequence of length 0");
        }
        let (projected, wh) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let mut saved = LstmSaved {
            gates: Vec::with_capacity(steps),
            cells: Vec::with_capacity(steps),
            hidden: Vec::with_capacity(steps),
        };
        for t in 0..steps {
            let mut gates = vec![0.0f32; b * four_h];
            gates
                .par_chunks_mut(four_h)
                .zip(projected.par_chunks(steps * four_h))
                .for_each(|(dst, song)| dst.copy_from_slice(&song[t * four_h..(t + 1) * four_h]));
            if let Some(previous) = saved.hidden.last() {
                sgemm(
                    (b, four_h, h),
                    previous,
                    Stored::AsIs,
                    wh,
                    Stored::AsIs,
                    &mut gates,
                    true,
                );
            }
            let mut cell = vec![0.0f32; b * h];
            let mut hidden = vec![0.0f32; b * h];
            let zeros = vec![0.0f32; b * h];
            let before = saved.cells.last().unwrap_or(&zeros);
            gates
                .par_chunks_mut(four_h)
                .zip(cell.par_chunks_mut(h))
                .zip(hidden.par_chunks_mut(h))
                .zip(before.par_chunks(h))
                .for_each(|(((g, c), hs), old)| cell_forward(g, old, c, hs));
            saved.gates.push(gates);
            saved.cells.push(cell);
            saved.hidden.push(hidden);
        }
        let last = saved.hidden.last().cloned().unwrap_or_default();
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        Ok((CpuStorage::F32(last), Shape::from((b, h))))
    }

    fn bwd(
        &self,
        projected: &Tensor,
        wh: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, steps, four_h) = projected.dims3()?;
        let h = four_h / 4;
        let guard = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        let Some(saved) = guard.as_ref() else {
            bail!("the LSTM's backward pass ran before its forward pass")
        };
        // W_hh^T, laid out row-major once for the per-step GEMMs (see `sgemm_on`).
        let wh_t = with_f32(wh, |w| crate::kernels::transpose(h, four_h, w))?;
        let mut dh = values(grad)?;
        let mut dc = vec![0.0f32; b * h];
        let mut dprojected = vec![0.0f32; b * steps * four_h];
        let mut dwh = vec![0.0f32; h * four_h];
        let mut dgates = vec![0.0f32; b * four_h];
        let mut dg_steps = vec![0.0f32; (steps - 1) * b * four_h];
        let zeros = vec![0.0f32; b * h];
        for t in (0..steps).rev() {
            let (gates, cells) = (&saved.gates[t], &saved.cells[t]);
            let before = t.checked_sub(1).map_or(&zeros, |p| &saved.cells[p]);
            dgates
                .par_chunks_mut(four_h)
                .zip(dc.par_chunks_mut(h))
                .zip(dh.par_chunks(h))
                .zip(
                    gates
                        .par_chunks(four_h)
                        .zip(cells.par_chunks(h))
                        .zip(before.par_chunks(h)),
                )
                .for_each(|(((dg, dcs), dhs), ((g, cs), old))| cell_backward(g, cs, old, dhs, dcs, dg));
            dprojected
                .par_chunks_mut(steps * four_h)
                .zip(dgates.par_chunks(four_h))
                .for_each(|(song, dg)| song[t * four_h..(t + 1) * four_h].copy_from_slice(dg));
            if t > 0 {
                dg_steps[(t - 1) * b * four_h..t * b * four_h].copy_from_slice(&dgates);
                sgemm(
                    (b, h, four_h),
                    &dgates,
                    Stored::AsIs,
                    &wh_t,
                    Stored::AsIs,
                    &mut dh,
                    false,
                );
            }
        }
        // The recurrent weights' gradient, sum over steps 1.. of h_(t-1)^T dgates_t: one GEMM
        // over the steps stacked.
        let previous = saved.hidden[..steps - 1].concat();
        let rows = (steps - 1) * b;
        sgemm(
            (h, four_h, rows),
            &previous,
            Stored::Transposed,
            &dg_steps,
            Stored::AsIs,
            &mut dwh,
            false,
        );
        let dev = projected.device();
        Ok((
            Some(Tensor::from_vec(dprojected, (b, steps, four_h), dev)?),
            Some(Tensor::from_vec(dwh, (h, four_h), dev)?),
        ))
    }
}

/// The last hidden state (batch, hidden) of an LSTM over `projected` (batch, steps, 4 hidden):
/// each step's input projection plus bias, gates in PyTorch's order i, f, g, o), with the
/// recurrent weights `w_hidden` (hidden, 4 hidden); the state starts at zero.
pub fn lstm_last(projected: &Tensor, w_hidden: &Tensor) -> Result<Tensor> {
    let op = LstmLast {
        saved: Mutex::new(None),
    };
    projected.contiguous()?.apply_op2(&w_hidden.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn exp_sigmoid_and_tanh_match_the_standard_library() {
        for i in -8000..=8000 {
            let x = i as f32 * 0.01;
            let e = x.exp();
            assert!((exp(x) - e).abs() <= 3e-7 * e, "exp({x}) = {} vs {e}", exp(x));
            let s = 1.0 / (1.0 + (-x).exp());
            assert!((sigmoid(x) - s).abs() <= 2e-7, "sigmoid({x}) = {} vs {s}", sigmoid(x));
            assert!(
                (tanh(x) - x.tanh()).abs() <= 3e-7,
                "tanh({x}) = {} vs {}",
                tanh(x),
                x.tanh()
            );
        }
        assert_eq!(sigmoid(-1e4), 1.0 / (1.0 + 30f32.exp()));
        assert_eq!(tanh(1e4), 1.0);
        assert!(exp(f32::NAN).is_nan() && tanh(f32::NAN).is_nan());
    }

    /// Without the input's gradient the first convolution's weights get the same gradients.
    #[test]
    fn convolution_without_the_input_gradient_keeps_the_weight_gradients() {
        let dev = &Device::Cpu;
        let values =
            |n: usize, seed: usize| -> Vec<f32> { (0..n).map(|i| ((i * 7 + seed) % 13) as f32 * 0.1 - 0.6).collect() };
        let x = Var::from_tensor(&Tensor::from_vec(values(5 * 9 * 4, 1), (5, 9, 4), dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::from_vec(values(12 * 6, 2), (12, 6), dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::from_vec(values(6, 3), 6, dev).unwrap()).unwrap();
        let probe = Tensor::from_vec(values(5 * 3 * 6, 4), (5, 3, 6), dev).unwrap();
        let grads = |input_grad: bool| {
            let y = conv_pool_relu(x.as_tensor(), w.as_tensor(), b.as_tensor(), 3, 3, input_grad).unwrap();
            (y * &probe).unwrap().sum_all().unwrap().backward().unwrap()
        };
        let (with, without) = (grads(true), grads(false));
        for var in [&w, &b] {
            let get = |g: &candle_core::backprop::GradStore| values_of(g.get(var.as_tensor()).unwrap());
            assert_eq!(get(&with), get(&without));
        }
        assert!(with.get(x.as_tensor()).is_some() && without.get(x.as_tensor()).is_none());
    }

    /// The convolution (Winograd for width 3, unfolded otherwise) against a direct sum over
    /// the kernel, at lengths that do and do not fill the last tile, with and without pooling.
    #[test]
    fn convolution_matches_the_direct_sum() {
        let dev = &Device::Cpu;
        let values = |n: usize, seed: u64| -> Vec<f32> {
            let mut state = seed;
            (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        };
        for (b, t, c, o, k, p) in [
            (3, 13, 5, 7, 3, 1),
            (4, 16, 9, 6, 3, 2),
            (2, 7, 3, 4, 5, 1),
            (5, 130, 16, 8, 3, 4),
        ] {
            let (x, w, bias) = (values(b * t * c, 1), values(k * c * o, 2), values(o, 3));
            let got = conv_pool_relu(
                &Tensor::from_vec(x.clone(), (b, t, c), dev).unwrap(),
                &Tensor::from_vec(w.clone(), (k * c, o), dev).unwrap(),
                &Tensor::from_vec(bias.clone(), o, dev).unwrap(),
                k,
                p,
                true,
            )
            .unwrap();
            let got = values_of(&got);
            let to = t / p;
            for s in 0..b {
                for f in 0..to {
                    for ch in 0..o {
                        let mut best = f64::NEG_INFINITY;
                        for frame in f * p..(f + 1) * p {
                            let mut sum = 0f64;
                            for j in 0..k {
                                let Some(src) = (frame + j).checked_sub(k / 2).filter(|&src| src < t) else {
                                    continue;
                                };
                                for i in 0..c {
                                    sum += x[(s * t + src) * c + i] as f64 * w[(j * c + i) * o + ch] as f64;
                                }
                            }
                            best = best.max(sum);
                        }
                        let want = (best + bias[ch] as f64).max(0.0);
                        let have = got[(s * to + f) * o + ch] as f64;
                        assert!(
                            (have - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{b} {t} {c} {o} {k}: {have} vs {want}"
                        );
                    }
                }
            }
        }
    }

    fn values_of(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// GEMM throughput at the first convolution's shape; a measurement, so ignored.
    #[test]
    #[ignore]
    fn gemm_timing() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for (m, n, k) in [(8320, 256, 384), (2048, 256, 768), (384, 256, 8320), (512, 1024, 256)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
            let mut c = vec![0.0f32; m * n];
            let mut times = Vec::new();
            pool.install(|| {
                for _ in 0..40 {
                    let t0 = std::time::Instant::now();
                    sgemm((m, n, k), &a, Stored::AsIs, &b, Stored::AsIs, &mut c, false);
                    times.push(t0.elapsed().as_secs_f64());
                }
            });
            times.sort_by(f64::total_cmp);
            let best = times[times.len() / 2];
            println!(
                "{m}x{n}x{k}: {:.2} ms, {:.0} GFLOP/s",
                best * 1e3,
                2.0 * (m * n * k) as f64 / best / 1e9
            );
        }
    }
}
